//! The account shells run as, when the agent runs as root.
//!
//! A shell under the agent's own user could read whatever the agent and sam can: sam's
//! data directory with its link-signing key, the App's private key file, other
//! workspaces. Under an account of its own it reaches only its workspace (handed to it
//! after the checkout) and what any user may read.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use nix::unistd::{Gid, Uid, User};

/// An existing account, resolved once at start-up.
#[derive(Debug, Clone)]
pub struct ShellUser {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    pub home: PathBuf,
}

impl ShellUser {
    /// Looks the account up by name; it must exist, and must not be root.
    pub fn lookup(name: &str) -> anyhow::Result<Self> {
        let user = User::from_name(name)
            .with_context(|| format!("cannot look up the user {name:?}"))?
            .ok_or_else(|| anyhow!("there is no user {name:?} to run shells as"))?;
        if user.uid.is_root() {
            return Err(anyhow!("shells must not run as root, and {name:?} is root"));
        }
        Ok(Self {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            home: user.dir,
        })
    }

    /// Hands a finished checkout, or a single file, to the account, symlinks included but
    /// not followed.
    pub fn take_ownership(&self, dir: &Path) -> anyhow::Result<()> {
        for entry in walkdir::WalkDir::new(dir) {
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
