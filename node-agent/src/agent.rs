//! The agent's life: connect (pinning the scheduler's certificate), register,
//! heartbeat, run assigned jobs, reconnect with backoff when the connection drops,
//! and drain on request: no new jobs, finish running ones, leave.

use crate::config::{AgentConfig, ConfigError};
use crate::runtime::{Feed, Runtime};
use crate::telemetry::Telemetry;
use crate::transport::{client_endpoint, PinnedCertificate, TransportError};
use gpubridge_protocol::media::MediaFetcher;
use gpubridge_protocol::node::{
    close, AgentMessage, Assignment, FailureKind, GpuTier, Heartbeat, JobEvent, Registration,
    SchedulerMessage, ServiceSlots,
};
use gpubridge_protocol::{write_frame, FrameReader, JoinToken, StreamError};
use quinn::{Connection, RecvStream, SendStream};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// The name in the scheduler's certificate; the pin, not the name, is checked.
const SERVER_NAME: &str = "gpubridge-scheduler";
/// Time the scheduler has to answer a registration.
const WELCOME_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the scheduler refused this agent: {0}")]
    Refused(String),
}

/// How the agent ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Drained: running jobs finished, then it left.
    Drained,
}

enum SessionEnd {
    Drained,
    Lost(String),
}

struct ServiceState {
    runtime: Runtime,
    slots: u32,
    running: AtomicU32,
    models: Vec<String>,
}

pub struct Agent {
    cfg: AgentConfig,
    token: JoinToken,
    services: HashMap<String, ServiceState>,
    telemetry: Telemetry,
    draining: AtomicBool,
    drain_requested: Notify,
    running: AtomicU32,
    job_done: Notify,
    jobs_completed: AtomicU64,
}

impl Agent {
    pub fn new(cfg: AgentConfig, telemetry: Telemetry) -> Result<Arc<Agent>, AgentError> {
        cfg.validate()?;
        let token = JoinToken::parse(&cfg.token()?)
            .map_err(|e| AgentError::Config(ConfigError::Invalid(e.to_string())))?;
        let media = MediaFetcher::new(cfg.allow_private_urls, cfg.max_media_bytes);
        let services = cfg
            .services
            .iter()
            .map(|(name, service)| {
                (
                    name.clone(),
                    ServiceState {
                        runtime: Runtime::new(name, service, cfg.max_output_bytes, media.clone()),
                        slots: service.slots,
                        running: AtomicU32::new(0),
                        models: service.models.clone(),
                    },
                )
            })
            .collect();
        Ok(Arc::new(Agent {
            cfg,
            token,
            services,
            telemetry,
            draining: AtomicBool::new(false),
            drain_requested: Notify::new(),
            running: AtomicU32::new(0),
            job_done: Notify::new(),
            jobs_completed: AtomicU64::new(0),
        }))
    }

