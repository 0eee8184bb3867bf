//! Checking out one branch at one commit into a fresh directory.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::Ready;
use super::git::{Git, Output};
use super::request::CheckoutRequest;
use crate::credential::broker::Origin;
use crate::credential::{self, AgentSocket, TOKEN_VAR};

/// Where a checkout notes what it checked out, inside `.git` so it never shows in
/// `git status`.
const MARKER: &str = ".git/sam-workspace.json";

#[derive(Serialize, Deserialize)]
struct Marker {
    branch: String,
    /// The remote's URL as git reaches it (after `url.<base>.insteadOf`), whose scheme
    /// and host are the only ones the workspace's credentials are given for.
    #[serde(default)]
    remote: Option<String>,
}

impl Marker {
    /// The marker of the ready workspace in `dir`.
    ///
    /// The checkout belongs to the workspace's account, whose shells may put anything in
    /// the marker's place; the agent reads it as root. So a link is not followed, a FIFO
    /// cannot hold the open or the read, and only a small regular file is read.
    fn read(dir: &Path) -> anyhow::Result<Marker> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        const MAX_MARKER: u64 = 64 * 1024;
        let path = dir.join(MARKER);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .with_context(|| format!("{} has no workspace marker", dir.display()))?;
        let metadata = file.metadata()?;
        if !metadata.is_file() || metadata.len() > MAX_MARKER {
            bail!("{} is not a workspace marker", path.display());
        }
        let mut marker = Vec::new();
        file.take(MAX_MARKER).read_to_end(&mut marker)?;
        serde_json::from_slice(&marker).context("the workspace marker is unreadable")
    }

    /// The origin credentials are given for; `None` for a remote that needs none, or a
    /// checkout made before the marker said.
    fn origin(&self) -> Option<Origin> {
        Origin::of(self.remote.as_deref()?)
    }
}

/// Why a checkout did not happen.
#[derive(Debug, Error)]
pub enum CheckoutError {
    /// The request cannot be served as asked: an invalid name, an unreachable
    /// repository, a commit that is not there. `log` is the tail of git's stderr.
    #[error("{message}")]
    Refused { message: String, log: String },
    /// The agent itself failed: disk, a missing git, a timeout.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl CheckoutError {
    pub(super) fn timed_out(limit: std::time::Duration) -> Self {
        CheckoutError::Internal(anyhow::anyhow!(
            "the checkout did not finish within {} s",
            limit.as_secs()
        ))
    }
}

/// A step's failure before git's log is attached.
enum Failure {
    Refused(String),
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Internal(error)
    }
}

/// One checkout into `dir`, which is created (or emptied) first.
pub struct Checkout<'a> {
    /// Where the repository is made.
    pub dir: &'a Path,
    /// The agent binary, git's credential helper for the fetch.
    pub helper_exe: &'a Path,
    /// What to check out.
    pub request: &'a CheckoutRequest,
    /// Where git in the workspace's shells asks for credentials, when the agent can get
    /// them from sam.
    pub shell_credentials: Option<&'a AgentSocket>,
}

