//! Workspaces: one checked-out branch per directory under the agent's root.
//!
//! A workspace directory appears only when its checkout is complete: the checkout
//! happens in `<root>/.partial/<id>` and is renamed into place at the end, so
//! `<root>/<id>` existing means the workspace is ready, across agent restarts too.

mod checkout;
mod git;
mod request;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use crate::credential::broker::{Broker, ControlPlane, Origin};
use crate::shell_user::ShellUser;
use checkout::Checkout;
pub use checkout::CheckoutError;
pub use request::CheckoutRequest;

/// The folder of unfinished checkouts.
const PARTIAL: &str = ".partial";

/// A workspace's id, always a UUID, so it is safe as a directory name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkspaceId(Uuid);

impl std::str::FromStr for WorkspaceId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(WorkspaceId)
    }
}

impl std::fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// What a ready workspace reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Ready {
    /// The working tree.
    pub path: PathBuf,
    /// The commit checked out now.
    pub head: String,
    /// The branch that was checked out.
    pub branch: String,
}

/// The workspaces under one root directory.
#[derive(Clone)]
pub struct Workspaces {
    root: Arc<Path>,
    helper_exe: Arc<Path>,
    git_timeout: Duration,
    /// Who gets each finished checkout: the shells' user, when they have their own.
    owner: Option<Arc<ShellUser>>,
    /// Git credentials for the shells, when the agent knows sam to ask.
    credentials: Option<Broker>,
    locks: Arc<Mutex<HashMap<WorkspaceId, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Workspaces {
    /// Opens `root`, creating it, and clears checkouts a previous run left unfinished.
    /// `helper_exe` is the agent binary, which doubles as git's credential helper. With
    /// `control`, git in the shells gets tokens from sam, for the checkouts already there
    /// too. Needs the async runtime.
    pub fn open(
        root: &Path,
        helper_exe: &Path,
        git_timeout: Duration,
        owner: Option<ShellUser>,
        control: Option<ControlPlane>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create workspace root {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot resolve workspace root {}", root.display()))?;
        let partial = root.join(PARTIAL);
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .with_context(|| format!("cannot clear {}", partial.display()))?;
        }
        let owner = owner.map(Arc::new);
        let credentials = control
            .map(|control| Broker::open(&root, control, owner.clone()))
            .transpose()?;
        let workspaces = Workspaces {
            root: root.into(),
            helper_exe: helper_exe.into(),
            git_timeout,
            owner,
            credentials,
            locks: Arc::default(),
        };
        workspaces.serve_credentials_of_existing()?;
        Ok(workspaces)
    }

    /// Opens the credential sockets of the checkouts a previous run made.
    fn serve_credentials_of_existing(&self) -> anyhow::Result<()> {
        let Some(broker) = &self.credentials else {
            return Ok(());
        };
        let entries = std::fs::read_dir(&self.root)
            .with_context(|| format!("cannot list {}", self.root.display()))?;
        for entry in entries.filter_map(Result::ok) {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<WorkspaceId>().ok())
            else {
                continue;
            };
            if let Some(origin) = checkout::credential_origin(&entry.path()) {
                listen_or_warn(broker, id, origin);
            }
        }
        Ok(())
    }

    /// Serializes work on one workspace: checkout, removal and session start.
    pub async fn lock(&self, id: WorkspaceId) -> OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(id)
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// The workspace's directory when its checkout is complete.
    pub fn ready_dir(&self, id: WorkspaceId) -> Option<PathBuf> {
        let dir = self.dir(id);
        dir.is_dir().then_some(dir)
    }

    /// How many workspaces are checked out.
    pub fn count(&self) -> usize {
        std::fs::read_dir(&self.root).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| {
                    let name = entry.file_name();
                    name.to_str()
                        .is_some_and(|name| name.parse::<WorkspaceId>().is_ok())
                        && entry.path().is_dir()
                })
                .count()
        })
    }

    /// Checks out the requested branch, or reports the existing checkout when the
    /// workspace is already ready. The caller holds the workspace's lock.
    pub async fn check_out(
        &self,
        id: WorkspaceId,
        request: &CheckoutRequest,
    ) -> Result<Ready, CheckoutError> {
        if let Some(dir) = self.ready_dir(id) {
            return checkout::describe_existing(&dir).await;
        }
        let partial = self.root.join(PARTIAL).join(id.to_string());
        let shell_credentials = self.credentials.as_ref().map(|b| b.socket_for(id));
        let checkout = Checkout {
            dir: &partial,
            helper_exe: &self.helper_exe,
            request,
            shell_credentials: shell_credentials.as_ref(),
        };
        let result = match tokio::time::timeout(self.git_timeout, checkout.run()).await {
            Ok(result) => result,
            Err(_) => Err(CheckoutError::timed_out(self.git_timeout)),
        };
        let finished = match result {
            Ok(origin) => self.publish(&partial, id, &request.branch, origin).await,
            Err(error) => Err(error),
        };
        if finished.is_err() {
            remove_dir(&partial)
                .await
                .map_err(CheckoutError::Internal)?;
        }
        finished
    }

    /// Removes the workspace's directory; removing an unknown workspace is no error.
    /// The caller holds the workspace's lock and has hung up its sessions.
    pub async fn remove(&self, id: WorkspaceId) -> anyhow::Result<()> {
        if let Some(broker) = &self.credentials {
            broker.stop(id);
        }
        remove_dir(&self.dir(id)).await?;
        remove_dir(&self.root.join(PARTIAL).join(id.to_string())).await
    }

    /// Hands the finished checkout over, moves it into place and opens its credential
    /// socket for `origin`, the one the checkout found.
    async fn publish(
        &self,
        partial: &Path,
        id: WorkspaceId,
        branch: &str,
        origin: Option<Origin>,
    ) -> Result<Ready, CheckoutError> {
        if let Some(owner) = self.owner.clone() {
            let partial = partial.to_owned();
            tokio::task::spawn_blocking(move || owner.take_ownership(&partial))
                .await
                .context("handing the checkout over was interrupted")??;
        }
        let dir = self.dir(id);
        tokio::fs::rename(partial, &dir)
            .await
            .with_context(|| format!("cannot move the checkout to {}", dir.display()))?;
        if let (Some(broker), Some(origin)) = (&self.credentials, origin) {
            listen_or_warn(broker, id, origin);
        }
        checkout::describe(&dir, branch.to_owned()).await
    }

    fn dir(&self, id: WorkspaceId) -> PathBuf {
        self.root.join(id.to_string())
    }
}

/// A workspace whose credential socket cannot be opened is still a workspace: its shells
/// work, and git in them says it has no credentials.
fn listen_or_warn(broker: &Broker, id: WorkspaceId, origin: Origin) {
    if let Err(error) = broker.listen(id, origin) {
        tracing::warn!(workspace = %id, error = format!("{error:#}"), "git in this workspace's shells gets no credentials");
    }
}

async fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}
