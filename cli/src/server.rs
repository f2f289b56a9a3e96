//! `samsa server`: run a broker, alone or as one node of a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use samsa_broker::{Broker, BrokerConfig, BrokerOptions};
use samsa_sql::http::LazyEngine;
use samsa_sql::EngineConfig;

use crate::wait_for_signal;

/// Arguments of `samsa server`.
#[derive(clap::Args)]
#[command(after_long_help = config_keys_help())]
pub struct ServerArgs {
    /// Directory for logs and metadata (created if missing).
    #[arg(long, default_value = "./samsa-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// A listener for Kafka clients: HOST:PORT (PLAINTEXT) or NAME://HOST:PORT with a
    /// security protocol name (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) or a name mapped by
    /// listener.security.protocol.map; repeatable; port 0 picks a free port. The first one
    /// is advertised for replication. `--set listeners=...` wins over it.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "[NAME://]HOST:PORT")]
    listen: Vec<String>,
    /// This broker's node id (also its id in the controller quorum).
    #[arg(long, default_value_t = 1, value_name = "N")]
    node_id: i32,
    /// Address for the controller quorum and broker-to-controller traffic (cluster mode;
    /// this node's entry in --voters).
    #[arg(long, value_name = "HOST:PORT", requires = "voters")]
    controller_listen: Option<String>,
    /// The controller quorum, e.g. 1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293.
    /// Every node listed is broker and controller (KRaft combined mode); start them in any
    /// order. Without it the server is a single node.
    #[arg(long, value_name = "ID@HOST:PORT,...", requires = "controller_listen")]
    voters: Option<String>,
    /// A properties file with Kafka broker settings (num.partitions, log.retention.ms, ...).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one setting, e.g. --set num.partitions=6 (repeatable; wins over --config).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Address for the SQL HTTP API (`POST /sql`, what `samsa sql` talks to); port 0 picks
    /// a free port. Prints `samsa http on HOST:PORT` when ready. [default: 127.0.0.1:8083;
    /// when the default is taken the server runs without it and warns]
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "no_http")]
    http_listen: Option<String>,
    /// Do not serve the SQL HTTP API.
    #[arg(long)]
    no_http: bool,
}

/// Where the SQL HTTP API listens unless told otherwise.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8083";

/// How often a server without a running SQL engine checks whether SQL is in use (a
/// catalog topic exists), to start its share of the persistent queries.
const SQL_CATALOG_CHECK: Duration = Duration::from_secs(5);

/// The accepted config keys with defaults, for `samsa server --help`.
fn config_keys_help() -> String {
    let mut out = String::from("Config keys (Kafka's broker names; topics override them with the name in brackets):\n");
    for d in samsa_broker::config::DEFS {
        let topic = d.topic_name.map(|t| format!(" [{t}]")).unwrap_or_default();
        out.push_str(&format!("  {}{topic} = {}\n      {}\n", d.name, d.default, d.doc));
    }
    out
}

fn load_config(args: &ServerArgs) -> samsa_broker::Result<BrokerConfig> {
    let mut config = match &args.config {
        Some(path) => BrokerConfig::load_file(path)?,
        None => BrokerConfig::default(),
    };
    for pair in &args.set {
        config.set_pair(pair)?;
    }
    Ok(config)
}

/// Binds the SQL HTTP API's socket (before the broker starts, so a taken port fails fast
/// with nothing printed on stdout). `Err(warning)`: turned off, or the default address is
/// taken (a warning to log once the broker is up).
async fn bind_http(args: &ServerArgs) -> Result<Result<tokio::net::TcpListener, Option<String>>, String> {
    if args.no_http {
        return Ok(Err(None));
    }
    let (addr, explicit) = match &args.http_listen {
        Some(a) => (a.as_str(), true),
        None => (DEFAULT_HTTP_LISTEN, false),
    };
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(Ok(l)),
        Err(e) if explicit => Err(format!("cannot listen for HTTP on {addr} (--http-listen): {e}")),
        Err(e) => Ok(Err(Some(format!(
            "the SQL HTTP API is off: cannot listen on {addr} ({e}); choose an address with --http-listen \
             (port 0 picks a free one) or silence this with --no-http"
        )))),
    }
}

/// The address the SQL engine reaches this broker at (loopback for a wildcard listen).
fn own_bootstrap(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        let lo: std::net::IpAddr = if addr.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() };
        SocketAddr::new(lo, addr.port()).to_string()
    } else {
        addr.to_string()
    }
}

/// `GET /metrics`: the broker's, its groups', its connector tasks' and its persistent
/// queries' numbers in Prometheus text format, read at request time.
pub fn metrics_router(broker: std::sync::Arc<samsa_broker::server::BrokerState>, engine: LazyEngine, connect: samsa_connect::rest::LazyConnect) -> axum::Router {
    use samsa_client::prom::{Exposition, CONTENT_TYPE};
    let handler = move || {
        let (broker, engine, connect) = (broker.clone(), engine.clone(), connect.clone());
        async move {
            let mut e = Exposition::new();
            samsa_broker::metrics::write(&broker, &mut e);
            if let Some(c) = connect.started() {
                c.metrics().write(&mut e);
            }
            if let Some(engine) = engine.get() {
                engine.write_metrics(&mut e).await;
            }
            ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], e.finish())
        }
    };
    axum::Router::new().route("/metrics", axum::routing::get(handler))
}

/// A server started in this process: the broker and, unless turned off, its HTTP API
/// (SQL, Connect, metrics) with the SQL engine and the Connect worker behind it.
pub struct Running {
    broker: Broker,
    http: Option<HttpParts>,
}

