//! `FileStreamSource` and `FileStreamSink`, as Kafka's: lines of a file (or stdin) into a
//! topic, and records of topics as lines of a file (or stdout). Kafka's quickstart configs
//! work unchanged.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value as Json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};

use crate::api::{Connector, OffsetReader, PutFailure, SinkConnector, SinkRecord, SinkTask, SourceConnector, SourceRecord, SourceTask};
use crate::config::{ConfigIssue, Kind, Props, Setting};
use crate::data::{string_schema, Data, Value};
use crate::{Error, Result};

/// How long a source waits when the file has no new complete line.
const IDLE_WAIT: Duration = Duration::from_millis(250);

/// Reads the lines of `file` into `topic`; its offset is the byte position after the last
/// line written, so a restart resumes there.
pub struct FileStreamSource;

impl Connector for FileStreamSource {
    fn settings(&self) -> Vec<Setting> {
        vec![
            Setting { name: "file", kind: Kind::String, default: None, required: false, doc: "the file to read (stdin when not set)" },
            Setting { name: "topic", kind: Kind::String, default: None, required: true, doc: "the topic to write" },
            Setting { name: "batch.size", kind: Kind::Int, default: Some("2000"), required: false, doc: "the most lines one poll returns" },
        ]
    }

    fn validate(&self, config: &Props) -> Vec<ConfigIssue> {
        let mut issues = crate::config::validate(&self.settings(), config);
        if config.get("topic").is_some_and(|t| t.contains(',')) {
            issues.push(ConfigIssue { name: "topic".into(), message: "FileStreamSource writes one topic; topic holds a list".into() });
        }
        if config.get("batch.size").and_then(|b| b.trim().parse::<i64>().ok()).is_some_and(|b| b < 1) {
            issues.push(ConfigIssue { name: "batch.size".into(), message: "batch.size must be at least 1".into() });
        }
        issues
    }
}

impl SourceConnector for FileStreamSource {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(FileSourceTask { path: None, topic: String::new(), batch: 2000, reader: None, position: 0, buf: Vec::new() })
    }
}

struct FileSourceTask {
    path: Option<PathBuf>,
    topic: String,
    batch: usize,
    reader: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Byte position after the last line returned.
    position: u64,
    /// Bytes read past `position` that do not end a line yet.
    buf: Vec<u8>,
}

impl FileSourceTask {
    fn partition(&self) -> Json {
        json!({"filename": self.path.as_ref().map(|p| p.display().to_string())})
    }

    async fn open(&mut self) -> Result<bool> {
        let Some(path) = &self.path else {
            self.reader = Some(Box::new(tokio::io::stdin()));
            return Ok(true);
        };
        match tokio::fs::File::open(path).await {
            Ok(mut f) => {
                f.seek(SeekFrom::Start(self.position)).await.map_err(|e| Error::Task(format!("cannot seek {} to {}: {e}", path.display(), self.position)))?;
                self.reader = Some(Box::new(f));
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(file = %path.display(), "the file does not exist yet; waiting for it");
                Ok(false)
            }
            Err(e) => Err(Error::Task(format!("cannot open {}: {e}", path.display()))),
        }
    }

    /// Takes the complete lines out of `buf` (ended by `\n`, `\r\n` or `\r`, as Kafka's).
    fn lines(&mut self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < self.buf.len() && out.len() < self.batch {
            let end = match self.buf[i] {
                b'\n' => Some(i + 1),
                // A `\r` at the end may be the first half of `\r\n`: wait for more.
                b'\r' if i + 1 >= self.buf.len() => break,
                b'\r' => Some(if self.buf[i + 1] == b'\n' { i + 2 } else { i + 1 }),
                _ => None,
            };
            if let Some(end) = end {
                let line = String::from_utf8_lossy(&self.buf[start..i]).into_owned();
                self.position += (end - start) as u64;
                out.push((line, self.position));
                start = end;
                i = end;
            } else {
                i += 1;
            }
        }
        self.buf.drain(..start);
        out
    }
}

#[async_trait::async_trait]
impl SourceTask for FileSourceTask {
    async fn start(&mut self, config: &Props, offsets: &dyn OffsetReader) -> Result<()> {
        self.path = config.get("file").map(|f| f.trim()).filter(|f| !f.is_empty()).map(PathBuf::from);
        self.topic = config.get("topic").map(|t| t.trim().to_string()).unwrap_or_default();
        self.batch = config.get("batch.size").and_then(|b| b.trim().parse().ok()).unwrap_or(2000);
        if self.path.is_some() {
            if let Some(pos) = offsets.offset(&self.partition()).and_then(|o| o.get("position").and_then(Json::as_u64)) {
                tracing::info!(file = %self.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(), position = pos, "resuming the file where the stored offset says");
                self.position = pos;
            }
        }
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        if self.reader.is_none() && !self.open().await? {
            tokio::time::sleep(IDLE_WAIT).await;
            return Ok(Vec::new());
        }
        let mut lines = self.lines();
        if lines.is_empty() {
            let mut chunk = vec![0u8; 64 * 1024];
            let reader = self.reader.as_mut().expect("opened");
            let n = reader.read(&mut chunk).await.map_err(|e| Error::Task(format!("cannot read the source file: {e}")))?;
            if n == 0 {
                tokio::time::sleep(IDLE_WAIT).await;
                return Ok(Vec::new());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            lines = self.lines();
        }
        let partition = self.partition();
        Ok(lines
            .into_iter()
            .map(|(line, pos)| SourceRecord {
                source_partition: partition.clone(),
                source_offset: json!({"position": pos}),
                topic: self.topic.clone(),
                partition: None,
                key: Data::null(),
                value: Data { schema: Some(string_schema()), value: Value::String(line) },
                timestamp: None,
                headers: Vec::new(),
            })
            .collect())
    }
}

/// Appends each record's value as a line to `file`.
pub struct FileStreamSink;

impl Connector for FileStreamSink {
    fn settings(&self) -> Vec<Setting> {
        vec![
            Setting { name: "file", kind: Kind::String, default: None, required: false, doc: "the file to append to (stdout when not set)" },
            Setting { name: "topics", kind: Kind::List, default: None, required: false, doc: "the topics to read (or topics.regex)" },
            Setting { name: "topics.regex", kind: Kind::String, default: None, required: false, doc: "a pattern of topics to read" },
        ]
    }

