//! `gpubridge-standin`: runs the hosted-provider stand-in on its own, for manual
//! trials and benchmarks (`GPUBRIDGE_GROQ_BASE_URL=http://127.0.0.1:9100/v1`).

use clap::Parser;
use gpubridge_tests::Standin;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(
    name = "gpubridge-standin",
    about = "Local stand-in for GPU-Bridge's hosted providers"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9100")]
    addr: SocketAddr,
    /// The API key clients must send as `Authorization: Bearer …`.
    #[arg(long, default_value = "standin-key")]
    key: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let standin = Standin::start_on(args.addr, &args.key).await?;
    println!("stand-in listening on {}", standin.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
