//! kafka-python (pure Python client): admin, produce, group consume.

use anyhow::{ensure, Result};
use samsa_tests::{run_python, SamsaServer};

#[test]
fn admin_create_describe_delete() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let out = run_python("kp_admin.py", &[server.bootstrap()])?;
    ensure!(out.result_value::<String>("deleted")? == "kp-admin-topic");
    server.terminate()
}

#[test]
fn produce_and_group_consume() -> Result<()> {
    let mut server = SamsaServer::start()?;
    let out = run_python("kp_produce_consume.py", &[server.bootstrap(), "1000"])?;
    ensure!(out.result_value::<usize>("produced")? == 1000);
    ensure!(out.result_value::<usize>("consumed")? == 1000);
    server.terminate()
}
