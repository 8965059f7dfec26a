//! `gpubridge-standin`: runs the hosted-provider stand-in on its own, for manual
//! trials and benchmarks (`GPUBRIDGE_GROQ_BASE_URL=http://127.0.0.1:9100/v1`).

use clap::Parser;
use gpubridge_tests::tls::CertFiles;
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
    /// Serve TLS (HTTP/2 or HTTP/1.1 by ALPN) with a new self-signed
    /// certificate for `localhost`, written to DIR/standin.crt for the
    /// daemon's `ca_file`.
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some(dir) = args.tls_dir else {
        let standin = Standin::start_on(args.addr, &args.key).await?;
        println!("stand-in listening on {}", standin.base_url());
        tokio::signal::ctrl_c().await?;
        return Ok(());
    };
    std::fs::create_dir_all(&dir)?;
    let cert = CertFiles::write(&dir, "standin");
    let standin = Standin::start_with(args.addr, &args.key, Some(cert.acceptor()?)).await?;
    println!(
        "stand-in listening on https://localhost:{}/v1 (certificate {})",
        standin.addr.port(),
        cert.cert_file.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
