//! TLS for client listeners (rustls, TLS 1.2 and 1.3 only): the server certificate and key
//! from PEM files, reloaded when the files change (no restart), optional client
//! certificates checked against `ssl.ca.location`, and the Kafka principal of a client
//! certificate (`User:` + its subject in RFC 2253 form, e.g. `User:CN=alice,O=shop`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// Whether clients must, may or must not present a certificate (`ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificates.
    None,
    /// A certificate is checked when given.
    Requested,
    /// A trusted certificate is required.
    Required,
}

/// Where the TLS material is.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `ssl.certificate.location`: the server's certificate chain (PEM).
    pub cert: PathBuf,
    /// `ssl.key.location`: its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// `ssl.ca.location`: CA certificates that client certificates must chain to (PEM).
    pub ca: Option<PathBuf>,
    /// `ssl.client.auth`.
    pub client_auth: ClientAuth,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {} is not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display()));
    }
    Ok(certs)
}

fn load_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let certs = load_certs(&files.cert, "ssl.certificate.location")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| format!("cannot read the private key ssl.key.location={}: {e}", files.key.display()))?;
    let signer = provider.key_provider.load_private_key(key).map_err(|e| format!("ssl.key.location={}: unusable private key: {e}", files.key.display()))?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match().map_err(|e| format!("ssl.key.location={} does not belong to ssl.certificate.location={}: {e}", files.key.display(), files.cert.display()))?;
    Ok(Arc::new(ck))
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Serves the certificate, reloading it (at most once a second, on a handshake) when the
/// certificate or key file changed; a broken new pair is logged and the old one kept.
#[derive(Debug)]
struct Reloading {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    state: Mutex<ReloadState>,
}

#[derive(Debug)]
struct ReloadState {
    checked: Instant,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    key: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut st = self.state.lock().ok()?;
        if st.checked.elapsed() >= Duration::from_secs(1) {
            st.checked = Instant::now();
            let stamps = (mtime(&self.files.cert), mtime(&self.files.key));
            if stamps != st.stamps {
                match load_key(&self.files, &self.provider) {
                    Ok(k) => {
                        tracing::info!(cert = %self.files.cert.display(), "reloaded the TLS certificate");
                        st.key = k;
                        st.stamps = stamps;
                    }
                    // Files mid-replacement: try again at the next check.
                    Err(e) => tracing::warn!("keeping the current TLS certificate: {e}"),
                }
            }
        }
        Some(st.key.clone())
    }
}

/// The rustls server config for a TLS listener.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let provider = provider();
    let key = load_key(files, &provider)?;
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12]).map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match (files.client_auth, &files.ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => return Err("ssl.client.auth=requested|required needs ssl.ca.location (the CA that client certificates chain to)".into()),
        (auth, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(ca, "ssl.ca.location")? {
                roots.add(c).map_err(|e| format!("ssl.ca.location={}: {e}", ca.display()))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let v = if auth == ClientAuth::Requested { v.allow_unauthenticated() } else { v };
            builder.with_client_cert_verifier(v.build().map_err(|e| format!("ssl.ca.location={}: {e}", ca.display()))?)
        }
    };
    let stamps = (mtime(&files.cert), mtime(&files.key));
    let resolver = Reloading { files: files.clone(), provider, state: Mutex::new(ReloadState { checked: Instant::now(), stamps, key }) };
    Ok(Arc::new(builder.with_cert_resolver(Arc::new(resolver))))
}

/// Reads one DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// An OID's dotted text.
fn oid(bytes: &[u8]) -> String {
    let mut parts = Vec::new();
    if let Some((&first, rest)) = bytes.split_first() {
        parts.push((first / 40).to_string());
        parts.push((first % 40).to_string());
        let mut v: u64 = 0;
        for b in rest {
            v = (v << 7) | u64::from(b & 0x7f);
            if b & 0x80 == 0 {
                parts.push(v.to_string());
                v = 0;
            }
        }
    }
    parts.join(".")
}

/// Escapes an RFC 2253 attribute value.
fn rfc2253_value(v: &str) -> String {
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || (i == 0 && matches!(c, '#' | ' ')) || (i + 1 == v.chars().count() && c == ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The subject of a DER certificate in RFC 2253 form (last RDN first, as Java prints it).
pub fn subject(cert: &[u8]) -> Option<String> {
    let (_, cert, _) = der(cert)?;
    let (_, tbs, _) = der(cert)?;
    let mut rest = tbs;
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    let (tag, _, r) = der(rest)?;
    rest = if tag == 0xa0 { r } else { rest };
    for _ in 0..4 {
        rest = der(rest)?.2;
    }
    let (_, name, _) = der(rest)?;
    let mut rdns = Vec::new();
    let mut set_rest = name;
    while !set_rest.is_empty() {
        let (_, set, r) = der(set_rest)?;
        set_rest = r;
        let mut atvs = Vec::new();
        let mut atv_rest = set;
        while !atv_rest.is_empty() {
            let (_, atv, r) = der(atv_rest)?;
            atv_rest = r;
            let (_, id, r) = der(atv)?;
            let (_, value, _) = der(r)?;
            let key = match oid(id).as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.6" => "C".to_string(),
                "2.5.4.7" => "L".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.11" => "OU".to_string(),
                "2.5.4.9" => "STREET".to_string(),
                "0.9.2342.19200300.100.1.25" => "DC".to_string(),
                "0.9.2342.19200300.100.1.1" => "UID".to_string(),
                other => other.to_string(),
            };
            atvs.push(format!("{key}={}", rfc2253_value(&String::from_utf8_lossy(value))));
        }
        rdns.push(atvs.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_oids() {
        assert_eq!(der(&[0x30, 0x03, 1, 2, 3, 9]), Some((0x30, &[1u8, 2, 3][..], &[9u8][..])));
        assert_eq!(der(&[0x30, 0x81, 0x02, 7, 8]), Some((0x30, &[7u8, 8][..], &[][..])));
        assert_eq!(der(&[0x30, 0x05, 1]), None);
        assert_eq!(der(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(oid(&[0x55, 0x04, 0x03]), "2.5.4.3");
        assert_eq!(oid(&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19]), "0.9.2342.19200300.100.1.25");
        assert_eq!(rfc2253_value("a,b"), "a\\,b");
        assert_eq!(subject(&[1, 2, 3]), None);
    }
}
