//! One terminal session: a shell, its recent output, and at most one attached socket.
//!
//! A supervisor task per session moves PTY output into the replay window and
//! applies flow control: while a socket is attached and more than
//! [`HIGH_WATER`] bytes are unacknowledged it stops taking output, until the
//! browser acknowledges enough to fall under [`LOW_WATER`]. Sockets read the
//! window themselves, so a slow socket never blocks the session.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::Signal;
use sam_protocol::Frame;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

use super::process::{self, HANGUP_GRACE};
use super::replay::{REPLAY_CAPACITY, Replay};
use super::shell::{KILLED, Shell, ShellIo};

/// Unacknowledged output at which the session stops reading the PTY.
pub const HIGH_WATER: u64 = 256 * 1024;

/// Unacknowledged output under which a paused session reads the PTY again.
pub const LOW_WATER: u64 = 64 * 1024;

/// How long the last output may take to arrive after the shell has exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// What sockets watch: how far the output goes, and whether the shell is gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Offset just past the newest output byte.
    pub end: u64,
    /// The shell's exit status, set once all of its output is in the window.
    pub exit: Option<i32>,
}

/// A socket's hold on the session, returned by [`Session::attach`].
pub struct Attachment {
    /// Identifies this socket in acks and on detach.
    pub id: u64,
    /// The answer to the browser's `hello`.
    pub ready: Frame,
    /// Where this socket's output starts.
    pub from: u64,
    /// Fires when another socket takes over the session.
    pub replaced: oneshot::Receiver<()>,
}

/// A terminal session shared by the registry, its supervisor and its socket.
pub struct Session {
    shell: Shell,
    input: mpsc::Sender<Bytes>,
    state: Mutex<State>,
    progress: watch::Sender<Progress>,
    /// Wakes the supervisor when acks, attachments or hang-up requests change.
    wake: Notify,
}

struct State {
    replay: Replay,
    attached: Option<Attached>,
    next_attachment: u64,
    hang_up: bool,
}

struct Attached {
    id: u64,
    acked: u64,
    replaced: oneshot::Sender<()>,
}

impl Session {
    /// Wraps a freshly spawned shell. The caller runs [`Session::supervise`] with
    /// the returned channels.
    pub fn new(shell: Shell, input: mpsc::Sender<Bytes>) -> Arc<Session> {
        Arc::new(Session {
            shell,
            input,
            state: Mutex::new(State {
                replay: Replay::new(REPLAY_CAPACITY),
                attached: None,
                next_attachment: 0,
                hang_up: false,
            }),
            progress: watch::Sender::new(Progress::default()),
            wake: Notify::new(),
        })
    }

    /// Attaches a socket whose browser already holds output up to `offset`,
    /// replacing (and closing) any socket attached before.
    pub fn attach(&self, offset: u64) -> Attachment {
        let (replaced_tx, replaced) = oneshot::channel();
        let mut state = self.lock();
        let resume = state.replay.resume(offset);
        let id = state.next_attachment;
        state.next_attachment += 1;
        let previous = state.attached.replace(Attached {
            id,
            acked: resume.from,
            replaced: replaced_tx,
        });
        drop(state);

        if let Some(previous) = previous {
            let _ = previous.replaced.send(());
        }
        self.wake.notify_one();
        Attachment {
            id,
            ready: Frame::Ready {
                offset: resume.from,
                lost: resume.lost,
            },
            from: resume.from,
            replaced,
        }
    }

    /// Lets go of the session if `id` is still the attached socket; the grace
    /// period starts.
    pub fn detach(&self, id: u64) {
        let mut state = self.lock();
        if state.attached.as_ref().is_some_and(|a| a.id == id) {
            state.attached = None;
            drop(state);
            self.wake.notify_one();
        }
    }

    /// Records that socket `id` has rendered everything before `offset`.
    pub fn ack(&self, id: u64, offset: u64) {
        let mut state = self.lock();
        let end = state.replay.end();
        if let Some(attached) = state.attached.as_mut().filter(|a| a.id == id) {
            attached.acked = attached.acked.max(offset.min(end));
            drop(state);
            self.wake.notify_one();
        }
    }

    /// Queues bytes for the PTY. Waits only when the shell is not reading its input.
    pub async fn write(&self, bytes: Bytes) {
        let _ = self.input.send(bytes).await;
    }

    /// Resizes the terminal.
    pub fn resize(&self, cols: u16, rows: u16) {
        if let Err(error) = self.shell.resize(cols, rows) {
            tracing::warn!("{error:#}");
        }
    }

    /// Up to `max` bytes of output from `offset` on, with the offset they start at.
    pub fn read(&self, offset: u64, max: usize) -> (u64, Bytes) {
        self.lock().replay.read(offset, max)
    }

