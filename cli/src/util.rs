//! Helpers shared by the client tools: table printing and progress lines.

/// Prints rows as an aligned table with a header line.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{:<w$}", c, w = widths[i])).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
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
