//! The accounts shells run as, when the agent runs as root: one per workspace.
//!
//! A shell under the agent's own user could read whatever the agent and sam can: sam's
//! data directory with its link-signing key, the App's private key file, other
//! workspaces. Under an account of its workspace's own, it reaches only that workspace
//! (handed to it after the checkout), its home, and what any user may read: not the files,
//! processes or credential socket of another workspace on the same machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use nix::unistd::{Gid, Uid, User};

use crate::workspace::WorkspaceId;

/// The folder, under the agent's root, of the accounts' homes.
const HOMES: &str = ".homes";

/// An existing account.
#[derive(Debug, Clone)]
pub struct ShellUser {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    pub home: PathBuf,
}

impl ShellUser {
    /// Looks the account up by name; `None` when there is none. Root is never one.
    fn lookup(name: &str) -> anyhow::Result<Option<Self>> {
        let Some(user) =
            User::from_name(name).with_context(|| format!("cannot look up the user {name:?}"))?
        else {
            return Ok(None);
        };
        if user.uid.is_root() {
            bail!("shells must not run as root, and {name:?} is root");
        }
        Ok(Some(Self {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            home: user.dir,
        }))
    }

    /// Hands a finished checkout, or a single file, to the account, symlinks included but
    /// not followed; `dir` itself last, so that its owner says the whole is handed over.
    pub fn take_ownership(&self, dir: &Path) -> anyhow::Result<()> {
        for entry in walkdir::WalkDir::new(dir).contents_first(true) {
            let entry = entry.with_context(|| format!("cannot walk {}", dir.display()))?;
            std::os::unix::fs::lchown(
                entry.path(),
                Some(self.uid.as_raw()),
                Some(self.gid.as_raw()),
            )
            .with_context(|| format!("cannot hand {} to {}", entry.path().display(), self.name))?;
        }
        Ok(())
    }
}

/// Workspaces' accounts take ids from here up: above people's, `nobody`'s, and the
/// subordinate ids that rootless containers are given from 100000 on.
const FIRST_ID: u32 = 1_000_000_000;
/// The top of that range: ids above it are read as negative by some programs.
const MAX_ID: u32 = i32::MAX as u32;
/// The machine's record of the last id given to a workspace's account, by whichever
/// agent, so that none is given twice.
const LAST_ID: &str = "/var/lib/sam-agent/last-account-id";

/// The workspaces' accounts, named after their ids, with homes under the agent's root.
/// Work on one workspace's account is serialized by the workspace's lock.
#[derive(Clone)]
pub struct Accounts {
    homes: Arc<Path>,
}

impl Accounts {
    /// Prepares the homes' folder under `root`; needs the agent to run as root.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            bail!("an account per workspace needs the agent to run as root");
        }
        let homes = root.join(HOMES);
        std::fs::create_dir_all(&homes)
            .with_context(|| format!("cannot create {}", homes.display()))?;
        // Crossed, not listed: each account finds its own workspace and home by name.
        for dir in [root, &homes] {
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
                .with_context(|| format!("cannot let shells reach {}", dir.display()))?;
        }
        warn_unless_reachable(root);
        Ok(Self {
            homes: homes.into(),
        })
    }

    /// The account of workspace `id`: `sam-` and the first 24 hex digits of its id, within
    /// the 32 characters a user name may have.
    pub fn name_of(id: WorkspaceId) -> String {
        let hex: String = id.to_string().chars().filter(|c| *c != '-').collect();
        format!("sam-{}", &hex[..24])
    }

    /// The workspace's account, if it has one.
    pub fn find(&self, id: WorkspaceId) -> anyhow::Result<Option<ShellUser>> {
        ShellUser::lookup(&Self::name_of(id))
    }

    /// The workspace's account, created with its home when it has none.
    pub fn ensure(&self, id: WorkspaceId) -> anyhow::Result<ShellUser> {
        let name = Self::name_of(id);
        let home = self.homes.join(id.to_string());
        let user = match ShellUser::lookup(&name)? {
            Some(user) => user,
            None => {
                create_account(&name, &home, id)?;
                ShellUser::lookup(&name)?
                    .ok_or_else(|| anyhow!("useradd created no account {name}"))?
            }
        };
        if !user.home.is_dir() {
            std::fs::create_dir_all(&user.home)
                .with_context(|| format!("cannot create {}", user.home.display()))?;
            std::fs::set_permissions(
                &user.home,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .with_context(|| format!("cannot restrict {}", user.home.display()))?;
            user.take_ownership(&user.home)?;
        }
        Ok(user)
    }

    /// Ends every process of the workspace's account, those its shells left running in
    /// the background included.
    pub fn end_processes(&self, id: WorkspaceId) -> anyhow::Result<()> {
        if let Some(user) = self.find(id)? {
            end_processes_of_id(user.uid, user.gid)?;
        }
        Ok(())
    }

    /// Ends the workspace's processes and removes its account and home.
    pub fn remove(&self, id: WorkspaceId) -> anyhow::Result<()> {
        let name = Self::name_of(id);
        if let Some(user) = ShellUser::lookup(&name)? {
            end_processes_of_id(user.uid, user.gid)?;
            retry_while_locked("userdel", || {
                std::process::Command::new("userdel")
                    // Its processes are ended; one still exiting must not keep it.
                    .args(["--force", &name])
                    .status()
            })?;
        }
        let home = self.homes.join(id.to_string());
        match std::fs::remove_dir_all(&home) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(error).with_context(|| format!("cannot remove {}", home.display()))
            }
            _ => Ok(()),
        }
    }
}

