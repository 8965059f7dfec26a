//! `--scenarios disk`: `/inference` at a steady rate for the whole run while
//! the data directory's size is sampled, to show it levels off once finished
//! jobs start expiring (`--retention-seconds`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes under `dir`, files only.
fn size_of(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => size_of(&entry.path()),
            _ => entry.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// Prints the data directory's size every `every` until `load` finishes.
pub async fn watch<F: std::future::Future>(
    data_dir: PathBuf,
    every: Duration,
    load: F,
) -> F::Output {
    println!("{:>8} {:>12}", "seconds", "data MiB");
    let started = Instant::now();
    let sampler = tokio::spawn(async move {
        loop {
            let dir = data_dir.clone();
            let bytes = tokio::task::spawn_blocking(move || size_of(&dir))
                .await
                .unwrap_or(0);
            println!(
                "{:>8.0} {:>12.1}",
                started.elapsed().as_secs_f64(),
                bytes as f64 / (1024.0 * 1024.0)
            );
            tokio::time::sleep(every).await;
        }
    });
    let output = load.await;
    sampler.abort();
    output
}