    fn validate(&self, config: &Props) -> Vec<ConfigIssue> {
        let mut issues = crate::config::validate(&self.settings(), config);
        issues.extend(crate::config::sink_topics_issue(config));
        issues
    }
}

impl SinkConnector for FileStreamSink {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(FileSinkTask { out: None, path: None })
    }
}

struct FileSinkTask {
    out: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    path: Option<PathBuf>,
}

#[async_trait::async_trait]
impl SinkTask for FileSinkTask {
    async fn start(&mut self, config: &Props) -> Result<()> {
        self.path = config.get("file").map(|f| f.trim()).filter(|f| !f.is_empty()).map(PathBuf::from);
        self.out = Some(match &self.path {
            None => Box::new(tokio::io::stdout()),
            Some(p) => {
                Box::new(tokio::fs::OpenOptions::new().create(true).append(true).open(p).await.map_err(|e| Error::Task(format!("cannot open {} for appending: {e}", p.display())))?)
            }
        });
        Ok(())
    }

    async fn put(&mut self, records: &[SinkRecord]) -> Result<Vec<PutFailure>> {
        let mut text = String::new();
        for r in records {
            text.push_str(&r.value.value.to_string());
            text.push('\n');
        }
        let out = self.out.as_mut().ok_or_else(|| Error::Task("the sink is not started".into()))?;
        out.write_all(text.as_bytes()).await.map_err(|e| Error::Task(format!("cannot write {}: {e}", self.describe())))?;
        Ok(Vec::new())
    }

    async fn flush(&mut self) -> Result<()> {
        let describe = self.describe();
        if let Some(out) = self.out.as_mut() {
            out.flush().await.map_err(|e| Error::Task(format!("cannot flush {describe}: {e}")))?;
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        self.flush().await?;
        self.out = None;
        Ok(())
    }
}

impl FileSinkTask {
    fn describe(&self) -> String {
        self.path.as_ref().map_or("stdout".into(), |p| p.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoOffsets;
    impl OffsetReader for NoOffsets {
        fn offset(&self, _: &Json) -> Option<Json> {
            None
        }
    }

    #[test]
    fn lines_end_at_lf_crlf_or_cr_and_a_trailing_cr_waits() {
        let mut t = FileSourceTask { path: None, topic: "t".into(), batch: 10, reader: None, position: 0, buf: b"a\nb\r\nc\rd\r".to_vec() };
        let lines = t.lines();
        assert_eq!(lines, vec![("a".into(), 2), ("b".into(), 5), ("c".into(), 7)]);
        assert_eq!(t.buf, b"d\r");
        t.buf.extend_from_slice(b"\ne");
        assert_eq!(t.lines(), vec![("d".into(), 10)]);
        assert_eq!(t.buf, b"e");
    }

    #[tokio::test]
    async fn the_source_resumes_at_its_stored_position_and_tails_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "one\ntwo\nthr").unwrap();
        let props: Props = [("file".to_string(), path.display().to_string()), ("topic".to_string(), "t".to_string())].into();
        let mut task = FileStreamSource.task();
        task.start(&props, &NoOffsets).await.unwrap();
        let got = task.poll().await.unwrap();
        assert_eq!(got.iter().map(|r| r.value.value.to_string()).collect::<Vec<_>>(), vec!["one", "two"]);
        assert_eq!(got[1].source_offset, json!({"position": 8}));
        assert!(task.poll().await.unwrap().is_empty(), "an unfinished line waits");
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all_sync(b"ee\n");
        assert_eq!(task.poll().await.unwrap()[0].value.value, Value::String("three".into()));

        struct At(u64);
        impl OffsetReader for At {
            fn offset(&self, _: &Json) -> Option<Json> {
                Some(json!({"position": self.0}))
            }
        }
        let mut again = FileStreamSource.task();
        again.start(&props, &At(4)).await.unwrap();
        let got = again.poll().await.unwrap();
        assert_eq!(got.iter().map(|r| r.value.value.to_string()).collect::<Vec<_>>(), vec!["two", "three"]);
    }

    trait WriteAllSync {
        fn write_all_sync(&mut self, b: &[u8]);
    }
    impl WriteAllSync for std::fs::File {
        fn write_all_sync(&mut self, b: &[u8]) {
            std::io::Write::write_all(self, b).unwrap();
        }
    }

    #[test]
    fn a_source_needs_one_topic() {
        let props: Props = [("topic".to_string(), "a,b".to_string())].into();
        assert_eq!(FileStreamSource.validate(&props)[0].name, "topic");
        assert_eq!(FileStreamSource.validate(&Props::new())[0].name, "topic");
        assert_eq!(FileStreamSink.validate(&Props::new())[0].name, "topics");
    }
}
