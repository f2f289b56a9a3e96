//! Settings shared by every client, by Kafka's property names.
//!
//! Each role (producer, consumer, admin) has a typed config struct with builder methods
//! and a `set(key, value)` that takes Kafka's property names; an unknown key is an error
//! that names it, so a typo never silently falls back to a default.

use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// Settings every client shares.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `bootstrap.servers`: `host:port` addresses to learn the cluster from.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`: sent with every request, shows up in broker logs.
    pub client_id: String,
    /// `request.timeout.ms`: how long to wait for any one response.
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms`: how long to wait for a TCP connection.
    pub connect_timeout: Duration,
    /// `retry.backoff.ms`: pause before retrying a failed request.
    pub retry_backoff: Duration,
    /// `metadata.max.age.ms`: refresh cluster metadata at least this often.
    pub metadata_max_age: Duration,
    /// `security.protocol`, `ssl.*` and `sasl.*`.
    pub security: crate::net::secure::SecuritySettings,
}

/// Properties every config made in this process starts from (see [`set_process_defaults`]).
static PROCESS_DEFAULTS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// Sets properties that every client config made afterwards in this process starts from
/// (the `samsa` tools' `--command-config` and `-X`, e.g. `security.protocol`); each must be
/// a common or security property. Only the first call counts.
pub fn set_process_defaults(props: Vec<(String, String)>) -> Result<()> {
    let mut probe = CommonConfig::default();
    for (k, v) in &props {
        if !probe.set(k, v)? {
            return Err(Error::Config(format!(
                "`{k}` is not a property every client has; use one of {}",
                COMMON_KEYS.iter().chain(crate::net::secure::SECURITY_KEYS).copied().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let _ = PROCESS_DEFAULTS.set(props);
    Ok(())
}

impl Default for CommonConfig {
    fn default() -> Self {
        let mut c = CommonConfig {
            bootstrap_servers: vec!["127.0.0.1:9092".into()],
            client_id: "samsa".into(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
            metadata_max_age: Duration::from_secs(300),
            security: Default::default(),
        };
        for (k, v) in PROCESS_DEFAULTS.get().into_iter().flatten() {
            // Checked by set_process_defaults.
            let _ = c.set(k, v);
        }
        c
    }
}

/// The property names [`CommonConfig::set`] accepts.
pub const COMMON_KEYS: &[&str] = &["bootstrap.servers", "client.id", "request.timeout.ms", "socket.connection.setup.timeout.ms", "retry.backoff.ms", "metadata.max.age.ms"];

impl CommonConfig {
    /// Sets one property; `Ok(false)` when `key` is not a common property.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        match key {
            "bootstrap.servers" => {
                let servers: Vec<String> = value.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                if servers.is_empty() {
                    return Err(Error::Config("bootstrap.servers is empty; give at least one host:port".into()));
                }
                for s in &servers {
                    if s.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
                        return Err(Error::Config(format!("bootstrap.servers entry `{s}` is not host:port")));
                    }
                }
                self.bootstrap_servers = servers;
            }
            "client.id" => self.client_id = value.to_string(),
            "request.timeout.ms" => self.request_timeout = parse_ms(key, value)?,
            "socket.connection.setup.timeout.ms" => self.connect_timeout = parse_ms(key, value)?,
            "retry.backoff.ms" => self.retry_backoff = parse_ms(key, value)?,
            "metadata.max.age.ms" => self.metadata_max_age = parse_ms(key, value)?,
            _ => return self.security.set(key, value),
        }
        Ok(true)
    }
}

/// Parses Java properties text (client config files, worker and connector files): `key=value`, `key: value` or `key value`; `#` and `!`
/// comment lines; a trailing `\` continues a line; `\n`, `\t`, `\uXXXX` and escaped
/// separators in keys and values.
pub fn parse_properties(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let mut line = first.trim_start().to_string();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        // Continuations: an odd number of trailing backslashes joins the next line.
        while line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1 {
            line.pop();
            match lines.next() {
                Some(next) => line.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key(&line);
        out.insert(unescape(&key), unescape(value.trim_start()));
    }
    out
}

/// Splits a logical line at the first unescaped `=`, `:` or whitespace.
fn split_key(line: &str) -> (String, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' => return (line[..i].to_string(), &line[i + 1..]),
            c if c.is_whitespace() => {
                let rest = line[i..].trim_start();
                let rest = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':')).unwrap_or(rest);
                return (line[..i].to_string(), rest);
            }
            _ => {}
        }
    }
    (line.to_string(), "")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Reads a properties file (see [`parse_properties`]), naming the file on failure.
pub fn read_properties_file(path: &std::path::Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    Ok(parse_properties(&text).into_iter().collect())
}

/// Parses a millisecond property into a `Duration`.
pub fn parse_ms(key: &str, value: &str) -> Result<Duration> {
    let ms: u64 = parse(key, value)?;
    Ok(Duration::from_millis(ms))
}

/// Parses a property value, naming the key on failure.
pub fn parse<T: FromStr>(key: &str, value: &str) -> Result<T> {
    value.trim().parse().map_err(|_| Error::Config(format!("`{key}` = `{value}` is not a valid {}", std::any::type_name::<T>())))
}

/// Parses `true`/`false`.
pub fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::Config(format!("`{key}` = `{value}` must be true or false"))),
    }
}

/// The error for a key no role knows.
pub fn unknown_key(role: &str, key: &str, known: &[&str]) -> Error {
    let mut all: Vec<&str> = COMMON_KEYS.iter().chain(crate::net::secure::SECURITY_KEYS).chain(known).copied().collect();
    all.sort();
    Error::Config(format!("unknown {role} property `{key}`; known properties: {}", all.join(", ")))
}

/// Gives a role's config struct (which has `Default` and `set(key, value)`) the two
/// constructors every role shares: `new(bootstrap)` and `from_properties(pairs)`.
macro_rules! property_constructors {
    ($config:ty) => {
        impl $config {
            /// A config for these bootstrap servers (`host:port,host:port`).
            pub fn new(bootstrap: &str) -> $crate::error::Result<Self> {
                let mut c = <$config>::default();
                c.set("bootstrap.servers", bootstrap)?;
                Ok(c)
            }

            /// Builds a config from Kafka property pairs; an unknown key is an error.
            pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(props: impl IntoIterator<Item = (K, V)>) -> $crate::error::Result<Self> {
                let mut c = <$config>::default();
                for (k, v) in props {
                    c.set(k.as_ref(), v.as_ref())?;
                }
                Ok(c)
            }
        }
    };
}
pub(crate) use property_constructors;
