//! One TCP connection to one broker, with pipelined requests.
//!
//! Callers write whole frames under an async lock (held across the write, so frames never
//! interleave); a reader task matches responses to requests by correlation id and hands
//! each caller its raw body through a oneshot. Decoding happens in the caller, at the
//! version it chose. Every request has a deadline (`request.timeout.ms`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::secure::{SaslLogin, Transport};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Largest response frame accepted: bounds memory if a peer announces nonsense.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

type Waiter = oneshot::Sender<Result<Bytes>>;

struct Pending {
    waiters: HashMap<i32, Waiter>,
    /// Set once the connection is dead; new requests fail at once with this reason.
    closed: Option<String>,
}

/// A connection to one broker.
pub struct Connection {
    addr: String,
    client_id: StrBytes,
    request_timeout: Duration,
    // Async lock: the guard is held across the socket write so frames never interleave.
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    pending: Arc<Mutex<Pending>>,
    next_correlation: AtomicI32,
    /// API key -> (min, max) version the broker serves.
    versions: HashMap<i16, (i16, i16)>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("addr", &self.addr).finish()
    }
}

impl Connection {
    /// Connects over plain TCP, then asks the broker which API versions it serves.
    pub async fn connect(addr: &str, client_id: &str, connect_timeout: Duration, request_timeout: Duration) -> Result<Arc<Connection>> {
        Self::connect_with(addr, client_id, connect_timeout, request_timeout, &Transport::plaintext()).await
    }

    /// Connects (TLS first when `transport` has it), asks which API versions the broker
    /// serves, then authenticates (SASL) when `transport` says so.
    pub async fn connect_with(addr: &str, client_id: &str, connect_timeout: Duration, request_timeout: Duration, transport: &Transport) -> Result<Arc<Connection>> {
        let failed = |reason: String| Error::Connect { addr: addr.to_string(), reason };
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(failed(connect_reason(&e))),
            Err(_) => return Err(failed(format!("no answer within {} ms", connect_timeout.as_millis()))),
        };
        let _ = stream.set_nodelay(true);
        let pending = Arc::new(Mutex::new(Pending { waiters: HashMap::new(), closed: None }));
        let (reader, write): (_, Box<dyn AsyncWrite + Send + Unpin>) = match &transport.tls {
            None => {
                let (read, write) = stream.into_split();
                (tokio::spawn(read_loop(read, pending.clone(), addr.to_string())), Box::new(write))
            }
            Some((config, _)) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']);
                let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| failed(format!("`{host}` is not a TLS server name: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone());
                let stream = match tokio::time::timeout(connect_timeout, tls.connect(name, stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(failed(format!("TLS handshake failed: {e}"))),
                    Err(_) => return Err(failed(format!("TLS handshake did not finish within {} ms", connect_timeout.as_millis()))),
                };
                let (read, write) = tokio::io::split(stream);
                (tokio::spawn(read_loop(read, pending.clone(), addr.to_string())), Box::new(write))
            }
        };
        let mut conn = Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            request_timeout,
            writer: tokio::sync::Mutex::new(write),
            pending,
            next_correlation: AtomicI32::new(1),
            versions: HashMap::new(),
            reader,
        };
        conn.versions = conn.negotiate().await?;
        if let Some(login) = &transport.sasl {
            conn.authenticate(login).await?;
        }
        Ok(Arc::new(conn))
    }

