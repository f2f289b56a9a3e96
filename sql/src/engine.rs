//! The engine: one statement in, Arrow batches (or a stream of them) out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::TableReference;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::stream::BoxStream;
use samsa_client::admin::NewTopic;
use samsa_client::{IsolationLevel, Producer, ProducerConfig};

use crate::catalog::{Catalog, QueryDef, SourceDef, SourceKind};
use crate::continuous::{self, Running};
use crate::error::{Result, SqlError};
use crate::format::{Column, Format, META_COLUMNS};
use crate::provider::{ClusterAccess, Stats, TopicTable};
use crate::statement::{self, Statement};

/// Settings of an engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Bootstrap servers of the cluster the engine works on.
    pub bootstrap: String,
    /// Where persistent queries keep their state stores.
    pub state_dir: PathBuf,
    /// Whether persistent queries in the catalog start with the engine (servers: yes).
    pub run_queries: bool,
}

/// Per-request settings (`isolation.level`, `auto.offset.reset` for EMIT CHANGES).
pub type Properties = BTreeMap<String, String>;

/// What a statement produced.
pub enum Output {
    /// A bounded result (a query's rows, SHOW/DESCRIBE listings; DDL has no rows and a
    /// message).
    Rows {
        /// Columns.
        schema: SchemaRef,
        /// Rows.
        batches: Vec<RecordBatch>,
        /// What a DDL statement did, e.g. "Stream pageviews created".
        message: Option<String>,
    },
    /// A continuous result (EMIT CHANGES): batches as input arrives, until dropped.
    Continuous {
        /// Columns.
        schema: SchemaRef,
        /// Rows as they come.
        stream: BoxStream<'static, Result<RecordBatch>>,
    },
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Rows { batches, message, .. } => write!(f, "Rows({} batches, {message:?})", batches.len()),
            Output::Continuous { .. } => f.write_str("Continuous"),
        }
    }
}

impl Output {
    fn message(msg: impl Into<String>) -> Output {
        Output::Rows { schema: Arc::new(Schema::empty()), batches: Vec::new(), message: Some(msg.into()) }
    }

    /// The rows of a bounded result in one batch (empty for DDL); an error for a
    /// continuous one.
    pub fn batch(&self) -> Result<RecordBatch> {
        match self {
            Output::Rows { schema, batches, .. } => Ok(datafusion::arrow::compute::concat_batches(schema, batches)?),
            Output::Continuous { .. } => Err(SqlError::new("a continuous result has no single batch")),
        }
    }
}

fn text_table(columns: &[&str], rows: Vec<Vec<String>>) -> Output {
    let schema = Arc::new(Schema::new(columns.iter().map(|c| Field::new(*c, DataType::Utf8, true)).collect::<Vec<_>>()));
    let arrays: Vec<ArrayRef> = (0..columns.len()).map(|i| Arc::new(rows.iter().map(|r| Some(r[i].clone())).collect::<StringArray>()) as ArrayRef).collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).expect("text columns");
    Output::Rows { schema, batches: vec![batch], message: None }
}

/// The SQL engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    catalog: Arc<Catalog>,
    cluster: Arc<ClusterAccess>,
    running: tokio::sync::Mutex<BTreeMap<String, Running>>,
    /// State-store lookups of the running queries (read without waiting for `running`).
    lookups: std::sync::Mutex<BTreeMap<String, crate::provider::Lookup>>,
    reconciler: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Who runs connectors (`CREATE SOURCE CONNECTOR`...), when the host has Connect.
    connectors: std::sync::RwLock<Option<Arc<dyn crate::connectors::Connectors>>>,
}

