//! What a task does with a record it cannot handle, by Kafka Connect's `errors.*` settings:
//! fail (`errors.tolerance=none`, the default) or skip it (`all`), logging it
//! (`errors.log.enable`, `errors.log.include.messages`) and copying it, unchanged, to a
//! dead-letter topic (`errors.deadletterqueue.topic.name`) with Kafka's
//! `__connect.errors.*` context headers (`errors.deadletterqueue.context.headers.enable`).
//! Retriable failures are retried with backoff for `errors.retry.timeout` ms first.

use std::time::Duration;

use bytes::Bytes;
use samsa_client::{Producer, ProducerConfig, ProducerRecord};

use crate::config::{ConfigIssue, Kind, Props, Setting};
use crate::{Error, Result};

/// Where in a task's pipeline a record failed (Kafka's stage names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Converting the key.
    KeyConverter,
    /// Converting the value.
    ValueConverter,
    /// A single message transform.
    Transformation,
    /// A sink task writing it.
    TaskPut,
    /// Producing it to Kafka.
    KafkaProduce,
}

impl Stage {
    /// Kafka's name, e.g. `VALUE_CONVERTER`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::Transformation => "TRANSFORMATION",
            Stage::TaskPut => "TASK_PUT",
            Stage::KafkaProduce => "KAFKA_PRODUCE",
        }
    }
}

/// A record as it was when it failed.
#[derive(Debug, Clone, Default)]
pub struct Failed {
    /// Its topic (sinks: where it came from; sources: where it was going).
    pub topic: String,
    /// Its partition (-1: none yet).
    pub partition: i32,
    /// Its offset (-1: none yet).
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Bytes>,
    /// Value bytes.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// The `errors.*` settings every connector accepts.
pub fn settings() -> Vec<Setting> {
    vec![
        Setting { name: "errors.tolerance", kind: Kind::String, default: Some("none"), required: false, doc: "none: a bad record fails the task; all: it is skipped" },
        Setting { name: "errors.log.enable", kind: Kind::Bool, default: Some("false"), required: false, doc: "log each skipped record" },
        Setting { name: "errors.log.include.messages", kind: Kind::Bool, default: Some("false"), required: false, doc: "include the record in that log line" },
        Setting { name: "errors.retry.timeout", kind: Kind::Int, default: Some("0"), required: false, doc: "ms to keep retrying a retriable failure (-1: forever)" },
        Setting { name: "errors.retry.delay.max.ms", kind: Kind::Int, default: Some("60000"), required: false, doc: "the longest wait between retries" },
        Setting { name: "errors.deadletterqueue.topic.name", kind: Kind::String, default: None, required: false, doc: "the topic skipped records go to" },
        Setting {
            name: "errors.deadletterqueue.topic.replication.factor",
            kind: Kind::Int,
            default: Some("-1"),
            required: false,
            doc: "replicas of that topic when it is created (-1: the broker's default)",
        },
        Setting { name: "errors.deadletterqueue.context.headers.enable", kind: Kind::Bool, default: Some("false"), required: false, doc: "add __connect.errors.* headers" },
    ]
}

/// Checks the `errors.*` settings.
pub fn validate(config: &Props) -> Vec<ConfigIssue> {
    let mut issues = crate::config::validate(&settings(), config);
    if let Some(t) = config.get("errors.tolerance").map(|t| t.trim()) {
        if !matches!(t, "none" | "all") {
            issues.push(ConfigIssue { name: "errors.tolerance".into(), message: format!("errors.tolerance must be none or all, not '{t}'") });
        }
    }
    issues
}

/// A task's error policy.
pub struct ErrorPolicy {
    connector: String,
    task: usize,
    tolerate: bool,
    log: bool,
    log_messages: bool,
    retry_timeout: Option<Duration>,
    retry_delay_max: Duration,
    dead_letter: Option<DeadLetter>,
    counters: Option<std::sync::Arc<crate::metrics::TaskCounters>>,
}

struct DeadLetter {
    topic: String,
    context: bool,
    producer: Producer,
}

impl ErrorPolicy {
    /// The policy of a task of `connector`, connecting a dead-letter producer if one is set.
    pub async fn new(config: &Props, connector: &str, task: usize, bootstrap: &str) -> Result<ErrorPolicy> {
        let get = |k: &str| config.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let flag = |k: &str| get(k).as_deref() == Some("true");
        let int = |k: &str, d: i64| get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(d);
        let dead_letter = match get("errors.deadletterqueue.topic.name") {
            None => None,
            Some(topic) => {
                ensure_topic(bootstrap, &topic, int("errors.deadletterqueue.topic.replication.factor", -1)).await?;
                let mut pc = ProducerConfig::default();
                pc.set("bootstrap.servers", bootstrap)?;
                pc.set("acks", "all")?;
                Some(DeadLetter { topic, context: flag("errors.deadletterqueue.context.headers.enable"), producer: Producer::new(pc).await? })
            }
        };
        let retry = int("errors.retry.timeout", 0);
        Ok(ErrorPolicy {
            connector: connector.to_string(),
            task,
            tolerate: get("errors.tolerance").as_deref() == Some("all"),
            log: flag("errors.log.enable"),
            log_messages: flag("errors.log.include.messages"),
            retry_timeout: (retry >= 0).then(|| Duration::from_millis(retry as u64)),
            retry_delay_max: Duration::from_millis(int("errors.retry.delay.max.ms", 60_000).max(1) as u64),
            dead_letter,
            counters: None,
        })
    }

