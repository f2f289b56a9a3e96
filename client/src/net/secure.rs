//! How a client reaches brokers: `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT,
//! SASL_SSL), TLS through rustls (`ssl.ca.location`, a client certificate with
//! `ssl.certificate.location` / `ssl.key.location`, host-name checks unless
//! `ssl.endpoint.identification.algorithm=none`), and SASL (`sasl.mechanism` PLAIN or
//! SCRAM-SHA-256/512 with `sasl.username` / `sasl.password`), all by Kafka's property names.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{Error, Result};

/// The SASL mechanism and credentials.
#[derive(Clone)]
pub struct SaslLogin {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// `sasl.username`.
    pub username: String,
    /// `sasl.password`.
    pub password: String,
}

impl std::fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslLogin").field("mechanism", &self.mechanism).field("username", &self.username).field("password", &"***").finish()
    }
}

/// The security settings of a client, as given (checked when the transport is built).
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    /// `security.protocol` (default PLAINTEXT).
    pub protocol: String,
    /// `ssl.ca.location`.
    pub ca: Option<PathBuf>,
    /// `ssl.certificate.location`.
    pub cert: Option<PathBuf>,
    /// `ssl.key.location`.
    pub key: Option<PathBuf>,
    /// `ssl.endpoint.identification.algorithm` is `none`.
    pub skip_hostname: bool,
    /// `sasl.mechanism`.
    pub mechanism: Option<String>,
    /// `sasl.username`.
    pub username: Option<String>,
    /// `sasl.password`.
    pub password: Option<String>,
}

/// The property names of [`SecuritySettings`].
pub const SECURITY_KEYS: &[&str] = &[
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
];

impl SecuritySettings {
    /// Sets one property; `Ok(false)` when `key` is not a security property.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        let v = value.trim().to_string();
        match key {
            "security.protocol" => {
                let p = v.to_ascii_uppercase();
                if !matches!(p.as_str(), "PLAINTEXT" | "SSL" | "SASL_PLAINTEXT" | "SASL_SSL") {
                    return Err(Error::Config(format!("security.protocol `{value}` is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")));
                }
                self.protocol = p;
            }
            "ssl.ca.location" => self.ca = Some(v.into()),
            "ssl.certificate.location" => self.cert = Some(v.into()),
            "ssl.key.location" => self.key = Some(v.into()),
            "ssl.endpoint.identification.algorithm" => match v.to_ascii_lowercase().as_str() {
                "none" | "" => self.skip_hostname = true,
                "https" => self.skip_hostname = false,
                _ => return Err(Error::Config(format!("ssl.endpoint.identification.algorithm `{value}` is not https or none"))),
            },
            "sasl.mechanism" | "sasl.mechanisms" => {
                let m = v.to_ascii_uppercase();
                if !matches!(m.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") {
                    return Err(Error::Config(format!("sasl.mechanism `{value}` is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")));
                }
                self.mechanism = Some(m);
            }
            "sasl.username" => self.username = Some(value.to_string()),
            "sasl.password" => self.password = Some(value.to_string()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The transport these settings describe, or which setting is missing or wrong.
    pub fn transport(&self) -> Result<Transport> {
        let protocol = if self.protocol.is_empty() { "PLAINTEXT" } else { self.protocol.as_str() };
        let tls = matches!(protocol, "SSL" | "SASL_SSL").then(|| self.tls_config()).transpose()?;
        let sasl = if matches!(protocol, "SASL_PLAINTEXT" | "SASL_SSL") {
            let need = |v: &Option<String>, k: &str| v.clone().ok_or_else(|| Error::Config(format!("security.protocol={protocol} needs {k}")));
            Some(SaslLogin {
                mechanism: self.mechanism.clone().unwrap_or_else(|| "PLAIN".into()),
                username: need(&self.username, "sasl.username")?,
                password: need(&self.password, "sasl.password")?,
            })
        } else {
            None
        };
        Ok(Transport { tls: tls.map(|c| (c, self.skip_hostname)), sasl })
    }

    fn tls_config(&self) -> Result<Arc<ClientConfig>> {
        let bad = |what: &str, p: &PathBuf, e: String| Error::Config(format!("{what}={}: {e}", p.display()));
        let ca = self.ca.as_ref().ok_or_else(|| Error::Config("TLS needs ssl.ca.location: the PEM file of the CA that signed the brokers' certificates".into()))?;
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca).map_err(|e| bad("ssl.ca.location", ca, e.to_string()))?;
        for c in certs {
            roots.add(c.map_err(|e| bad("ssl.ca.location", ca, e.to_string()))?).map_err(|e| bad("ssl.ca.location", ca, e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("ssl.ca.location", ca, "no PEM certificate in it".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Config(format!("TLS setup: {e}")))?;
        let roots = Arc::new(roots);
        let builder = if self.skip_hostname {
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider).build().map_err(|e| Error::Config(format!("ssl.ca.location: {e}")))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyName(inner)))
        } else {
            builder.with_root_certificates(roots)
        };
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| bad("ssl.certificate.location", cert, e.to_string()))?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| bad("ssl.certificate.location", cert, e.to_string()))?;
                let k = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("ssl.key.location", key, e.to_string()))?;
                builder.with_client_auth_cert(chain, k).map_err(|e| bad("ssl.key.location", key, e.to_string()))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(Error::Config("a client certificate needs both ssl.certificate.location and ssl.key.location".into())),
        };
        Ok(Arc::new(config))
    }
}

/// Checks the chain but not the name (`ssl.endpoint.identification.algorithm=none`).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        inter: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end, inter, name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What a connection does after TCP connect: TLS (with whether host names go unchecked),
/// then SASL.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    /// The TLS config.
    pub tls: Option<(Arc<ClientConfig>, bool)>,
    /// The SASL login.
    pub sasl: Option<SaslLogin>,
}

impl Transport {
    /// Plain TCP, no authentication.
    pub fn plaintext() -> Transport {
        Transport::default()
    }
}