    /// Asks the agent to drain: it takes no new jobs and leaves once running ones finish.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.drain_requested.notify_one();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn running(&self) -> u32 {
        self.running.load(Ordering::Acquire)
    }

    pub fn jobs_completed(&self) -> u64 {
        self.jobs_completed.load(Ordering::Relaxed)
    }

    /// Connects and serves until drained, reconnecting when the connection drops.
    /// A refusal (bad token, other scheduler, other protocol version) is final.
    pub async fn run(self: Arc<Self>) -> Result<Exit, AgentError> {
        let max_backoff = Duration::from_secs(self.cfg.reconnect_max_seconds.max(1));
        let mut backoff = Duration::from_millis(200);
        loop {
            let started = Instant::now();
            match self.clone().session().await {
                Ok(SessionEnd::Drained) => return Ok(Exit::Drained),
                Ok(SessionEnd::Lost(reason)) => {
                    tracing::warn!(%reason, "connection to the scheduler lost; reconnecting");
                }
                Err(SessionError::Refused(reason)) => return Err(AgentError::Refused(reason)),
                Err(SessionError::Connect(reason)) => {
                    tracing::warn!(%reason, scheduler = %self.cfg.scheduler, "cannot reach the scheduler; retrying");
                }
                Err(SessionError::Setup(e)) => return Err(e),
            }
            if self.is_draining() {
                // Without a scheduler there is nobody to report to: finish and leave.
                self.wait_idle(Duration::from_secs(self.cfg.drain_grace_seconds))
                    .await;
                return Ok(Exit::Drained);
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(200);
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.drain_requested.notified() => {}
            }
            backoff = (backoff * 2).min(max_backoff);
        }
    }

    async fn wait_idle(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.running() > 0 {
            let done = self.job_done.notified();
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                tracing::warn!(running = self.running(), "drain grace over; leaving");
                return;
            }
        }
    }

    fn registration(&self) -> Registration {
        let gpus = self.telemetry.gpus();
        Registration {
            node_id: self.cfg.node_id.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            join_token: self.token.to_string(),
            tier: self.cfg.tier.unwrap_or_else(|| GpuTier::of(&gpus)),
            gpus,
            services: self
                .services
                .iter()
                .map(|(name, s)| ServiceSlots {
                    service: name.clone(),
                    slots: s.slots,
                    models: s.models.clone(),
                })
                .collect(),
        }
    }

    fn free_slots(&self) -> Vec<ServiceSlots> {
        self.services
            .iter()
            .map(|(name, s)| ServiceSlots {
                service: name.clone(),
                slots: s.slots.saturating_sub(s.running.load(Ordering::Acquire)),
                models: Vec::new(),
            })
            .collect()
    }

    async fn connect(&self) -> Result<(quinn::Endpoint, Connection), SessionError> {
        let addr = resolve(&self.cfg.scheduler).await?;
        let verifier = PinnedCertificate::new(self.token.fingerprint);
        let slots: u32 = self.services.values().map(|s| s.slots).sum();
        let endpoint = client_endpoint(addr, verifier.clone(), slots, Duration::from_millis(250))
            .map_err(|e| SessionError::Setup(e.into()))?;
        let connecting = endpoint
            .connect(addr, SERVER_NAME)
            .map_err(|e| SessionError::Connect(e.to_string()))?;
        match connecting.await {
            Ok(connection) => Ok((endpoint, connection)),
            Err(e) => Err(match verifier.mismatch() {
                Some(why) => SessionError::Refused(why),
                None => SessionError::Connect(e.to_string()),
            }),
        }
    }

    async fn session(self: Arc<Self>) -> Result<SessionEnd, SessionError> {
        let (endpoint, connection) = self.connect().await?;
        let max_frame = self.cfg.max_frame_bytes;
        let lost = |e: &dyn std::fmt::Display| SessionError::Connect(e.to_string());
        let (mut send, recv) = connection.open_bi().await.map_err(|e| lost(&e))?;
        let register = AgentMessage::Register(self.registration());
        write_frame(&mut send, &register, max_frame)
            .await
            .map_err(|e| lost(&e))?;
        let mut reader = FrameReader::new(recv, max_frame);
        let heartbeat_every = match tokio::time::timeout(WELCOME_WITHIN, reader.next()).await {
            Ok(Ok(Some(SchedulerMessage::Welcome {
                session,
                heartbeat_interval_ms,
                ..
            }))) => {
                tracing::info!(scheduler = %self.cfg.scheduler, node = %self.cfg.node_id, session, "joined the scheduler");
                Duration::from_millis(heartbeat_interval_ms.max(10))
            }
            Ok(Ok(Some(SchedulerMessage::Refused { reason }))) => {
                return Err(SessionError::Refused(reason))
            }
            Ok(Err(StreamError::Wire(e))) => return Err(SessionError::Refused(e.to_string())),
            _ => {
                return Err(match refusal(&connection) {
                    Some(reason) => SessionError::Refused(reason),
                    None => SessionError::Connect("no welcome from the scheduler".into()),
                })
            }
        };
        let end = self
            .serve(&connection, &mut send, &mut reader, heartbeat_every)
            .await;
        if let SessionEnd::Drained = end {
            connection.close(close::DRAINED.into(), b"drained");
            // Let the close reach the scheduler before the process goes.
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
        Ok(end)
    }

    /// The connected life: heartbeats out, drain notices in, job streams accepted.
    async fn serve(
        self: &Arc<Self>,
        connection: &Connection,
        send: &mut SendStream,
        reader: &mut FrameReader<RecvStream>,
        heartbeat_every: Duration,
    ) -> SessionEnd {
        let max_frame = self.cfg.max_frame_bytes;
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        let mut told_draining = false;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        loop {
            if self.is_draining() && !told_draining {
                if write_frame(send, &AgentMessage::Draining, max_frame)
                    .await
                    .is_err()
                {
                    return SessionEnd::Lost("control stream lost".into());
                }
                told_draining = true;
                drain_deadline = Some(
                    tokio::time::Instant::now() + Duration::from_secs(self.cfg.drain_grace_seconds),
                );
                tracing::info!(running = self.running(), "draining: finishing running jobs");
            }
            if told_draining && self.running() == 0 {
                tracing::info!("drained");
                return SessionEnd::Drained;
            }
            let grace_over = async {
                match drain_deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = heartbeat.tick() => {
                    seq += 1;
                    let beat = AgentMessage::Heartbeat(Heartbeat {
                        seq,
                        free_slots: self.free_slots(),
                        gpus: self.telemetry.sample(),
                    });
                    if let Err(e) = write_frame(send, &beat, max_frame).await {
                        return SessionEnd::Lost(close_reason(connection, &e));
                    }
                }
                message = reader.next::<SchedulerMessage>() => match message {
                    Ok(Some(SchedulerMessage::Drain)) => {
                        tracing::info!("the scheduler asked this agent to drain");
                        self.draining.store(true, Ordering::Release);
                    }
                    Ok(Some(other)) => {
                        tracing::warn!(message = ?other, "unexpected control message; ignored");
                    }
                    Ok(None) => return SessionEnd::Lost(close_reason(connection, &"control stream closed")),
                    Err(e) => return SessionEnd::Lost(close_reason(connection, &e)),
                },
                stream = connection.accept_bi() => match stream {
                    Ok((send, recv)) => {
                        let agent = self.clone();
                        tokio::spawn(async move { agent.job(send, recv).await });
                    }
                    Err(e) => return SessionEnd::Lost(close_reason(connection, &e)),
                },
                () = self.drain_requested.notified() => {}
                () = self.job_done.notified() => {}
                () = grace_over => {
                    tracing::warn!(running = self.running(), "drain grace over; leaving with jobs running");
                    return SessionEnd::Drained;
                }
            }
        }
    }

    /// One job stream: read the assignment, run it, stream the result back.
    async fn job(self: Arc<Self>, mut send: SendStream, recv: RecvStream) {
        let max_frame = self.cfg.max_frame_bytes;
        let mut reader = FrameReader::new(recv, max_frame);
        let assignment: Assignment = match tokio::time::timeout(WELCOME_WITHIN, reader.next()).await
        {
            Ok(Ok(Some(assignment))) => assignment,
            other => {
                tracing::warn!(outcome = ?other.map(|r| r.map(|_: Option<Assignment>| ())), "bad job stream");
                let _ = send.reset(close::PROTOCOL.into());
                return;
            }
        };
        self.running.fetch_add(1, Ordering::AcqRel);
        let started = Instant::now();
        let outcome = self.execute(&assignment, &mut send).await;
        let events: Vec<JobEvent> = match outcome {
            Outcome::Cancelled => Vec::new(),
            Outcome::Failed(kind, message) => {
                tracing::warn!(job_id = %assignment.job_id, service = %assignment.service, ?kind, %message, "job failed");
                vec![JobEvent::Failed { kind, message }]
            }
            Outcome::Done(output) => {
                let mut events = chunks(&output, max_frame);
                events.push(JobEvent::Completed {
                    execution_us: started.elapsed().as_micros() as u64,
                });
                self.jobs_completed.fetch_add(1, Ordering::Relaxed);
                events
            }
        };
        for event in &events {
            if write_frame(&mut send, event, max_frame).await.is_err() {
                break;
            }
        }
        let _ = send.finish();
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.job_done.notify_one();
        }
    }

    async fn execute(&self, assignment: &Assignment, send: &mut SendStream) -> Outcome {
        let Some(service) = self.services.get(&assignment.service) else {
            return Outcome::Failed(
                FailureKind::Unavailable,
                format!("{} is not served by this agent", assignment.service),
            );
        };
        if self.is_draining() {
            return Outcome::Failed(FailureKind::Unavailable, "agent is draining".into());
        }
        let taken = service
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                (r < service.slots).then_some(r + 1)
            });
        if taken.is_err() {
            return Outcome::Failed(FailureKind::Unavailable, "no free slot".into());
        }
        let outcome = self.run_runtime(service, assignment, send).await;
        service.running.fetch_sub(1, Ordering::AcqRel);
        outcome
    }

    async fn run_runtime(
        &self,
        service: &ServiceState,
        assignment: &Assignment,
        send: &mut SendStream,
    ) -> Outcome {
        let input = match serde_json::from_str(&assignment.input_json) {
            Ok(input) => input,
            Err(e) => return Outcome::Failed(FailureKind::Rejected, format!("input: {e}")),
        };
        let now = unix_ms();
        let mut budget = Duration::from_millis(assignment.deadline_unix_ms.saturating_sub(now));
        if let Some(limit) = self
            .cfg
            .services
            .get(&assignment.service)
            .and_then(|s| s.timeout_seconds)
            .filter(|s| s.is_finite() && *s > 0.0)
        {
            budget = budget.min(Duration::from_secs_f64(limit));
        }
        let (tx, mut rx) = mpsc::channel::<JobEvent>(16);
        let feed = Feed {
            events: &tx,
            stream: assignment.stream,
        };
        let work = tokio::time::timeout(
            budget,
            service
                .runtime
                .run(assignment.model.as_deref(), input, Some(feed)),
        );
        tokio::pin!(work);
        let max_frame = self.cfg.max_frame_bytes;
        let result = loop {
            let step = tokio::select! {
                result = &mut work => Step::Done(result),
                Some(event) = rx.recv() => Step::Event(event),
                // The scheduler gave up on the job (deadline, failover, its
                // client left): stop working on it.
                _ = send.stopped() => Step::Stopped,
            };
            match step {
                Step::Done(result) => break result,
                Step::Event(event) => {
                    if write_frame(send, &event, max_frame).await.is_err() {
                        return cancelled(assignment);
                    }
                }
                Step::Stopped => return cancelled(assignment),
            }
        };
        // Pieces made just before the end still go first.
        while let Ok(event) = rx.try_recv() {
            if write_frame(send, &event, max_frame).await.is_err() {
                return cancelled(assignment);
            }
        }
        match result {
            Ok(Ok(output)) => match serde_json::to_string(&output) {
                Ok(text) => Outcome::Done(text),
                Err(e) => Outcome::Failed(FailureKind::Runtime, e.to_string()),
            },
            Ok(Err(failure)) => Outcome::Failed(failure.kind, failure.message),
            Err(_) => Outcome::Failed(FailureKind::Timeout, format!("no result within {budget:?}")),
        }
    }
}