    /// SaslHandshake v1, then SaslAuthenticate rounds of the mechanism.
    async fn authenticate(&self, login: &SaslLogin) -> Result<()> {
        use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
        use kafka_protocol::ResponseError;
        let context = |what: &str| format!("SASL {what} with {} as {} at {}", login.mechanism, login.username, self.addr);
        let v = self.version::<SaslHandshakeRequest>(1, 1)?;
        let hs = self.send(&SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(login.mechanism.clone())), v).await?;
        if let Some(e) = ResponseError::try_from_code(hs.error_code) {
            let offered: Vec<String> = hs.mechanisms.iter().map(|m| m.to_string()).collect();
            return Err(Error::Broker { error: e, context: format!("{} (the broker offers {})", context("handshake"), offered.join(", ")) });
        }
        let av = self.version::<SaslAuthenticateRequest>(0, 2)?;
        let round = |bytes: Vec<u8>| async move {
            let r = self.send(&SaslAuthenticateRequest::default().with_auth_bytes(bytes.into()), av).await?;
            match ResponseError::try_from_code(r.error_code) {
                Some(e) => Err(Error::Broker { error: e, context: format!("{}: {}", context("authentication"), r.error_message.as_deref().unwrap_or("refused")) }),
                None => Ok(r.auth_bytes.to_vec()),
            }
        };
        if login.mechanism == "PLAIN" {
            round(format!("\0{}\0{}", login.username, login.password).into_bytes()).await?;
            return Ok(());
        }
        let m = crate::scram::Mechanism::from_name(&login.mechanism).ok_or_else(|| Error::Config(format!("sasl.mechanism {} is not supported", login.mechanism)))?;
        let nonce = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crate::scram::random_bytes(24));
        let user = login.username.replace('=', "=3D").replace(',', "=2C");
        let bare = format!("n={user},r={nonce}");
        let first = String::from_utf8(round(format!("n,,{bare}").into_bytes()).await?).map_err(|_| self.protocol("a SCRAM server-first message that is not UTF-8"))?;
        if !first.starts_with(&format!("r={nonce}")) {
            return Err(self.protocol("the SCRAM server nonce does not extend ours"));
        }
        let (last, expected) = crate::scram::client::final_message(m, &login.password, &bare, &first).map_err(|e| self.protocol(e))?;
        let verifier = String::from_utf8(round(last.into_bytes()).await?).unwrap_or_default();
        let want = format!("v={}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, expected));
        if verifier != want {
            return Err(self.protocol("the broker's SCRAM signature is wrong (not the broker that holds this user's credential)"));
        }
        Ok(())
    }

    async fn negotiate(&self) -> Result<HashMap<i16, (i16, i16)>> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("samsa"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut body = self.write_request(&req, 3, self.request_timeout).await?.await?;
        // The ApiVersions response header is always v0 (KIP-511), and a broker that does
        // not serve v3 answers in v0 with the list it does serve.
        let _ = ResponseHeader::decode(&mut body, 0).map_err(|e| self.protocol(e))?;
        let resp = match ApiVersionsResponse::decode(&mut body.clone(), 3) {
            Ok(r) if r.error_code == 0 => r,
            _ => ApiVersionsResponse::decode(&mut body, 0).map_err(|e| self.protocol(e))?,
        };
        if let Some(e) = Error::broker(resp.error_code, format!("ApiVersions to {}", self.addr)) {
            if resp.api_keys.is_empty() {
                return Err(e);
            }
        }
        Ok(resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect())
    }

    /// The broker's `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection has died (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.pending.lock().unwrap().closed.is_some()
    }

    /// Picks the highest version of `R` both sides speak, within `min..=max`.
    pub fn version<R: Request>(&self, min: i16, max: i16) -> Result<i16> {
        let (bmin, bmax) = self.versions.get(&R::KEY).copied().unwrap_or((0, -1));
        let v = max.min(bmax);
        if v < min || v < bmin {
            let api = ApiKey::try_from(R::KEY).map(|k| format!("{k:?}")).unwrap_or_else(|_| format!("API {}", R::KEY));
            return Err(Error::UnsupportedVersion { addr: self.addr.clone(), api, min, max, broker_max: bmax });
        }
        Ok(v)
    }

    /// Sends `req` at `version` and decodes the response.
    pub async fn send<R: Request>(&self, req: &R, version: i16) -> Result<R::Response>
    where
        R::Response: Send + 'static,
    {
        self.send_with_timeout(req, version, self.request_timeout).await
    }

    /// Like [`Connection::send`], with a longer deadline for calls the broker may hold
    /// (JoinGroup waits for the whole rebalance).
    pub async fn send_with_timeout<R: Request>(&self, req: &R, version: i16, timeout: Duration) -> Result<R::Response>
    where
        R::Response: Send + 'static,
    {
        self.start_with_timeout(req, version, timeout).await?.await
    }

    /// Sends `req` and does not wait for an answer (Produce with acks=0).
    pub async fn send_oneway<R: Request>(&self, req: &R, version: i16) -> Result<()> {
        let (frame, _) = self.frame(req, version)?;
        self.write(frame).await
    }

    fn protocol(&self, e: impl std::fmt::Display) -> Error {
        Error::Protocol { addr: self.addr.clone(), reason: e.to_string() }
    }

    fn frame<R: Request>(&self, req: &R, version: i16) -> Result<(Bytes, i32)> {
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        header.encode(&mut buf, R::header_version(version)).map_err(|e| self.protocol(format!("cannot encode request header: {e}")))?;
        req.encode(&mut buf, version).map_err(|e| self.protocol(format!("cannot encode request: {e}")))?;
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        Ok((buf.freeze(), correlation_id))
    }

    async fn write(&self, frame: Bytes) -> Result<()> {
        let mut w = self.writer.lock().await;
        // flush: a TLS stream holds written bytes until flushed (plain TCP: a no-op).
        if let Err(e) = async {
            w.write_all(&frame).await?;
            w.flush().await
        }
        .await
        {
            let reason = e.to_string();
            close(&self.pending, &reason);
            return Err(Error::Disconnected { addr: self.addr.clone(), reason });
        }
        Ok(())
    }

    /// Writes `req` now and returns a future of the decoded response. Requests written
    /// by successive calls reach the broker in call order, so a caller that must keep
    /// order (the producer) writes in order and awaits the answers concurrently.
    pub async fn start<R>(&self, req: &R, version: i16) -> Result<impl std::future::Future<Output = Result<R::Response>> + Send + 'static>
    where
        R: Request,
        R::Response: Send + 'static,
    {
        self.start_with_timeout(req, version, self.request_timeout).await
    }

    async fn start_with_timeout<R>(&self, req: &R, version: i16, timeout: Duration) -> Result<impl std::future::Future<Output = Result<R::Response>> + Send + 'static>
    where
        R: Request,
        R::Response: Send + 'static,
    {
        let body = self.write_request(req, version, timeout).await?;
        let addr = self.addr.clone();
        Ok(async move {
            let mut body = body.await?;
            let protocol = |e: String| Error::Protocol { addr: addr.clone(), reason: e };
            ResponseHeader::decode(&mut body, R::Response::header_version(version)).map_err(|e| protocol(e.to_string()))?;
            R::Response::decode(&mut body, version).map_err(|e| protocol(e.to_string()))
        })
    }

    /// Registers a waiter, writes the frame, and returns a future of the response body
    /// bounded by `timeout` (counted from the write).
    async fn write_request<R: Request>(&self, req: &R, version: i16, timeout: Duration) -> Result<impl std::future::Future<Output = Result<Bytes>> + Send + 'static> {
        let (frame, correlation_id) = self.frame(req, version)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().unwrap();
            if let Some(reason) = &p.closed {
                return Err(Error::Disconnected { addr: self.addr.clone(), reason: reason.clone() });
            }
            p.waiters.insert(correlation_id, tx);
        }
        // Removes the waiter if the response future is dropped or times out.
        struct Forget(Arc<Mutex<Pending>>, i32);
        impl Drop for Forget {
            fn drop(&mut self) {
                self.0.lock().unwrap().waiters.remove(&self.1);
            }
        }
        let forget = Forget(self.pending.clone(), correlation_id);
        let api = ApiKey::try_from(R::KEY).map(|k| format!("{k:?}")).unwrap_or_default();
        match tokio::time::timeout(timeout, self.write(frame)).await {
            Ok(r) => r?,
            Err(_) => return Err(Error::Timeout { what: format!("writing a {api} request to {}", self.addr), after: timeout }),
        }
        let addr = self.addr.clone();
        Ok(async move {
            let _forget = forget;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(Error::Disconnected { addr, reason: "connection closed".into() }),
                Err(_) => Err(Error::Timeout { what: format!("{api} request to {addr}"), after: timeout }),
            }
        })
    }
}

