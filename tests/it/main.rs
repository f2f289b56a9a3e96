//! End-to-end tests: each test starts its own `samsa server` (temp data dir, free port) and
//! drives it with a real Kafka client. See `samsa_tests` for the harness.

mod assignors;
mod cli;
mod cli_produce_consume;
mod cli_tools;
mod client_consumer;
mod client_interop;
mod client_producer;
mod cluster_a;
mod cluster_b;
mod cluster_txn;
mod connect_file;
mod connect_postgres;
mod connect_rest;
mod confluent;
mod crash;
mod examples;
mod kafka_python;
mod kafkajs;
mod kcat;
mod log_policies;
mod observability;
mod security;
mod sql_durability;
mod sql_nexmark;
mod sql_http;
mod transactions;
mod txn_samsa;
