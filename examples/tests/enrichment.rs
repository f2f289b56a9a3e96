//! The enrichment example as its users run it: customers and orders on 3 partitions each,
//! customers produced first, then orders (one for an unknown customer); the example runs
//! as a process and every enriched order must come out exactly once with the exact JSON.
//! Then one customer changes tier, one is deleted and one is added while it runs: the
//! next orders must see the new table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use samsa_client::admin::NewTopic;
use samsa_client::{Admin, Consumer, Producer, ProducerRecord};
use samsa_tests::{program, BackgroundClient, SamsaServer};
use serde_json::{json, Value};

const PARTITIONS: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrichment_left_joins_every_order_with_its_customer() -> Result<()> {
    let started = Instant::now();
    let server = SamsaServer::start()?;
    let bootstrap = server.bootstrap().to_string();
    let admin = Admin::connect(&bootstrap).await?;
    admin
        .create_topics(&[NewTopic::new("customers", PARTITIONS, 1), NewTopic::new("orders", PARTITIONS, 1), NewTopic::new("enriched", PARTITIONS, 1)])
        .await?;
    let producer = Producer::from_properties([("bootstrap.servers", bootstrap.as_str())]).await?;
    let send = |topic: &'static str, key: &'static str, value: Option<Value>| {
        let producer = &producer;
        async move {
            let rec = ProducerRecord { topic: topic.into(), key: Some(key.into()), value: value.map(|v| v.to_string().into()), ..Default::default() };
            producer.send(rec).await?.await.with_context(|| format!("producing {key} to {topic}"))
        }
    };

    // Customers first, then orders: each order is joined with the table as loaded so far.
    send("customers", "c1", Some(json!({"name": "Ann", "tier": "gold"}))).await?;
    send("customers", "c2", Some(json!({"name": "Bob", "tier": "silver"}))).await?;
    send("customers", "c3", Some(json!({"name": "Cid", "tier": "bronze"}))).await?;
    send("orders", "o1", Some(json!({"customer": "c1", "amount": 10}))).await?;
    send("orders", "o2", Some(json!({"customer": "c2", "amount": 25.5}))).await?;
    send("orders", "o3", Some(json!({"customer": "c404", "amount": 7}))).await?;
    send("orders", "o4", Some(json!({"customer": "c1", "amount": 3.25}))).await?;
    send("orders", "o5", Some(json!({"customer": "c3", "amount": 100}))).await?;

    let state = tempfile::tempdir()?;
    let mut app = program(env!("CARGO_BIN_EXE_enrichment"))
        .args(["--bootstrap", &bootstrap, "--customers", "customers", "--orders", "orders", "--output", "enriched", "--app-id", "enrich", "--state-dir"])
        .args([state.path()])
        .args(["--set", "commit.interval.ms=200", "--set", "consumer.session.timeout.ms=6000", "--set", "consumer.heartbeat.interval.ms=500"])
        .env("RUST_LOG", "info")
        .timeout(Duration::from_secs(60))
        .spawn()?;

    let enriched = |order: &str, customer: &str, name: Option<&str>, tier: Option<&str>, amount: Value| {
        (order.to_string(), json!({"order": order, "customer": customer, "name": name, "tier": tier, "amount": amount}))
    };
    let mut expected: BTreeMap<String, Value> = [
        enriched("o1", "c1", Some("Ann"), Some("gold"), json!(10)),
        enriched("o2", "c2", Some("Bob"), Some("silver"), json!(25.5)),
        enriched("o3", "c404", None, None, json!(7)),
        enriched("o4", "c1", Some("Ann"), Some("gold"), json!(3.25)),
        enriched("o5", "c3", Some("Cid"), Some("bronze"), json!(100)),
    ]
    .into_iter()
    .collect();

    let mut output = Output::new(&bootstrap).await?;
    output.read_until(&expected, &mut app).await?;
    eprintln!("first 5 orders enriched after {:?}", started.elapsed());

    // While it runs: c1 moves up a tier, c3 is deleted, c4 arrives; then their orders.
    send("customers", "c1", Some(json!({"name": "Ann", "tier": "platinum"}))).await?;
    send("customers", "c3", None).await?;
    send("customers", "c4", Some(json!({"name": "Dee", "tier": "gold"}))).await?;
    send("orders", "o6", Some(json!({"customer": "c1", "amount": 1}))).await?;
    send("orders", "o7", Some(json!({"customer": "c3", "amount": 2}))).await?;
    send("orders", "o8", Some(json!({"customer": "c4", "amount": 3}))).await?;
    expected.extend([
        enriched("o6", "c1", Some("Ann"), Some("platinum"), json!(1)),
        enriched("o7", "c3", None, None, json!(2)),
        enriched("o8", "c4", Some("Dee"), Some("gold"), json!(3)),
    ]);
    output.read_until(&expected, &mut app).await?;

    app.kill9()?;
    eprintln!("enrichment: {} orders exact after {:?}", expected.len(), started.elapsed());
    Ok(())
}

/// The enriched orders read so far, by order id.
struct Output {
    consumer: Consumer,
    got: BTreeMap<String, Value>,
}

impl Output {
    async fn new(bootstrap: &str) -> Result<Output> {
        let consumer = Consumer::from_properties([
            ("bootstrap.servers", bootstrap),
            ("group.id", "enrichment-verifier"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
        ])
        .await?;
        consumer.subscribe(&["enriched"])?;
        Ok(Output { consumer, got: BTreeMap::new() })
    }

    /// Reads until every order of `expected` is in, failing at once on an order that is
    /// unexpected, wrong or repeated, and after 20 s.
    async fn read_until(&mut self, expected: &BTreeMap<String, Value>, app: &mut BackgroundClient) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.got.len() < expected.len() {
            for r in self.consumer.poll(Duration::from_millis(200)).await? {
                let order = String::from_utf8(r.key.as_ref().context("output key")?.to_vec())?;
                let value: Value = serde_json::from_slice(r.value.as_ref().context("output value")?)?;
                match expected.get(&order) {
                    None => bail!("unexpected enriched order `{order}`: {value}"),
                    Some(want) if *want != value => bail!("order `{order}` enriched as {value}, want {want}"),
                    Some(_) => {}
                }
                if self.got.insert(order.clone(), value).is_some() {
                    bail!("order `{order}` enriched twice");
                }
            }
            if Instant::now() > deadline {
                let missing: Vec<&String> = expected.keys().filter(|o| !self.got.contains_key(*o)).collect();
                bail!("orders {missing:?} not enriched within 20 s");
            }
            if app.has_exited()? {
                bail!("enrichment exited early");
            }
        }
        Ok(())
    }
}
