//! The fault injector: at every tick one fault, chosen by a seeded generator
//! (so a run can be repeated), lasting one to three ticks; kill -9s of the
//! daemon evenly spaced over the run.

use super::{Fleet, SoakSpec};
use crate::{Behavior, StreamPlan};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// xorshift64*: enough randomness to pick faults, repeatable from a seed.
pub(super) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// What is broken now, and when it is mended.
enum Mend {
    Standin(usize),
    Agent(usize),
}

struct Injector {
    fleet: Arc<Fleet>,
    rng: Rng,
    tick: Duration,
    counts: BTreeMap<String, u64>,
    mends: Vec<(Instant, Mend)>,
}

pub async fn inject(fleet: Arc<Fleet>, spec: SoakSpec, deadline: Instant) -> BTreeMap<String, u64> {
    let start = Instant::now();
    let span = deadline.saturating_duration_since(start);
    let kills = spec.daemon_kills;
    let mut kill_at: Vec<Instant> = (1..=kills)
        .map(|i| start + span * i / (kills + 1))
        .collect();
    let mut injector = Injector {
        fleet,
        rng: Rng::new(spec.seed),
        tick: spec.fault_every.max(Duration::from_millis(50)),
        counts: BTreeMap::new(),
        mends: Vec::new(),
    };
    while Instant::now() + injector.tick < deadline {
        tokio::time::sleep(injector.tick).await;
        injector.mend_due().await;
        if kill_at.first().is_some_and(|at| Instant::now() >= *at) {
            kill_at.remove(0);
            injector.fault("daemon kill -9");
            if let Err(e) = injector.fleet.crash_daemon().await {
                eprintln!("soak: restarting the daemon: {e}");
            }
            continue;
        }
        injector.random_fault().await;
    }
    injector.counts
}

impl Injector {
    fn fault(&mut self, kind: &str) {
        *self.counts.entry(kind.to_string()).or_default() += 1;
    }

    fn mend_later(&mut self, mend: Mend) {
        let at = Instant::now() + self.tick * (1 + self.rng.below(3) as u32);
        self.mends.push((at, mend));
    }

    async fn mend_due(&mut self) {
        let now = Instant::now();
        let (due, later) = std::mem::take(&mut self.mends)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.mends = later;
        for (_, mend) in due {
            match mend {
                Mend::Standin(n) => {
                    let standin = self.standin(n);
                    standin.set_behavior(Behavior::Ok);
                    standin.set_stream_plan(StreamPlan::default());
                }
                Mend::Agent(n) => {
                    if let Err(e) = self.fleet.restart_agent(n).await {
                        eprintln!("soak: restarting agent {n}: {e}");
                    }
                }
            }
        }
    }

    /// Hosted stand-ins first, then the agents' model server.
    fn standin(&self, n: usize) -> &crate::Standin {
        self.fleet.hosted.get(n).unwrap_or(&self.fleet.model_server)
    }

    async fn random_fault(&mut self) {
        let target = self.rng.below(self.fleet.hosted.len() as u64 + 1) as usize;
        let (kind, behavior) = match self.rng.below(9) {
            0 => ("500s", Behavior::ServerError),
            1 => ("hangs before headers", Behavior::Hang),
            2 => ("stalls after headers", Behavior::Stall),
            3 => ("trickles then stops", Behavior::Trickle),
            4 => ("garbage bodies", Behavior::Garbage),
            5 => ("slow answers", Behavior::Slow(Duration::from_millis(1500))),
            6 => return self.stream_fault(target),
            _ => return self.agent_fault().await,
        };
        self.standin(target).set_behavior(behavior);
        self.fault(&format!("stand-in {kind}"));
        self.mend_later(Mend::Standin(target));
    }

    fn stream_fault(&mut self, target: usize) {
        let cut = self.rng.below(2) == 0;
        self.standin(target).set_stream_plan(StreamPlan {
            chunks: 8,
            interval: Duration::from_millis(250),
            die_after: cut.then_some(3),
        });
        self.fault(if cut {
            "stand-in streams cut mid-way"
        } else {
            "stand-in slow streams"
        });
        self.mend_later(Mend::Standin(target));
    }

    async fn agent_fault(&mut self) {
        let agents = self.fleet.agent_count();
        if agents == 0 {
            return;
        }
        let n = self.rng.below(agents as u64) as usize;
        match self.fleet.crash_agent(n).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return eprintln!("soak: killing agent {n}: {e}"),
        }
        self.fault("agent kill -9");
        self.mend_later(Mend::Agent(n));
    }
}