/// What serves the HTTP API.
struct HttpParts {
    addr: SocketAddr,
    engine: LazyEngine,
    connect: samsa_connect::rest::LazyConnect,
    serve: tokio::task::JoinHandle<()>,
    watch: tokio::task::JoinHandle<()>,
}

impl ServerArgs {
    /// A single node with its data in `data_dir`, Kafka clients on `listen` and the HTTP
    /// API on `http_listen` (`samsa quickstart`'s server).
    pub fn single_node(data_dir: PathBuf, listen: String, http_listen: String) -> ServerArgs {
        ServerArgs { data_dir, listen: vec![listen], node_id: 1, controller_listen: None, voters: None, config: None, set: Vec::new(), http_listen: Some(http_listen), no_http: false }
    }
}

impl Running {
    /// The address Kafka clients use.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.broker.local_addr()
    }

    /// Every client listener: (name, address).
    pub fn listeners(&self) -> &[(String, SocketAddr)] {
        self.broker.listeners()
    }

    /// The HTTP API's address, when it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.addr)
    }

    /// Stops the connectors, the persistent queries and the broker, in that order.
    pub async fn stop(self) {
        if let Some(h) = self.http {
            h.serve.abort();
            h.watch.abort();
            if let Some(connect) = h.connect.started() {
                connect.shutdown(Duration::from_secs(20)).await;
            }
            if let Some(engine) = h.engine.get() {
                if tokio::time::timeout(Duration::from_secs(20), engine.close()).await.is_err() {
                    tracing::warn!("the SQL engine's queries did not stop within 20s");
                }
            }
        }
        self.broker.shutdown().await;
    }
}

/// Starts the broker and its HTTP API (printing nothing on stdout).
pub async fn start(args: &ServerArgs) -> Result<Running, String> {
    let config = load_config(args).map_err(|e| e.to_string())?;
    let voters = match &args.voters {
        Some(v) => samsa_broker::server::parse_voters(v).map_err(|e| e.to_string())?,
        None => Default::default(),
    };
    let http = bind_http(args).await?;
    let broker = Broker::start(BrokerOptions {
        data_dir: args.data_dir.clone(),
        listen: args.listen.join(","),
        node_id: args.node_id,
        controller_listen: args.controller_listen.clone(),
        voters,
        config: config.clone(),
    })
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!(data_dir = %args.data_dir.display(), addr = %broker.local_addr(), "broker ready");
    // The SQL engine starts on the first request, or as soon as SQL is in use on the
    // cluster (its catalog topic exists): a server nobody queries adds no topic.
    let listener = match http {
        Ok(l) => l,
        Err(warning) => {
            if let Some(w) = warning {
                tracing::warn!("{w}");
            }
            return Ok(Running { broker, http: None });
        }
    };
    let addr = listener.local_addr().map_err(|e| format!("HTTP listener: {e}"))?;
    // The SQL engine and the Connect worker are clients of this broker: on the first
    // PLAINTEXT listener, or on `internal.listener` as the principal `internal.client.config`
    // gives them.
    let inner = match config.get("internal.listener").trim() {
        "" => broker.plaintext_addr(),
        name => Some(broker.listeners().iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, a)| *a).ok_or_else(|| format!("internal.listener={name} is not one of the listeners"))?),
    };
    let Some(inner) = inner else {
        tracing::warn!("the HTTP API (SQL, Connect, metrics) is off: it needs a PLAINTEXT listener (e.g. --listen 127.0.0.1:9092 on loopback) or internal.listener with internal.client.config");
        return Ok(Running { broker, http: None });
    };
    if let Some(path) = Some(config.get("internal.client.config").trim()).filter(|p| !p.is_empty()) {
        let props = crate::client_properties_file(std::path::Path::new(path)).map_err(|e| format!("internal.client.config: {e}"))?;
        samsa_client::config::set_process_defaults(props).map_err(|e| format!("internal.client.config={path}: {e}"))?;
    }
    // Connectors hosted by this server (Kafka Connect's REST API on the same port, and
    // SQL's CREATE SOURCE|SINK CONNECTOR).
    let connect = samsa_connect::rest::LazyConnect::new(&own_bootstrap(inner), &addr.to_string());
    let engine = LazyEngine::with_connectors(
        EngineConfig { bootstrap: own_bootstrap(inner), state_dir: args.data_dir.join("sql"), run_queries: true },
        std::sync::Arc::new(crate::sql_connectors::ServerConnectors(connect.clone())),
    );
    let app = samsa_sql::http::lazy_router(engine.clone()).merge(samsa_connect::rest::router(connect.clone())).merge(metrics_router(
        broker.state().clone(),
        engine.clone(),
        connect.clone(),
    ));
    let serve = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the SQL HTTP API stopped");
        }
    });
    let (e2, c2) = (engine.clone(), connect.clone());
    let watch = tokio::spawn(async move {
        tokio::join!(e2.start_when_catalog_exists(SQL_CATALOG_CHECK), c2.start_if_configured(SQL_CATALOG_CHECK));
    });
    tracing::info!(%addr, "HTTP API ready (SQL, Connect, metrics)");
    Ok(Running { broker, http: Some(HttpParts { addr, engine, connect, serve, watch }) })
}

/// Runs the broker until SIGINT/SIGTERM.
pub async fn run(args: ServerArgs) -> Result<(), String> {
    let running = start(&args).await?;
    // The lines scripts wait for; everything else goes to stderr.
    println!("samsa listening on {}", running.kafka_addr());
    for (name, addr) in running.listeners().iter().skip(1) {
        println!("samsa listener {name} on {addr}");
    }
    if let Some(addr) = running.http_addr() {
        println!("samsa http on {addr}");
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}
