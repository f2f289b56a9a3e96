//! Client-side assignors over the classic group protocol (the broker treats them as opaque):
//! range, roundrobin and cooperative-sticky (incremental rebalances), via confluent-kafka.

use anyhow::{ensure, Result};
use samsa_tests::{run_python, SamsaServer};

fn two_members(strategy: &str) -> Result<()> {
    let mut server = SamsaServer::start()?;
    let n = 2000usize;
    let out = run_python("assignors.py", &[server.bootstrap(), strategy, &n.to_string()])?;
    ensure!(out.result_value::<usize>("consumed")? == n);
    // Both members ended up owning partitions: the rebalance split the 4 partitions.
    ensure!(out.result_value::<usize>("a_partitions")? >= 1, "A lost everything: {:?}", out.result()?);
    ensure!(out.result_value::<usize>("b_partitions")? >= 1, "B got nothing: {:?}", out.result()?);
    ensure!(out.result_value::<usize>("a_partitions")? + out.result_value::<usize>("b_partitions")? == 4);
    server.terminate()
}

#[test]
fn range_assignor() -> Result<()> {
    two_members("range")
}

#[test]
fn roundrobin_assignor() -> Result<()> {
    two_members("roundrobin")
}

#[test]
fn cooperative_sticky_assignor() -> Result<()> {
    two_members("cooperative-sticky")
}
