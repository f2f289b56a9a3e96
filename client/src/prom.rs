//! Prometheus text exposition (format 0.0.4): a writer for `GET /metrics` and a parser
//! for the tools that read it back (`samsa top`).
//!
//! Every Samsa component writes its numbers through [`Exposition`], so one scrape holds the
//! broker's, the groups', the streams tasks', the connectors' and the SQL queries' metrics
//! with one naming scheme (`samsa_<component>_<what>[_total|_seconds|_bytes]`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The kind of a metric family, as written on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (reset by a restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, `_sum` and `_count`.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A scrape being written. Samples are grouped under their family (one `# HELP` and
/// `# TYPE` each, in the order families were first used), so callers may write families
/// interleaved.
#[derive(Debug, Default)]
pub struct Exposition {
    families: Vec<Family>,
    index: HashMap<String, usize>,
}

#[derive(Debug)]
struct Family {
    name: String,
    kind: Kind,
    help: String,
    lines: String,
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A sample value as Prometheus writes it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn line(out: &mut String, name: &str, labels: &[(&str, &str)], extra: Option<(&str, &str)>, value: f64) {
    out.push_str(name);
    let all: Vec<(&str, &str)> = labels.iter().copied().chain(extra).collect();
    if !all.is_empty() {
        out.push('{');
        for (i, (k, v)) in all.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

impl Exposition {
    /// An empty scrape.
    pub fn new() -> Self {
        Self::default()
    }

    /// The family `name`, declared on first use (a later `help` is ignored).
    fn declare(&mut self, name: &str, kind: Kind, help: &str) -> &mut String {
        let i = match self.index.get(name) {
            Some(i) => *i,
            None => {
                self.families.push(Family { name: name.to_string(), kind, help: help.to_string(), lines: String::new() });
                self.index.insert(name.to_string(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        &mut self.families[i].lines
    }

    /// One sample of a counter family.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        line(self.declare(name, Kind::Counter, help), name, labels, None, value);
    }

    /// One sample of a gauge family.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        line(self.declare(name, Kind::Gauge, help), name, labels, None, value);
    }

    /// Declares a family without writing a sample (so a scrape lists it even when empty).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        self.declare(name, kind, help);
    }

    /// One histogram (cumulative buckets, `_sum`, `_count`) of a histogram family.
    pub fn histogram(&mut self, name: &str, help: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let out = self.declare(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n;
            line(out, &bucket, labels, Some(("le", &number(*bound))), cumulative as f64);
        }
        // Read without a lock, a bucket may already count an observation `count` does
        // not have yet: +Inf and _count never go below the buckets.
        let count = h.count.max(cumulative);
        line(out, &bucket, labels, Some(("le", "+Inf")), count as f64);
        line(out, &format!("{name}_sum"), labels, None, h.sum);
        line(out, &format!("{name}_count"), labels, None, count as f64);
    }

    /// The text to serve (`text/plain; version=0.0.4`).
    pub fn finish(self) -> String {
        let mut out = String::new();
        for f in self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help.replace('\\', "\\\\").replace('\n', "\\n"));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.name());
            out.push_str(&f.lines);
        }
        out
    }
}

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency bucket bounds in seconds, from 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A lock-free latency histogram over [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// A histogram's numbers at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the buckets.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); those above the last bound are only in `count`.
    pub counts: Vec<u64>,
    /// All observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The numbers so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: LATENCY_BUCKETS.to_vec(),
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// One parsed sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`/`_sum`/`_count` for histogram parts).
    pub name: String,
    /// Labels by name.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// A label's value, or "" when absent.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses the text format: comments are skipped, every other line must be a sample.
/// `Err` names the line that is not.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: {raw}", n + 1);
        let name_end = line.find(['{', ' ']).ok_or_else(|| bad("no value"))?;
        let name = &line[..name_end];
        if !valid_name(name) {
            return Err(bad("invalid metric name"));
        }
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let mut end = None;
            loop {
                while chars.next_if(|(_, c)| *c == ',' || *c == ' ').is_some() {}
                match chars.peek() {
                    Some((i, '}')) => {
                        end = Some(*i);
                        break;
                    }
                    None => break,
                    _ => {}
                }
                let start = chars.peek().map(|(i, _)| *i).unwrap_or(body.len());
                let mut key_end = start;
                for (i, c) in chars.by_ref() {
                    if c == '=' {
                        key_end = i;
                        break;
                    }
                }
                let key = &body[start..key_end];
                if !valid_name(key) || chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(bad("invalid label"));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c)) => value.push(c),
                            None => return Err(bad("unterminated label value")),
                        },
                        Some((_, c)) => value.push(c),
                        None => return Err(bad("unterminated label value")),
                    }
                }
                labels.insert(key.to_string(), value);
            }
            let end = end.ok_or_else(|| bad("unterminated label set"))?;
            rest = &body[end + 1..];
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or_else(|| bad("no value"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| bad("the value is not a number"))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| bad("the timestamp is not an integer"))?;
        }
        out.push(Sample { name: name.to_string(), labels, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_parses_back() {
        let mut e = Exposition::new();
        e.counter("samsa_x_total", "X.", &[("topic", "a\"b\\c\nd")], 3.0);
        e.counter("samsa_x_total", "X.", &[("topic", "plain")], 4.5);
        e.gauge("samsa_up", "Up.", &[], 1.0);
        let h = Histogram::default();
        h.observe(std::time::Duration::from_micros(500));
        h.observe(std::time::Duration::from_millis(30));
        h.observe(std::time::Duration::from_secs(20));
        e.histogram("samsa_lat_seconds", "Latency.", &[("api", "Fetch")], &h.snapshot());
        e.counter("samsa_x_total", "X.", &[("topic", "late")], 5.0);
        let text = e.finish();
        assert_eq!(text.matches("# TYPE samsa_x_total counter").count(), 1, "{text}");
        // Samples of one family stay together, even when written interleaved.
        assert!(text.contains("samsa_x_total{topic=\"plain\"} 4.5\nsamsa_x_total{topic=\"late\"} 5\n# HELP samsa_up"), "{text}");
        let samples = parse(&text).unwrap();
        assert_eq!(samples[0].label("topic"), "a\"b\\c\nd");
        assert_eq!(samples[1].value, 4.5);
        assert_eq!(samples[3].name, "samsa_up");
        let bucket = |le: &str| samples.iter().find(|s| s.name == "samsa_lat_seconds_bucket" && s.label("le") == le).unwrap().value;
        assert_eq!(bucket("0.001"), 1.0);
        assert_eq!(bucket("0.025"), 1.0);
        assert_eq!(bucket("0.05"), 2.0);
        assert_eq!(bucket("10"), 2.0);
        assert_eq!(bucket("+Inf"), 3.0);
        let sum = samples.iter().find(|s| s.name == "samsa_lat_seconds_sum").unwrap().value;
        assert!((sum - 20.0305).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn malformed_lines_are_named() {
        assert!(parse("ok 1\nbad{x=\"1\" 2\n").unwrap_err().starts_with("line 2"));
        assert!(parse("9bad 1").is_err());
        assert!(parse("x{a=1} 1").is_err());
        assert!(parse("x one").is_err());
        assert_eq!(parse("x{a=\"1\",} 2 1700000000000").unwrap()[0].value, 2.0);
    }
}
