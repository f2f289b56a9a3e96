//! kafkajs (old non-flexible API versions): produce and group consume.

use anyhow::{ensure, Result};
use samsa_tests::{run_node, SamsaServer};

#[test]
fn produce_and_group_consume() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let out = run_node("produce_consume.js", &[server.bootstrap(), "1000"])?;
    ensure!(out.result_value::<usize>("produced")? == 1000);
    ensure!(out.result_value::<usize>("consumed")? == 1000);
    server.terminate()
}
