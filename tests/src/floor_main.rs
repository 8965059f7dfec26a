//! `gpubridge-floor`: the floor proxy on its own (see `floor.rs`), to benchmark
//! beside the gateway: `gpubridge-bench --target floor=openai-chat@http://127.0.0.1:8082/v1/chat/completions`.

use anyhow::Context;
use clap::Parser;
use gpubridge_tests::floor::FloorProxy;
use hyper::Uri;
use std::net::{IpAddr, SocketAddr};

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
    upstream: Uri,
}

fn loopback(uri: &Uri) -> bool {
    match uri.host() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.addr.ip().is_loopback() && loopback(&args.upstream) && args.upstream.scheme_str() == Some("http"),
        "the floor proxy listens on and forwards to loopback only, over plain HTTP (got --addr {} --upstream {})",
        args.addr,
        args.upstream
    );
    let floor = FloorProxy::start(args.addr, &args.upstream)
        .await
        .with_context(|| format!("listening on {}", args.addr))?;
    println!(
        "floor proxy listening on {} for {}",
        floor.addr, args.upstream
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
