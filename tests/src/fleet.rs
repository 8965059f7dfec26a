//! Simulated node agents: many sessions over real QUIC from one process, each
//! with its own slots and latency, speaking the node protocol exactly as
//! `gpubridge-agent` does (register, heartbeat, answer job streams). They all
//! share one UDP endpoint, so a thousand cost a thousand connections, not a
//! thousand processes. For measuring the scheduler at fleet scale
//! (`gpubridge-bench --scenarios fleet`) and for tests with many agents.
//!
//! An agent can be silenced: it stops heartbeating and answers nothing more,
//! holding the jobs it has, as a hung host does; the scheduler must notice and
//! move those jobs.

use anyhow::Context;
use gpubridge_node_agent::{client_endpoint, PinnedCertificate};
use gpubridge_protocol::node::{
    AgentMessage, Assignment, GpuTier, Heartbeat, JobEvent, Registration, SchedulerMessage,
    ServiceSlots,
};
use gpubridge_protocol::wire::DEFAULT_MAX_FRAME;
use gpubridge_protocol::{write_frame, FrameReader, JoinToken};
use parking_lot::Mutex;
use quinn::{Connection, RecvStream, SendStream};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The name in the scheduler's certificate; the pin is what is checked.
const SERVER_NAME: &str = "gpubridge-scheduler";
/// Agents joining at once: handshakes beyond it wait their turn.
const JOINING_AT_ONCE: usize = 64;

/// One simulated agent: what it registers and how long each job takes on it.
#[derive(Clone, Debug)]
pub struct SimAgentSpec {
    pub node_id: String,
    pub service: String,
    pub slots: u32,
    pub latency: Duration,
    pub tier: GpuTier,
}

/// An assignment as it reached an agent.
pub struct Arrival<'a> {
    /// Index of the agent in the fleet.
    pub agent: usize,
    pub assignment: &'a Assignment,
    pub at: Instant,
}