impl Engine {
    /// Connects to the cluster, reads the catalog and (with `run_queries`) starts the
    /// persistent queries it lists; a background task keeps following the catalog so
    /// queries created or terminated through other servers start and stop here too.
    pub async fn start(config: EngineConfig) -> Result<Engine> {
        let catalog = Catalog::open(&config.bootstrap).await?;
        let mut pc = ProducerConfig::default();
        pc.set("bootstrap.servers", &config.bootstrap)?;
        pc.set("acks", "all")?;
        let producer = Producer::new(pc).await?;
        let cluster = Arc::new(ClusterAccess {
            bootstrap: config.bootstrap.clone(),
            admin: samsa_client::Admin::connect(&config.bootstrap).await?,
            producer,
            stats: Arc::new(Stats::default()),
        });
        let engine = Engine {
            inner: Arc::new(Inner {
                config,
                catalog,
                cluster,
                running: Default::default(),
                lookups: Default::default(),
                reconciler: Default::default(),
                connectors: Default::default(),
            }),
        };
        if engine.inner.config.run_queries {
            engine.reconcile().await;
            let weak = Arc::downgrade(&engine.inner);
            let handle = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let Some(inner) = weak.upgrade() else { return };
                    let e = Engine { inner };
                    if let Err(err) = e.inner.catalog.refresh().await {
                        tracing::warn!(error = %err, "SQL catalog refresh failed");
                        continue;
                    }
                    e.reconcile().await;
                }
            });
            *engine.inner.reconciler.lock().unwrap() = Some(handle);
        }
        Ok(engine)
    }

    /// Counters of scans, lookups and malformed records.
    pub fn stats(&self) -> &Stats {
        &self.inner.cluster.stats
    }

    /// The ids of the persistent queries running in this engine.
    pub async fn running_queries(&self) -> Vec<String> {
        self.inner.running.lock().await.keys().cloned().collect()
    }

    /// Stops the persistent queries running here (they go on elsewhere or at next start).
    pub async fn close(&self) {
        if let Some(h) = self.inner.reconciler.lock().unwrap().take() {
            h.abort();
        }
        let running = std::mem::take(&mut *self.inner.running.lock().await);
        self.inner.lookups.lock().unwrap().clear();
        for (_, q) in running {
            q.close().await;
        }
    }

    /// Starts catalog queries not running here; stops ones no longer in the catalog.
    async fn reconcile(&self) {
        let wanted = self.inner.catalog.queries();
        let mut running = self.inner.running.lock().await;
        let gone: Vec<String> = running.keys().filter(|id| !wanted.iter().any(|q| &q.id == *id)).cloned().collect();
        for id in gone {
            self.inner.lookups.lock().unwrap().remove(&id);
            if let Some(q) = running.remove(&id) {
                tracing::info!(query = %id, "persistent query terminated");
                q.close().await;
            }
        }
        for q in wanted {
            let failed = running.get(&q.id).is_some_and(|r| r.is_failed());
            if running.contains_key(&q.id) && !failed {
                continue;
            }
            if let Some(old) = running.remove(&q.id) {
                old.close().await;
            }
            match self.start_query(&q).await {
                Ok(r) => {
                    tracing::info!(query = %q.id, sink = %q.sink, "persistent query running");
                    if let Some(l) = r.lookup() {
                        self.inner.lookups.lock().unwrap().insert(q.id.clone(), l);
                    }
                    running.insert(q.id.clone(), r);
                }
                Err(e) => {
                    tracing::warn!(query = %q.id, error = %e, "persistent query cannot start")
                }
            }
        }
    }

    async fn start_query(&self, q: &QueryDef) -> Result<Running> {
        let sink = self.inner.catalog.source(&q.sink).ok_or_else(|| SqlError::new(format!("query {} writes {}, which no longer exists", q.id, q.sink)))?;
        let ctx = self.context(&Properties::new())?;
        let plan = continuous::plan(&ctx, &self.inner.catalog, self.inner.cluster.stats.clone(), &q.select).await?;
        let state_dir = self.inner.config.state_dir.join(&q.id);
        let target = continuous::Target::Topic { sink, dead_letter: q.dead_letter.clone() };
        continuous::start(plan, target, &format!("_samsa_sql_{}", q.id), &self.inner.config.bootstrap, state_dir, &Properties::new()).await
    }

    /// A DataFusion context with every stream and table registered.
    fn context(&self, props: &Properties) -> Result<SessionContext> {
        let isolation = match props.get("isolation.level").map(String::as_str) {
            None | Some("read_committed") => IsolationLevel::ReadCommitted,
            Some("read_uncommitted") => IsolationLevel::ReadUncommitted,
            Some(other) => return Err(SqlError::new(format!("isolation.level '{other}' is not read_committed or read_uncommitted"))),
        };
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(4).with_information_schema(false));
        continuous::register_functions(&ctx);
        let lookups = self.inner.lookups.lock().unwrap().clone();
        for def in self.inner.catalog.sources() {
            let lookup = def.query.as_ref().and_then(|q| lookups.get(q).cloned());
            let table = TopicTable::new(def.clone(), self.inner.cluster.clone(), isolation, lookup)?;
            ctx.register_table(TableReference::bare(def.name.clone()), Arc::new(table))?;
        }
        Ok(ctx)
    }

    /// Lets SQL manage connectors through `connectors` (`CREATE SOURCE CONNECTOR`...).
    pub fn set_connectors(&self, connectors: Arc<dyn crate::connectors::Connectors>) {
        *self.inner.connectors.write().unwrap() = Some(connectors);
    }

    fn connectors(&self) -> Result<Arc<dyn crate::connectors::Connectors>> {
        self.inner.connectors.read().unwrap().clone().ok_or_else(|| {
            SqlError::new("this engine runs no connectors").hint("connectors run in samsa server: send the statement to its HTTP API (samsa sql --server HOST:PORT)")
        })
    }

    async fn connector_statement(&self, stmt: Statement) -> Result<Output> {
        let c = self.connectors()?;
        let err = |e: String| SqlError::new(e);
        match stmt {
            Statement::CreateConnector { source, name, config, if_not_exists } => {
                if if_not_exists && c.exists(&name).await.map_err(err)? {
                    return Ok(Output::message(format!("connector {name} exists")));
                }
                c.create(&name, source, config).await.map_err(err)?;
                Ok(Output::message(format!("created {} connector {name}", if source { "source" } else { "sink" })))
            }
            Statement::DropConnector { name, if_exists } => {
                if !c.exists(&name).await.map_err(err)? {
                    if if_exists {
                        return Ok(Output::message(format!("no connector {name}")));
                    }
                    return Err(SqlError::new(format!("no connector {name}")).hint("SHOW CONNECTORS lists them"));
                }
                c.delete(&name).await.map_err(err)?;
                Ok(Output::message(format!("dropped connector {name}")))
            }
            Statement::DescribeConnector(name) => {
                let rows = c.describe(&name).await.map_err(err)?.into_iter().map(|(k, v)| vec![k, v]).collect();
                Ok(text_table(&["property", "value"], rows))
            }
            _ => {
                let rows = c.list().await.map_err(err)?.into_iter().map(|r| vec![r.name, r.kind, r.class, r.state, r.tasks]).collect();
                Ok(text_table(&["name", "type", "class", "state", "tasks"], rows))
            }
        }
    }

    /// Runs one statement.
    pub async fn execute(&self, sql: &str) -> Result<Output> {
        self.execute_with(sql, &Properties::new()).await
    }

    /// Runs one statement with per-request properties.
    pub async fn execute_with(&self, sql: &str, props: &Properties) -> Result<Output> {
        let pieces = statement::split_statements(sql)?;
        match pieces.len() {
            0 => return Err(SqlError::new("no statement given")),
            1 => {}
            n => return Err(SqlError::new(format!("{n} statements given; send one at a time (samsa sql -f runs a script)"))),
        }
        self.inner.catalog.refresh().await?;
        let piece = &pieces[0];
        self.run(&piece.sql, props).await.map_err(|e| e.shifted(piece.line_offset, piece.column_offset))
    }

    /// Runs every statement of a script, stopping at the first error; continuous
    /// statements are not allowed in scripts.
    pub async fn execute_script(&self, script: &str) -> Result<Vec<Output>> {
        let mut out = Vec::new();
        for piece in statement::split_statements(script)? {
            self.inner.catalog.refresh().await?;
            let o = self.run(&piece.sql, &Properties::new()).await.map_err(|e| e.shifted(piece.line_offset, piece.column_offset))?;
            out.push(o);
        }
        Ok(out)
    }

    async fn run(&self, sql: &str, props: &Properties) -> Result<Output> {
        match statement::parse(sql)? {
            Statement::Show(what) if what == "CONNECTORS" => self.connector_statement(Statement::Show(what)).await,
            s @ (Statement::CreateConnector { .. } | Statement::DropConnector { .. } | Statement::DescribeConnector(_)) => self.connector_statement(s).await,
            Statement::Show(what) => self.show(&what).await,
            Statement::Describe(name) => self.describe(&name),
            Statement::Drop { kind, name, if_exists, delete_topic } => self.drop_source(kind, &name, if_exists, delete_topic).await,
            Statement::Terminate(id) => self.terminate(&id).await,
            Statement::CreateSource { kind, name, columns, primary_key, options, if_not_exists } => {
                self.create_source(kind, name, columns, primary_key, options, if_not_exists).await
            }
            Statement::CreateAs { kind, name, options, select, select_at, if_not_exists } => {
                if if_not_exists && self.inner.catalog.source(&name).is_some() {
                    return Ok(Output::message(format!("{} {name} already exists", kind.name().to_lowercase())));
                }
                self.create_as(kind, name, options, &select, sql).await.map_err(|e| e.shifted(select_at.0, select_at.1))
            }
            Statement::InsertSelect { sink, select, select_at } => self.insert_select(sink, &select, sql).await.map_err(|e| e.shifted(select_at.0, select_at.1)),
            Statement::InsertValues { table, prefix, values } => {
                let def = self.inner.catalog.source(&table).ok_or_else(|| no_such_source(&table))?;
                let cols: Vec<String> = def.columns.iter().map(|c| format!("\"{}\"", c.name.replace('"', "\"\""))).collect();
                self.bounded(&format!("{prefix}({}) {values}", cols.join(", ")), props).await
            }
            Statement::Query { sql, emit_changes: true } => self.push_query(&sql, props).await,
            Statement::Query { sql, emit_changes: false } => self.bounded(&sql, props).await,
        }
    }

    async fn bounded(&self, sql: &str, props: &Properties) -> Result<Output> {
        let ctx = self.context(props)?;
        let opts = SQLOptions::new().with_allow_ddl(false).with_allow_statements(false);
        let df = ctx.sql_with_options(sql, opts).await.map_err(|e| crate::error::typo_hint(e.into(), sql))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let is_insert = sql.trim_start().get(..6).is_some_and(|w| w.eq_ignore_ascii_case("INSERT"));
        let batches = df.collect().await?;
        if is_insert {
            let n: i64 =
                batches.iter().filter_map(|b| b.column(0).as_any().downcast_ref::<datafusion::arrow::array::UInt64Array>().map(|a| a.iter().flatten().sum::<u64>() as i64)).sum();
            return Ok(Output::message(format!("{n} row{} inserted", if n == 1 { "" } else { "s" })));
        }
        Ok(Output::Rows { schema, batches, message: None })
    }

    async fn push_query(&self, sql: &str, props: &Properties) -> Result<Output> {
        let ctx = self.context(props)?;
        let plan = continuous::plan(&ctx, &self.inner.catalog, self.inner.cluster.stats.clone(), sql).await?;
        let schema = plan.output_schema();
        let stream = continuous::transient(plan, &self.inner.config.bootstrap, props).await?;
        Ok(Output::Continuous { schema, stream })
    }

    async fn show(&self, what: &str) -> Result<Output> {
        let cat = &self.inner.catalog;
        Ok(match what {
            "STREAMS" | "TABLES" => {
                let kind = if what == "STREAMS" { SourceKind::Stream } else { SourceKind::Table };
                let rows = cat
                    .sources()
                    .into_iter()
                    .filter(|s| s.kind == kind)
                    .map(|s| vec![s.name, s.topic, s.format.name().into(), s.key.unwrap_or_default(), s.timestamp.unwrap_or_default(), s.query.unwrap_or_default()])
                    .collect();
                text_table(&["name", "topic", "format", "key", "timestamp", "query"], rows)
            }
            "TOPICS" => {
                let admin = cat.admin();
                let names: Vec<String> = admin.list_topics(false).await?.into_iter().filter(|t| !t.starts_with("__") && !t.starts_with("_samsa")).collect();
                let infos = admin.describe_topics(&names).await?;
                let rows = infos.into_iter().map(|t| vec![t.name, t.partitions.len().to_string()]).collect();
                let mut out = text_table(&["name", "partitions"], rows);
                if let Output::Rows { batches, schema, .. } = &mut out {
                    // Sort by name for a stable listing.
                    let b = &batches[0];
                    let names = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                    let mut idx: Vec<u32> = (0..b.num_rows() as u32).collect();
                    idx.sort_by_key(|i| names.value(*i as usize).to_string());
                    let take = datafusion::arrow::array::UInt32Array::from(idx);
                    let cols = b.columns().iter().map(|c| datafusion::arrow::compute::take(c, &take, None)).collect::<Result<Vec<_>, _>>()?;
                    batches[0] = RecordBatch::try_new(schema.clone(), cols)?;
                }
                out
            }
            _ => {
                let running = self.running_queries().await;
                let rows = cat
                    .queries()
                    .into_iter()
                    .map(|q| {
                        let state = if running.contains(&q.id) {
                            "RUNNING"
                        } else if self.inner.config.run_queries {
                            "STARTING"
                        } else {
                            "NOT RUN HERE"
                        };
                        vec![q.id, q.sink, state.to_string(), q.statement]
                    })
                    .collect();
                text_table(&["id", "sink", "state", "statement"], rows)
            }
        })
    }

    fn describe(&self, name: &str) -> Result<Output> {
        let Some(def) = self.inner.catalog.source(name) else {
            return Err(no_such_source(name));
        };
        let mut rows: Vec<Vec<String>> = def
            .columns
            .iter()
            .map(|c| {
                let mut extra = Vec::new();
                if def.key.as_ref() == Some(&c.name) {
                    extra.push(if def.kind == SourceKind::Table { "primary key" } else { "key" });
                }
                if def.timestamp.as_ref() == Some(&c.name) {
                    extra.push("event time");
                }
                vec![c.name.clone(), c.sql_type.clone(), extra.join(", ")]
            })
            .collect();
        let meta_types = ["VARCHAR", "INT", "BIGINT", "TIMESTAMP"];
        for (m, t) in META_COLUMNS.iter().zip(meta_types) {
            rows.push(vec![m.to_string(), t.to_string(), "metadata".to_string()]);
        }
        Ok(text_table(&["column", "type", "note"], rows))
    }

    async fn drop_source(&self, kind: SourceKind, name: &str, if_exists: bool, delete_topic: bool) -> Result<Output> {
        let cat = &self.inner.catalog;
        let Some(def) = cat.source(name).filter(|d| d.kind == kind) else {
            if if_exists {
                return Ok(Output::message(format!("{} {name} does not exist", kind.name().to_lowercase())));
            }
            return Err(no_such_source(name));
        };
        let users: Vec<String> = cat.queries().into_iter().filter(|q| q.sink == def.name || uses(&q.select, &def.name)).map(|q| q.id).collect();
        if !users.is_empty() {
            return Err(
                SqlError::new(format!("{} {name} is used by persistent queries {}", kind.name().to_lowercase(), users.join(", "))).hint(format!("TERMINATE {} first", users[0]))
            );
        }
        cat.drop_source(name).await?;
        if delete_topic {
            cat.admin().delete_topics(std::slice::from_ref(&def.topic)).await?;
        }
        Ok(Output::message(format!("{} {name} dropped{}", title(kind), if delete_topic { " and its topic deleted" } else { "" })))
    }

    async fn terminate(&self, id: &str) -> Result<Output> {
        let cat = &self.inner.catalog;
        if cat.query(id).is_none() {
            let ids: Vec<String> = cat.queries().into_iter().map(|q| q.id).collect();
            return Err(SqlError::new(format!("no persistent query {id}")).hint(if ids.is_empty() {
                "no query is running".to_string()
            } else {
                format!("running: {}", ids.join(", "))
            }));
        }
        cat.drop_query(id).await?;
        self.inner.lookups.lock().unwrap().remove(id);
        if let Some(q) = self.inner.running.lock().await.remove(id) {
            q.close().await;
        }
        Ok(Output::message(format!("Query {id} terminated")))
    }

    async fn create_source(
        &self,
        kind: SourceKind,
        name: String,
        columns: Vec<Column>,
        primary_key: Option<String>,
        options: BTreeMap<String, String>,
        if_not_exists: bool,
    ) -> Result<Output> {
        let cat = &self.inner.catalog;
        if cat.source(&name).is_some() {
            if if_not_exists {
                return Ok(Output::message(format!("{} {name} already exists", kind.name().to_lowercase())));
            }
            return Err(SqlError::new(format!("a stream or table named {name} already exists")).hint(format!("DROP {} {name} first, or pick another name", kind.name())));
        }
        if columns.is_empty() {
            return Err(SqlError::new("declare at least one column"));
        }
        let opts = Options::check(options, &["topic", "format", "value_format", "key", "timestamp", "partitions", "replicas"])?;
        let key = primary_key.or(opts.get("key"));
        let timestamp = opts.get("timestamp");
        for (what, col) in [("key", &key), ("timestamp", &timestamp)] {
            if let Some(c) = col {
                let Some(found) = columns.iter().find(|x| &x.name == c) else {
                    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                    return Err(SqlError::new(format!("{what} column {c} is not declared")).hint(format!("columns: {}", names.join(", "))));
                };
                if what == "timestamp" && !matches!(found.sql_type.as_str(), "TIMESTAMP" | "BIGINT") {
                    return Err(SqlError::new(format!("timestamp column {c} is {}, not TIMESTAMP or BIGINT (epoch ms)", found.sql_type)));
                }
            }
        }
        if kind == SourceKind::Table && key.is_none() {
            return Err(SqlError::new(format!("table {name} needs a primary key")).hint("add PRIMARY KEY (column) after the column list"));
        }
        let format = Format::parse(&opts.get("format").or(opts.get("value_format")).unwrap_or_else(|| "json".into()))?;
        crate::format::Decoder::new(format, &columns)?;
        let topic = opts.get("topic").unwrap_or_else(|| name.clone());
        self.ensure_topic(&topic, kind, opts.get("partitions"), opts.get("replicas")).await?;
        let def = SourceDef { name: name.clone(), kind, columns, topic: topic.clone(), format, key, timestamp, query: None };
        cat.put_source(&def).await?;
        Ok(Output::message(format!("{} {name} created on topic {topic}", title(kind))))
    }

    /// Checks the topic exists, or creates it when `partitions` is given.
    async fn ensure_topic(&self, topic: &str, kind: SourceKind, partitions: Option<String>, replicas: Option<String>) -> Result<i32> {
        let admin = self.inner.catalog.admin();
        if let Some(n) = crate::catalog::topic_partitions(admin, topic).await? {
            return Ok(n);
        }
        let Some(p) = partitions else {
            return Err(
                SqlError::new(format!("topic '{topic}' does not exist")).hint("add partitions = N to the WITH clause to create it, or name an existing topic with topic = '...'")
            );
        };
        let p: i32 = p.parse().ok().filter(|p| *p > 0).ok_or_else(|| SqlError::new(format!("partitions = {p} is not a positive number")))?;
        let r: i16 = match replicas {
            Some(r) => r.parse().map_err(|_| SqlError::new(format!("replicas = {r} is not a number")))?,
            None => -1,
        };
        let mut nt = NewTopic::new(topic, p, r);
        if kind == SourceKind::Table {
            nt = nt.config("cleanup.policy", "compact");
        }
        admin.create_topics(&[nt]).await.map_err(|e| SqlError::new(format!("cannot create topic '{topic}': {e}")))?;
        Ok(p)
    }

    async fn create_as(&self, kind: SourceKind, name: String, options: BTreeMap<String, String>, select: &str, statement: &str) -> Result<Output> {
        let cat = &self.inner.catalog;
        if cat.source(&name).is_some() {
            return Err(SqlError::new(format!("a stream or table named {name} already exists")).hint("DROP it first, or use INSERT INTO to add a query writing to a stream"));
        }
        let opts = Options::check(options, &["topic", "format", "value_format", "partitions", "replicas", "dead_letter_topic"])?;
        let ctx = self.context(&Properties::new())?;
        let plan = continuous::plan(&ctx, cat, self.inner.cluster.stats.clone(), select).await?;
        if kind == SourceKind::Stream && plan.is_aggregate() {
            return Err(SqlError::new("an aggregation produces a table, not a stream").hint(format!("use CREATE TABLE {name} AS SELECT ...")));
        }
        if kind == SourceKind::Table && !plan.is_aggregate() {
            return Err(SqlError::new("CREATE TABLE ... AS SELECT needs a GROUP BY (a table has one row per key)").hint(format!("use CREATE STREAM {name} AS SELECT ...")));
        }
        let format = Format::parse(&opts.get("format").or(opts.get("value_format")).unwrap_or_else(|| "json".into()))?;
        let topic = opts.get("topic").unwrap_or_else(|| name.clone());
        let partitions = opts.get("partitions").unwrap_or_else(|| plan.input_partitions().to_string());
        self.ensure_topic(&topic, kind, Some(partitions), opts.get("replicas")).await?;
        let dead_letter = opts.get("dead_letter_topic");
        if let Some(dlq) = &dead_letter {
            self.ensure_topic(dlq, SourceKind::Stream, Some("1".into()), opts.get("replicas")).await?;
        }
        let id = format!("{}_{}", if kind == SourceKind::Table { "CTAS" } else { "CSAS" }, name.to_ascii_uppercase());
        let def =
            SourceDef { name: name.clone(), kind, columns: plan.output_columns(), topic: topic.clone(), format, key: plan.key_column(), timestamp: None, query: Some(id.clone()) };
        cat.put_source(&def).await?;
        cat.put_query(&QueryDef { id: id.clone(), select: select.to_string(), sink: name.clone(), statement: statement.to_string(), dead_letter }).await?;
        self.reconcile_now().await;
        Ok(Output::message(format!("{} {name} created; query {id} writes it to topic {topic}", title(kind))))
    }

    async fn insert_select(&self, sink: String, select: &str, statement: &str) -> Result<Output> {
        let cat = &self.inner.catalog;
        let Some(def) = cat.source(&sink) else {
            return Err(no_such_source(&sink));
        };
        if def.kind != SourceKind::Stream {
            return Err(SqlError::new(format!("{sink} is a table; INSERT INTO ... SELECT writes to streams")));
        }
        let ctx = self.context(&Properties::new())?;
        let plan = continuous::plan(&ctx, cat, self.inner.cluster.stats.clone(), select).await?;
        if plan.is_aggregate() {
            return Err(SqlError::new("INSERT INTO a stream takes a query without GROUP BY"));
        }
        let have: Vec<String> = plan.output_columns().into_iter().map(|c| c.name).collect();
        let missing: Vec<&str> = def.columns.iter().filter(|c| !have.contains(&c.name)).map(|c| c.name.as_str()).collect();
        if !missing.is_empty() {
            return Err(SqlError::new(format!("the query has no column {} of stream {sink}", missing.join(", "))).hint(format!("the query's columns: {}", have.join(", "))));
        }
        let n = cat.queries().iter().filter(|q| q.id.starts_with(&format!("INSERTQUERY_{}_", sink.to_ascii_uppercase()))).count() + 1;
        let id = format!("INSERTQUERY_{}_{n}", sink.to_ascii_uppercase());
        cat.put_query(&QueryDef { id: id.clone(), select: select.to_string(), sink: sink.clone(), statement: statement.to_string(), dead_letter: None }).await?;
        self.reconcile_now().await;
        Ok(Output::message(format!("Query {id} writes into {sink}")))
    }

    async fn reconcile_now(&self) {
        if self.inner.config.run_queries {
            self.reconcile().await;
        }
    }

    /// The running query `id`'s streams instance (tests use it to wait for progress).
    pub async fn query_progress(&self, id: &str) -> Option<u64> {
        self.inner.running.lock().await.get(id).map(|r| r.processed())
    }

    /// Writes the metrics of the persistent queries running here into `e`.
    pub async fn write_metrics(&self, e: &mut samsa_client::prom::Exposition) {
        let queries: Vec<_> = self.inner.running.lock().await.iter().map(|(id, q)| (id.clone(), q.metrics_source())).collect();
        for (id, q) in queries {
            q.write(&id, e).await;
        }
    }

    /// Total records processed by persistent queries here (for metrics).
    pub async fn processed_records(&self) -> i64 {
        self.inner.running.lock().await.values().map(|r| r.processed() as i64).sum::<i64>()
    }
}

fn title(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Stream => "Stream",
        SourceKind::Table => "Table",
    }
}

fn no_such_source(name: &str) -> SqlError {
    SqlError::new(format!("no stream or table named {name}")).hint("SHOW STREAMS and SHOW TABLES list what exists")
}

/// Whether a SELECT mentions `name` as a word (for DROP checks).
fn uses(select: &str, name: &str) -> bool {
    select.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w.eq_ignore_ascii_case(name))
}

/// WITH options, checked against what a statement accepts.
struct Options(BTreeMap<String, String>);

impl Options {
    fn check(options: BTreeMap<String, String>, allowed: &[&str]) -> Result<Options> {
        for k in options.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(SqlError::new(format!("unknown option {k}")).hint(format!("options here: {}", allowed.join(", "))));
            }
        }
        Ok(Options(options))
    }
    fn get(&self, k: &str) -> Option<String> {
        self.0.get(k).cloned()
    }
}
