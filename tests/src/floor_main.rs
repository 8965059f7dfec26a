//! `gpubridge-floor`: the floor proxy on its own (see `floor.rs`), to benchmark
//! beside the gateway: `gpubridge-bench --target floor=openai-chat@http://127.0.0.1:8082/v1/chat/completions`.

use anyhow::Context;
use clap::Parser;
use gpubridge_tests::floor::FloorProxy;
use gpubridge_tests::loopback::require_loopback_http;
use hyper::Uri;
use std::net::SocketAddr;

/// The daemon's allocator, so the floor differs from it only in what it does.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "gpubridge-floor",
    about = "A bare reverse proxy on the gateway's runtime, server and client: what the runtime alone adds (loopback only)"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8082")]
    addr: SocketAddr,
    /// Where to forward, `http://host:port`; a loopback address.
    #[arg(long, default_value = "http://127.0.0.1:9100")]
    upstream: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.addr.ip().is_loopback(),
        "the floor proxy listens on loopback only (got --addr {})",
        args.addr
    );
    require_loopback_http("--upstream", &args.upstream)?;
    let upstream: Uri = args.upstream.parse().context("--upstream")?;
    let floor = FloorProxy::start(args.addr, &upstream)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    println!(
        "floor proxy listening on {} for {}",
        floor.addr, args.upstream
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
