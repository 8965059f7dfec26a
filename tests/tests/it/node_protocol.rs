//! The node protocol from the wire up: a hand-driven QUIC peer against the real
//! daemon sends garbage, an oversized frame and another protocol version, and
//! plays an agent that takes a job and never answers or goes silent. Each is
//! refused or cut off with a clear reason; the daemon keeps serving.

use gpubridge_node_agent::{client_endpoint, PinnedCertificate};
use gpubridge_protocol::node::{
    AgentMessage, Assignment, GpuTier, Heartbeat, Registration, SchedulerMessage, ServiceSlots,
};
use gpubridge_protocol::wire::{encode, DEFAULT_MAX_FRAME};
use gpubridge_protocol::{write_frame, FrameReader, JoinToken};
use gpubridge_tests::{submit, wait_terminal, Daemon, DaemonOptions, JsonClient};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A daemon whose `echo` runs only on agents and gives up on a job after 2 s.
fn daemon(dir: &Path) -> Daemon {
    let mut catalog: Value =
        serde_json::from_str(include_str!("../../../scheduler/catalog.json")).unwrap();
    for service in catalog["services"].as_array_mut().unwrap() {
        if service["key"] == "echo" {
            service["max_seconds"] = json!(2);
        }
    }
    let catalog_path = dir.join("catalog.json");
    std::fs::write(&catalog_path, catalog.to_string()).unwrap();
    let config = format!(
        "[scheduler]\nbuiltin_echo = false\ncatalog_path = {:?}\n",
        catalog_path.display().to_string()
    );
    let mut options = DaemonOptions::new(dir.join("data"));
    options.config = Some(&config);
    Daemon::start(options)
}

async fn connect(daemon: &Daemon) -> (quinn::Endpoint, quinn::Connection, JoinToken) {
    let token = JoinToken::parse(&daemon.join_token()).unwrap();
    let addr: SocketAddr = daemon.nodes_addr.clone().unwrap().parse().unwrap();
    let endpoint = client_endpoint(
        addr,
        PinnedCertificate::new(token.fingerprint),
        64,
        Duration::from_millis(250),
    )
    .unwrap();
    let connection = endpoint
        .connect(addr, "gpubridge-scheduler")
        .unwrap()
        .await
        .unwrap();
    (endpoint, connection, token)
}

/// The scheduler's close reason, once it closes the connection.
async fn close_reason(connection: &quinn::Connection) -> String {
    let error = tokio::time::timeout(Duration::from_secs(10), connection.closed())
        .await
        .expect("the scheduler closes the connection");
    match error {
        quinn::ConnectionError::ApplicationClosed(close) => {
            String::from_utf8_lossy(&close.reason).into_owned()
        }
        other => panic!("closed without a reason: {other}"),
    }
}

async fn send_raw(connection: &quinn::Connection, bytes: &[u8]) {
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    // Keep the stream's halves alive until the scheduler answers.
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn registration(token: &JoinToken, node_id: &str) -> Registration {
    Registration {
        node_id: node_id.into(),
        agent_version: "test".into(),
        join_token: token.to_string(),
        gpus: vec![],
        tier: GpuTier::Other,
        services: vec![ServiceSlots {
            service: "echo".into(),
            slots: 4,
            models: vec![],
        }],
    }
}

async fn assert_healthy(daemon: &Daemon) {
    let health = JsonClient::new().get(&daemon.url("/health")).await.unwrap();
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn garbage_oversized_and_foreign_version_frames_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());

    let (_e, connection, _) = connect(&daemon).await;
    let [v0, v1] = gpubridge_protocol::PROTOCOL_VERSION.to_be_bytes();
    let mut garbage = vec![0, 0, 0, 40, v0, v1];
    garbage.extend((0..40u8).map(|i| i.wrapping_mul(97).wrapping_add(13)));
    send_raw(&connection, &garbage).await;
    let reason = close_reason(&connection).await;
    assert!(
        reason.contains("does not decode") || reason.contains("registration"),
        "{reason}"
    );

    let (_e, connection, _) = connect(&daemon).await;
    send_raw(&connection, &[0x7f, 0xff, 0xff, 0xff, v0, v1]).await;
    let reason = close_reason(&connection).await;
    assert!(reason.contains("over the"), "{reason}");

    let (_e, connection, token) = connect(&daemon).await;
    let mut frame = encode(
        &AgentMessage::Register(registration(&token, "old-agent")),
        DEFAULT_MAX_FRAME,
    )
    .unwrap();
    frame[4..6].copy_from_slice(&99u16.to_be_bytes());
    send_raw(&connection, &frame).await;
    let reason = close_reason(&connection).await;
    assert!(reason.contains("version 99"), "{reason}");

    // A heartbeat before any registration is refused too.
    let (_e, connection, _) = connect(&daemon).await;
    let beat = AgentMessage::Heartbeat(Heartbeat {
        seq: 1,
        free_slots: vec![],
        gpus: vec![],
    });
    send_raw(&connection, &encode(&beat, DEFAULT_MAX_FRAME).unwrap()).await;
    assert!(close_reason(&connection).await.contains("registration"));

    // An unknown service is named in the refusal.
    let (_e, connection, token) = connect(&daemon).await;
    let mut bogus = registration(&token, "bogus");
    bogus.services[0].service = "teleport".into();
    send_raw(
        &connection,
        &encode(&AgentMessage::Register(bogus), DEFAULT_MAX_FRAME).unwrap(),
    )
    .await;
    assert!(close_reason(&connection).await.contains("teleport"));

    assert_healthy(&daemon).await;
}