    /// Watches how far the output goes and whether the shell has exited.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Asks the session to end: the shell's processes get SIGHUP, then SIGKILL.
    pub fn hang_up(&self) {
        self.lock().hang_up = true;
        self.wake.notify_one();
    }

    /// Waits until the shell has exited and its last output is in, at most `limit`.
    pub async fn finished(&self, limit: Duration) {
        let mut progress = self.progress();
        let _ = tokio::time::timeout(limit, progress.wait_for(|p| p.exit.is_some())).await;
    }

    /// Runs the session until the shell is gone: reads output under flow control,
    /// ends the session after `grace` without a socket, and reaps everything.
    /// `on_exit` runs before the exit is published, so the registry forgets the
    /// session before any socket reports it gone.
    pub async fn supervise(self: Arc<Self>, io: ShellIo, grace: Duration, on_exit: impl FnOnce()) {
        let ShellIo {
            mut output,
            mut exited,
            ..
        } = io;
        let mut flow = Flow::default();
        let mut output_open = true;
        let mut detached_since: Option<Instant> = None;
        let mut kill_at: Option<Instant> = None;

        let status = loop {
            let (attached, unacked, hang_up) = self.snapshot();
            flow.update(attached.then_some(unacked));
            detached_since = if attached {
                None
            } else {
                detached_since.or_else(|| Some(Instant::now()))
            };
            if hang_up && kill_at.is_none() {
                process::signal_session(self.shell.leader, Signal::SIGHUP);
                process::signal_session(self.shell.leader, Signal::SIGCONT);
                kill_at = Some(Instant::now() + HANGUP_GRACE);
            }
            let grace_end = detached_since.map(|since| since + grace);

            tokio::select! {
                status = &mut exited => break status.unwrap_or(KILLED),
                chunk = output.recv(), if output_open && !flow.paused => match chunk {
                    Some(chunk) => self.append(&chunk),
                    None => output_open = false,
                },
                () = self.wake.notified() => {}
                () = sleep_until(grace_end.unwrap_or_else(Instant::now)), if grace_end.is_some() && !hang_up => {
                    tracing::info!("session detached for its whole grace period; hanging up");
                    self.hang_up();
                }
                () = sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() => {
                    process::signal_session(self.shell.leader, Signal::SIGKILL);
                    kill_at = Some(Instant::now() + HANGUP_GRACE);
                }
            }
        };

        // Background jobs may outlive the shell and hold the terminal open.
        process::terminate_session(self.shell.leader).await;
        if output_open {
            let deadline = Instant::now() + DRAIN_TIMEOUT;
            while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, output.recv()).await {
                self.append(&chunk);
            }
        }

        on_exit();
        tracing::info!(status, "shell exited");
        self.progress
            .send_modify(|progress| progress.exit = Some(status));
    }

    fn append(&self, chunk: &[u8]) {
        let end = {
            let mut state = self.lock();
            state.replay.append(chunk);
            state.replay.end()
        };
        self.progress.send_modify(|progress| progress.end = end);
    }

    fn snapshot(&self) -> (bool, u64, bool) {
        let state = self.lock();
        let unacked = state
            .attached
            .as_ref()
            .map_or(0, |attached| state.replay.end() - attached.acked);
        (state.attached.is_some(), unacked, state.hang_up)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic elsewhere
        // while holding the lock does not make it unusable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The pause decision with hysteresis between the two water marks.
#[derive(Debug, Default)]
struct Flow {
    paused: bool,
}

impl Flow {
    /// `unacked` is `None` when no socket is attached: then output is always read,
    /// so a detached program keeps running and the window keeps its latest output.
    fn update(&mut self, unacked: Option<u64>) {
        self.paused = match unacked {
            None => false,
            Some(unacked) if self.paused => unacked > LOW_WATER,
            Some(unacked) => unacked >= HIGH_WATER,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_pauses_at_the_high_mark_and_resumes_under_the_low_mark() {
        let mut flow = Flow::default();
        flow.update(Some(HIGH_WATER - 1));
        assert!(!flow.paused);
        flow.update(Some(HIGH_WATER));
        assert!(flow.paused);
        flow.update(Some(LOW_WATER + 1));
        assert!(flow.paused, "stays paused between the marks");
        flow.update(Some(LOW_WATER));
        assert!(!flow.paused);
        flow.update(Some(LOW_WATER + 1));
        assert!(!flow.paused, "stays running between the marks");
    }

    #[test]
    fn flow_never_pauses_a_detached_session() {
        let mut flow = Flow { paused: true };
        flow.update(None);
        assert!(!flow.paused);
    }
}
