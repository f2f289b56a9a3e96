//! Connect data and converters: values with an optional schema (Kafka Connect's JSON
//! schema format), turned into record bytes and back by the `json` (with or without the
//! `{"schema", "payload"}` envelope), `string` and `bytearray` converters.

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Value as Json};

use crate::config::Props;
use crate::{Error, Result};

/// A schema in Kafka Connect's JSON form, e.g. `{"type": "string", "optional": false}`.
pub type Schema = Json;

/// The schema of a required string (what the file source writes).
pub fn string_schema() -> Schema {
    json!({"type": "string", "optional": false})
}

/// A Connect value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A whole number (int8 to int64).
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    String(String),
    /// Bytes.
    Bytes(Bytes),
    /// A list.
    Array(Vec<Value>),
    /// Named fields in order (a struct, or a map with text keys).
    Struct(Vec<(String, Value)>),
}

impl std::fmt::Display for Value {
    /// As Kafka Connect's file sink prints values: text as is, structs as `Struct{a=1,b=x}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{s}"),
            Value::Bytes(b) => write!(f, "{}", base64_encode(b)),
            Value::Array(items) => {
                write!(f, "[")?;
                for (i, v) in items.iter().enumerate() {
                    write!(f, "{}{v}", if i > 0 { ", " } else { "" })?;
                }
                write!(f, "]")
            }
            Value::Struct(fields) => {
                write!(f, "Struct{{")?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    write!(f, "{}{k}={v}", if i > 0 { "," } else { "" })?;
                }
                write!(f, "}}")
            }
        }
    }
}

/// A value and its schema, as a converter reads or writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    /// The schema, when known.
    pub schema: Option<Schema>,
    /// The value.
    pub value: Value,
}

impl Data {
    /// No value, no schema (a null key, or a tombstone).
    pub fn null() -> Data {
        Data { schema: None, value: Value::Null }
    }
}

/// Turns Connect data into record bytes and back.
pub trait Converter: Send + Sync {
    /// Record bytes for `data` (`None`: a null key or value).
    fn to_bytes(&self, topic: &str, data: &Data) -> Result<Option<Bytes>>;
    /// Connect data for record bytes.
    fn to_data(&self, topic: &str, bytes: Option<&[u8]>) -> Result<Data>;
}

/// Builds the converter named by `{prefix}` (`key.converter` or `value.converter`) with its
/// `{prefix}.*` settings, e.g. `value.converter.schemas.enable`.
pub fn converter(props: &Props, prefix: &str) -> Result<Box<dyn Converter>> {
    let class = props.get(prefix).map(|s| s.trim().to_string()).unwrap_or_else(|| "org.apache.kafka.connect.json.JsonConverter".into());
    let opt = |name: &str| props.get(&format!("{prefix}.{name}")).map(|s| s.trim().to_string());
    let short = class.rsplit('.').next().unwrap_or(&class).to_ascii_lowercase();
    match short.as_str() {
        "jsonconverter" | "json" => {
            let schemas = match opt("schemas.enable").as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(other) => return Err(Error::Config(format!("{prefix}.schemas.enable must be true or false, not '{other}'"))),
            };
            Ok(Box::new(JsonConverter { schemas }))
        }
        "stringconverter" | "string" => Ok(Box::new(StringConverter)),
        "bytearrayconverter" | "bytearray" => Ok(Box::new(ByteArrayConverter)),
        _ => Err(Error::Config(format!(
            "{prefix}={class} is not a converter Samsa has; use org.apache.kafka.connect.json.JsonConverter, org.apache.kafka.connect.storage.StringConverter or org.apache.kafka.connect.converters.ByteArrayConverter"
        ))),
    }
}

/// Kafka's `JsonConverter`: JSON, wrapped in `{"schema": ..., "payload": ...}` when
/// `schemas.enable` is true (the default).
pub struct JsonConverter {
    /// Whether records carry the schema envelope.
    pub schemas: bool,
}

impl Converter for JsonConverter {
    fn to_bytes(&self, _topic: &str, data: &Data) -> Result<Option<Bytes>> {
        if data.schema.is_none() && data.value == Value::Null {
            return Ok(None);
        }
        let payload = to_json(&data.value, data.schema.as_ref());
        let out = if self.schemas { json!({"schema": data.schema.clone().unwrap_or(Json::Null), "payload": payload}) } else { payload };
        Ok(Some(Bytes::from(serde_json::to_vec(&out).map_err(|e| Error::Data(e.to_string()))?)))
    }