/// Accounts reach their workspaces and homes by path only when every folder above the
/// root lets others through (`/root`, mode 0700, does not).
fn warn_unless_reachable(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(root) = root.canonicalize() else {
        return;
    };
    for dir in root.ancestors().skip(1) {
        if std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 == 0) {
            tracing::warn!(
                root = %root.display(),
                closed = %dir.display(),
                "workspaces' accounts cannot pass the closed folder to reach their workspaces and homes; allow it (chmod o+x) or keep workspaces elsewhere"
            );
            return;
        }
    }
}

/// Makes the account with an id no account had before, so that nothing a removed
/// workspace left behind (a file in `/tmp`, say) falls to a new one.
fn create_account(name: &str, home: &Path, id: WorkspaceId) -> anyhow::Result<()> {
    let comment = format!("sam workspace {id}");
    retry_while_locked("useradd", || {
        let uid = reserve_id().map_err(std::io::Error::other)?;
        let mut useradd = std::process::Command::new("useradd");
        // Its user group gets the same id; no subordinate ids, which it could not use.
        for setting in [
            format!("UID_MIN={FIRST_ID}"),
            format!("UID_MAX={MAX_ID}"),
            format!("GID_MIN={FIRST_ID}"),
            format!("GID_MAX={MAX_ID}"),
            "SUB_UID_COUNT=0".to_owned(),
            "SUB_GID_COUNT=0".to_owned(),
        ] {
            useradd.arg("-K").arg(setting);
        }
        useradd
            .args([
                "--uid",
                &uid.to_string(),
                "--user-group",
                "--no-create-home",
            ])
            .args(["--shell", "/bin/bash", "--home-dir"])
            .arg(home)
            .args(["--comment", &comment, name])
            .status()
    })
}

/// Takes the next id for an account, recording it before any account has it: an id
/// given up by a failed useradd is skipped, never given again. The record is locked,
/// for the agents and sams of one machine.
fn reserve_id() -> anyhow::Result<u32> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = Path::new(LAST_ID);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .with_context(|| format!("cannot lock {}", path.display()))?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let last = match text.trim() {
        "" => 0,
        text => text.parse::<u32>().with_context(|| {
            format!(
                "{} holds {text:?}, not an id; write the highest id sam's accounts ever had into it",
                path.display()
            )
        })?,
    };
    let next = last.max(highest_id_in_use()?).max(FIRST_ID - 1) + 1;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(format!("{next}\n").as_bytes())?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(next)
}

/// The highest user or group id of the machine's own accounts and groups.
fn highest_id_in_use() -> std::io::Result<u32> {
    let mut highest = 0;
    for file in ["/etc/passwd", "/etc/group"] {
        for entry in std::fs::read_to_string(file)?.lines() {
            if let Some(id) = entry
                .split(':')
                .nth(2)
                .and_then(|id| id.parse::<u32>().ok())
                && id < MAX_ID
            {
                highest = highest.max(id);
            }
        }
    }
    Ok(highest)
}

/// `kill -KILL -1` as user `uid` (group `gid`) itself: the kernel signals every process
/// the user owns at once, so none escapes by forking meanwhile.
pub fn end_processes_of_id(uid: Uid, gid: Gid) -> anyhow::Result<()> {
    if uid.is_root() {
        bail!("the agent never ends every process of root");
    }
    let status = std::process::Command::new(setpriv()?)
        .arg("--reuid")
        .arg(uid.to_string())
        .arg("--regid")
        .arg(gid.to_string())
        .args(["--clear-groups", "--", "kill", "-KILL", "-1"])
        .stderr(std::process::Stdio::null())
        .status()
        .context("cannot run kill as the workspace's account")?;
    // kill says 1 when there was nothing to end as well.
    if !matches!(status.code(), Some(0 | 1)) {
        bail!("kill as user {uid} failed: {status}");
    }
    Ok(())
}

/// Runs useradd or userdel until it succeeds: they refuse at once while another holds the
/// password file's lock, which other workspaces' accounts (and other agents or sams on
/// the machine) take too.
fn retry_while_locked(
    what: &str,
    mut run: impl FnMut() -> std::io::Result<std::process::ExitStatus>,
) -> anyhow::Result<()> {
    let mut last = None;
    for attempt in 0..50u64 {
        let status = run().with_context(|| format!("cannot run {what}"))?;
        if status.success() {
            return Ok(());
        }
        last = Some(status);
        std::thread::sleep(Duration::from_millis(50 + 20 * attempt.min(10)));
    }
    bail!(
        "{what} kept failing ({})",
        last.map_or_else(String::new, |s| s.to_string())
    )
}

/// util-linux's `setpriv`, found where Debian and others install it.
pub fn setpriv() -> anyhow::Result<&'static str> {
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|path| Path::new(path).is_file())
        .ok_or_else(|| anyhow!("setpriv (util-linux) is needed to run shells as another user"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_fit_and_differ_per_workspace() {
        let a: WorkspaceId = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".parse().unwrap();
        let c: WorkspaceId = "1f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".parse().unwrap();
        assert_eq!(Accounts::name_of(a), "sam-0f1e2d3c4b5a69788796a5b4");
        assert!(Accounts::name_of(a).len() <= 32);
        assert_ne!(Accounts::name_of(a), Accounts::name_of(c));
    }
}
