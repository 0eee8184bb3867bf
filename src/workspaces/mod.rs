//! Workspaces: a branch checked out on a host, with shells to open on it, and the
//! providers that place them.

pub mod agent;
pub mod local;
mod state;

pub use state::State;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

use crate::database::workspaces::{self as db, NewWorkspace, WorkspaceModel};
use crate::github::GitHub;
use agent::{AgentClient, Checkout, CheckoutFailed, GitUser};
use local::LocalAgent;

/// Where workspaces run. Only the local provider exists for now; remote providers hand out
/// agents on other hosts behind the same client.
#[derive(Clone)]
pub enum Provider {
    Local(LocalAgent),
}

impl Provider {
    /// The agent that holds (or will hold) a workspace.
    pub async fn agent_for(&self, _workspace: Uuid) -> anyhow::Result<AgentClient> {
        match self {
            Provider::Local(agent) => agent.client().await,
        }
    }
}

/// A request to open a workspace, authorized already.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    pub installation_id: u64,
    pub repo_id: u64,
    pub repo_full_name: String,
    pub clone_url: String,
    pub issue_number: u64,
    pub is_pull_request: bool,
    pub branch: String,
    pub fetch_ref: String,
    pub head_sha: String,
    pub requester_id: u64,
    pub requester_login: String,
}

/// How provisioning ended.
#[derive(Debug)]
pub enum Provisioned {
    Ready,
    Failed(CheckoutFailed),
}

/// Creates, provisions and tracks workspaces.
#[derive(Clone)]
pub struct Workspaces {
    db: PgPool,
    github: GitHub,
    provider: Provider,
}

impl Workspaces {
    /// The service over a database, GitHub and a provider.
    pub fn new(db: PgPool, github: GitHub, provider: Provider) -> Self {
        Self {
            db,
            github,
            provider,
        }
    }

    /// The provider, for the terminal relay.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// Finds the live workspace for this repository, branch and person, or records a new one.
    pub async fn find_or_create(
        &self,
        request: &OpenRequest,
    ) -> anyhow::Result<(WorkspaceModel, bool)> {
        let new = NewWorkspace {
            installation_id: request.installation_id as i64,
            repo_id: request.repo_id as i64,
            repo_full_name: &request.repo_full_name,
            clone_url: &request.clone_url,
            issue_number: request.issue_number as i64,
            is_pull_request: request.is_pull_request,
            branch: &request.branch,
            fetch_ref: &request.fetch_ref,
            head_sha: &request.head_sha,
            requester_id: request.requester_id as i64,
            requester_login: &request.requester_login,
        };
        db::create_or_find(&self.db, &new)
            .await
            .context("recording the workspace")
    }

    /// Checks the branch out on a host and records the outcome.
    pub async fn provision(&self, workspace: &WorkspaceModel) -> anyhow::Result<Provisioned> {
        db::transition(&self.db, workspace.id, State::Provisioning, None).await?;
        let token = self
            .github
            .installation_token(workspace.installation_id as u64)
            .await?;
        let agent = self.provider.agent_for(workspace.id).await?;
        let email = format!(
            "{}+{}@users.noreply.github.com",
            workspace.requester_id, workspace.requester_login
        );
        let checkout = Checkout {
            clone_url: &workspace.clone_url,
            branch: &workspace.branch,
            commit: &workspace.head_sha,
            fetch_ref: &workspace.fetch_ref,
            git_token: Some(token.expose_secret()),
            git_user: Some(GitUser {
                name: &workspace.requester_login,
                email: &email,
            }),
        };
        match agent.checkout(workspace.id, &checkout).await? {
            Ok(()) => {
                db::transition(&self.db, workspace.id, State::Ready, None).await?;
                Ok(Provisioned::Ready)
            }
            Err(failed) => {
                db::transition(&self.db, workspace.id, State::Failed, Some(&failed.message))
                    .await?;
                Ok(Provisioned::Failed(failed))
            }
        }
    }

    /// Marks a workspace failed for a reason outside the agent (GitHub or the host away).
    pub async fn fail(&self, workspace: Uuid, reason: &str) -> anyhow::Result<()> {
        db::transition(&self.db, workspace, State::Failed, Some(reason))
            .await
            .context("recording the failure")
    }

    /// Reads a workspace.
    pub async fn get(&self, id: Uuid) -> anyhow::Result<Option<WorkspaceModel>> {
        db::get(&self.db, id).await.context("reading the workspace")
    }
}