/// Why a TCP connect failed, worded to read well inside [`Error::Connect`]: a refused
/// connection is just "connection refused" (not the OS's "Connection refused (os error
/// 111)"); anything else keeps the OS's text.
fn connect_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => e.to_string(),
    }
}

fn close(pending: &Mutex<Pending>, reason: &str) {
    let mut p = pending.lock().unwrap();
    if p.closed.is_none() {
        p.closed = Some(reason.to_string());
    }
    p.waiters.clear();
}

async fn read_loop<R: AsyncRead + Unpin>(mut read: R, pending: Arc<Mutex<Pending>>, addr: String) {
    let reason = loop {
        let mut len = [0u8; 4];
        if let Err(e) = read.read_exact(&mut len).await {
            break if e.kind() == std::io::ErrorKind::UnexpectedEof { "the broker closed the connection".to_string() } else { e.to_string() };
        }
        let len = i32::from_be_bytes(len);
        if len < 4 || len as usize > MAX_RESPONSE_BYTES {
            break format!("response frame of {len} bytes is out of bounds");
        }
        let mut body = BytesMut::zeroed(len as usize);
        if let Err(e) = read.read_exact(&mut body).await {
            break e.to_string();
        }
        let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let waiter = pending.lock().unwrap().waiters.remove(&correlation_id);
        if let Some(w) = waiter {
            // The whole body goes back: the header decoder reads the correlation id itself.
            let _ = w.send(Ok(body.freeze()));
        }
    };
    tracing::debug!(%addr, %reason, "connection closed");
    let waiters: Vec<Waiter> = {
        let mut p = pending.lock().unwrap();
        p.closed.get_or_insert(reason.clone());
        p.waiters.drain().map(|(_, w)| w).collect()
    };
    for w in waiters {
        let _ = w.send(Err(Error::Disconnected { addr: addr.clone(), reason: reason.clone() }));
    }
}