#[tokio::test]
async fn an_agent_that_never_answers_meets_the_deadline_and_a_silent_one_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path());
    let (_endpoint, connection, token) = connect(&daemon).await;
    let (mut control, recv) = connection.open_bi().await.unwrap();
    write_frame(
        &mut control,
        &AgentMessage::Register(registration(&token, "mute")),
        DEFAULT_MAX_FRAME,
    )
    .await
    .unwrap();
    let mut replies = FrameReader::new(recv, DEFAULT_MAX_FRAME);
    let welcome: SchedulerMessage = replies.next().await.unwrap().unwrap();
    assert!(
        matches!(welcome, SchedulerMessage::Welcome { .. }),
        "{welcome:?}"
    );

    // Heartbeats keep it alive while it holds a job without answering.
    let beating = tokio::spawn(async move {
        for seq in 0..12u64 {
            let beat = AgentMessage::Heartbeat(Heartbeat {
                seq,
                free_slots: vec![],
                gpus: vec![],
            });
            if write_frame(&mut control, &beat, DEFAULT_MAX_FRAME)
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        control
    });
    let client = JsonClient::new();
    let reply = submit(&client, &daemon.base, "echo", json!({"x": 1}))
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.body["job_id"].as_str().unwrap().to_string();
    let (job_send, job_recv) = connection.accept_bi().await.unwrap();
    let mut job_reader = FrameReader::new(job_recv, DEFAULT_MAX_FRAME);
    let assignment: Assignment = job_reader.next().await.unwrap().unwrap();
    assert_eq!(assignment.job_id, id);
    assert_eq!(assignment.service, "echo");
    // Never answer: the scheduler gives up at the deadline and tells us to stop.
    let done = wait_terminal(&client, &daemon.base, &id, 20).await.unwrap();
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("timed out") || error.contains("deadline"),
        "{error}"
    );
    let stopped = tokio::time::timeout(Duration::from_secs(5), job_send.stopped()).await;
    assert!(stopped.is_ok(), "the job stream is stopped on cancel");

    // Then it goes silent: no heartbeats, and the scheduler drops it.
    let _control = beating.await.unwrap();
    let reason = close_reason(&connection).await;
    assert!(reason.contains("no heartbeat"), "{reason}");
    assert_healthy(&daemon).await;
}

/// The agent's side of a version mismatch: a scheduler that answers in another
/// protocol version is refused with a message naming both versions.
#[tokio::test]
async fn an_agent_refuses_a_scheduler_of_another_protocol_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // `token create` makes the scheduler identity this fake scheduler then uses.
    let token = gpubridge_tests::create_token(&data);
    let cert = std::fs::read(data.join("node/cert.der")).unwrap();
    let key = std::fs::read(data.join("node/key.der")).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.into()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
    )
    .unwrap();
    tls.alpn_protocols = vec![gpubridge_protocol::node::ALPN.to_vec()];
    let server = quinn::ServerConfig::with_crypto(std::sync::Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap(),
    ));
    let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap().to_string();
    let mut agent = gpubridge_tests::AgentProcess::start(
        dir.path(),
        "future-agent",
        &addr,
        &token,
        &gpubridge_tests::echo_service(1, 0),
    );
    let connection = endpoint.accept().await.unwrap().await.unwrap();
    let (mut send, recv) = connection.accept_bi().await.unwrap();
    let mut reader = FrameReader::new(recv, DEFAULT_MAX_FRAME);
    let register: AgentMessage = reader.next().await.unwrap().unwrap();
    assert!(matches!(register, AgentMessage::Register(_)));
    let mut welcome = encode(
        &SchedulerMessage::Welcome {
            session: 1,
            heartbeat_interval_ms: 250,
            dead_after_ms: 1000,
        },
        DEFAULT_MAX_FRAME,
    )
    .unwrap();
    welcome[4..6].copy_from_slice(&99u16.to_be_bytes());
    send.write_all(&welcome).await.unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let status = agent.process.wait_exit(Duration::from_secs(20));
        (status, agent.process.log_text())
    })
    .await
    .unwrap();
    assert!(status.0.is_some_and(|s| !s.success()), "{status:?}");
    assert!(status.1.contains("version 99"), "{}", status.1);
}
