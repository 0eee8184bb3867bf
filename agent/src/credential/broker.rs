//! The agent's side of git credentials in shells: a Unix socket per workspace, and sam
//! asked for a fresh repository token on demand.
//!
//! The sockets live in `<root>/.git-credentials/`, a folder the agent owns (the shells
//! may cross it, not list it), never inside the checkout: the checkout belongs to the
//! shells' account, and the agent (root, then) must not create files where that account
//! could have put a symlink. Each socket belongs to the shells' account, mode 0600.
//!
//! A question is answered only for the socket's own workspace and for the scheme and
//! host of the workspace's remote, so a token never goes to another server (a URL typed
//! in the shell, a submodule). sam decides the rest: whether the workspace is still
//! live, and what the token may do.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::AbortHandle;
use url::Url;

use super::wire::{self, Ask, Reply};
use super::{AgentSocket, USERNAME};
use crate::accounts::ShellUser;
use crate::workspace::WorkspaceId;

/// The folder of the sockets, under the agent's root.
pub const SOCKETS: &str = ".git-credentials";

/// How long a token minted for sam is valid: one request.
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// A token from sam is handed out again only while it has this much life left.
const REUSE_MARGIN: Duration = Duration::from_secs(10 * 60);

/// ...and for this long at most after sam gave it: sam checks, each time it gives one, that
/// the person still has the access the token carries, so a person who lost it loses it in
/// the workspace too within this time.
const MOST_REUSE: Duration = Duration::from_secs(5 * 60);

/// How long sam may take to answer (it asks GitHub in turn).
const CONTROL_PLANE_WAIT: Duration = Duration::from_secs(30);

/// How long a helper may take to send its question.
const ASK_WAIT: Duration = Duration::from_secs(10);

/// The scheme and host git uses to reach a workspace's remote, as git's credential
/// requests spell them (`host` with its port when it is not the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub protocol: String,
    pub host: String,
}

impl Origin {
    /// The origin of an `http(s)://` remote URL; `None` for a local path or another
    /// transport, which needs no credentials.
    pub fn of(url: &str) -> Option<Origin> {
        let url = Url::parse(url).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str()?),
            None => url.host_str()?.to_owned(),
        };
        Some(Origin {
            protocol: url.scheme().to_owned(),
            host,
        })
    }

    /// The URL prefix git matches `credential.<url>.*` settings against.
    pub fn url(&self) -> String {
        format!("{}://{}", self.protocol, self.host)
    }

    /// Whether git's request is about this origin.
    fn matches(&self, protocol: &str, host: &str) -> bool {
        self.protocol == protocol && self.host.eq_ignore_ascii_case(host)
    }
}

/// sam, as the agent reaches it for tokens.
#[derive(Clone)]
pub struct ControlPlane {
    base: Url,
    key: Arc<[u8]>,
    http: reqwest::Client,
}

/// sam's answer for a workspace.
#[derive(Deserialize)]
struct Issued {
    token: String,
    expires_in_secs: u64,
}

impl ControlPlane {
    /// sam at `base`, trusting the agent's token `key`.
    pub fn new(base: Url, key: &[u8]) -> anyhow::Result<Self> {
        // reqwest is built without a TLS provider of its own, as sam's client is; another
        // caller may have installed it already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(CONTROL_PLANE_WAIT)
            .build()
            .context("cannot build the HTTP client for sam")?;
        Ok(Self {
            base,
            key: key.into(),
            http,
        })
    }

    /// A fresh token for `workspace`, or sam's reason for refusing one.
    async fn token(&self, workspace: WorkspaceId) -> anyhow::Result<Result<Issued, String>> {
        let url = self
            .base
            .join(&format!(
                "api/agents/workspaces/{workspace}/git-credentials"
            ))
            .context("cannot build sam's credentials URL")?;
        let bearer = sam_protocol::token::mint_for(
            &self.key,
            sam_protocol::token::CONTROL_PLANE_AUDIENCE,
            &workspace.to_string(),
            TOKEN_TTL,
        );
        let response = self
            .http
            .post(url)
            .bearer_auth(bearer)
            .send()
            .await
            .context("cannot reach sam")?;
        let status = response.status();
        if status.is_success() {
            return Ok(Ok(response
                .json()
                .await
                .context("sam's answer is malformed")?));
        }
        let reason = crate::control::refusal_reason(response).await;
        if status.is_client_error() {
            Ok(Err(reason))
        } else {
            Err(anyhow!(reason))
        }
    }
}

/// The credential sockets of every workspace, and the tokens sam gave for them.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    control: ControlPlane,
    listeners: Mutex<HashMap<WorkspaceId, AbortHandle>>,
    tokens: Mutex<HashMap<WorkspaceId, (String, Instant)>>,
}