/// Called for every assignment, on the agent's task: keep it quick.
pub type OnArrival = Arc<dyn Fn(&Arrival<'_>) + Send + Sync>;

pub struct SimFleet {
    endpoint: quinn::Endpoint,
    agents: Vec<Arc<SimAgent>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    heartbeats: AtomicU64,
    completed: AtomicU64,
}

struct SimAgent {
    index: usize,
    spec: SimAgentSpec,
    connection: Connection,
    running: AtomicU32,
    silent: AtomicBool,
    silenced: Notify,
    /// When the scheduler closed this agent's connection, if it has.
    closed_at: Mutex<Option<Instant>>,
    on_arrival: OnArrival,
    counters: Arc<Counters>,
}

impl SimFleet {
    /// Connects and registers every agent (at most [`JOINING_AT_ONCE`] at a
    /// time) and returns once all are welcomed and heartbeating.
    pub async fn join(
        scheduler: SocketAddr,
        token: &str,
        specs: Vec<SimAgentSpec>,
        on_arrival: OnArrival,
    ) -> anyhow::Result<SimFleet> {
        let pin = JoinToken::parse(token).context("join token")?.fingerprint;
        let streams = specs.iter().map(|s| s.slots).max().unwrap_or(1);
        let endpoint = client_endpoint(
            scheduler,
            PinnedCertificate::new(pin),
            streams,
            Duration::from_millis(250),
        )?;
        let counters = Arc::new(Counters::default());
        let gate = Arc::new(tokio::sync::Semaphore::new(JOINING_AT_ONCE));
        let joins: Vec<_> = specs
            .into_iter()
            .enumerate()
            .map(|(index, spec)| {
                let (endpoint, gate, token) = (endpoint.clone(), gate.clone(), token.to_string());
                let (on_arrival, counters) = (on_arrival.clone(), counters.clone());
                tokio::spawn(async move {
                    let _turn = gate.acquire_owned().await?;
                    let (connection, send, reader, every) =
                        register(&endpoint, scheduler, &token, &spec).await?;
                    let agent = Arc::new(SimAgent {
                        index,
                        spec,
                        connection,
                        running: AtomicU32::new(0),
                        silent: AtomicBool::new(false),
                        silenced: Notify::new(),
                        closed_at: Mutex::new(None),
                        on_arrival,
                        counters,
                    });
                    let task = tokio::spawn(agent.clone().serve(send, reader, every));
                    anyhow::Ok((agent, task))
                })
            })
            .collect();
        let (mut agents, mut tasks) = (Vec::new(), Vec::new());
        for join in joins {
            let (agent, task) = join.await??;
            agents.push(agent);
            tasks.push(task);
        }
        Ok(SimFleet {
            endpoint,
            agents,
            tasks,
            counters,
        })
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Heartbeats sent by all agents so far.
    pub fn heartbeats(&self) -> u64 {
        self.counters.heartbeats.load(Ordering::Relaxed)
    }

    /// Jobs answered with a result by all agents so far.
    pub fn completed(&self) -> u64 {
        self.counters.completed.load(Ordering::Relaxed)
    }

    /// The agent running the most jobs right now (the first on a tie).
    pub fn busiest(&self) -> usize {
        let mut best = (0, 0);
        for agent in &self.agents {
            let running = agent.running.load(Ordering::Acquire);
            if running > best.1 {
                best = (agent.index, running);
            }
        }
        best.0
    }

    /// The agent goes silent: no more heartbeats, and the jobs it holds or gets
    /// are never answered. Returns when that began: every job whose run ends
    /// after this instant is held.
    pub fn silence(&self, agent: usize) -> Instant {
        if let Some(agent) = self.agents.get(agent) {
            agent.silent.store(true, Ordering::Release);
            agent.silenced.notify_waiters();
        }
        Instant::now()
    }

    /// When the scheduler closed `agent`'s connection, if it has, and why.
    pub fn closed(&self, agent: usize) -> Option<(Instant, String)> {
        let agent = self.agents.get(agent)?;
        let at = (*agent.closed_at.lock())?;
        let why = agent
            .connection
            .close_reason()
            .map_or_else(String::new, |reason| reason.to_string());
        Some((at, why))
    }

    /// Closes every connection and waits for the closes to be sent.
    pub async fn leave(self) {
        self.endpoint.close(0u32.into(), b"simulation over");
        for task in self.tasks {
            task.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

type Control = (Connection, SendStream, FrameReader<RecvStream>, Duration);

/// Connects, registers, and waits for the welcome; returns the control stream
/// and the heartbeat interval the scheduler asked for.
async fn register(
    endpoint: &quinn::Endpoint,
    scheduler: SocketAddr,
    token: &str,
    spec: &SimAgentSpec,
) -> anyhow::Result<Control> {
    let connection = endpoint.connect(scheduler, SERVER_NAME)?.await?;
    let (mut send, recv) = connection.open_bi().await?;
    let registration = Registration {
        node_id: spec.node_id.clone(),
        agent_version: "sim".into(),
        join_token: token.to_string(),
        gpus: Vec::new(),
        tier: spec.tier,
        services: vec![ServiceSlots {
            service: spec.service.clone(),
            slots: spec.slots,
            models: Vec::new(),
        }],
    };
    write_frame(
        &mut send,
        &AgentMessage::Register(registration),
        DEFAULT_MAX_FRAME,
    )
    .await?;
    let mut reader = FrameReader::new(recv, DEFAULT_MAX_FRAME);
    match reader.next::<SchedulerMessage>().await? {
        Some(SchedulerMessage::Welcome {
            heartbeat_interval_ms,
            ..
        }) => {
            let every = Duration::from_millis(heartbeat_interval_ms.max(10));
            Ok((connection, send, reader, every))
        }
        other => anyhow::bail!("{}: not welcomed: {other:?}", spec.node_id),
    }
}

impl SimAgent {
    /// Heartbeats and job streams until the connection ends.
    async fn serve(
        self: Arc<Self>,
        mut send: SendStream,
        mut reader: FrameReader<RecvStream>,
        every: Duration,
    ) {
        let mut beat = tokio::time::interval(every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        loop {
            tokio::select! {
                _ = beat.tick(), if !self.is_silent() => {
                    seq += 1;
                    if self.heartbeat(&mut send, seq).await.is_err() {
                        break;
                    }
                }
                // Drain requests and the like: a simulation ignores them.
                message = reader.next::<SchedulerMessage>() => if !matches!(message, Ok(Some(_))) {
                    break;
                },
                stream = self.connection.accept_bi() => match stream {
                    Ok((send, recv)) => {
                        tokio::spawn(self.clone().job(send, recv));
                    }
                    Err(_) => break,
                },
                () = self.silenced.notified() => {}
            }
        }
        self.connection.closed().await;
        *self.closed_at.lock() = Some(Instant::now());
    }

    fn is_silent(&self) -> bool {
        self.silent.load(Ordering::Acquire)
    }

    async fn heartbeat(&self, send: &mut SendStream, seq: u64) -> anyhow::Result<()> {
        if self.is_silent() {
            return Ok(());
        }
        let free = self
            .spec
            .slots
            .saturating_sub(self.running.load(Ordering::Acquire));
        let beat = AgentMessage::Heartbeat(Heartbeat {
            seq,
            free_slots: vec![ServiceSlots {
                service: self.spec.service.clone(),
                slots: free,
                models: Vec::new(),
            }],
            gpus: Vec::new(),
        });
        write_frame(send, &beat, DEFAULT_MAX_FRAME).await?;
        self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// One job: report its arrival, take the agent's latency, echo the input.
    /// A silent agent holds it unanswered until the scheduler gives up on it.
    async fn job(self: Arc<Self>, mut send: SendStream, recv: RecvStream) {
        let mut reader = FrameReader::new(recv, DEFAULT_MAX_FRAME);
        let Ok(Some(assignment)) = reader.next::<Assignment>().await else {
            return;
        };
        (self.on_arrival)(&Arrival {
            agent: self.index,
            assignment: &assignment,
            at: Instant::now(),
        });
        self.running.fetch_add(1, Ordering::AcqRel);
        tokio::time::sleep(self.spec.latency).await;
        if self.is_silent() {
            let _ = send.stopped().await;
        } else {
            let events = [
                JobEvent::OutputChunk(assignment.input_json),
                JobEvent::Completed {
                    execution_us: self.spec.latency.as_micros() as u64,
                },
            ];
            let mut delivered = true;
            for event in &events {
                delivered &= write_frame(&mut send, event, DEFAULT_MAX_FRAME)
                    .await
                    .is_ok();
            }
            if delivered && send.finish().is_ok() {
                self.counters.completed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.running.fetch_sub(1, Ordering::AcqRel);
    }
}
