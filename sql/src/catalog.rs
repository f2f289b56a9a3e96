//! The SQL catalog: streams, tables and persistent queries, kept in the internal compacted
//! topic `_samsa_sql_catalog` (one partition; key `source/<name>` or `query/<id>`, value
//! the JSON definition, a tombstone on DROP/TERMINATE). Every server reads the topic to
//! its end before each statement, so all of them see the same catalog and it survives
//! restarts.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use samsa_client::admin::{Admin, NewTopic, OffsetSpec};
use samsa_client::{Acks, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, TopicPartition};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SqlError};
use crate::format::{Column, Format};

/// The internal topic holding the catalog.
pub const CATALOG_TOPIC: &str = "_samsa_sql_catalog";

/// Stream (every record is an event) or table (latest value per key; tombstones delete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Every record is a row.
    Stream,
    /// The latest record per Kafka key is the row; a tombstone deletes it.
    Table,
}

impl SourceKind {
    /// `STREAM` or `TABLE`.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Stream => "STREAM",
            SourceKind::Table => "TABLE",
        }
    }
}

/// A stream or table: a topic with columns and a format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceDef {
    /// Name in SQL.
    pub name: String,
    /// Stream or table.
    pub kind: SourceKind,
    /// Declared columns.
    pub columns: Vec<Column>,
    /// The topic.
    pub topic: String,
    /// Value format.
    pub format: Format,
    /// The column written as the Kafka key (a table's primary key).
    pub key: Option<String>,
    /// The column holding event time (default: the record timestamp).
    pub timestamp: Option<String>,
    /// The persistent query writing it, when it was made by CREATE ... AS SELECT.
    pub query: Option<String>,
}

/// A persistent query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryDef {
    /// Id, e.g. `CTAS_COUNTS`.
    pub id: String,
    /// The statement that started it (without the CREATE/INSERT prefix: the SELECT).
    pub select: String,
    /// The stream or table it writes.
    pub sink: String,
    /// The original statement, as typed.
    pub statement: String,
    /// The topic that receives the input records the query cannot read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Entry {
    Source(SourceDef),
    Query(QueryDef),
}

#[derive(Default)]
struct State {
    sources: BTreeMap<String, SourceDef>,
    queries: BTreeMap<String, QueryDef>,
}

/// The catalog, shared by an engine's sessions.
pub struct Catalog {
    producer: Producer,
    reader: tokio::sync::Mutex<Consumer>,
    admin: Admin,
    state: RwLock<State>,
}

impl Catalog {
    /// Opens the catalog: creates its topic if missing and reads it.
    pub async fn open(bootstrap: &str) -> Result<Arc<Catalog>> {
        let admin = Admin::connect(bootstrap).await?;
        let brokers = admin.describe_cluster().await.map(|c| c.brokers.len()).unwrap_or(1).clamp(1, 3) as i16;
        let topic = NewTopic::new(CATALOG_TOPIC, 1, brokers).config("cleanup.policy", "compact");
        if let Err(e) = admin.create_topics(&[topic]).await {
            if !e.to_string().contains("TOPIC_ALREADY_EXISTS") && !e.to_string().contains("already exists") {
                return Err(SqlError::new(format!("cannot create the SQL catalog topic {CATALOG_TOPIC}: {e}")));
            }
        }
        let mut pc = ProducerConfig::default();
        pc.set("bootstrap.servers", bootstrap)?;
        pc.acks = Acks::All;
        let producer = Producer::new(pc).await?;
        let mut cc = ConsumerConfig::default();
        cc.set("bootstrap.servers", bootstrap)?;
        let reader = Consumer::new(cc).await?;
        let tp = TopicPartition::new(CATALOG_TOPIC, 0);
        reader.assign(std::slice::from_ref(&tp))?;
        reader.seek_to_beginning(std::slice::from_ref(&tp))?;
        let catalog = Arc::new(Catalog { producer, reader: tokio::sync::Mutex::new(reader), admin, state: RwLock::new(State::default()) });
        catalog.refresh().await?;
        Ok(catalog)
    }

