//! The QUIC listener agents connect to: TLS 1.3 with the scheduler's own
//! certificate, then one control stream per connection that must open with a
//! registration carrying a valid join token. Heartbeats keep the session; silence
//! past `dead_after_ms` ends it, and its running jobs move elsewhere.

use super::config::NodesConfig;
use super::identity::Identity;
use super::session::Session;
use super::NodePool;
use crate::job::now_ms;
use gpubridge_protocol::node::{close, AgentMessage, Registration, SchedulerMessage, ALPN};
use gpubridge_protocol::{write_frame, FrameReader, JoinToken, StreamError};
use quinn::{Connection, RecvStream, SendStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Most services one agent may register, and slots per service.
const MAX_SERVICES: usize = 256;
const MAX_SLOTS: u32 = 4096;
/// Time an agent has to open its control stream and register.
const REGISTER_WITHIN: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("binding UDP {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Binds the agents' QUIC endpoint.
pub fn endpoint(identity: &Identity, pool: &NodePool) -> Result<quinn::Endpoint, EndpointError> {
    let cfg = &pool.cfg;
    quinn::Endpoint::server(server_config(identity, cfg)?, cfg.addr).map_err(|source| {
        EndpointError::Bind {
            addr: cfg.addr,
            source,
        }
    })
}

/// TLS 1.3 with the scheduler's certificate, the node ALPN, and transport limits.
pub(crate) fn server_config(
    identity: &Identity,
    cfg: &NodesConfig,
) -> Result<quinn::ServerConfig, EndpointError> {
    let tls = |e: &dyn std::fmt::Display| EndpointError::Tls(e.to_string());
    let cert = rustls::pki_types::CertificateDer::from(identity.cert_der.clone());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(identity.key_der().to_vec().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| tls(&e))?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).map_err(|e| tls(&e))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // QUIC's own idle timeout backs up the heartbeat watchdog.
    let idle = Duration::from_millis(cfg.dead_after_ms.saturating_mul(3).max(1000));
    transport.max_idle_timeout(idle.try_into().ok());
    transport.keep_alive_interval(Some(Duration::from_millis(
        cfg.heartbeat_interval_ms.max(50),
    )));
    // Agents open only their control stream.
    transport.max_concurrent_bidi_streams(4u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// Accepts agents until the endpoint closes.
pub async fn serve(pool: Arc<NodePool>, identity: Arc<Identity>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let (pool, identity) = (pool.clone(), identity.clone());
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(connection) => handle(pool, identity, connection).await,
                Err(e) => tracing::debug!(%remote, error = %e, "agent handshake failed"),
            }
        });
    }
}

async fn handle(pool: Arc<NodePool>, identity: Arc<Identity>, connection: Connection) {
    let remote = connection.remote_address();
    let Ok(Ok((mut send, recv))) =
        tokio::time::timeout(REGISTER_WITHIN, connection.accept_bi()).await
    else {
        connection.close(close::REFUSED.into(), b"no control stream opened");
        return;
    };
    let mut reader = FrameReader::new(recv, pool.cfg.max_frame_bytes);
    let registration = match tokio::time::timeout(REGISTER_WITHIN, reader.next()).await {
        Ok(Ok(Some(AgentMessage::Register(registration)))) => registration,
        Ok(Ok(Some(_))) => {
            return refuse(
                &connection,
                &mut send,
                "the first message must be a registration",
            )
            .await
        }
        Ok(Ok(None)) | Err(_) => {
            return refuse(&connection, &mut send, "no registration received").await
        }
        Ok(Err(e)) => return refuse(&connection, &mut send, &e.to_string()).await,
    };
    if let Err(reason) = check(&pool, &identity, &registration) {
        tracing::warn!(%remote, node = %registration.node_id, %reason, "agent refused");
        return refuse(&connection, &mut send, &reason).await;
    }
    let session = Arc::new(Session::new(
        pool.next_session_id(),
        &registration,
        remote,
        connection.clone(),
        now_ms(),
    ));
    let welcome = SchedulerMessage::Welcome {
        session: session.id,
        heartbeat_interval_ms: pool.cfg.heartbeat_interval_ms,
        dead_after_ms: pool.cfg.dead_after_ms,
    };
    if write_frame(&mut send, &welcome, pool.cfg.max_frame_bytes)
        .await
        .is_err()
    {
        return;
    }
    if let Some(old) = pool.admit(session.clone()) {
        old.connection.close(
            close::REPLACED.into(),
            b"replaced by a new session of this node",
        );
    }
    tracing::info!(
        node = %session.node_id, %remote, session = session.id, tier = session.tier.name(),
        services = ?session.services.keys().collect::<Vec<_>>(), version = %session.agent_version,
        "agent joined"
    );
    let why = control_loop(&pool, &session, &mut send, &mut reader).await;
    pool.remove(&session);
    tracing::info!(node = %session.node_id, session = session.id, reason = %why.1, "agent left");
    session.connection.close(why.0.into(), why.1.as_bytes());
}