impl Checkout<'_> {
    /// Runs every step and returns the origin the workspace's credentials are for, the
    /// one its marker names; on failure the caller removes `dir`.
    pub async fn run(&self) -> Result<Option<Origin>, CheckoutError> {
        self.request
            .validate()
            .map_err(|message| CheckoutError::Refused {
                message,
                log: String::new(),
            })?;
        fresh_dir(self.dir).await?;

        let token = self.request.git_token.as_ref().map(|t| t.expose());
        let mut git = Git::new(self.dir).redacting(token);
        match self.steps(&mut git, token).await {
            Ok(origin) => Ok(origin),
            Err(Failure::Refused(message)) => Err(CheckoutError::Refused {
                message,
                log: git.into_log(),
            }),
            Err(Failure::Internal(error)) => Err(CheckoutError::Internal(error)),
        }
    }

    async fn steps(
        &self,
        git: &mut Git<'_>,
        token: Option<&str>,
    ) -> Result<Option<Origin>, Failure> {
        let request = self.request;
        let branch = request.branch.as_str();

        // git's own rules for names; `--branch` also expands `@{-1}`, so its answer
        // must be the name itself.
        let checked = git.run(["check-ref-format", "--branch", branch]).await?;
        if !checked.success || checked.stdout != branch {
            return Err(Failure::Refused(format!(
                "{branch:?} is not a valid branch name"
            )));
        }
        let checked = git.run(["check-ref-format", &request.fetch_ref]).await?;
        require(checked, || {
            format!("{:?} is not a valid ref", request.fetch_ref)
        })?;

        require(git.run(["init", "--quiet"]).await?, || {
            "git init failed".into()
        })?;
        let remote = ["remote", "add", "--", "origin", &request.clone_url];
        require(git.run(remote).await?, || "cannot add the remote".into())?;

        let refspec = match request.tracking_ref() {
            Some(tracking) => format!("+{}:{tracking}", request.fetch_ref),
            None => request.fetch_ref.clone(),
        };
        let fetched = self.fetch(git, token, &refspec).await?;
        require(fetched, || {
            format!(
                "cannot fetch {} from {}",
                request.fetch_ref, request.clone_url
            )
        })?;
        if !has_commit(git, &request.commit).await? {
            // The ref may have moved on without the commit (a force push); ask for
            // the commit itself, which GitHub serves while it is reachable.
            self.fetch(git, token, &request.commit).await?;
            if !has_commit(git, &request.commit).await? {
                return Err(Failure::Refused(format!(
                    "commit {} is not in {} at {}",
                    request.commit, request.clone_url, request.fetch_ref
                )));
            }
        }

        let checkout = ["checkout", "--quiet", "-B", branch, &request.commit, "--"];
        // LFS files stay pointers: fetching them would need the token again.
        let checked_out = git
            .run_with_env(checkout, Some(("GIT_LFS_SKIP_SMUDGE", "1")))
            .await?;
        require(checked_out, || {
            format!("cannot check out {}", request.commit)
        })?;
        if request.tracking_ref().is_some() {
            let upstream = format!("--set-upstream-to=origin/{branch}");
            let tracked = git.run(["branch", "--quiet", &upstream, branch]).await?;
            require(tracked, || {
                format!("cannot make {branch} track origin/{branch}")
            })?;
        }
        if let Some(user) = &request.git_user {
            let name = git.run(["config", "--", "user.name", &user.name]).await?;
            require(name, || "cannot set user.name".into())?;
            let email = git.run(["config", "--", "user.email", &user.email]).await?;
            require(email, || "cannot set user.email".into())?;
        }

        let remote = git.run(["ls-remote", "--get-url", "origin"]).await?;
        let remote = remote.success.then_some(remote.stdout);
        let origin = remote.as_deref().and_then(Origin::of);
        if let (Some(origin), Some(via)) = (&origin, self.shell_credentials) {
            self.configure_helper(git, origin, via).await?;
        }

        let marker = serde_json::to_vec(&Marker {
            branch: branch.to_owned(),
            remote,
        })
        .context("cannot encode the workspace marker")?;
        tokio::fs::write(self.dir.join(MARKER), marker)
            .await
            .context("cannot write the workspace marker")?;
        Ok(origin)
    }

    /// Makes the agent the only credential helper for the remote's origin, in the
    /// checkout's own config: the empty value drops helpers of the system or global
    /// config (one that stores passwords would write tokens to disk). The helper's
    /// command names the agent binary, its socket and the workspace; no secret.
    async fn configure_helper(
        &self,
        git: &mut Git<'_>,
        origin: &Origin,
        via: &AgentSocket,
    ) -> Result<(), Failure> {
        let key = format!("credential.{}.helper", origin.url());
        let command = credential::helper_command(self.helper_exe, Some(via))?;
        for value in ["", command.as_str()] {
            let set = git.run(["config", "--add", "--", &key, value]).await?;
            require(set, || "cannot configure git's credential helper".into())?;
        }
        Ok(())
    }

    /// Fetches with the agent as the only credential helper and the token in the
    /// environment of this git process alone.
    async fn fetch(
        &self,
        git: &mut Git<'_>,
        token: Option<&str>,
        refspec: &str,
    ) -> anyhow::Result<Output> {
        let mut args: Vec<std::ffi::OsString> = credential::helper_config(self.helper_exe)?.into();
        args.extend(["fetch", "--no-tags", "--", "origin", refspec].map(Into::into));
        git.run_with_env(args, token.map(|token| (TOKEN_VAR, token)))
            .await
    }
}

