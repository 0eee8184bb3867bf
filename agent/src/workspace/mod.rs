//! Workspaces: one checked-out branch per directory under the agent's root.
//!
//! A workspace directory appears only when its checkout is complete: the checkout
//! happens in `<root>/.partial/<id>` and is renamed into place at the end, so
//! `<root>/<id>` existing means the workspace is ready, across agent restarts too.

mod checkout;
mod git;
mod request;

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use nix::unistd::{Gid, Uid};
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use crate::accounts::{Accounts, ShellUser};
use crate::credential::broker::{Broker, ControlPlane, Origin};
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
    /// Each workspace's own account, which gets its finished checkout, when shells run
    /// under one.
    accounts: Option<Accounts>,
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
        accounts: Option<Accounts>,
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
        // A checkout in progress is the agent's alone: git makes it readable by all, and
        // a shell that entered it then could read on after it is handed over.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let credentials = control
            .map(|control| Broker::open(&root, control))
            .transpose()?;
        let workspaces = Workspaces {
            root: root.into(),
            helper_exe: helper_exe.into(),
            git_timeout,
            accounts,
            credentials,
            locks: Arc::default(),
        };
        workspaces.take_up_existing()?;
        Ok(workspaces)
    }

    /// Takes up the checkouts a previous run made: each gets its account (one made
    /// without, by an agent from before accounts per workspace or on a machine whose
    /// accounts were reset, gets one now) and its credential socket. A checkout that cannot
    /// be taken up is left out with a warning: the others are served.
    fn take_up_existing(&self) -> anyhow::Result<()> {
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
            if let Err(error) = self.take_up(id, &entry.path()) {
                tracing::warn!(workspace = %id, error = format!("{error:#}"), "cannot take up this workspace; delete it and open it again");
            }
        }
        Ok(())
    }

    fn take_up(&self, id: WorkspaceId, dir: &Path) -> anyhow::Result<()> {
        let owner = match &self.accounts {
            Some(accounts) => {
                let owner = accounts.ensure(id)?;
                // Checked each time: a handing over cut short by a crash is finished now.
                if !handed_over(&owner, dir) {
                    hand_over(&owner, dir)?;
                    tracing::info!(workspace = %id, account = %owner.name, "handed an existing workspace to its account");
                }
                Some(owner)
            }
            None => None,
        };
        if let (Some(broker), Some(origin)) = (&self.credentials, checkout::credential_origin(dir))
        {
            listen_or_warn(broker, id, origin, owner.as_ref());
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

    /// Removes the workspace's directory, and its account with whatever still runs under
    /// it; removing an unknown workspace is no error. The caller holds the workspace's
    /// lock and has hung up its sessions.
    pub async fn remove(&self, id: WorkspaceId) -> anyhow::Result<()> {
        if let Some(broker) = &self.credentials {
            broker.stop(id);
        }
        if let Some(accounts) = self.accounts.clone() {
            tokio::task::spawn_blocking(move || accounts.remove(id))
                .await
                .context("removing the workspace's account was interrupted")??;
        }
        remove_dir(&self.dir(id)).await?;
        remove_dir(&self.root.join(PARTIAL).join(id.to_string())).await
    }

    /// Ends what the workspace's shells left running, once they are hung up; with no
    /// account per workspace, their processes cannot be told from the agent's.
    pub async fn end_processes(&self, id: WorkspaceId) -> anyhow::Result<()> {
        if let Some(accounts) = self.accounts.clone() {
            tokio::task::spawn_blocking(move || accounts.end_processes(id))
                .await
                .context("ending the workspace's processes was interrupted")??;
        }
        Ok(())
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
        let owner = match self.accounts.clone() {
            Some(accounts) => {
                let partial = partial.to_owned();
                let owner = tokio::task::spawn_blocking(move || {
                    let owner = accounts.ensure(id)?;
                    hand_over(&owner, &partial)?;
                    anyhow::Ok(owner)
                })
                .await
                .context("handing the checkout over was interrupted")??;
                Some(owner)
            }
            None => None,
        };
        let dir = self.dir(id);
        tokio::fs::rename(partial, &dir)
            .await
            .with_context(|| format!("cannot move the checkout to {}", dir.display()))?;
        if let (Some(broker), Some(origin)) = (&self.credentials, origin) {
            listen_or_warn(broker, id, origin, owner.as_ref());
        }
        checkout::describe(&dir, branch.to_owned()).await
    }

    fn dir(&self, id: WorkspaceId) -> PathBuf {
        self.root.join(id.to_string())
    }
}

/// A workspace whose credential socket cannot be opened is still a workspace: its shells
/// work, and git in them says it has no credentials.
fn listen_or_warn(broker: &Broker, id: WorkspaceId, origin: Origin, owner: Option<&ShellUser>) {
    if let Err(error) = broker.listen(id, origin, owner) {
        tracing::warn!(workspace = %id, error = format!("{error:#}"), "git in this workspace's shells gets no credentials");
    }
}

/// Gives a checkout to its workspace's account, which alone may enter it then (git made
/// it readable by all). The walk goes by path, as root, so nothing may change the tree
/// meanwhile: the folder is made root's alone first, and the processes of whoever owned
/// it before (an account of sam's: the one all workspaces shared before, or this
/// workspace's own after a handing over cut short) and of the workspace's account are
/// ended. A checkout someone else owns is not taken.
fn hand_over(owner: &ShellUser, dir: &Path) -> anyhow::Result<()> {
    let before = std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot look at {}", dir.display()))?;
    let previous = Uid::from_raw(before.uid());
    if !previous.is_root() {
        let name = nix::unistd::User::from_uid(previous)
            .ok()
            .flatten()
            .map(|user| user.name);
        if !name.as_deref().is_some_and(|name| name.starts_with("sam-")) {
            anyhow::bail!(
                "it belongs to {}, not to root or an account of sam's",
                name.unwrap_or_else(|| previous.to_string())
            );
        }
        crate::accounts::end_processes_of_id(previous, Gid::from_raw(before.gid()))?;
    }
    std::os::unix::fs::lchown(dir, Some(0), Some(0))
        .with_context(|| format!("cannot take {} back", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    crate::accounts::end_processes_of_id(owner.uid, owner.gid)?;
    owner.take_ownership(dir)
}

/// Whether `dir` is handed over to `owner`: its own owner changes last.
fn handed_over(owner: &ShellUser, dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.uid() == owner.uid.as_raw())
}

async fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}