    fn to_data(&self, topic: &str, bytes: Option<&[u8]>) -> Result<Data> {
        let Some(bytes) = bytes else { return Ok(Data::null()) };
        let json: Json = serde_json::from_slice(bytes).map_err(|e| Error::Data(format!("a record of topic {topic} is not JSON: {e}")))?;
        if !self.schemas {
            return Ok(Data { schema: None, value: from_json(&json, None)? });
        }
        let Json::Object(obj) = &json else {
            return Err(Error::Data(format!(
                "a record of topic {topic} has no schema envelope; JsonConverter with schemas.enable=true wants {{\"schema\": ..., \"payload\": ...}} (set schemas.enable=false for plain JSON)"
            )));
        };
        if obj.len() != 2 || !obj.contains_key("schema") || !obj.contains_key("payload") {
            return Err(Error::Data(format!(
                "a record of topic {topic} has fields other than \"schema\" and \"payload\"; JsonConverter with schemas.enable=true wants exactly those two (set schemas.enable=false for plain JSON)"
            )));
        }
        let schema = Some(obj["schema"].clone()).filter(|s| !s.is_null());
        Ok(Data { value: from_json(&obj["payload"], schema.as_ref())?, schema })
    }
}

/// Kafka's `StringConverter`: UTF-8 text.
pub struct StringConverter;

impl Converter for StringConverter {
    fn to_bytes(&self, _topic: &str, data: &Data) -> Result<Option<Bytes>> {
        Ok(match &data.value {
            Value::Null => None,
            Value::String(s) => Some(Bytes::from(s.clone())),
            other => Some(Bytes::from(other.to_string())),
        })
    }

    fn to_data(&self, _topic: &str, bytes: Option<&[u8]>) -> Result<Data> {
        Ok(match bytes {
            None => Data { schema: Some(json!({"type": "string", "optional": true})), value: Value::Null },
            Some(b) => Data { schema: Some(json!({"type": "string", "optional": true})), value: Value::String(String::from_utf8_lossy(b).into_owned()) },
        })
    }
}

/// Kafka's `ByteArrayConverter`: bytes as they are.
pub struct ByteArrayConverter;

impl Converter for ByteArrayConverter {
    fn to_bytes(&self, topic: &str, data: &Data) -> Result<Option<Bytes>> {
        match &data.value {
            Value::Null => Ok(None),
            Value::Bytes(b) => Ok(Some(b.clone())),
            Value::String(s) => Ok(Some(Bytes::from(s.clone()))),
            other => Err(Error::Data(format!("ByteArrayConverter writes bytes; a record for topic {topic} holds {other}"))),
        }
    }

    fn to_data(&self, _topic: &str, bytes: Option<&[u8]>) -> Result<Data> {
        Ok(Data { schema: Some(json!({"type": "bytes", "optional": true})), value: bytes.map_or(Value::Null, |b| Value::Bytes(Bytes::copy_from_slice(b))) })
    }
}

fn schema_type(schema: Option<&Schema>) -> Option<&str> {
    schema.and_then(|s| s.get("type")).and_then(Json::as_str)
}

/// A Connect value as JSON (bytes as base64, as Kafka's converter writes them).
pub fn to_json(v: &Value, schema: Option<&Schema>) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(n) => json!(n),
        Value::Float(x) => json!(x),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(base64_encode(b)),
        Value::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            Json::Array(items.iter().map(|i| to_json(i, item_schema)).collect())
        }
        Value::Struct(fields) => {
            let field_schema =
                |name: &str| schema.and_then(|s| s.get("fields")).and_then(Json::as_array).and_then(|fs| fs.iter().find(|f| f.get("field").and_then(Json::as_str) == Some(name)));
            Json::Object(fields.iter().map(|(k, v)| (k.clone(), to_json(v, field_schema(k)))).collect::<Map<_, _>>())
        }
    }
}

/// JSON as a Connect value, typed by `schema` when there is one.
pub fn from_json(j: &Json, schema: Option<&Schema>) -> Result<Value> {
    let t = schema_type(schema);
    Ok(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (t, n.as_i64()) {
            (Some("float" | "float32" | "float64" | "double"), _) | (_, None) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            (_, Some(i)) => Value::Int(i),
        },
        Json::String(s) if t == Some("bytes") => Value::Bytes(Bytes::from(base64_decode(s).ok_or_else(|| Error::Data(format!("'{s}' is not base64 bytes")))?)),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => {
            let item_schema = schema.and_then(|s| s.get("items"));
            Value::Array(items.iter().map(|i| from_json(i, item_schema)).collect::<Result<_>>()?)
        }
        Json::Object(obj) => {
            let fields = schema.and_then(|s| s.get("fields")).and_then(Json::as_array);
            let field_schema = |name: &str| fields.and_then(|fs| fs.iter().find(|f| f.get("field").and_then(Json::as_str) == Some(name)));
            Value::Struct(obj.iter().map(|(k, v)| Ok((k.clone(), from_json(v, field_schema(k))?))).collect::<Result<_>>()?)
        }
    })
}

