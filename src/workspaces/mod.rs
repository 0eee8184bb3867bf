//! Workspaces: a branch checked out on a host, with shells to open on it, and the
//! providers that place them.

mod activity;
pub mod agent;
pub mod hetzner;
pub mod local;
pub mod pinned;
pub mod settings;
mod state;

pub use activity::Activity;
pub use state::State;

use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

use crate::commands::HostSize;
use crate::config::Config;
use crate::database::workspaces::{self as db, NewWorkspace, WorkspaceModel};
use crate::github::GitHub;
use agent::{AgentClient, Checkout, CheckoutFailed, GitUser};
use hetzner::HetznerPool;
use local::LocalAgent;
use settings::ProviderConfig;

/// Where workspaces run: beside sam, or on hosts a cloud provider creates. Either way an
/// agent serves them behind the same client.
#[derive(Clone)]
pub enum Provider {
    Local(LocalAgent),
    Hetzner(HetznerPool),
}

impl Provider {
    /// The agent that holds (or will hold) a workspace.
    pub async fn agent_for(&self, workspace: Uuid) -> anyhow::Result<AgentClient> {
        match self {
            Provider::Local(agent) => agent.client().await,
            Provider::Hetzner(pool) => pool.agent_for(workspace).await,
        }
    }

    /// The agent that holds a workspace's files, if any may: none when the workspace
    /// never got a host, or its host's server is gone or going with everything on it.
    pub async fn holder_of(&self, workspace: Uuid) -> anyhow::Result<Option<AgentClient>> {
        match self {
            Provider::Local(agent) => agent.client().await.map(Some),
            Provider::Hetzner(pool) => pool.holder_of(workspace).await,
        }
    }

    /// Finds the workspace a host of its size, waiting for a new one to boot if needed.
    /// The local provider has one host, sam's own machine, whatever the size.
    pub async fn place(
        &self,
        workspace: &WorkspaceModel,
    ) -> anyhow::Result<Result<(), CheckoutFailed>> {
        match self {
            Provider::Local(_) => Ok(Ok(())),
            Provider::Hetzner(pool) => {
                let size = workspace.size.as_deref().and_then(HostSize::parse);
                pool.place(workspace.id, size).await
            }
        }
    }

    /// Whether `--size` changes anything here.
    pub fn has_sizes(&self) -> bool {
        matches!(self, Provider::Hetzner(_))
    }

    /// Starts the configured provider: the local agent, or the Hetzner host pool.
    pub async fn start(config: &Config, db: &PgPool) -> anyhow::Result<Self> {
        match &config.provider {
            ProviderConfig::Local => {
                let root = config.data_dir.join("workspaces");
                std::fs::create_dir_all(&root)
                    .with_context(|| format!("creating {}", root.display()))?;
                let accounts = local::account_per_workspace(&config.data_dir)?;
                let control_url = local::control_url(config.listen);
                let agent = LocalAgent::start(local::agent_program()?, root, accounts, control_url)
                    .await
                    .context("starting the local workspace agent")?;
                Ok(Provider::Local(agent))
            }
            ProviderConfig::Hetzner(settings) => Ok(Provider::Hetzner(HetznerPool::start(
                settings.as_ref().clone(),
                db.clone(),
                &config.data_dir,
                &config.public_url,
            )?)),
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
    /// The size `/sam open --size` asked for; the provider decides what it means.
    pub size: Option<HostSize>,
}

/// What provisioning is doing, as the workspace's status comment shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A new checkout: the host fetches the branch.
    Cloning,
    /// A stopped workspace comes back from the checkout it kept.
    Starting,
}

/// How provisioning ended.
#[derive(Debug)]
pub enum Provisioned {
    Ready,
    Failed(CheckoutFailed),
    /// Another delivery is preparing it, or it was moved on while git ran: whoever did that
    /// reports it.
    Overtaken,
}

/// Creates, provisions and tracks workspaces.
#[derive(Clone)]
pub struct Workspaces {
    db: PgPool,
    github: GitHub,
    provider: Provider,
    activity: Arc<Activity>,
}

impl Workspaces {
    /// The service over a database, GitHub and a provider.
    pub fn new(db: PgPool, github: GitHub, provider: Provider) -> Self {
        Self {
            db,
            github,
            provider,
            activity: Arc::default(),
        }
    }

