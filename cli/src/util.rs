//! Helpers shared by the client tools: table printing and progress lines.

/// Prints rows as an aligned table with a header line.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", table_text(header, rows));
}

/// Rows as an aligned table with a header line (each line ends with a newline).
pub fn table_text(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{:<w$}", c, w = widths.get(i).copied().unwrap_or(0))).collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Prints a progress line on stderr every second until aborted: `line(seconds since the
/// start, count now, count added in the last second)` over the counter `done`.
pub fn progress_every_second(done: std::sync::Arc<std::sync::atomic::AtomicU64>, line: impl Fn(f64, u64, u64) -> String + Send + 'static) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = std::time::Instant::now();
        let mut last = 0u64;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = done.load(std::sync::atomic::Ordering::Relaxed);
            eprintln!("{}", line(start.elapsed().as_secs_f64(), now, now - last));
            last = now;
        }
    })
}

/// An HTTP answer in progress; the connection task ends with it.
pub struct Reply {
    /// The response (its body is read as it comes).
    pub response: hyper::Response<hyper::body::Incoming>,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for Reply {
    fn drop(&mut self) {
        // Closes the socket now (a continuous query on the server stops with it).
        self.conn.abort();
    }
}

impl Reply {
    /// The status and the whole body as text.
    pub async fn text(mut self) -> Result<(u16, String), String> {
        use http_body_util::BodyExt;
        let status = self.response.status().as_u16();
        let body = self.response.body_mut().collect().await.map_err(|e| format!("reading the answer: {e}"))?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// Sends one request to `http://server{path}` (a JSON body, if any) over a fresh connection.
pub async fn http_send(server: &str, method: hyper::Method, path: &str, body: Option<String>) -> Result<Reply, String> {
    use bytes::Bytes;
    use http_body_util::Full;
    let hint = "is `samsa server` running with its HTTP API there? --server names it";
    let stream = tokio::net::TcpStream::connect(server).await.map_err(|e| format!("cannot connect to {server}: {e} ({hint})"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| format!("HTTP to {server}: {e}"))?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, server)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| format!("HTTP request: {e}"))?;
    let response = sender.send_request(req).await.map_err(|e| format!("HTTP to {server}: {e} ({hint})"))?;
    Ok(Reply { response, conn })
}

/// A pending SIGINT/SIGTERM (see [`shutdown_signal`]).
pub type Stop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A future that ends on SIGINT or SIGTERM, with the handlers installed now: a signal that
/// arrives before it is first awaited still ends it.
pub fn shutdown_signal() -> Result<Stop, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    Ok(Box::pin(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }))
}

/// A flag given in seconds as a duration: a finite number above 0, at most a day.
pub fn seconds_flag(flag: &str, secs: f64) -> Result<std::time::Duration, String> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("--{flag} must be a number of seconds above 0 and at most 86400, got {secs}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Runs `work` unless `stop` ends first (`None`), giving up after `limit` with `what` in
/// the error.
pub async fn unless_stopped<T>(stop: &mut Stop, limit: std::time::Duration, what: &str, work: impl std::future::Future<Output = Result<T, String>>) -> Option<Result<T, String>> {
    tokio::select! {
        r = tokio::time::timeout(limit, work) => Some(r.unwrap_or_else(|_| Err(format!("{what} did not answer within {} s", limit.as_secs())))),
        _ = stop => None,
    }
}
