//! Terminal sessions: shells on PTYs that outlive the sockets attached to them.

mod connection;
mod process;
mod replay;
mod session;
mod shell;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::join_all;
use sam_protocol::MAX_SESSIONS_PER_WORKSPACE;

use crate::accounts::Accounts;
use tracing::Instrument;

pub use connection::accept;
use session::Session;
use shell::Shell;

use crate::workspace::WorkspaceId;

/// How long hanging up waits for shells to exit: the SIGHUP grace, the SIGKILL,
/// and the last output.
const HANG_UP_WAIT: Duration = Duration::from_secs(8);

/// A session's name within its workspace, as the browser chose it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionName(String);

impl SessionName {
    /// Accepts `[A-Za-z0-9_-]{1,64}`, so a name is safe in logs and paths.
    pub fn parse(name: &str) -> Option<SessionName> {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        valid.then(|| SessionName(name.to_owned()))
    }
}

impl std::fmt::Display for SessionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type Key = (WorkspaceId, SessionName);

/// Why a socket gets no session.
enum OpenError {
    /// The workspace already runs [`MAX_SESSIONS_PER_WORKSPACE`] sessions.
    Full,
    /// The shell would not start.
    Spawn(anyhow::Error),
}

/// Every live session of the agent, by workspace and name.
#[derive(Clone)]
pub struct Sessions {
    live: Arc<Mutex<HashMap<Key, Arc<Session>>>>,
    grace: Duration,
    /// The workspaces' accounts, which their shells run as; the agent's own user when
    /// `None`.
    accounts: Option<Accounts>,
}

impl Sessions {
    /// An empty registry whose sessions live `grace` without a socket and whose shells
    /// run as their workspace's account, when there are `accounts`.
    pub fn new(grace: Duration, accounts: Option<Accounts>) -> Self {
        Sessions {
            live: Arc::default(),
            grace,
            accounts,
        }
    }

    /// How many sessions are running.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// The session `name` of `workspace`, started in `cwd` at the given size
    /// when it does not exist yet and the workspace has room for another. The caller
    /// holds the workspace's lock, so nothing else starts a session of this workspace
    /// meanwhile.
    fn get_or_spawn(
        &self,
        workspace: WorkspaceId,
        name: &SessionName,
        cwd: &Path,
        (cols, rows): (u16, u16),
    ) -> Result<Arc<Session>, OpenError> {
        let key = (workspace, name.clone());
        {
            let live = self.lock();
            if let Some(session) = live.get(&key) {
                return Ok(session.clone());
            }
            // Every session holds a shell, a PTY and threads until it ends, so one
            // workspace (or a page stuck opening tabs) must not start them without end.
            let running = live.keys().filter(|(id, _)| *id == workspace).count();
            if running >= MAX_SESSIONS_PER_WORKSPACE {
                return Err(OpenError::Full);
            }
        }

        // Starting a shell forks and execs, tens of milliseconds: the registry stays open
        // meanwhile, so sessions of other workspaces start side by side.
        let user = match &self.accounts {
            Some(accounts) => Some(
                accounts
                    .find(workspace)
                    .and_then(|user| {
                        user.ok_or_else(|| anyhow::anyhow!("the workspace has no account"))
                    })
                    .map_err(OpenError::Spawn)?,
            ),
            None => None,
        };
        let (shell, io) = Shell::spawn(cwd, cols, rows, user.as_ref()).map_err(OpenError::Spawn)?;
        let span =
            tracing::info_span!(parent: None, "session", %workspace, %name, leader = %shell.leader);
        span.in_scope(|| tracing::info!(cols, rows, "shell started"));
        let session = Session::new(shell, io.input.clone());
        self.lock().insert(key.clone(), session.clone());

        let registry = self.clone();
        let supervised = session.clone();
        let forget = move || {
            let mut live = registry.lock();
            if live.get(&key).is_some_and(|s| Arc::ptr_eq(s, &supervised)) {
                live.remove(&key);
            }
        };
        tokio::spawn(
            session
                .clone()
                .supervise(io, self.grace, forget)
                .instrument(span),
        );
        Ok(session)
    }

    /// Hangs up every session of `workspace` and waits (bounded) for them to end.
    pub async fn hang_up_workspace(&self, workspace: WorkspaceId) {
        let sessions: Vec<_> = self
            .lock()
            .iter()
            .filter(|((id, _), _)| *id == workspace)
            .map(|(_, session)| session.clone())
            .collect();
        hang_up(sessions).await;
    }

    /// Hangs up every session, for shutdown.
    pub async fn hang_up_all(&self) {
        let sessions: Vec<_> = self.lock().values().cloned().collect();
        hang_up(sessions).await;
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<Session>>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn hang_up(sessions: Vec<Arc<Session>>) {
    for session in &sessions {
        session.hang_up();
    }
    join_all(sessions.iter().map(|s| s.finished(HANG_UP_WAIT))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_short_and_plain() {
        assert!(SessionName::parse("main").is_some());
        assert!(SessionName::parse("tab_2-B").is_some());
        assert!(SessionName::parse(&"a".repeat(64)).is_some());
        assert!(SessionName::parse(&"a".repeat(65)).is_none());
        assert!(SessionName::parse("").is_none());
        assert!(SessionName::parse("../etc").is_none());
        assert!(SessionName::parse("a b").is_none());
        assert!(SessionName::parse("ünï").is_none());
    }
}