    /// Reads the catalog topic to its current end.
    pub async fn refresh(&self) -> Result<()> {
        let tp = TopicPartition::new(CATALOG_TOPIC, 0);
        let end = self.admin.list_offsets(std::slice::from_ref(&tp), OffsetSpec::Latest).await?.get(&tp).map(|o| o.0).unwrap_or(0);
        let reader = self.reader.lock().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while reader.position(&tp).await? < end {
            if tokio::time::Instant::now() > deadline {
                return Err(SqlError::new(format!("reading the SQL catalog ({CATALOG_TOPIC}) timed out")));
            }
            for rec in reader.poll(Duration::from_millis(200)).await? {
                let key = String::from_utf8_lossy(rec.key.as_deref().unwrap_or_default()).into_owned();
                let mut st = self.state.write().unwrap();
                match rec.value {
                    None => {
                        if let Some(name) = key.strip_prefix("source/") {
                            st.sources.remove(name);
                        } else if let Some(id) = key.strip_prefix("query/") {
                            st.queries.remove(id);
                        }
                    }
                    Some(v) => match serde_json::from_slice::<Entry>(&v) {
                        Ok(Entry::Source(s)) => {
                            st.sources.insert(s.name.clone(), s);
                        }
                        Ok(Entry::Query(q)) => {
                            st.queries.insert(q.id.clone(), q);
                        }
                        Err(e) => {
                            tracing::warn!(key, error = %e, "unreadable SQL catalog entry skipped")
                        }
                    },
                }
            }
        }
        Ok(())
    }

    async fn write(&self, key: String, value: Option<Bytes>) -> Result<()> {
        let mut rec = ProducerRecord::new(CATALOG_TOPIC, Bytes::new()).key(key).partition(0);
        rec.value = value;
        self.producer.send_and_wait(rec).await?;
        self.refresh().await
    }

    /// Adds or replaces a stream or table.
    pub async fn put_source(&self, def: &SourceDef) -> Result<()> {
        let v = serde_json::to_vec(&Entry::Source(def.clone())).map_err(|e| SqlError::new(e.to_string()))?;
        self.write(format!("source/{}", def.name), Some(v.into())).await
    }

    /// Removes a stream or table.
    pub async fn drop_source(&self, name: &str) -> Result<()> {
        self.write(format!("source/{name}"), None).await
    }

    /// Adds a persistent query.
    pub async fn put_query(&self, def: &QueryDef) -> Result<()> {
        let v = serde_json::to_vec(&Entry::Query(def.clone())).map_err(|e| SqlError::new(e.to_string()))?;
        self.write(format!("query/{}", def.id), Some(v.into())).await
    }

    /// Removes a persistent query.
    pub async fn drop_query(&self, id: &str) -> Result<()> {
        self.write(format!("query/{id}"), None).await
    }

    /// A stream or table by name.
    pub fn source(&self, name: &str) -> Option<SourceDef> {
        self.state.read().unwrap().sources.get(name).cloned()
    }

    /// Every stream and table, by name.
    pub fn sources(&self) -> Vec<SourceDef> {
        self.state.read().unwrap().sources.values().cloned().collect()
    }

    /// A persistent query by id.
    pub fn query(&self, id: &str) -> Option<QueryDef> {
        self.state.read().unwrap().queries.get(id).cloned()
    }

    /// Every persistent query, by id.
    pub fn queries(&self) -> Vec<QueryDef> {
        self.state.read().unwrap().queries.values().cloned().collect()
    }

    /// Partitions of `topic`, or `None` when it does not exist.
    pub async fn topic_partitions(&self, topic: &str) -> Result<Option<i32>> {
        topic_partitions(&self.admin, topic).await
    }

    /// The admin client the catalog uses (shared with the engine).
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// The producer the catalog uses (shared with the engine for INSERT ... VALUES).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }
}

/// Partitions of `topic`, or `None` when it does not exist.
pub async fn topic_partitions(admin: &Admin, topic: &str) -> Result<Option<i32>> {
    Ok(describe_topic(admin, topic).await?.map(|t| t.partitions.len() as i32))
}

/// `topic`'s metadata, or `None` when it does not exist (or has no partitions).
pub async fn describe_topic(admin: &Admin, topic: &str) -> Result<Option<samsa_client::admin::TopicInfo>> {
    if !admin.list_topics(true).await?.iter().any(|t| t == topic) {
        return Ok(None);
    }
    let info = admin.describe_topics(&[topic.to_string()]).await?;
    Ok(info.into_iter().next().filter(|t| !t.partitions.is_empty()))
}
