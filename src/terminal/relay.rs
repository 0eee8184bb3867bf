//! Relays a browser's terminal socket to the agent's, frame for frame.
//!
//! sam does not interpret terminal frames: the agent validates them, and relaying bytes
//! unchanged keeps the relay cheap. Each direction is its own task so that a slow browser
//! never delays keystrokes on their way to the shell.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as AgentMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as AgentCloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

use crate::workspaces::Activity;
use crate::workspaces::agent::AgentClient;

/// How often sam pings the browser: well under the idle timeouts of common proxies (60 s).
const KEEPALIVE: Duration = Duration::from_secs(20);

/// Traffic is recorded at most this often per direction: idle stops are measured in
/// minutes, and a flood of output should not take a lock per frame.
const ACTIVITY_EVERY: Duration = Duration::from_secs(1);

/// Records a workspace's terminal traffic, at most once per [`ACTIVITY_EVERY`].
struct Traffic {
    activity: Arc<Activity>,
    workspace: Uuid,
    recorded: Instant,
}

impl Traffic {
    fn new(activity: Arc<Activity>, workspace: Uuid) -> Self {
        activity.touch(workspace);
        Self {
            activity,
            workspace,
            recorded: Instant::now(),
        }
    }

    fn seen(&mut self) {
        if self.recorded.elapsed() >= ACTIVITY_EVERY {
            self.activity.touch(self.workspace);
            self.recorded = Instant::now();
        }
    }
}

/// Connects to the agent's session and copies frames both ways until either side closes;
/// frames in either direction count as activity on the workspace.
pub async fn run(
    browser: WebSocket,
    agent: AgentClient,
    activity: Arc<Activity>,
    workspace: Uuid,
    session: String,
) {
    let (mut browser_tx, mut browser_rx) = browser.split();
    let agent_socket = match agent.open_terminal(workspace, &session).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), %workspace, "the workspace agent refused a terminal");
            let close = CloseFrame {
                code: 1011,
                reason: "the workspace host is unavailable".into(),
            };
            let _ = browser_tx.send(Message::Close(Some(close))).await;
            return;
        }
    };
    let (mut agent_tx, mut agent_rx) = agent_socket.split();
    let _open = crate::server::metrics::OpenTerminal::count();

    let mut typed = Traffic::new(activity.clone(), workspace);
    let mut shown = Traffic::new(activity, workspace);
    let upstream = async {
        while let Some(Ok(message)) = browser_rx.next().await {
            let forwarded = match message {
                Message::Binary(bytes) => {
                    typed.seen();
                    AgentMessage::Binary(bytes)
                }
                Message::Text(text) => AgentMessage::Text(text.as_str().into()),
                Message::Close(frame) => {
                    let frame = frame.map(|f| AgentCloseFrame {
                        code: CloseCode::from(f.code),
                        reason: f.reason.as_str().into(),
                    });
                    let _ = agent_tx.send(AgentMessage::Close(frame)).await;
                    break;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if agent_tx.send(forwarded).await.is_err() {
                break;
            }
        }
        let _ = agent_tx.close().await;
    };
    let downstream = async {
        // Pings keep quiet terminals open through proxies that cut idle connections.
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            let forwarded = tokio::select! {
                message = agent_rx.next() => match message {
                    Some(Ok(AgentMessage::Binary(bytes))) => {
                        shown.seen();
                        Message::Binary(bytes)
                    }
                    Some(Ok(AgentMessage::Close(frame))) => {
                        let frame = frame.map(|f| CloseFrame { code: f.code.into(), reason: f.reason.as_str().into() });
                        let _ = browser_tx.send(Message::Close(frame)).await;
                        break;
                    }
                    // The agent speaks binary only; its pings are answered by tungstenite.
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => break,
                },
                _ = keepalive.tick() => Message::Ping(Default::default()),
            };
            if browser_tx.send(forwarded).await.is_err() {
                break;
            }
        }
        let _ = browser_tx.close().await;
    };
    // When either direction ends, the other has nothing left to do.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
    tracing::debug!(%workspace, %session, "terminal relay closed");
}