    /// The first wait before a retry.
    pub fn first_delay(&self) -> Duration {
        Duration::from_millis(300).min(self.retry_delay_max)
    }

    /// After a retriable failure of an operation first tried at `started`: waits `delay`
    /// (then doubles it, up to `errors.retry.delay.max.ms`) and returns true to try again,
    /// or returns false at once when `errors.retry.timeout` would pass.
    pub async fn backoff(&self, started: std::time::Instant, delay: &mut Duration, why: &str) -> bool {
        if self.retry_timeout.is_some_and(|t| started.elapsed() + *delay > t) {
            return false;
        }
        tracing::warn!(connector = %self.connector, task = self.task, error = %why, "retrying in {delay:?}");
        tokio::time::sleep(*delay).await;
        *delay = (*delay * 2).min(self.retry_delay_max);
        true
    }

    /// Handles a record that failed at `stage`: with `errors.tolerance=none` the error
    /// comes back (the task fails); with `all` the record is logged if asked, copied to the
    /// dead-letter topic if there is one, and skipped.
    pub async fn report(&self, failed: &Failed, stage: Stage, error: &Error) -> Result<()> {
        if let Some(c) = &self.counters {
            c.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let at = if failed.offset >= 0 { format!("{}-{} at offset {}", failed.topic, failed.partition, failed.offset) } else { format!("a record for {}", failed.topic) };
        if !self.tolerate {
            return Err(Error::Task(format!("{at} failed in stage {}: {error} (errors.tolerance=none stops the task; errors.tolerance=all skips such records)", stage.name())));
        }
        if self.log {
            let content = self
                .log_messages
                .then(|| format!(" key={:?} value={:?}", failed.key.as_deref().map(String::from_utf8_lossy), failed.value.as_deref().map(String::from_utf8_lossy)));
            tracing::error!(connector = %self.connector, task = self.task, stage = stage.name(), "skipped {at}: {error}{}", content.unwrap_or_default());
        }
        let Some(dlq) = &self.dead_letter else { return Ok(()) };
        let mut headers = failed.headers.clone();
        if dlq.context {
            let text = |s: String| Some(Bytes::from(s));
            let class = match error {
                Error::Data(_) => "org.apache.kafka.connect.errors.DataException",
                Error::Retriable(_) => "org.apache.kafka.connect.errors.RetriableException",
                _ => "org.apache.kafka.connect.errors.ConnectException",
            };
            headers.extend([
                ("__connect.errors.topic".to_string(), text(failed.topic.clone())),
                ("__connect.errors.partition".to_string(), text(failed.partition.to_string())),
                ("__connect.errors.offset".to_string(), text(failed.offset.to_string())),
                ("__connect.errors.connector.name".to_string(), text(self.connector.clone())),
                ("__connect.errors.task.id".to_string(), text(self.task.to_string())),
                ("__connect.errors.stage".to_string(), text(stage.name().to_string())),
                ("__connect.errors.exception.class.name".to_string(), text(class.to_string())),
                ("__connect.errors.exception.message".to_string(), text(error.to_string())),
            ]);
        }
        let record = ProducerRecord { topic: dlq.topic.clone(), partition: None, key: failed.key.clone(), value: failed.value.clone(), headers, timestamp: None };
        dlq.producer.send_and_wait(record).await.map_err(|e| Error::Task(format!("cannot write {at} to the dead-letter topic {}: {e}", dlq.topic)))?;
        Ok(())
    }

    /// Counts every reported record in `counters.errors`.
    pub fn counting_into(mut self, counters: std::sync::Arc<crate::metrics::TaskCounters>) -> Self {
        self.counters = Some(counters);
        self
    }

    /// Flushes and closes the dead-letter producer.
    pub async fn close(&self) {
        if let Some(d) = &self.dead_letter {
            d.producer.close().await;
        }
    }
}

/// Creates the dead-letter topic when it is missing (one partition, as Kafka's).
async fn ensure_topic(bootstrap: &str, topic: &str, replication: i64) -> Result<()> {
    let admin = samsa_client::Admin::connect(bootstrap).await?;
    let nt = samsa_client::admin::NewTopic::new(topic, 1, replication as i16);
    match admin.create_topics(&[nt]).await {
        Ok(_) => Ok(()),
        Err(e) if e.kafka_error() == Some(samsa_client::error::ResponseError::TopicAlreadyExists) => Ok(()),
        Err(e) => Err(Error::Task(format!("cannot create the dead-letter topic {topic}: {e}"))),
    }
}
