//! Sans-IO pieces of the Kafka wire protocol: framing, request-header peeking and
//! record-batch header helpers. No I/O and no async here, so everything is unit-testable
//! and fuzzable on plain byte slices.

pub mod batch;
pub mod frame;
pub mod header;

pub use kafka_protocol;