impl Broker {
    /// Prepares `<root>/.git-credentials`, clearing sockets a previous run left.
    pub fn open(root: &Path, control: ControlPlane) -> anyhow::Result<Self> {
        let dir = root.join(SOCKETS);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("cannot let shells reach {}", dir.display()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                control,
                listeners: Mutex::default(),
                tokens: Mutex::default(),
            }),
        })
    }

    /// Where the helper of workspace `id` asks.
    pub fn socket_for(&self, id: WorkspaceId) -> AgentSocket {
        AgentSocket {
            socket: self.inner.dir.join(format!("{id}.sock")),
            workspace: id.to_string(),
        }
    }

    /// Starts answering on workspace `id`'s socket, for its remote at `origin`; only
    /// `owner`, the workspace's account when it has one, may connect.
    pub fn listen(
        &self,
        id: WorkspaceId,
        origin: Origin,
        owner: Option<&ShellUser>,
    ) -> anyhow::Result<()> {
        let path = self.socket_for(id).socket;
        self.stop(id);
        let listener =
            UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
        if let Some(owner) = owner {
            owner.take_ownership(&path)?;
        }
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let inner = inner.clone();
                        let origin = origin.clone();
                        tokio::spawn(async move {
                            if let Err(error) = inner.serve(id, &origin, stream).await {
                                tracing::warn!(workspace = %id, error = format!("{error:#}"), "credential request failed");
                            }
                        });
                    }
                    Err(error) => {
                        tracing::warn!(workspace = %id, %error, "credential socket failed");
                        return;
                    }
                }
            }
        });
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id, task.abort_handle());
        Ok(())
    }

    /// Stops answering for workspace `id` and forgets its token.
    pub fn stop(&self, id: WorkspaceId) {
        if let Some(task) = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&id)
        {
            task.abort();
        }
        self.inner
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&id);
        let path = self.socket_for(id).socket;
        if let Err(error) = std::fs::remove_file(&path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), %error, "cannot remove a credential socket");
        }
    }
}

impl Inner {
    /// One helper's question and the answer.
    async fn serve(
        &self,
        id: WorkspaceId,
        origin: &Origin,
        stream: UnixStream,
    ) -> anyhow::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut line = Vec::new();
        let mut reader = BufReader::new(read.take(wire::READ_LIMIT));
        tokio::time::timeout(ASK_WAIT, reader.read_until(b'\n', &mut line))
            .await
            .context("the helper did not ask in time")?
            .context("cannot read the helper's question")?;
        if line.is_empty() {
            // Connected and left without asking: nothing to answer.
            return Ok(());
        }
        let reply = match wire::decode_line::<Ask>(&line) {
            Ok(ask) => self.reply(id, origin, &ask).await,
            // Too long or malformed: the error's own words, without parser details.
            Err(error) => refused(error.to_string()),
        };
        write.write_all(&wire::encode_line(&reply)?).await?;
        write.shutdown().await?;
        Ok(())
    }

    async fn reply(&self, id: WorkspaceId, origin: &Origin, ask: &Ask) -> Reply {
        if ask.workspace != id.to_string() {
            return refused("this socket serves another workspace");
        }
        if !origin.matches(&ask.protocol, &ask.host) {
            return refused(format!(
                "credentials are only given for {}, not {}://{}",
                origin.url(),
                ask.protocol,
                ask.host
            ));
        }
        match self.token(id).await {
            Ok(Ok(token)) => Reply::Granted {
                username: USERNAME.into(),
                password: token,
            },
            Ok(Err(reason)) => {
                tracing::info!(workspace = %id, %reason, "sam refused git credentials");
                refused(reason)
            }
            Err(error) => {
                tracing::warn!(workspace = %id, error = format!("{error:#}"), "cannot obtain git credentials");
                refused(format!("cannot obtain a token from sam: {error:#}"))
            }
        }
    }

    /// The token sam last gave for `id` while it has life left, else a new one.
    async fn token(&self, id: WorkspaceId) -> anyhow::Result<Result<String, String>> {
        let cached = self
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&id)
            .filter(|(_, good_until)| Instant::now() < *good_until)
            .map(|(token, _)| token.clone());
        if let Some(token) = cached {
            return Ok(Ok(token));
        }
        let issued = match self.control.token(id).await? {
            Ok(issued) => issued,
            Err(reason) => return Ok(Err(reason)),
        };
        let life = Duration::from_secs(issued.expires_in_secs);
        if let Some(reusable) = life.checked_sub(REUSE_MARGIN) {
            self.tokens
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(
                    id,
                    (
                        issued.token.clone(),
                        Instant::now() + reusable.min(MOST_REUSE),
                    ),
                );
        }
        Ok(Ok(issued.token))
    }
}