/// One turn of a running job: it ended, said something, or was called off.
enum Step<T> {
    Done(T),
    Event(JobEvent),
    Stopped,
}

fn cancelled(assignment: &Assignment) -> Outcome {
    tracing::info!(job_id = %assignment.job_id, "job cancelled by the scheduler");
    Outcome::Cancelled
}

enum Outcome {
    Done(String),
    Failed(FailureKind, String),
    Cancelled,
}

enum SessionError {
    Refused(String),
    Connect(String),
    Setup(AgentError),
}

/// The output as chunk events, each under the frame limit, split on char boundaries.
fn chunks(output: &str, max_frame: usize) -> Vec<JobEvent> {
    // Room for the frame header and the enum and length prefixes.
    let size = max_frame.saturating_sub(64).max(1);
    let mut events = Vec::with_capacity(output.len() / size + 1);
    let mut rest = output;
    while !rest.is_empty() {
        let mut cut = size.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        events.push(JobEvent::OutputChunk(head.to_string()));
        rest = tail;
    }
    events
}

/// The scheduler's words if it closed the connection on purpose.
fn refusal(connection: &Connection) -> Option<String> {
    match connection.close_reason()? {
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == close::REFUSED.into()
                || close.error_code == close::PROTOCOL.into() =>
        {
            Some(String::from_utf8_lossy(&close.reason).into_owned())
        }
        _ => None,
    }
}

fn close_reason(connection: &Connection, fallback: &dyn std::fmt::Display) -> String {
    match connection.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(close)) => {
            format!(
                "scheduler closed the connection: {}",
                String::from_utf8_lossy(&close.reason)
            )
        }
        Some(other) => other.to_string(),
        None => fallback.to_string(),
    }
}

async fn resolve(address: &str) -> Result<SocketAddr, SessionError> {
    tokio::net::lookup_host(address)
        .await
        .map_err(|e| SessionError::Connect(format!("resolving {address}: {e}")))?
        .next()
        .ok_or_else(|| SessionError::Connect(format!("{address} has no address")))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_split_under_the_frame_limit_on_char_boundaries() {
        let output = "é".repeat(5000);
        let events = chunks(&output, 1024);
        assert!(events.len() > 5);
        let mut joined = String::new();
        for event in events {
            let JobEvent::OutputChunk(chunk) = event else {
                panic!("only chunks")
            };
            assert!(
                gpubridge_protocol::wire::encode(&JobEvent::OutputChunk(chunk.clone()), 1024)
                    .is_ok()
            );
            joined.push_str(&chunk);
        }
        assert_eq!(joined, output);
        assert!(chunks("", 1024).is_empty());
    }
}
