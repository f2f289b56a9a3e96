//! Client security as Kafka has it: listeners with a security protocol each (`PLAINTEXT`,
//! `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`), TLS through rustls ([`tls`]), SASL PLAIN and
//! SCRAM-SHA-256/512 ([`sasl`], [`scram`]) with credentials in the cluster metadata, and
//! the principal each connection acts as.

pub mod sasl;
pub mod tls;

pub use samsa_client::{acl, scram};

use std::sync::Arc;

use crate::config::BrokerConfig;

/// A listener's security protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// No TLS, no authentication.
    Plaintext,
    /// TLS; the principal comes from a client certificate, if any.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl Protocol {
    /// From Kafka's name.
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name.trim() {
            "PLAINTEXT" => Some(Protocol::Plaintext),
            "SSL" => Some(Protocol::Ssl),
            "SASL_PLAINTEXT" => Some(Protocol::SaslPlaintext),
            "SASL_SSL" => Some(Protocol::SaslSsl),
            _ => None,
        }
    }

    /// Whether connections are TLS.
    pub fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before anything else.
    pub fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// One client listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Its name (`PLAINTEXT`, `SASL_SSL`, or a custom one mapped to a protocol).
    pub name: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// `HOST:PORT` to bind.
    pub addr: String,
}

/// Parses a listener list: comma-separated `NAME://HOST:PORT` or `HOST:PORT` (a
/// `PLAINTEXT` listener), with names mapped to protocols by `map`
/// (`listener.security.protocol.map`: `NAME:PROTOCOL,...`; the four protocol names map to
/// themselves).
pub fn parse_listeners(spec: &str, map: &str) -> Result<Vec<ListenerSpec>, String> {
    let mut names = std::collections::BTreeMap::new();
    for pair in map.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, proto) = pair.split_once(':').ok_or_else(|| format!("listener.security.protocol.map entry `{pair}` must look like NAME:PROTOCOL"))?;
        let proto =
            Protocol::from_name(proto).ok_or_else(|| format!("listener.security.protocol.map entry `{pair}`: `{proto}` is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))?;
        names.insert(name.trim().to_string(), proto);
    }
    let mut out: Vec<ListenerSpec> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, addr) = match item.split_once("://") {
            Some((n, a)) => (n.trim().to_ascii_uppercase(), a.trim().to_string()),
            None => ("PLAINTEXT".to_string(), item.to_string()),
        };
        let protocol = names.get(&name).copied().or_else(|| Protocol::from_name(&name)).ok_or_else(|| {
            format!("listener `{item}`: `{name}` is not a security protocol; name one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, or map it with listener.security.protocol.map={name}:PROTOCOL")
        })?;
        if !addr.contains(':') {
            return Err(format!("listener `{item}` needs HOST:PORT, e.g. {name}://127.0.0.1:9093"));
        }
        if out.iter().any(|l| l.name == name) {
            return Err(format!("listener name {name} is used twice; give each listener its own name"));
        }
        out.push(ListenerSpec { name, protocol, addr });
    }
    if out.is_empty() {
        return Err("no listener: give --listen HOST:PORT or listeners=NAME://HOST:PORT,...".into());
    }
    Ok(out)
}

/// The security settings of a broker, resolved once at start.
#[derive(Clone)]
pub struct Security {
    /// TLS, when some listener uses it.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `sasl.enabled.mechanisms`.
    pub mechanisms: Vec<String>,
}

impl Security {
    /// Resolves the settings the listeners need, or says which one is missing or broken.
    pub fn resolve(config: &BrokerConfig, listeners: &[ListenerSpec]) -> Result<Security, String> {
        let text = |k: &str| Some(config.get(k).trim().to_string()).filter(|v| !v.is_empty());
        let tls = if listeners.iter().any(|l| l.protocol.tls()) {
            let need = |k: &str| text(k).ok_or_else(|| format!("a TLS listener (SSL or SASL_SSL) needs {k}"));
            let files = tls::TlsFiles {
                cert: need("ssl.certificate.location")?.into(),
                key: need("ssl.key.location")?.into(),
                ca: text("ssl.ca.location").map(Into::into),
                client_auth: match config.get("ssl.client.auth") {
                    "required" => tls::ClientAuth::Required,
                    "requested" => tls::ClientAuth::Requested,
                    _ => tls::ClientAuth::None,
                },
            };
            Some(tls::server_config(&files)?)
        } else {
            None
        };
        let mechanisms = config.get("sasl.enabled.mechanisms").split(',').map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect();
        Ok(Security { tls, mechanisms })
    }
}

/// The principal of an unauthenticated connection.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_with_kafka_names_and_the_map() {
        let l = parse_listeners("127.0.0.1:9092, SASL_SSL://127.0.0.1:9093,internal://0.0.0.0:9094", "INTERNAL:SSL").unwrap();
        assert_eq!(
            l.iter().map(|l| (l.name.as_str(), l.protocol, l.addr.as_str())).collect::<Vec<_>>(),
            [("PLAINTEXT", Protocol::Plaintext, "127.0.0.1:9092"), ("SASL_SSL", Protocol::SaslSsl, "127.0.0.1:9093"), ("INTERNAL", Protocol::Ssl, "0.0.0.0:9094")]
        );
        assert!(parse_listeners("FOO://127.0.0.1:1", "").unwrap_err().contains("listener.security.protocol.map=FOO:PROTOCOL"));
        assert!(parse_listeners("SSL://127.0.0.1:1,SSL://127.0.0.1:2", "").unwrap_err().contains("used twice"));
        assert!(parse_listeners("SSL://nowhere", "").unwrap_err().contains("HOST:PORT"));
        assert!(parse_listeners("", "").is_err());
        assert!(parse_listeners("A://h:1", "A:TLS").unwrap_err().contains("not PLAINTEXT"));
    }
}
