//! Broker integration tests over real TCP: bad input of every kind gets Kafka's error
//! code (or a closed connection where Kafka closes it), and the broker keeps serving.

mod authz;
mod bad_input;
mod raw;
mod txn_protocol;