fn refused(reason: impl Into<String>) -> Reply {
    Reply::Refused {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_keeps_a_port_only_when_it_is_not_the_default() {
        assert_eq!(
            Origin::of("https://github.com/o/r.git"),
            Some(Origin {
                protocol: "https".into(),
                host: "github.com".into()
            })
        );
        let local = Origin::of("http://127.0.0.1:8080/o/r.git").unwrap();
        assert_eq!(local.host, "127.0.0.1:8080");
        assert_eq!(local.url(), "http://127.0.0.1:8080");
        assert_eq!(
            Origin::of("https://github.com:443/o/r").unwrap().host,
            "github.com"
        );
    }

    #[test]
    fn local_paths_and_other_transports_have_no_origin() {
        for url in [
            "/srv/git/o/r.git",
            "file:///srv/o/r.git",
            "ssh://git@github.com/o/r",
        ] {
            assert_eq!(Origin::of(url), None, "{url}");
        }
    }

    #[test]
    fn origin_matches_only_its_own_scheme_and_host() {
        let origin = Origin::of("https://github.com/o/r.git").unwrap();
        assert!(origin.matches("https", "github.com"));
        assert!(origin.matches("https", "GitHub.com"));
        assert!(!origin.matches("http", "github.com"));
        assert!(!origin.matches("https", "github.com.evil.example"));
        assert!(!origin.matches("https", "github.com:8443"));
    }

    fn broker(dir: &Path) -> Broker {
        // Nothing listens there: a question that reaches sam fails to connect.
        let control = ControlPlane::new("http://127.0.0.1:9/".parse().unwrap(), b"key").unwrap();
        Broker::open(dir, control).unwrap()
    }

    async fn ask(broker: &Broker, id: WorkspaceId, ask: &Ask) -> Reply {
        send(broker, id, &wire::encode_line(ask).unwrap()).await
    }

    /// Sends `line` as it is and reads the answer.
    async fn send(broker: &Broker, id: WorkspaceId, line: &[u8]) -> Reply {
        let via = broker.socket_for(id);
        let mut stream = UnixStream::connect(&via.socket).await.unwrap();
        stream.write_all(line).await.unwrap();
        let mut answer = Vec::new();
        BufReader::new(stream.take(wire::READ_LIMIT))
            .read_until(b'\n', &mut answer)
            .await
            .unwrap();
        wire::decode_line(&answer).unwrap()
    }

    fn reason(reply: Reply) -> String {
        match reply {
            Reply::Refused { reason } => reason,
            granted => panic!("expected a refusal, got {granted:?}"),
        }
    }

    #[tokio::test]
    async fn questions_about_another_workspace_or_host_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let broker = broker(root.path());
        let id: WorkspaceId = "6f1c1c52-8a8e-4a53-9c1b-6e0f2a8f0b11".parse().unwrap();
        broker
            .listen(id, Origin::of("https://github.com/o/r.git").unwrap(), None)
            .unwrap();

        let other = ask(
            &broker,
            id,
            &Ask {
                workspace: "0b0a0c52-8a8e-4a53-9c1b-6e0f2a8f0b11".into(),
                protocol: "https".into(),
                host: "github.com".into(),
            },
        )
        .await;
        assert!(reason(other).contains("another workspace"));

        let elsewhere = ask(
            &broker,
            id,
            &Ask {
                workspace: id.to_string(),
                protocol: "https".into(),
                host: "evil.example".into(),
            },
        )
        .await;
        assert!(reason(elsewhere).contains("only given for https://github.com"));

        // The right question goes on to sam, which is not there here.
        let unreachable = ask(
            &broker,
            id,
            &Ask {
                workspace: id.to_string(),
                protocol: "https".into(),
                host: "github.com".into(),
            },
        )
        .await;
        assert!(reason(unreachable).contains("cannot obtain a token from sam"));
    }

    #[tokio::test]
    async fn an_overlong_or_malformed_question_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let broker = broker(root.path());
        let id: WorkspaceId = "6f1c1c52-8a8e-4a53-9c1b-6e0f2a8f0b11".parse().unwrap();
        broker
            .listen(id, Origin::of("https://github.com/o/r.git").unwrap(), None)
            .unwrap();

        // A question for another workspace, padded past the limit: what the broker
        // reads of it parses, so only the length check refuses it.
        let mut line = wire::encode_line(&Ask {
            workspace: "0b0a0c52-8a8e-4a53-9c1b-6e0f2a8f0b11".into(),
            protocol: "https".into(),
            host: "github.com".into(),
        })
        .unwrap();
        line.pop();
        line.resize(wire::MAX_LINE + 10, b' ');
        line.push(b'\n');
        let overlong = send(&broker, id, &line).await;
        assert!(reason(overlong).contains("longer than"));

        let malformed = send(&broker, id, b"{\"workspace\":1}\n").await;
        assert!(reason(malformed).contains("malformed"));
    }

    #[tokio::test]
    async fn a_stopped_workspace_has_no_socket() {
        let root = tempfile::tempdir().unwrap();
        let broker = broker(root.path());
        let id: WorkspaceId = "6f1c1c52-8a8e-4a53-9c1b-6e0f2a8f0b11".parse().unwrap();
        let origin = Origin::of("https://github.com/o/r.git").unwrap();
        broker.listen(id, origin.clone(), None).unwrap();
        let socket = broker.socket_for(id).socket;
        assert!(socket.exists());
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        broker.stop(id);
        assert!(!socket.exists());
        assert!(UnixStream::connect(&socket).await.is_err());
        // Listening again (an agent restart, a second checkout) works.
        broker.listen(id, origin, None).unwrap();
        assert!(UnixStream::connect(&socket).await.is_ok());
    }
}
