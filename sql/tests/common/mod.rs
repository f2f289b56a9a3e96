//! What the SQL tests share: an in-process single-node broker.

use std::path::Path;

use samsa_broker::{Broker, BrokerConfig, BrokerOptions};

/// Starts a broker on a free loopback port with its data under `dir`.
pub async fn start_broker(dir: &Path, config: BrokerConfig) -> Broker {
    Broker::start(BrokerOptions { data_dir: dir.to_path_buf(), listen: "127.0.0.1:0".into(), node_id: 1, controller_listen: None, voters: Default::default(), config })
        .await
        .unwrap()
}
