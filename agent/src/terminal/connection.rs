//! One WebSocket speaking the terminal wire for one session.
//!
//! The socket is split in two halves polled side by side: the reader hands input to
//! the PTY writer thread at once, and the writer streams output from the session's
//! replay window. A writer stuck on a slow network therefore never delays Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use sam_protocol::frame::{clamp_dimension, close_code};
use sam_protocol::{Frame, MAX_MESSAGE, MAX_SESSIONS_PER_WORKSPACE};
use tokio::sync::mpsc;
use tokio::time::{Instant, interval_at, timeout};
use tracing::Instrument;

use super::session::{Attachment, Progress, Session};
use super::{OpenError, SessionName, Sessions};
use crate::workspace::{WorkspaceId, Workspaces};

/// How long a new socket may take to say `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// WebSocket pings keep idle sessions open through proxies that cut quiet connections.
const PING_EVERY: Duration = Duration::from_secs(20);

/// A socket that has sent nothing (not even a pong) for this long is gone.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3 * 20);

/// A send that takes longer than this means the peer stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long to wait for the peer's answer to our close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Output bytes per `output` frame; far below the message limit.
const OUTPUT_CHUNK: usize = 64 * 1024;

/// Pongs waiting for the writer; more pings than this in flight are not answered.
const PENDING_REPLIES: usize = 16;

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

/// How a socket's conversation ended.
enum Ending {
    /// The peer closed the socket or vanished; only our side's close is left.
    Gone,
    /// Send `frame` if any, then close with `code` and `reason`.
    Close {
        frame: Option<Frame>,
        code: u16,
        reason: &'static str,
    },
}

impl Ending {
    fn protocol(code: u16, reason: &'static str) -> Ending {
        Ending::Close {
            frame: None,
            code,
            reason,
        }
    }
}