/// Reads heartbeats and drain notices until the session ends; returns the close
/// code and reason.
async fn control_loop(
    pool: &NodePool,
    session: &Session,
    send: &mut SendStream,
    reader: &mut FrameReader<RecvStream>,
) -> (u32, String) {
    let dead_after = pool.cfg.dead_after_ms;
    let check_every = Duration::from_millis((dead_after / 4).max(10));
    let max_frame = pool.cfg.max_frame_bytes;
    loop {
        tokio::select! {
            message = reader.next::<AgentMessage>() => match message {
                Ok(Some(AgentMessage::Heartbeat(heartbeat))) => {
                    session.last_heartbeat_ms.store(now_ms(), Ordering::Release);
                    *session.telemetry.lock() = heartbeat.gpus;
                }
                Ok(Some(AgentMessage::Draining)) => {
                    session.draining.store(true, Ordering::Release);
                    pool.refresh(session);
                    tracing::info!(node = %session.node_id, "agent draining");
                }
                Ok(Some(AgentMessage::Register(_))) => {
                    return (close::PROTOCOL, "registered twice on one connection".into());
                }
                Ok(None) => return (close::DRAINED, "agent closed its control stream".into()),
                Err(StreamError::Wire(e)) => return (close::PROTOCOL, format!("bad control frame: {e}")),
                Err(e) => return (close::DEAD, format!("control stream lost: {e}")),
            },
            () = session.drain_requested.notified() => {
                if write_frame(send, &SchedulerMessage::Drain, max_frame).await.is_err() {
                    return (close::DEAD, "control stream lost".into());
                }
            }
            () = tokio::time::sleep(check_every) => {
                let silent = now_ms().saturating_sub(session.last_heartbeat_ms.load(Ordering::Acquire));
                if silent > dead_after {
                    tracing::warn!(node = %session.node_id, silent_ms = silent, "agent missed its heartbeats");
                    return (close::DEAD, format!("no heartbeat for {silent} ms"));
                }
            }
        }
    }
}

fn check(pool: &NodePool, identity: &Identity, r: &Registration) -> Result<(), String> {
    let token = JoinToken::parse(&r.join_token).map_err(|e| e.to_string())?;
    identity.verify(&token).map_err(|e| e.to_string())?;
    let id_ok = !r.node_id.is_empty()
        && r.node_id.len() <= 128
        && r.node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !id_ok {
        return Err(format!(
            "node id {:?} must be 1-128 letters, digits, '-', '_' or '.'",
            r.node_id
        ));
    }
    if r.services.is_empty() || r.services.len() > MAX_SERVICES {
        return Err(format!("an agent serves 1 to {MAX_SERVICES} services"));
    }
    for service in &r.services {
        if !pool.knows(&service.service) {
            return Err(format!(
                "unknown service {:?}: agents serve services of the catalog",
                service.service
            ));
        }
        if service.slots == 0 || service.slots > MAX_SLOTS {
            return Err(format!(
                "service {}: slots must be 1 to {MAX_SLOTS}",
                service.service
            ));
        }
    }
    Ok(())
}

/// Tells the agent why, on its control stream and in the close reason, then closes.
async fn refuse(connection: &Connection, send: &mut SendStream, reason: &str) {
    let message = SchedulerMessage::Refused {
        reason: reason.to_string(),
    };
    if write_frame(send, &message, 64 * 1024).await.is_ok() {
        let _ = send.finish();
        // Give the frame a moment to arrive before the close discards it.
        let _ = tokio::time::timeout(Duration::from_millis(500), connection.closed()).await;
    }
    // Close reasons must fit a packet.
    let reason: String = reason.chars().take(512).collect();
    connection.close(close::REFUSED.into(), reason.as_bytes());
}