/// What a workspace made before reports, with the branch its marker names.
pub async fn describe_existing(dir: &Path) -> Result<Ready, CheckoutError> {
    let marker = {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || Marker::read(&dir))
            .await
            .context("reading the workspace marker was interrupted")??
    };
    describe(dir, marker.branch).await
}

/// What a ready workspace reports: its path, current commit and `branch`, the one
/// checked out.
pub async fn describe(dir: &Path, branch: String) -> Result<Ready, CheckoutError> {
    // A handed-over checkout's `.git` is its shells' to change: a config that includes a
    // FIFO, say, must not hold the workspace's lock for good. (`rev-parse` runs no hook.)
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(30);
    let head = tokio::time::timeout(LIMIT, Git::new(dir).run(["rev-parse", "--verify", "HEAD"]))
        .await
        .map_err(|_| {
            anyhow::anyhow!("git did not say the HEAD of {} within 30 s", dir.display())
        })??;
    if !head.success {
        return Err(anyhow::anyhow!("{} has no HEAD commit", dir.display()).into());
    }
    Ok(Ready {
        path: dir.to_owned(),
        head: head.stdout,
        branch,
    })
}

/// The origin credentials are given for in a ready workspace, from its marker; `None`
/// for a remote that needs none, a checkout made before the marker said, or a missing
/// or unreadable marker.
pub fn credential_origin(dir: &Path) -> Option<Origin> {
    Marker::read(dir).ok()?.origin()
}

async fn has_commit(git: &mut Git<'_>, commit: &str) -> anyhow::Result<bool> {
    let object = format!("{commit}^{{commit}}");
    Ok(git.run(["cat-file", "-e", &object]).await?.success)
}

fn require(output: Output, message: impl FnOnce() -> String) -> Result<(), Failure> {
    if output.success {
        Ok(())
    } else {
        Err(Failure::Refused(message()))
    }
}

async fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    super::remove_dir(dir).await?;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_for_the_origin_the_marker_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        let marker = dir.path().join(MARKER);

        // A checkout made before markers named the remote gets no credentials.
        std::fs::write(&marker, br#"{"branch":"main"}"#).unwrap();
        assert_eq!(credential_origin(dir.path()), None);

        std::fs::write(
            &marker,
            br#"{"branch":"main","remote":"http://127.0.0.1:8080/o/r.git"}"#,
        )
        .unwrap();
        assert_eq!(
            credential_origin(dir.path()).map(|origin| origin.url()),
            Some("http://127.0.0.1:8080".to_owned())
        );

        // A remote on disk needs none.
        std::fs::write(&marker, br#"{"branch":"main","remote":"/srv/git/o/r.git"}"#).unwrap();
        assert_eq!(credential_origin(dir.path()), None);
    }

    #[test]
    fn a_marker_a_shell_replaced_is_refused_without_waiting_or_following() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        let marker = dir.path().join(MARKER);
        let elsewhere = dir.path().join("elsewhere.json");
        std::fs::write(&elsewhere, br#"{"branch":"main"}"#).unwrap();

        // A FIFO would block an open or read for good: it is refused at once.
        nix::unistd::mkfifo(&marker, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (sent, received) = std::sync::mpsc::channel();
        let path = dir.path().to_owned();
        std::thread::spawn(move || sent.send(Marker::read(&path).is_err()));
        let refused = received.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(refused, Ok(true), "reading a FIFO marker did not end");

        std::fs::remove_file(&marker).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &marker).unwrap();
        assert!(Marker::read(dir.path()).is_err(), "a link was followed");

        std::fs::remove_file(&marker).unwrap();
        std::fs::write(&marker, vec![b' '; 100_000]).unwrap();
        assert!(Marker::read(dir.path()).is_err());

        std::fs::remove_file(&marker).unwrap();
        std::fs::copy(&elsewhere, &marker).unwrap();
        assert_eq!(Marker::read(dir.path()).unwrap().branch, "main");
    }
}
