//! Order enrichment: reads `--customers` as a table (key: customer id as UTF-8, value: JSON
//! `{"name": "...", "tier": "..."}`; a null value deletes the customer) and `--orders` as a
//! stream (key: order id as UTF-8, value: JSON `{"customer": "<id>", "amount": <number>}`),
//! re-keys each order by its customer id (through an internal topic), left-joins it with
//! the customer's value at that moment, and writes JSON
//! `{"order": "<id>", "customer": "<id>", "name": ..., "tier": ..., "amount": <number>}`
//! keyed by order id to `--output`; `name` and `tier` are null when the table has no such
//! customer as the order is processed, and later customer changes do not revise orders
//! already enriched (records buffered together are processed in timestamp order, so
//! produce a customer before its orders). Both input topics must have the same number of
//! partitions (the join is co-partitioned). Records that do not parse are skipped with a
//! warning. Run:
//! `enrichment --bootstrap 127.0.0.1:9092 --customers customers --orders orders --output orders-enriched`.

use anyhow::Result;
use clap::Parser;
use samsa_streams::StreamsBuilder;
use serde::{Deserialize, Serialize};
use serde_json::Number;

/// Enriches orders with their customer's name and tier with Samsa Streams (a stream-table
/// left join).
///
/// Customers (a table; key: customer id as UTF-8): JSON `{"name": "...", "tier": "..."}`;
/// a null value deletes the customer. Orders (key: order id as UTF-8): JSON
/// `{"customer": "<id>", "amount": <number>}`. Each order is re-keyed by customer id and
/// joined with the customer's value at the moment it is processed; later customer changes
/// do not revise it. Both input topics need the same number of partitions. Records that
/// do not parse are skipped with a warning.
///
/// Output (key: order id as UTF-8): JSON `{"order": "<id>", "customer": "<id>", "name":
/// "..." or null, "tier": "..." or null, "amount": <number>}`, name and tier null when the
/// customer is unknown.
///
/// Example: enrichment --bootstrap 127.0.0.1:9092 --customers customers --orders orders --output orders-enriched
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Table topic of customers (key: customer id, value: JSON `{"name": ..., "tier": ...}`,
    /// null to delete). Needs as many partitions as `--orders`.
    #[arg(long, default_value = "customers")]
    customers: String,
    /// Topic of orders (key: order id, value: JSON `{"customer": "<id>", "amount": <number>}`).
    #[arg(long, default_value = "orders")]
    orders: String,
    /// Topic of enriched orders (key: order id, value: JSON `{"order", "customer", "name",
    /// "tier", "amount"}`; name and tier null for unknown customers).
    #[arg(long, default_value = "orders-enriched")]
    output: String,
    /// Flags every example takes.
    #[command(flatten)]
    app: samsa_examples::AppArgs,
}

/// A customer, the value of the customers table (missing fields read as null).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Customer {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tier: Option<String>,
}

/// An order as read from the orders topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    customer: String,
    /// Kept as written (`10` stays `10`, `25.50` becomes `25.5`).
    amount: Number,
}

/// An order with its customer's details: the output value, and the value of the internal
/// topic keyed by customer id (there with `name` and `tier` still null).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EnrichedOrder {
    order: String,
    customer: String,
    name: Option<String>,
    tier: Option<String>,
    amount: Number,
}

samsa_streams::json_serde!(Customer, Order, EnrichedOrder);

fn main() -> Result<()> {
    samsa_examples::init_logging();
    let args = Args::parse();
    let config = args.app.config("enrichment", &[("default.deserialization.exception.handler", "continue")])?;

    let builder = StreamsBuilder::new();
    let customers = builder.table::<String, Customer>(&args.customers);
    builder
        .stream::<String, Order>(&args.orders)
        .map(|order: String, o: Order| (o.customer.clone(), EnrichedOrder { order, customer: o.customer, name: None, tier: None, amount: o.amount }))
        .left_join_table(&customers, |o: &EnrichedOrder, c: Option<&Customer>| EnrichedOrder {
            name: c.and_then(|c| c.name.clone()),
            tier: c.and_then(|c| c.tier.clone()),
            ..o.clone()
        })
        .map(|_customer: String, e: EnrichedOrder| (e.order.clone(), e))
        .to(&args.output);
    let topology = builder.build()?;
    eprintln!("{}", topology.describe());

    samsa_examples::run_until_ctrl_c(topology, config, |_| {})
}