/// A JSON value as a Connect value, with object fields in their written order (serde_json's
/// map sorts them); a repeated key keeps its first place and its last value.
struct Ordered(Value);

/// Parses JSON text into a Connect value, keeping object fields in their written order.
pub fn parse_json_ordered(text: &str) -> serde_json::Result<Value> {
    serde_json::from_str::<Ordered>(text).map(|o| o.0)
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Ordered, D::Error> {
        d.deserialize_any(OrderedVisitor).map(Ordered)
    }
}

struct OrderedVisitor;

impl<'de> Visitor<'de> for OrderedVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> std::result::Result<Value, E> {
        Ok(Value::Int(n))
    }

    fn visit_u64<E>(self, n: u64) -> std::result::Result<Value, E> {
        Ok(i64::try_from(n).map_or(Value::Float(n as f64), Value::Int))
    }

    fn visit_f64<E>(self, x: f64) -> std::result::Result<Value, E> {
        Ok(Value::Float(x))
    }

    fn visit_str<E>(self, s: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> std::result::Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Ordered(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut fields: Vec<(String, Value)> = Vec::new();
        while let Some((k, Ordered(v))) = map.next_entry::<String, Ordered>()? {
            match fields.iter_mut().find(|(n, _)| *n == k) {
                Some(field) => field.1 = v,
                None => fields.push((k, v)),
            }
        }
        Ok(Value::Struct(fields))
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` when it is not base64.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u32> = s.trim_end_matches('=').bytes().map(|c| B64.iter().position(|b| *b == c).map(|p| p as u32)).collect::<Option<_>>()?;
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, d)| acc | (d << (18 - 6 * i)));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Props {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn json_with_schemas_writes_kafkas_envelope_and_reads_it_back() {
        let c = converter(&props(&[("value.converter", "org.apache.kafka.connect.json.JsonConverter")]), "value.converter").unwrap();
        let data = Data { schema: Some(string_schema()), value: Value::String("héllo".into()) };
        let bytes = c.to_bytes("t", &data).unwrap().unwrap();
        let parsed: Json = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed, json!({"schema": {"type": "string", "optional": false}, "payload": "héllo"}));
        assert_eq!(c.to_data("t", Some(&bytes)).unwrap(), data);
        // A null key without a schema is a null record key, as in Kafka.
        assert_eq!(c.to_bytes("t", &Data::null()).unwrap(), None);
        let err = c.to_data("t", Some(br#"{"a": 1}"#)).unwrap_err().to_string();
        assert!(err.contains("schemas.enable=false"), "{err}");
    }

    #[test]
    fn json_without_schemas_string_and_bytearray_converters() {
        let p = props(&[("value.converter", "json"), ("value.converter.schemas.enable", "false"), ("key.converter", "org.apache.kafka.connect.storage.StringConverter")]);
        let json_c = converter(&p, "value.converter").unwrap();
        let d = json_c.to_data("t", Some(br#"{"id": 7, "name": "x", "tags": ["a"], "score": 1.5}"#)).unwrap();
        assert_eq!(
            d.value,
            Value::Struct(vec![
                ("id".into(), Value::Int(7)),
                ("name".into(), Value::String("x".into())),
                ("score".into(), Value::Float(1.5)),
                ("tags".into(), Value::Array(vec![Value::String("a".into())])),
            ])
        );
        assert_eq!(d.value.to_string(), "Struct{id=7,name=x,score=1.5,tags=[a]}");
        let key_c = converter(&p, "key.converter").unwrap();
        assert_eq!(key_c.to_data("t", Some(b"k1")).unwrap().value, Value::String("k1".into()));
        assert_eq!(key_c.to_bytes("t", &Data { schema: None, value: Value::String("k1".into()) }).unwrap().as_deref(), Some(&b"k1"[..]));
        let bytes_c = converter(&props(&[("value.converter", "org.apache.kafka.connect.converters.ByteArrayConverter")]), "value.converter").unwrap();
        let raw = bytes_c.to_data("t", Some(&[0, 255, 10])).unwrap();
        assert_eq!(bytes_c.to_bytes("t", &raw).unwrap().as_deref(), Some(&[0u8, 255, 10][..]));
        assert!(converter(&props(&[("value.converter", "com.example.Avro")]), "value.converter").err().unwrap().to_string().contains("is not a converter"));
    }

    #[test]
    fn base64_round_trips() {
        for n in 0..40usize {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
        assert!(base64_decode("!!").is_none());
    }
}
