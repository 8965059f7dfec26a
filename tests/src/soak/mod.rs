//! The fault-injection soak: steady open-loop load of keyed, paid jobs on
//! several services (`/run` LLM and embeddings, `/inference`, streamed
//! `/v1/chat/completions`, `echo` on node agents) while hosted stand-ins hang,
//! answer 500, garbage or slow streams, agents are kill -9'd and restarted, and
//! the daemon itself is kill -9'd and restarted. Afterwards every job is
//! audited from disk. `gpubridge-bench --scenarios soak` runs it long; the
//! integration tests run it short. Loopback only; it stops by itself.

mod audit;
mod faults;
mod fleet;
mod traffic;

pub use audit::DiskAudit;
pub use fleet::Fleet;

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct SoakSpec {
    pub seconds: u64,
    /// Requests per second, spread over the request kinds.
    pub rate: f64,
    pub accounts: usize,
    pub agents: usize,
    /// kill -9 of the daemon, evenly spaced over the run.
    pub daemon_kills: u32,
    /// Time between other faults (stand-ins misbehaving, agents killed).
    pub fault_every: Duration,
    pub seed: u64,
}

/// What the soak did and what the audit found; `discrepancies` must be empty.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakReport {
    pub seconds: f64,
    pub sent: u64,
    /// Answered with a job id: accepted, so never to be lost.
    pub accepted: u64,
    /// Answered without a job id, by status (refusals while backends were down).
    pub refused: BTreeMap<u16, u64>,
    /// No answer: the daemon was down or died mid-request.
    pub unanswered: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    pub audit: DiskAudit,
    pub discrepancies: Vec<String>,
}

impl SoakReport {
    pub fn faults_injected(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// Runs the soak in `dir` and audits it.
pub async fn run(spec: &SoakSpec, dir: &Path) -> anyhow::Result<SoakReport> {
    let fleet = Arc::new(Fleet::start(spec, dir).await?);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(spec.seconds);
    let injector = tokio::spawn(faults::inject(fleet.clone(), spec.clone(), deadline));
    let sent = traffic::run(&fleet, spec).await;
    let faults = injector.await?;
    fleet.heal().await;
    let mut report = SoakReport {
        seconds: started.elapsed().as_secs_f64(),
        faults,
        ..SoakReport::default()
    };
    sent.summarize(&mut report);
    let mut discrepancies = sent.discrepancies();
    discrepancies.extend(sent.wait_all_terminal(&fleet).await);
    let balances = fleet.balances().await;
    discrepancies.extend(fleet.stop().await);
    let audit = DiskAudit::of(&fleet.data_dir, &sent.accepted_ids(), &balances).await?;
    discrepancies.extend(audit.problems.iter().cloned());
    report.audit = audit;
    report.discrepancies = discrepancies;
    Ok(report)
}
