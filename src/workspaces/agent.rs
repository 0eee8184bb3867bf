//! The client side of `sam-agent`'s API, whichever host the agent runs on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

/// How long an agent token lives: long enough for one request or one socket to open.
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// How long reaching an agent may take, TCP and TLS handshakes included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening a terminal socket may take: generous, as an agent opening many
/// sessions at once answers each upgrade late, but bounded, so a host that swallows
/// packets does not hold the browser's socket forever.
const OPEN_TERMINAL_TIMEOUT: Duration = Duration::from_secs(30);

/// An agent reachable at `authority` (like `127.0.0.1:4100`), trusting tokens signed by
/// `key`.
#[derive(Clone)]
pub struct AgentClient {
    /// `http://` or `https://` and the authority.
    base: String,
    authority: String,
    /// TLS that accepts only the agent's pinned certificate; `None` for plain HTTP.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    key: Arc<[u8]>,
    http: reqwest::Client,
}

/// Whatever a terminal socket to an agent runs over: TCP, or TLS over TCP.
pub trait AgentIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> AgentIo for T {}

/// A terminal socket to an agent.
pub type AgentSocket = WebSocketStream<Box<dyn AgentIo>>;

/// What to check out, as the agent's `PUT /workspaces/{id}` takes it.
#[derive(Debug, Serialize)]
pub struct Checkout<'a> {
    pub clone_url: &'a str,
    pub branch: &'a str,
    pub commit: &'a str,
    pub fetch_ref: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_user: Option<GitUser<'a>>,
}

/// The identity commits made in the workspace carry.
#[derive(Debug, Serialize)]
pub struct GitUser<'a> {
    pub name: &'a str,
    pub email: &'a str,
}

/// A checkout the agent refused or could not make, with git's own words.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CheckoutFailed {
    pub message: String,
    pub log: String,
}

#[derive(Deserialize)]
struct AgentError {
    error: String,
    #[serde(default)]
    log: String,
}

impl AgentClient {
    /// Plain HTTP and WebSocket to the agent at `authority`: only for an agent whose
    /// traffic never leaves sam's machine.
    pub fn plain(authority: String, key: Arc<[u8]>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .expect("a plain HTTP client always builds");
        Self {
            base: format!("http://{authority}"),
            authority,
            tls: None,
            key,
            http,
        }
    }

    /// HTTPS and WSS to the agent at `address` and `port`, which must present
    /// `certificate` (DER) and no other.
    pub fn pinned(
        address: &str,
        port: u16,
        key: Arc<[u8]>,
        certificate: &[u8],
    ) -> anyhow::Result<Self> {
        let config = super::pinned::client_config(certificate)?;
        let authority = match address.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port).to_string(),
            Err(_) => format!("{address}:{port}"),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tls_backend_preconfigured(ClientConfig::clone(&config))
            .build()
            .context("building the agent's HTTPS client")?;
        Ok(Self {
            base: format!("https://{authority}"),
            authority,
            tls: Some((config, super::pinned::server_name(address)?)),
            key,
            http,
        })
    }

    fn token(&self, workspace: Uuid) -> String {
        sam_protocol::token::mint(&self.key, &workspace.to_string(), TOKEN_TTL)
    }

    /// Checks a token the agent presents to sam about `workspace`: signed with this
    /// agent's key, meant for sam, unexpired, and naming that workspace.
    pub fn verify_agent_token(
        &self,
        token: &str,
        workspace: Uuid,
    ) -> Result<(), sam_protocol::TokenError> {
        sam_protocol::token::verify_for(
            &self.key,
            sam_protocol::token::CONTROL_PLANE_AUDIENCE,
            token,
            &workspace.to_string(),
        )
    }

    /// Clones and checks out; the agent answers when the workspace is ready.
    pub async fn checkout(
        &self,
        workspace: Uuid,
        checkout: &Checkout<'_>,
    ) -> anyhow::Result<Result<(), CheckoutFailed>> {
        let response = self
            .http
            .put(format!("{}/workspaces/{workspace}", self.base))
            .bearer_auth(self.token(workspace))
            .timeout(Duration::from_secs(15 * 60))
            .json(checkout)
            .send()
            .await
            .context("reaching the workspace agent")?;
        if response.status().is_success() {
            return Ok(Ok(()));
        }
        let status = response.status();
        let failure = match response.json::<AgentError>().await {
            Ok(e) => CheckoutFailed {
                message: e.error,
                log: e.log,
            },
            Err(_) => CheckoutFailed {
                message: format!("the workspace agent answered {status}"),
                log: String::new(),
            },
        };
        Ok(Err(failure))
    }

    /// Hangs up a workspace's shells, keeping its files.
    pub async fn stop(&self, workspace: Uuid) -> anyhow::Result<()> {
        self.send(
            self.http
                .post(format!("{}/workspaces/{workspace}/stop", self.base)),
            workspace,
        )
        .await
    }

    /// Hangs up a workspace's shells and removes its files.
    pub async fn delete(&self, workspace: Uuid) -> anyhow::Result<()> {
        self.send(
            self.http
                .delete(format!("{}/workspaces/{workspace}", self.base)),
            workspace,
        )
        .await
    }

    async fn send(&self, request: reqwest::RequestBuilder, workspace: Uuid) -> anyhow::Result<()> {
        request
            .bearer_auth(self.token(workspace))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .context("reaching the workspace agent")?
            .error_for_status()
            .context("the workspace agent refused")?;
        Ok(())
    }

    /// Whether the agent answers its health check.
    pub async fn is_healthy(&self) -> bool {
        let response = self
            .http
            .get(format!("{}/healthz", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        response.is_ok_and(|r| r.status().is_success())
    }

    /// Opens a socket to terminal session `session` of a workspace.
    pub async fn open_terminal(
        &self,
        workspace: Uuid,
        session: &str,
    ) -> anyhow::Result<AgentSocket> {
        let request = self.terminal_request(workspace, session)?;
        let open = async {
            let tcp = TcpStream::connect(&self.authority)
                .await
                .context("reaching the workspace agent")?;
            // Without Nagle's algorithm: a keystroke sent right after an ack would
            // otherwise wait for the agent's delayed TCP acknowledgement of the ack,
            // about 40 ms.
            tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
            let io: Box<dyn AgentIo> = match &self.tls {
                None => Box::new(tcp),
                Some((config, name)) => Box::new(
                    tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name.clone(), tcp)
                        .await
                        .context("TLS with the workspace agent")?,
                ),
            };
            let (socket, _) = tokio_tungstenite::client_async(request, io)
                .await
                .context("the workspace agent refused the terminal")?;
            anyhow::Ok(socket)
        };
        tokio::time::timeout(OPEN_TERMINAL_TIMEOUT, open)
            .await
            .context("the workspace agent did not answer in time")?
    }

    /// The WebSocket request that attaches to terminal session `session` of a workspace.
    fn terminal_request(
        &self,
        workspace: Uuid,
        session: &str,
    ) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let url = format!(
            "{scheme}://{}/workspaces/{workspace}/sessions/{}",
            self.authority,
            urlencoding::encode(session)
        );
        let mut request = url.into_client_request().context("terminal URL")?;
        let bearer = format!("Bearer {}", self.token(workspace));
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, bearer.parse()?);
        Ok(request)
    }
}
