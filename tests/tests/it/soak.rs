//! The fault-injection soak, short: load of keyed, paid jobs on several
//! services while stand-ins misbehave, agents and the daemon are kill -9'd,
//! then an audit from disk that must find nothing wrong. The long run is
//! `gpubridge-bench --scenarios soak` (BENCHMARKS.md).

use gpubridge_tests::soak::{run, SoakSpec};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_everywhere_lose_no_job_and_no_money() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SoakSpec {
        seconds: 40,
        rate: 40.0,
        accounts: 3,
        agents: 2,
        daemon_kills: 2,
        fault_every: Duration::from_millis(700),
        seed: 12,
    };
    let report = run(&spec, dir.path()).await.unwrap();
    let text = serde_json::to_string_pretty(&report).unwrap();
    assert!(report.discrepancies.is_empty(), "{text}");
    assert_eq!(report.faults["daemon kill -9"], 2, "{text}");
    assert!(report.faults.contains_key("agent kill -9"), "{text}");
    assert!(report.faults_injected() >= 20, "{text}");
    // Enough was accepted, finished both ways and resumed to mean something.
    assert!(report.accepted >= 500, "{text}");
    assert_eq!(
        report.audit.jobs as usize,
        report.audit.by_status.values().sum::<u64>() as usize
    );
    assert!(
        report
            .audit
            .by_status
            .get("completed")
            .copied()
            .unwrap_or(0)
            >= 400,
        "{text}"
    );
    assert!(report.audit.charges > 0, "{text}");
    println!("{text}");
}
