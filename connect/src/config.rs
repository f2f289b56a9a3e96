//! Config files: Java `.properties` (as Kafka Connect reads them) and JSON connector
//! configs (`{"name": ..., "config": {...}}` or a flat object), and the typed settings a
//! connector declares and checks before it starts.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{Error, Result};

/// Settings by name, as strings (Kafka's config model).
pub type Props = BTreeMap<String, String>;

pub use samsa_client::config::parse_properties;

/// Reads a connector or worker config file: JSON when it starts with `{`, else properties.
/// JSON may be Kafka Connect's REST shape `{"name": ..., "config": {...}}` or a flat object.
pub fn read_config_file(path: &Path) -> Result<Props> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    if !text.trim_start().starts_with('{') {
        return Ok(parse_properties(&text));
    }
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config(format!("{} is not valid JSON: {e}", path.display())))?;
    let mut props = Props::new();
    let scalar = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let (config, name) = match json.get("config") {
        Some(serde_json::Value::Object(c)) => (c.clone(), json.get("name").and_then(scalar)),
        _ => match json {
            serde_json::Value::Object(c) => (c, None),
            _ => return Err(Error::Config(format!("{} is not a JSON object", path.display()))),
        },
    };
    for (k, v) in &config {
        let v = scalar(v).ok_or_else(|| Error::Config(format!("{}: setting {k} must be a string, number or boolean", path.display())))?;
        props.insert(k.clone(), v);
    }
    if let Some(n) = name {
        props.entry("name".into()).or_insert(n);
    }
    Ok(props)
}

/// The type of a declared setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any text.
    String,
    /// A whole number.
    Int,
    /// `true` or `false`.
    Bool,
    /// A comma-separated list.
    List,
}

/// One setting a connector accepts.
#[derive(Debug, Clone)]
pub struct Setting {
    /// Its name, e.g. `file`.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// The default; `None` with `required` means it must be given.
    pub default: Option<&'static str>,
    /// Whether it must be given.
    pub required: bool,
    /// What it means.
    pub doc: &'static str,
}

/// A problem with one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The setting.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// Checks `props` against `settings`: missing required ones and values of the wrong type.
pub fn validate(settings: &[Setting], props: &Props) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    for s in settings {
        match props.get(s.name).map(|v| v.trim()) {
            None | Some("") if s.required => issues.push(ConfigIssue { name: s.name.into(), message: format!("missing required setting {} ({})", s.name, s.doc) }),
            Some(v) if !v.is_empty() => {
                let bad = match s.kind {
                    Kind::Int => v.parse::<i64>().is_err().then(|| format!("{} must be a whole number, not '{v}'", s.name)),
                    Kind::Bool => (!matches!(v, "true" | "false")).then(|| format!("{} must be true or false, not '{v}'", s.name)),
                    Kind::String | Kind::List => None,
                };
                if let Some(message) = bad {
                    issues.push(ConfigIssue { name: s.name.into(), message });
                }
            }
            _ => {}
        }
    }
    issues
}

/// A sink reads `topics` or `topics.regex`: exactly one of them.
pub fn sink_topics_issue(config: &Props) -> Option<ConfigIssue> {
    let set = |k: &str| config.get(k).is_some_and(|v| !v.trim().is_empty());
    let message = match (set("topics"), set("topics.regex")) {
        (true, true) => "give topics or topics.regex, not both",
        (false, false) => "missing required setting topics (the topics to read), or topics.regex",
        _ => return None,
    };
    Some(ConfigIssue { name: "topics".into(), message: message.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_follow_java_rules() {
        let p = parse_properties("# c\n! c\n  a=1\nb : two words \nc three\nd=x\\\n   y\ne\\=f=g\nh=\\u00e9\\n\nempty=\n");
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"], "two words ");
        assert_eq!(p["c"], "three");
        assert_eq!(p["d"], "xy");
        assert_eq!(p["e=f"], "g");
        assert_eq!(p["h"], "é\n");
        assert_eq!(p["empty"], "");
        assert_eq!(p.len(), 7);
    }

    #[test]
    fn json_configs_in_rest_shape_or_flat() {
        let dir = tempfile::tempdir().unwrap();
        let rest = dir.path().join("a.json");
        std::fs::write(&rest, r#"{"name": "n1", "config": {"connector.class": "FileStreamSink", "tasks.max": 1}}"#).unwrap();
        let p = read_config_file(&rest).unwrap();
        assert_eq!((p["name"].as_str(), p["tasks.max"].as_str()), ("n1", "1"));
        let flat = dir.path().join("b.json");
        std::fs::write(&flat, r#"{"name": "n2", "topics": "t"}"#).unwrap();
        assert_eq!(read_config_file(&flat).unwrap()["topics"], "t");
        std::fs::write(&flat, r#"{"name": ["x"]}"#).unwrap();
        assert!(read_config_file(&flat).unwrap_err().to_string().contains("setting name must be"));
    }

    #[test]
    fn validation_names_each_bad_setting() {
        let settings = [
            Setting { name: "topic", kind: Kind::String, default: None, required: true, doc: "the topic" },
            Setting { name: "batch.size", kind: Kind::Int, default: Some("2000"), required: false, doc: "records per poll" },
        ];
        let props: Props = [("batch.size".to_string(), "many".to_string())].into();
        let issues = validate(&settings, &props);
        assert_eq!(issues.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), vec!["topic", "batch.size"]);
        let ok: Props = [("topic".to_string(), "t".to_string())].into();
        assert!(validate(&settings, &ok).is_empty());
    }
}
