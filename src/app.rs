//! The running sam: its services, built once from the configuration and shared by the
//! HTTP server and the delivery workers.

use std::sync::Arc;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::Config;
use crate::github::GitHub;
use crate::terminal::link::Signer;
use crate::workspaces::local::{self, LocalAgent};
use crate::workspaces::{Provider, State, Workspaces};
use crate::{database, events, replies};

/// How many deliveries one sam process works on at once.
const WORKERS: usize = 4;

/// Everything a request handler or a worker needs.
pub struct App {
    pub config: Config,
    pub db: PgPool,
    pub github: GitHub,
    pub workspaces: Workspaces,
    pub signer: Signer,
    /// Wakes a worker as soon as a delivery is stored, instead of at its next poll.
    pub deliveries_waiting: Arc<Notify>,
}

impl App {
    /// Connects, migrates, starts the local agent and the delivery workers.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Self>> {
        let db = database::pool(&config.database_url)?;
        database::migrate(&db).await?;
        let github = GitHub::new(&config)?;
        let signer = Signer::load_or_create(&config.data_dir)?;
        let agent = LocalAgent::start(local::agent_program()?, config.data_dir.join("workspaces"))
            .await
            .context("starting the local workspace agent")?;
        let workspaces = Workspaces::new(db.clone(), github.clone(), Provider::Local(agent));
        let app = Arc::new(Self {
            config,
            db,
            github,
            workspaces,
            signer,
            deliveries_waiting: Arc::new(Notify::new()),
        });
        app.reconcile().await;
        for _ in 0..WORKERS {
            tokio::spawn(events::worker::run(
                app.clone(),
                app.deliveries_waiting.clone(),
            ));
        }
        Ok(app)
    }

    /// Fails the workspaces a previous run left half-prepared, and says so on GitHub, so that
    /// nobody waits on a status comment that will never move.
    ///
    /// This assumes one sam process per database: a second process starting up would fail
    /// the first one's workspaces in the middle of their checkout.
    async fn reconcile(&self) {
        let stranded = match database::workspaces::in_transition(&self.db).await {
            Ok(stranded) => stranded,
            Err(error) => {
                tracing::warn!(%error, "cannot look for workspaces left in transition");
                return;
            }
        };
        let preparing = stranded
            .into_iter()
            .filter(|w| matches!(w.state, State::Requested | State::Provisioning));
        for workspace in preparing {
            let reason = "sam restarted while preparing this workspace; write `/sam open` again";
            tracing::warn!(workspace = %workspace.id, state = %workspace.state, "failing a workspace left in transition");
            if let Err(error) = self.workspaces.fail(workspace.id, reason).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot fail a stranded workspace"
                );
                continue;
            }
            let Some(comment) = workspace.status_comment_id else {
                continue;
            };
            let phase = replies::Phase::Failed {
                reason,
                log: String::new(),
            };
            let body = replies::render(&replies::Status::new(
                &workspace.requester_login,
                &workspace.branch,
                &workspace.head_sha,
                phase,
            ));
            let edited = async {
                let repo = self
                    .github
                    .repo(workspace.installation_id as u64, &workspace.repo_full_name)?;
                repo.update_comment(comment as u64, &body).await
            };
            if let Err(error) = edited.await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "cannot update a stranded workspace's status comment"
                );
            }
        }
    }

    /// The signed link to a workspace's terminal for `login`.
    pub fn link(&self, workspace: Uuid, login: &str) -> anyhow::Result<String> {
        let mut url = self.config.public_url.join(&format!("w/{workspace}"))?;
        url.query_pairs_mut()
            .append_pair("t", &self.signer.link(workspace, login));
        Ok(url.into())
    }
}
