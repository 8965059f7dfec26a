//! Log setup shared by the GPU-Bridge binaries: `GPUBRIDGE_LOG` (then `RUST_LOG`)
//! filters, default `info`, to stderr.

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GPUBRIDGE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not for journald or files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
