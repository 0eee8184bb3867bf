//! The `local` provider: workspaces on sam's own machine, served by a `sam-agent` child
//! process that sam starts, watches and restarts.
//!
//! The agent is a separate process even here so that shells never share an address space,
//! an environment or a crash with the server, and so that the local and remote providers
//! speak to agents the same way.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::RngExt;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::agent::AgentClient;

/// Handle on the supervised local agent; `client()` always names the live process.
#[derive(Clone)]
pub struct LocalAgent {
    current: watch::Receiver<Option<AgentClient>>,
}

#[derive(Deserialize)]
struct Announcement {
    listen: String,
}

impl LocalAgent {
    /// Starts the agent and a task that restarts it whenever it exits; with
    /// `account_per_workspace`, each workspace's shells run as an account of its own, and
    /// git in them gets tokens from sam at `control_url`.
    pub async fn start(
        program: PathBuf,
        root: PathBuf,
        account_per_workspace: bool,
        control_url: url::Url,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let agent = Agent {
            program,
            root,
            account_per_workspace,
            control_url,
        };
        let (child, client) = agent.spawn().await?;
        let (publish, current) = watch::channel(Some(client));
        tokio::spawn(supervise(agent, child, publish));
        Ok(Self { current })
    }

    /// The client of the running agent; waits a little while it is being restarted.
    pub async fn client(&self) -> anyhow::Result<AgentClient> {
        let mut current = self.current.clone();
        let wait = current.wait_for(Option::is_some);
        match tokio::time::timeout(Duration::from_secs(10), wait).await {
            Ok(Ok(client)) => Ok(client.clone().expect("waited for Some")),
            _ => bail!("the local workspace agent is not running"),
        }
    }
}

/// Finds `sam-agent` beside the running `sam` binary, as cargo and packages install them.
pub fn agent_program() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the sam binary")?;
    let dir = exe.parent().context("the sam binary has no directory")?;
    // Test binaries live one level down, in `deps/`.
    for candidate in [dir.join("sam-agent"), dir.join("../sam-agent")] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "sam-agent was not found beside {}; build it with `{}`",
        exe.display(),
        agent_build_command()
    )
}

/// The command that puts `sam-agent` beside this `sam`: cargo keeps each profile's
/// binaries apart, so an optimized sam needs an optimized agent.
fn agent_build_command() -> &'static str {
    if cfg!(debug_assertions) {
        "cargo build -p sam-agent"
    } else {
        "cargo build --release -p sam-agent"
    }
}

/// The account shells run as when sam runs as root.
/// When sam runs as root, each workspace's shells get an account of their own (the agent
/// creates it), so that they cannot read sam's data directory, its keys or other
/// workspaces: this lets those accounts reach (not list) the workspaces under `data_dir`.
/// As any other user, sam cannot switch users, and shells run as sam's own.
pub fn account_per_workspace(data_dir: &Path) -> anyhow::Result<bool> {
    if !nix::unistd::geteuid().is_root() {
        tracing::warn!(
            "sam does not run as root, so shells run as its own user and can read its data directory"
        );
        return Ok(false);
    }
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("letting shells reach {}", data_dir.display()))?;
    Ok(true)
}

/// The URL the local agent reaches sam at: its own listen address, on the loopback
/// interface when sam listens on every interface.
pub fn control_url(listen: std::net::SocketAddr) -> url::Url {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let address = std::net::SocketAddr::new(ip, listen.port());
    url::Url::parse(&format!("http://{address}/")).expect("an address makes a valid URL")
}

/// How to start the agent, kept for restarts.
struct Agent {
    program: PathBuf,
    root: PathBuf,
    account_per_workspace: bool,
    control_url: url::Url,
}

impl Agent {
    async fn spawn(&self) -> anyhow::Result<(Child, AgentClient)> {
        let key: [u8; 32] = rand::rng().random();
        let mut command = Command::new(&self.program);
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--root")
            .arg(&self.root)
            .arg("--control-url")
            .arg(self.control_url.as_str());
        if self.account_per_workspace {
            command.arg("--account-per-workspace");
        }
        let mut child = command
            .env("SAM_AGENT_KEY", hex::encode(key))
            // The agent's own environment must not carry sam's secrets into shells.
            .env_remove("GITHUB_APP_PRIVATE_KEY")
            .env_remove("GITHUB_WEBHOOK_SECRET")
            .env_remove("GITHUB_CLIENT_SECRET")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;

        let stdout = child.stdout.take().context("agent stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("the workspace agent did not announce its address in time")?
            .context("reading the agent's announcement")?
            .context("the workspace agent exited before listening")?;
        let announcement: Announcement = serde_json::from_str(&line)
            .with_context(|| format!("unexpected agent announcement {line:?}"))?;
        tracing::info!(listen = %announcement.listen, pid = child.id(), "workspace agent started");
        // Plain HTTP: the agent listens on loopback beside sam, so its traffic never
        // crosses a network anyone else could read, and anyone on this machine who could
        // read loopback traffic could read sam's memory and keys too.
        let client = AgentClient::plain(announcement.listen, Arc::from(key.as_slice()));
        Ok((child, client))
    }
}

async fn supervise(agent: Agent, mut child: Child, publish: watch::Sender<Option<AgentClient>>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let status = child.wait().await;
        publish.send_replace(None);
        tracing::warn!(?status, "workspace agent exited; restarting it");
        loop {
            if publish.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            match agent.spawn().await {
                Ok((next, client)) => {
                    child = next;
                    publish.send_replace(Some(client));
                    backoff = Duration::from_millis(200);
                    break;
                }
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "restarting the workspace agent failed"
                    );
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_reaches_sam_on_loopback() {
        let url = |listen: &str| control_url(listen.parse().unwrap()).to_string();
        assert_eq!(url("127.0.0.1:3000"), "http://127.0.0.1:3000/");
        assert_eq!(url("0.0.0.0:3000"), "http://127.0.0.1:3000/");
        assert_eq!(url("[::]:3000"), "http://[::1]:3000/");
        assert_eq!(url("10.0.0.5:8080"), "http://10.0.0.5:8080/");
    }

    #[test]
    fn a_missing_agent_is_built_with_the_profile_sam_was_built_with() {
        let command = agent_build_command();
        assert!(command.starts_with("cargo build"), "{command}");
        assert_eq!(command.contains("--release"), !cfg!(debug_assertions));
    }
}
