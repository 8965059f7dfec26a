//! `--scenarios soak`: the fault-injection soak (`gpubridge_tests::soak`) at
//! the bench's rate and length, with its own daemon, stand-ins and agents;
//! prints what was sent, the faults injected and the audit from disk.

use gpubridge_tests::soak::{run, SoakReport, SoakSpec};
use std::time::Duration;

pub struct SoakArgs {
    pub seconds: u64,
    pub rate: f64,
    pub agents: usize,
    pub daemon_kills: u32,
    pub fault_every_ms: u64,
    pub seed: u64,
}

pub async fn soak(args: SoakArgs) -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let spec = SoakSpec {
        seconds: args.seconds,
        rate: args.rate,
        accounts: 8,
        agents: args.agents.max(1),
        daemon_kills: args.daemon_kills,
        fault_every: Duration::from_millis(args.fault_every_ms),
        seed: args.seed,
    };
    println!(
        "soak: {} req/s for {} s, {} agents, {} daemon kill -9s, a fault every {} ms (seed {})",
        spec.rate, spec.seconds, spec.agents, spec.daemon_kills, args.fault_every_ms, spec.seed
    );
    let report = run(&spec, dir.path()).await?;
    print(&report);
    Ok(report.discrepancies.is_empty())
}

fn print(report: &SoakReport) {
    println!(
        "load: {} requests in {:.0} s ({:.0}/s held), {} accepted, {} refused {:?}, {} unanswered (daemon down)",
        report.sent,
        report.seconds,
        report.sent as f64 / report.seconds,
        report.accepted,
        report.refused.values().sum::<u64>(),
        report.refused,
        report.unanswered
    );
    println!("faults injected: {}", report.faults_injected());
    for (kind, count) in &report.faults {
        println!("  {count:>5}  {kind}");
    }
    let audit = &report.audit;
    println!(
        "audit from disk: {} jobs {:?}, {} resumed after a restart, {} billed; {} ledger entries, {} charges (${:.6}), ${:.6} released; {} accounts",
        audit.jobs,
        audit.by_status,
        audit.recovered,
        audit.billed,
        audit.ledger_entries,
        audit.charges,
        audit.charged_micros as f64 / 1e6,
        audit.released_micros as f64 / 1e6,
        audit.accounts
    );
    println!("discrepancies: {}", report.discrepancies.len());
    for problem in report.discrepancies.iter().take(20) {
        println!("  {problem}");
    }
}
