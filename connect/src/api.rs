//! The connector SDK: a connector declares its settings, checks them, splits its work into
//! task configs, and makes tasks. Source tasks poll records (each with the source position
//! it reached); sink tasks take records and flush them before their offsets commit.

use bytes::Bytes;
use serde_json::Value as Json;

use crate::config::{validate, ConfigIssue, Props, Setting};
use crate::data::Data;
use crate::Result;

/// A record a source task read, with where in its source it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    /// The part of the source it came from, e.g. `{"filename": "test.txt"}`.
    pub source_partition: Json,
    /// How far that part has been read once this record is written, e.g. `{"position": 42}`.
    pub source_offset: Json,
    /// Destination topic.
    pub topic: String,
    /// Destination partition (`None`: by key).
    pub partition: Option<i32>,
    /// Key.
    pub key: Data,
    /// Value.
    pub value: Data,
    /// Timestamp in ms (`None`: now).
    pub timestamp: Option<i64>,
    /// Headers.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// A record a sink task receives.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
    /// Timestamp in ms.
    pub timestamp: i64,
    /// Key.
    pub key: Data,
    /// Value.
    pub value: Data,
    /// Headers.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// A record a sink task could not write (the others of its batch were written).
#[derive(Debug)]
pub struct PutFailure {
    /// Its index in the batch.
    pub index: usize,
    /// Why.
    pub error: crate::Error,
}

/// The source offsets a task resumes from.
pub trait OffsetReader: Send + Sync {
    /// The offset stored for a source partition, if any.
    fn offset(&self, partition: &Json) -> Option<Json>;
}

/// A source task: reads from an external system.
#[async_trait::async_trait]
pub trait SourceTask: Send {
    /// Starts with its task config and the stored offsets.
    async fn start(&mut self, config: &Props, offsets: &dyn OffsetReader) -> Result<()>;
    /// The next records; may wait a little, and returns none when there is nothing new.
    async fn poll(&mut self) -> Result<Vec<SourceRecord>>;
    /// Called after the offsets of written records were stored.
    async fn commit(&mut self) -> Result<()> {
        Ok(())
    }
    /// Stops, releasing what it holds.
    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A sink task: writes records to an external system.
#[async_trait::async_trait]
pub trait SinkTask: Send {
    /// Starts with its task config.
    async fn start(&mut self, config: &Props) -> Result<()>;
    /// Takes records (in order per partition). A failure of the whole batch is an `Err`
    /// (`Error::Retriable` is tried again); records it could not write one by one come
    /// back as failures, for the error policy (`errors.tolerance`, dead-letter topic).
    async fn put(&mut self, records: &[SinkRecord]) -> Result<Vec<PutFailure>>;
    /// Makes everything put so far durable; their offsets commit after this.
    async fn flush(&mut self) -> Result<()>;
    /// Stops, releasing what it holds.
    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What a connector class does.
pub trait Connector: Send + Sync {
    /// Its settings (beyond the common `name`, `connector.class`, `tasks.max`, converters).
    fn settings(&self) -> Vec<Setting>;
    /// Checks a config: each bad setting with what is wrong.
    fn validate(&self, config: &Props) -> Vec<ConfigIssue> {
        validate(&self.settings(), config)
    }
    /// Splits the work into at most `max_tasks` task configs.
    fn task_configs(&self, config: &Props, max_tasks: usize) -> Vec<Props> {
        let _ = max_tasks;
        vec![config.clone()]
    }
}

/// `n` copies of `config` numbered for their tasks (`task.id`, `task.count`), for
/// connectors whose tasks share the work by number.
pub fn numbered_tasks(config: &Props, n: usize) -> Vec<Props> {
    (0..n)
        .map(|i| {
            let mut c = config.clone();
            c.insert(TASK_ID.into(), i.to_string());
            c.insert(TASK_COUNT.into(), n.to_string());
            c
        })
        .collect()
}

/// The task-config key holding a task's number (see [`numbered_tasks`]).
pub const TASK_ID: &str = "task.id";
/// The task-config key holding the number of tasks.
pub const TASK_COUNT: &str = "task.count";

/// A source connector class.
pub trait SourceConnector: Connector {
    /// A new task.
    fn task(&self) -> Box<dyn SourceTask>;
}

/// A sink connector class.
pub trait SinkConnector: Connector {
    /// A new task.
    fn task(&self) -> Box<dyn SinkTask>;
}

/// A connector class, by kind.
pub enum Plugin {
    /// Reads into topics.
    Source(Box<dyn SourceConnector>),
    /// Writes from topics.
    Sink(Box<dyn SinkConnector>),
}

impl Plugin {
    /// The class's settings.
    pub fn settings(&self) -> Vec<Setting> {
        match self {
            Plugin::Source(c) => c.settings(),
            Plugin::Sink(c) => c.settings(),
        }
    }

    /// Checks a config.
    pub fn validate(&self, config: &Props) -> Vec<ConfigIssue> {
        match self {
            Plugin::Source(c) => c.validate(config),
            Plugin::Sink(c) => c.validate(config),
        }
    }
}

/// The connector classes Samsa ships, by the names Kafka Connect accepts: the full class
/// name, the simple name, or the simple name without `Connector`.
pub fn plugin(class: &str) -> Option<Plugin> {
    let simple = class.trim().rsplit('.').next().unwrap_or(class).trim_end_matches("Connector");
    match simple {
        "FileStreamSource" => Some(Plugin::Source(Box::new(crate::file::FileStreamSource))),
        "FileStreamSink" => Some(Plugin::Sink(Box::new(crate::file::FileStreamSink))),
        "DatagenSource" | "Datagen" => Some(Plugin::Source(Box::new(crate::datagen::DatagenSource))),
        "DirectorySource" | "Directory" | "SpoolDirJsonSource" | "SpoolDirLineDelimitedJsonSource" => {
            Some(Plugin::Source(Box::new(crate::dir::DirectorySource::new(crate::dir::Format::Json))))
        }
        "SpoolDirCsvSource" => Some(Plugin::Source(Box::new(crate::dir::DirectorySource::new(crate::dir::Format::Csv)))),
        "JdbcSource" => Some(Plugin::Source(Box::new(crate::postgres::source::JdbcSource))),
        "JdbcSink" => Some(Plugin::Sink(Box::new(crate::postgres::sink::JdbcSink))),
        "Postgres" | "PostgresCdc" => Some(Plugin::Source(Box::new(crate::postgres::cdc::PostgresCdc))),
        _ => None,
    }
}

/// The full class names of the shipped connectors.
pub const PLUGINS: [&str; 7] = [
    "org.apache.kafka.connect.file.FileStreamSourceConnector",
    "org.apache.kafka.connect.file.FileStreamSinkConnector",
    "samsa.connect.datagen.DatagenSourceConnector",
    "samsa.connect.dir.DirectorySourceConnector",
    "io.confluent.connect.jdbc.JdbcSourceConnector",
    "io.confluent.connect.jdbc.JdbcSinkConnector",
    "io.debezium.connector.postgresql.PostgresConnector",
];
