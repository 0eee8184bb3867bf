//! The client side of `sam-agent`'s API, whichever host the agent runs on.

use std::time::Duration;

use anyhow::Context;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

/// How long an agent token lives: long enough for one request or one socket to open.
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// An agent reachable at `base` (like `http://127.0.0.1:4100`), trusting tokens signed by `key`.
#[derive(Clone)]
pub struct AgentClient {
    base: String,
    key: Arc<[u8]>,
    http: reqwest::Client,
}

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
    /// A client for the agent at `base`.
    pub fn new(base: String, key: Arc<[u8]>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("a plain HTTP client always builds");
        Self { base, key, http }
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

    /// The WebSocket request that attaches to terminal session `session` of a workspace.
    pub fn terminal_request(
        &self,
        workspace: Uuid,
        session: &str,
    ) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
        let ws_base = self.base.replacen("http", "ws", 1);
        let url = format!(
            "{ws_base}/workspaces/{workspace}/sessions/{}",
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