    /// When each workspace last carried terminal traffic; the relay records it.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
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
            size: request.size.map(|size| size.as_str()),
        };
        db::create_or_find(&self.db, &new)
            .await
            .context("recording the workspace")
    }

    /// Checks the branch out on a host and records the outcome, telling `progress` what it
    /// is doing.
    pub async fn provision(
        &self,
        workspace: &WorkspaceModel,
        progress: impl Fn(Step) + Send,
    ) -> anyhow::Result<Provisioned> {
        // Two deliveries may both find a stopped workspace and want to start it: one wins.
        let from = [State::Requested, State::Stopped];
        if !db::transition_from(&self.db, workspace.id, &from, State::Provisioning, None).await? {
            return Ok(Provisioned::Overtaken);
        }
        if let Err(failed) = self.provider.place(workspace).await? {
            let moved = self
                .fail_from(workspace.id, &[State::Provisioning], &failed.message)
                .await?;
            return Ok(if moved {
                Provisioned::Failed(failed)
            } else {
                Provisioned::Overtaken
            });
        }
        progress(if workspace.state == State::Stopped {
            Step::Starting
        } else {
            Step::Cloning
        });
        // A token for this repository alone, read-only: the App may write contents, but
        // the checkout only fetches.
        let token = self
            .github
            .checkout_token(workspace.installation_id as u64, &workspace.repo_full_name)
            .await?
            .token;
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
        let outcome = agent.checkout(workspace.id, &checkout).await?;
        let (state, message) = match &outcome {
            Ok(()) => (State::Ready, None),
            Err(failed) => (State::Failed, Some(failed.message.as_str())),
        };
        // Whatever moved the workspace on while git ran (sam failing it at start-up, its
        // pull request closing) wins.
        if !db::transition_from(
            &self.db,
            workspace.id,
            &[State::Provisioning],
            state,
            message,
        )
        .await?
        {
            self.clean_up_overtaken(workspace.id, &agent).await;
            return Ok(Provisioned::Overtaken);
        }
        Ok(match outcome {
            Ok(()) => Provisioned::Ready,
            Err(failed) => Provisioned::Failed(failed),
        })
    }

    /// A deletion that came while git ran may have reached the agent before the checkout
    /// did, and found nothing to remove; the checkout made since is removed here.
    async fn clean_up_overtaken(&self, id: Uuid, agent: &AgentClient) {
        let deleted = matches!(
            db::get(&self.db, id).await,
            Ok(Some(now)) if matches!(now.state, State::Deleting | State::Deleted)
        );
        if deleted && let Err(error) = agent.delete(id).await {
            tracing::warn!(workspace = %id, error = format!("{error:#}"), "cannot remove the checkout of a deleted workspace");
        }
    }

    /// Hangs up a ready workspace's shells and keeps its files, so `/sam restart` or
    /// `/sam open` brings it back quickly. False when it was not ready (or stopping).
    pub async fn stop(&self, workspace: &WorkspaceModel) -> anyhow::Result<bool> {
        // From `stopping` too: a stop that lost its host halfway can be asked for again.
        let from = [State::Ready, State::Stopping];
        if !db::transition_from(&self.db, workspace.id, &from, State::Stopping, None).await? {
            return Ok(false);
        }
        self.finish_stop(workspace.id).await?;
        Ok(true)
    }

    /// The second half of a stop, also run at start-up for stops a previous run began.
    pub async fn finish_stop(&self, id: Uuid) -> anyhow::Result<()> {
        let agent = self.provider.agent_for(id).await?;
        agent.stop(id).await?;
        self.activity.forget(id);
        db::transition_from(&self.db, id, &[State::Stopping], State::Stopped, None).await?;
        Ok(())
    }

    /// Hangs up a workspace's shells and removes its files. False when it was gone
    /// already. A checkout in progress is removed once it is done: the agent does one
    /// thing at a time per workspace, and the provisioning side cleans up after itself
    /// when it finds the workspace deleted.
    pub async fn delete(&self, workspace: &WorkspaceModel) -> anyhow::Result<bool> {
        let live = [
            State::Requested,
            State::Provisioning,
            State::Ready,
            State::Stopping,
            State::Stopped,
            State::Deleting,
        ];
        if db::transition_from(&self.db, workspace.id, &live, State::Deleting, None).await? {
            self.finish_delete(workspace.id).await?;
            return Ok(true);
        }
        // A failed workspace no longer counts as live, so its person may have opened the
        // branch again since; passing through `deleting`, which counts, would collide
        // with that workspace. Its files go first, then its record moves straight on.
        let failed = db::get(&self.db, workspace.id)
            .await?
            .is_some_and(|now| now.state == State::Failed);
        if !failed {
            return Ok(false);
        }
        self.remove_files(workspace.id).await?;
        Ok(db::transition_from(
            &self.db,
            workspace.id,
            &[State::Failed],
            State::Deleted,
            None,
        )
        .await?)
    }

    /// The second half of a deletion, also run at start-up for deletions a previous run
    /// began.
    pub async fn finish_delete(&self, id: Uuid) -> anyhow::Result<()> {
        self.remove_files(id).await?;
        db::transition_from(&self.db, id, &[State::Deleting], State::Deleted, None).await?;
        Ok(())
    }

    async fn remove_files(&self, id: Uuid) -> anyhow::Result<()> {
        if let Some(agent) = self.provider.holder_of(id).await? {
            agent.delete(id).await?;
        }
        self.activity.forget(id);
        Ok(())
    }

    /// The workspaces that should have a running checkout.
    pub async fn ready(&self) -> anyhow::Result<Vec<WorkspaceModel>> {
        db::ready(&self.db)
            .await
            .context("reading the ready workspaces")
    }

    /// The workspaces of an installation that still exist, or of some of its repositories.
    pub async fn of_installation(
        &self,
        installation_id: u64,
        repo_ids: Option<&[u64]>,
    ) -> anyhow::Result<Vec<WorkspaceModel>> {
        let repo_ids: Option<Vec<i64>> =
            repo_ids.map(|ids| ids.iter().map(|&id| id as i64).collect());
        db::of_installation(&self.db, installation_id as i64, repo_ids.as_deref())
            .await
            .context("reading the installation's workspaces")
    }

    /// The workspaces of an issue or pull request that still exist, oldest first.
    pub async fn on_issue(
        &self,
        repo_id: u64,
        issue_number: u64,
    ) -> anyhow::Result<Vec<WorkspaceModel>> {
        db::on_issue(&self.db, repo_id as i64, issue_number as i64)
            .await
            .context("reading the issue's workspaces")
    }

    /// Marks a workspace failed for a reason outside the agent (GitHub or the host away).
    pub async fn fail(&self, workspace: Uuid, reason: &str) -> anyhow::Result<()> {
        db::transition(&self.db, workspace, State::Failed, Some(reason))
            .await
            .context("recording the failure")
    }

    /// Marks a workspace failed if it is still in one of `from`; false when it was not.
    pub async fn fail_from(
        &self,
        workspace: Uuid,
        from: &[State],
        reason: &str,
    ) -> anyhow::Result<bool> {
        db::transition_from(&self.db, workspace, from, State::Failed, Some(reason))
            .await
            .context("recording the failure")
    }

    /// Reads a workspace.
    pub async fn get(&self, id: Uuid) -> anyhow::Result<Option<WorkspaceModel>> {
        db::get(&self.db, id).await.context("reading the workspace")
    }
}
