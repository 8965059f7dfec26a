//! `burst`: many clients connect at the same instant, each sends one
//! `GET /health` on its fresh connection and reads the answer. What a listen
//! backlog too short for the burst does shows up here as answers a whole
//! SYN-retransmit (1 s) late.

use anyhow::Context;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

const REQUEST: &[u8] = b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";

/// `rounds` bursts of `connections` each against `gateway` (`http://host:port`).
pub async fn run(gateway: &str, connections: usize, rounds: usize) -> anyhow::Result<()> {
    let addr = gateway
        .trim_start_matches("http://")
        .parse::<std::net::SocketAddr>()
        .context("burst needs a plain http://IP:PORT gateway")?;
    let mut latency = Histogram::<u64>::new(3)?;
    let (mut failed, mut late) = (0u64, 0u64);
    for _ in 0..rounds.max(1) {
        let start = Arc::new(Barrier::new(connections));
        let mut burst = tokio::task::JoinSet::new();
        for _ in 0..connections {
            let start = start.clone();
            burst.spawn(async move {
                start.wait().await;
                let sent = Instant::now();
                let answered = tokio::time::timeout(Duration::from_secs(10), health(addr)).await;
                (sent.elapsed(), matches!(answered, Ok(Ok(true))))
            });
        }
        while let Some(done) = burst.join_next().await {
            let (took, ok) = done?;
            if !ok {
                failed += 1;
                continue;
            }
            late += u64::from(took >= Duration::from_secs(1));
            latency.record(took.as_micros() as u64)?;
        }
        // Let the server close the last round's connections.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "{:<28} {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        format!("burst of {connections} connections"),
        latency.len(),
        failed,
        0,
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.9),
        latency.value_at_quantile(0.99),
        latency.value_at_quantile(0.999),
        latency.max()
    );
    println!("{:<28} {rounds} rounds; answers 1 s or later: {late}", "");
    Ok(())
}

/// One request on a fresh connection; `true` for a 200.
async fn health(addr: std::net::SocketAddr) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(REQUEST).await?;
    let mut answer = Vec::with_capacity(512);
    stream.read_to_end(&mut answer).await?;
    Ok(answer.starts_with(b"HTTP/1.1 200"))
}
