//! A terminal client speaking the wire like the browser does, with checks built in:
//! every output frame must start exactly where the previous one ended.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sam_protocol::Frame;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Agent, WAIT};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the agent sent, beyond output (which `Term` collects itself).
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Output,
    Exit(i32),
    Closed(u16, String),
    Frame(Frame),
}

pub struct Term {
    pub socket: Socket,
    /// Every output byte received on this socket, in order.
    pub received: Vec<u8>,
    /// The offset the next output frame must start at.
    pub next_offset: u64,
    /// Whether to acknowledge output as soon as it arrives.
    pub auto_ack: bool,
    pub exit: Option<i32>,
}

/// Opens the terminal socket for `workspace`/`name` with a valid token.
pub async fn connect(
    agent: &Agent,
    workspace: &str,
    name: &str,
) -> Result<Socket, tungstenite::Error> {
    connect_with_token(agent, workspace, name, Some(&agent.token(workspace))).await
}

/// Opens the terminal socket with `token` (or none).
pub async fn connect_with_token(
    agent: &Agent,
    workspace: &str,
    name: &str,
    token: Option<&str>,
) -> Result<Socket, tungstenite::Error> {
    let url = format!(
        "ws://{}/workspaces/{workspace}/sessions/{name}",
        agent.address
    );
    let mut request = url.into_client_request()?;
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect in time")?;
    Ok(socket)
}

/// The HTTP status a refused socket got.
pub async fn refused_status(
    agent: &Agent,
    workspace: &str,
    name: &str,
    token: Option<&str>,
) -> u16 {
    match connect_with_token(agent, workspace, name, token).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("socket was accepted"),
    }
}

impl Term {
    /// Attaches with `hello{offset}` at 120x40 and returns the `ready` answer.
    pub async fn open(agent: &Agent, workspace: &str, name: &str, offset: u64) -> (Term, u64, u64) {
        let socket = connect(agent, workspace, name).await.expect("socket opens");
        let mut term = Term {
            socket,
            received: Vec::new(),
            next_offset: 0,
            auto_ack: true,
            exit: None,
        };
        term.send(Frame::Hello {
            offset,
            cols: 120,
            rows: 40,
        })
        .await;
        match term.next_event(WAIT).await {
            Some(Event::Frame(Frame::Ready { offset, lost })) => {
                term.next_offset = offset;
                (term, offset, lost)
            }
            other => panic!("expected ready, got {other:?}"),
        }
    }

    pub async fn send(&mut self, frame: Frame) {
        self.send_raw(Message::Binary(frame.encode().into())).await;
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("send to agent");
    }

    /// Types `line` and Enter.
    pub async fn type_line(&mut self, line: &str) {
        self.send(Frame::Input(Bytes::from(format!("{line}\r"))))
            .await;
    }

    /// The next event within `limit`, or `None` when nothing came in time.
    pub async fn next_event(&mut self, limit: Duration) -> Option<Event> {
        let deadline = Instant::now() + limit;
        loop {
            let message = match timeout_at(deadline, self.socket.next()).await {
                Err(_) => return None,
                Ok(None) => return Some(Event::Closed(1006, "no close frame".into())),
                Ok(Some(Err(error))) => return Some(Event::Closed(1006, error.to_string())),
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Binary(bytes) => return Some(self.on_frame(&bytes).await),
                Message::Close(frame) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Some(Event::Closed(code, reason));
                }
                Message::Text(text) => panic!("agent sent text: {text}"),
                _ => {}
            }
        }
    }

    async fn on_frame(&mut self, bytes: &[u8]) -> Event {
        match Frame::decode(bytes).expect("agent sends valid frames") {
            Frame::Output { offset, data } => {
                assert_eq!(
                    offset, self.next_offset,
                    "output must continue exactly where it left off"
                );
                self.next_offset += data.len() as u64;
                self.received.extend_from_slice(&data);
                if self.auto_ack {
                    self.send(Frame::Ack(self.next_offset)).await;
                }
                Event::Output
            }
            Frame::Exit(status) => {
                self.exit = Some(status);
                Event::Exit(status)
            }
            other => Event::Frame(other),
        }
    }

    /// Reads until the output since byte `from` of `received` contains `needle`.
    pub async fn wait_for_from(&mut self, from: usize, needle: &[u8], limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        // Only new bytes (and a needle's length before them) are searched each time,
        // so waiting through megabytes of output stays linear.
        let mut searched = from;
        loop {
            let start = searched.min(self.received.len());
            if let Some(at) = find(&self.received[start..], needle) {
                return start + at;
            }
            searched = self
                .received
                .len()
                .saturating_sub(needle.len() - 1)
                .max(from);
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Some(Event::Output | Event::Frame(_)) => {}
                other => panic!(
                    "waiting for {:?}, got {other:?}; output tail: {:?}",
                    String::from_utf8_lossy(needle),
                    self.tail()
                ),
            }
        }
    }

    /// Reads until the output contains `needle` anywhere.
    pub async fn wait_for(&mut self, needle: &[u8]) -> usize {
        self.wait_for_from(0, needle, WAIT).await
    }

    /// Runs `command` in the shell and returns what it printed (trimmed). The result
    /// is framed by control bytes that the echo of the typed line never contains.
    pub async fn run(&mut self, command: &str) -> String {
        let from = self.received.len();
        self.type_line(&format!("printf '\\036%s\\037\\n' \"$({command})\""))
            .await;
        let start = self.wait_for_from(from, b"\x1e", WAIT).await + 1;
        let end = self.wait_for_from(start, b"\x1f", WAIT).await;
        String::from_utf8_lossy(&self.received[start..end])
            .trim()
            .to_owned()
    }

    /// Reads until the socket closes and returns the close code and reason.
    pub async fn wait_closed(&mut self) -> (u16, String) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Some(Event::Closed(code, reason)) => return (code, reason),
                Some(_) => {}
                None => panic!("socket did not close; output tail: {:?}", self.tail()),
            }
        }
    }

    pub fn tail(&self) -> String {
        let tail = &self.received[self.received.len().saturating_sub(400)..];
        String::from_utf8_lossy(tail).into_owned()
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