/// One read from the socket, as the protocol sees it.
enum Read {
    Frame(Frame),
    Gone,
    Invalid(u16, &'static str),
}

/// Largest message the WebSocket layer reads. Larger than [`MAX_MESSAGE`] so that
/// a message over the protocol's limit arrives whole and can be refused with 1009;
/// beyond this the WebSocket layer fails the read and the socket is dropped.
const READ_LIMIT: usize = 16 * MAX_MESSAGE;

/// Answers a terminal upgrade request with a socket served by [`serve_socket`].
pub fn accept(
    upgrade: WebSocketUpgrade,
    sessions: Sessions,
    workspaces: Workspaces,
    workspace: WorkspaceId,
    name: SessionName,
) -> Response {
    upgrade
        .max_message_size(READ_LIMIT)
        .max_frame_size(READ_LIMIT)
        .on_upgrade(move |socket| serve_socket(socket, sessions, workspaces, workspace, name))
}

/// Serves one socket for session `name` of `workspace` until the shell exits, the
/// peer leaves, another socket takes over, or the peer breaks the protocol.
async fn serve_socket(
    socket: WebSocket,
    sessions: Sessions,
    workspaces: Workspaces,
    workspace: WorkspaceId,
    name: SessionName,
) {
    let span = tracing::info_span!("socket", %workspace, session = %name);
    async move {
        let (mut sink, mut stream) = socket.split();
        let ending = converse(
            &mut sink,
            &mut stream,
            &sessions,
            &workspaces,
            workspace,
            &name,
        )
        .await;
        finish(sink, stream, ending).await;
    }
    .instrument(span)
    .await;
}

async fn converse(
    sink: &mut Sink,
    stream: &mut Stream,
    sessions: &Sessions,
    workspaces: &Workspaces,
    workspace: WorkspaceId,
    name: &SessionName,
) -> Ending {
    let hello = match await_hello(stream).await {
        Ok(hello) => hello,
        Err(ending) => return ending,
    };
    let session = match open_session(sessions, workspaces, workspace, name, &hello).await {
        Ok(session) => session,
        Err(ending) => return ending,
    };

    let attachment = session.attach(hello.offset);
    session.resize(hello.cols, hello.rows);
    let id = attachment.id;
    tracing::info!(offset = hello.offset, ready = ?attachment.ready, "socket attached");
    if send(sink, &attachment.ready).await.is_err() {
        session.detach(id);
        return Ending::Gone;
    }

    let (replies, pending) = mpsc::channel(PENDING_REPLIES);
    let ending = tokio::select! {
        ending = read_input(stream, &session, id, replies) => ending,
        ending = write_output(sink, &session, attachment, pending) => ending,
    };
    session.detach(id);
    ending
}

/// What the browser's `hello` said, sizes already clamped.
struct Hello {
    offset: u64,
    cols: u16,
    rows: u16,
}

async fn await_hello(stream: &mut Stream) -> Result<Hello, Ending> {
    match timeout(HELLO_TIMEOUT, read_frame(stream)).await {
        Ok(Read::Frame(Frame::Hello { offset, cols, rows })) => Ok(Hello {
            offset,
            cols: clamp_dimension(cols),
            rows: clamp_dimension(rows),
        }),
        Ok(Read::Frame(_)) => Err(Ending::protocol(
            close_code::PROTOCOL_ERROR,
            "the first message must be hello",
        )),
        Ok(Read::Invalid(code, reason)) => Err(Ending::protocol(code, reason)),
        Ok(Read::Gone) => Err(Ending::Gone),
        Err(_) => Err(Ending::protocol(
            close_code::PROTOCOL_ERROR,
            "no hello in time",
        )),
    }
}

/// The session to attach to, started at the browser's size if it is new.
async fn open_session(
    sessions: &Sessions,
    workspaces: &Workspaces,
    workspace: WorkspaceId,
    name: &SessionName,
    hello: &Hello,
) -> Result<Arc<Session>, Ending> {
    // Holding the workspace's lock keeps a concurrent delete from removing the
    // directory between this check and the shell's start.
    let _guard = workspaces.lock(workspace).await;
    let cwd = workspaces
        .ready_dir(workspace)
        .ok_or_else(|| failed("This workspace has been removed.".into()))?;
    sessions
        .get_or_spawn(workspace, name, &cwd, (hello.cols, hello.rows))
        .map_err(|error| match error {
            OpenError::Full => {
                tracing::info!("refusing a session past the workspace's limit");
                failed(format!(
                    "This workspace already runs {MAX_SESSIONS_PER_WORKSPACE} shells, the most it may; \
                     close one to open another."
                ))
            }
            OpenError::Spawn(error) => {
                tracing::error!("cannot start the shell: {error:#}");
                failed(format!("The shell could not be started: {error:#}"))
            }
        })
}

fn failed(message: String) -> Ending {
    Ending::Close {
        frame: Some(Frame::Error(message)),
        code: close_code::INTERNAL_ERROR,
        reason: "session unavailable",
    }
}

async fn read_input(
    stream: &mut Stream,
    session: &Session,
    id: u64,
    replies: mpsc::Sender<Frame>,
) -> Ending {
    loop {
        let frame = match read_frame(stream).await {
            Read::Frame(frame) => frame,
            Read::Invalid(code, reason) => return Ending::protocol(code, reason),
            Read::Gone => return Ending::Gone,
        };
        match frame {
            Frame::Input(bytes) => session.write(bytes).await,
            Frame::Resize { cols, rows } => {
                session.resize(clamp_dimension(cols), clamp_dimension(rows));
            }
            Frame::Ack(offset) => session.ack(id, offset),
            Frame::Ping(nonce) => {
                let _ = replies.try_send(Frame::Pong(nonce));
            }
            Frame::Pong(_) => {}
            // The reply is the usual ending: the writer sends the last output and
            // `exit` once the supervisor has reaped the shell.
            Frame::Close => {
                tracing::info!("the browser closed the session; hanging up");
                session.hang_up();
            }
            Frame::Hello { .. }
            | Frame::Output { .. }
            | Frame::Ready { .. }
            | Frame::Exit(_)
            | Frame::Error(_) => {
                return Ending::protocol(
                    close_code::PROTOCOL_ERROR,
                    "frame type not accepted from the browser",
                );
            }
        }
    }
}

async fn write_output(
    sink: &mut Sink,
    session: &Session,
    attachment: Attachment,
    mut replies: mpsc::Receiver<Frame>,
) -> Ending {
    let Attachment {
        from: mut sent,
        mut replaced,
        ..
    } = attachment;
    let mut progress = session.progress();
    let mut ping = interval_at(Instant::now() + PING_EVERY, PING_EVERY);

    loop {
        let Progress { end, exit } = *progress.borrow_and_update();
        while sent < end {
            let (from, data) = session.read(sent, OUTPUT_CHUNK);
            if data.is_empty() {
                break;
            }
            sent = from + data.len() as u64;
            if send(sink, &Frame::Output { offset: from, data })
                .await
                .is_err()
            {
                return Ending::Gone;
            }
        }
        if let Some(status) = exit {
            return Ending::Close {
                frame: Some(Frame::Exit(status)),
                code: close_code::NORMAL,
                reason: "shell exited",
            };
        }

        let sent_ok = tokio::select! {
            biased;
            _ = &mut replaced => {
                tracing::info!("socket replaced by a newer one");
                return Ending::protocol(close_code::NORMAL, "replaced");
            }
            changed = progress.changed() => {
                if changed.is_err() {
                    return Ending::Gone;
                }
                Ok(())
            }
            Some(reply) = replies.recv() => send(sink, &reply).await,
            _ = ping.tick() => send_message(sink, Message::Ping(Default::default())).await,
        };
        if sent_ok.is_err() {
            return Ending::Gone;
        }
    }
}

/// Reads until a message the protocol cares about. WebSocket pings and pongs are
/// handled by the socket itself and only count as signs of life: a socket with no
/// message at all for [`IDLE_TIMEOUT`] is taken for gone.
async fn read_frame(stream: &mut Stream) -> Read {
    loop {
        let Ok(next) = timeout(IDLE_TIMEOUT, stream.next()).await else {
            tracing::info!("socket silent for too long");
            return Read::Gone;
        };
        let message = match next {
            None | Some(Ok(Message::Close(_))) => return Read::Gone,
            // A reset, a broken WebSocket frame, or a message past `READ_LIMIT`:
            // the connection is unusable, so there is nobody left to tell.
            Some(Err(error)) => {
                tracing::info!(%error, "socket read failed");
                return Read::Gone;
            }
            Some(Ok(message)) => message,
        };
        match message {
            Message::Binary(bytes) => {
                return match Frame::decode(&bytes) {
                    Ok(frame) => Read::Frame(frame),
                    Err(error) => {
                        tracing::info!(%error, "refusing a malformed frame");
                        Read::Invalid(error.close_code(), close_reason(&error))
                    }
                };
            }
            Message::Text(_) => {
                return Read::Invalid(close_code::PROTOCOL_ERROR, "text messages are not accepted");
            }
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => {}
        }
    }
}

fn close_reason(error: &sam_protocol::FrameError) -> &'static str {
    use sam_protocol::FrameError;
    match error {
        FrameError::TooLarge(_) => "message too big",
        FrameError::UnknownType(_) => "unknown frame type",
        FrameError::Truncated { .. } => "truncated frame",
        FrameError::TrailingBytes { .. } => "bytes after the frame header",
        FrameError::Empty => "empty message",
        FrameError::InvalidText => "text is not UTF-8",
    }
}

/// The peer can no longer be written to; the reason is already logged.
struct Disconnected;

async fn send(sink: &mut Sink, frame: &Frame) -> Result<(), Disconnected> {
    send_message(sink, Message::Binary(frame.encode().into())).await
}

async fn send_message(sink: &mut Sink, message: Message) -> Result<(), Disconnected> {
    match timeout(SEND_TIMEOUT, sink.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            tracing::debug!(%error, "socket write failed");
            Err(Disconnected)
        }
        Err(_) => {
            tracing::info!("socket stopped reading");
            Err(Disconnected)
        }
    }
}

/// Ends the socket politely: our frames, our close, then the peer's close answer
/// (so the close frame is not lost to a connection reset), all bounded in time.
async fn finish(mut sink: Sink, mut stream: Stream, ending: Ending) {
    let Ending::Close {
        frame,
        code,
        reason,
    } = ending
    else {
        let _ = timeout(CLOSE_TIMEOUT, sink.close()).await;
        return;
    };

    tracing::info!(code, reason, "closing socket");
    if let Some(frame) = frame
        && send(&mut sink, &frame).await.is_err()
    {
        return;
    }
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    if send_message(&mut sink, close).await.is_err() {
        return;
    }
    let _ = timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
