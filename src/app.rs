//! The running sam: its services, built once from the configuration and shared by the
//! HTTP server and the delivery workers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwapOption;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::{AppCredentials, Config};
use crate::database::inbox::Inbox;
use crate::database::workspaces::WorkspaceModel;
use crate::github::GitHub;
use crate::terminal::link::Signer;
use crate::workspaces::{Provider, State, Workspaces};
use crate::{database, events, replies, setup};

/// How many deliveries one sam process works on at once.
const WORKERS: usize = 4;
/// How often sam looks for work that a process which died left in hand.
const TAKE_OVER_EVERY: Duration = Duration::from_secs(10);

/// Everything a request handler or a worker needs.
pub struct App {
    pub config: Config,
    pub db: PgPool,
    pub github: GitHub,
    pub workspaces: Workspaces,
    pub signer: Signer,
    /// Where webhook deliveries are stored as they arrive.
    pub inbox: Inbox,
    /// Wakes a worker as soon as a delivery is stored, instead of at its next poll.
    pub deliveries_waiting: Arc<Notify>,
    /// The App sam runs as; empty until one is configured or registered.
    registered: ArcSwapOption<AppCredentials>,
    /// What the front page asks for before it offers to register an App, so that only
    /// someone who can read sam's data directory can make sam theirs.
    pub setup_token: String,
    /// Turns `true` when sam is asked to stop: workers finish the delivery in hand and
    /// take no other.
    pub stopping: tokio::sync::watch::Sender<bool>,
    workers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Held while sam runs: the data directory is this process's alone.
    _data_dir: nix::fcntl::Flock<std::fs::File>,
}

impl App {
    /// Connects, migrates, starts the local agent and the delivery workers.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Self>> {
        let data_dir = lock_data_dir(&config.data_dir)?;
        let db = database::pool(&config.database_url)?;
        database::migrate(&db).await?;
        let run_as = setup::app_to_run_as(&config)?;
        let github = GitHub::new(&config);
        let signer = Signer::load_or_create(&config.data_dir)?;
        let provider = Provider::start(&config, &db).await?;
        let workspaces = Workspaces::new(db.clone(), github.clone(), provider);
        let inbox = Inbox::start(db.clone());
        let app = Arc::new(Self {
            config,
            db,
            inbox,
            github,
            workspaces,
            signer,
            deliveries_waiting: Arc::new(Notify::new()),
            registered: ArcSwapOption::empty(),
            setup_token: setup::new_token(),
            stopping: tokio::sync::watch::Sender::new(false),
            workers: Default::default(),
            _data_dir: data_dir,
        });
        if let Some(run_as) = run_as {
            app.register(run_as)?;
        }
        if app.registered().is_none() {
            setup::announce(&app)?;
        } else {
            setup::forget_link(&app.config);
        }
        app.take_over_abandoned().await;
        tokio::spawn(app.clone().take_over_abandoned_forever());
        if let Some(timeout) = app.config.idle_timeout {
            tokio::spawn(app.clone().stop_idle_workspaces(timeout));
        }
        let workers = (0..WORKERS)
            .map(|_| {
                tokio::spawn(events::worker::run(
                    app.clone(),
                    app.deliveries_waiting.clone(),
                ))
            })
            .collect();
        *app.workers.lock().expect("not poisoned") = workers;
        Ok(app)
    }

    /// The App sam runs as, if any.
    pub fn registered(&self) -> Option<Arc<AppCredentials>> {
        self.registered.load_full()
    }

    /// Runs as `app` from now on: deliveries signed with its secret are accepted, its
    /// OAuth client signs people in, and GitHub is called as it. No restart needed.
    pub fn register(&self, app: AppCredentials) -> anyhow::Result<()> {
        self.github.use_app(&app)?;
        tracing::info!(app = app.id, slug = %app.slug, "running as the GitHub App");
        self.registered.store(Some(Arc::new(app)));
        Ok(())
    }

    /// The login of the App's owner: from the registration, or asked of GitHub.
    pub async fn app_owner(&self) -> anyhow::Result<String> {
        let app = self.registered().context("sam has no GitHub App yet")?;
        match &app.owner {
            Some(owner) => Ok(owner.clone()),
            None => self.github.app_owner().await,
        }
    }

    /// Stops taking deliveries and waits for the workers to finish the ones in hand.
    pub async fn stop_workers(&self) {
        self.stopping.send_replace(true);
        self.deliveries_waiting.notify_waiters();
        let workers = std::mem::take(&mut *self.workers.lock().expect("not poisoned"));
        for worker in workers {
            let _ = worker.await;
        }
    }

    /// Takes over what a sam process that is gone left in hand (this one's previous run, or
    /// another process sharing the database): deliveries go back to the queue, workspaces
    /// left half-prepared are failed with a word on GitHub, so that nobody waits on a status
    /// comment that will never move, and stops and deletions left halfway are finished.
    /// What a process still connected to the database has in hand is left to it.
    async fn take_over_abandoned(&self) {
        self.reconcile().await;
        match database::deliveries::release_abandoned(&self.db).await {
            Ok(0) => {}
            Ok(released) => {
                tracing::warn!(released, "took back deliveries a sam that is gone left")
            }
            Err(error) => {
                tracing::warn!(%error, "cannot take back deliveries a sam that is gone left")
            }
        }
    }

    /// [`Self::take_over_abandoned`] now and then: another process sharing the database may
    /// die at any time, and its work should not wait for this one to restart.
    async fn take_over_abandoned_forever(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(TAKE_OVER_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if *self.stopping.borrow() {
                return;
            }
            self.take_over_abandoned().await;
        }
    }

    /// The workspaces' part of [`Self::take_over_abandoned`].
    async fn reconcile(&self) {
        let stranded = match database::workspaces::abandoned(&self.db).await {
            Ok(stranded) => stranded,
            Err(error) => {
                tracing::warn!(%error, "cannot look for workspaces left in transition");
                return;
            }
        };
        let (preparing, ending): (Vec<_>, Vec<_>) = stranded
            .into_iter()
            .partition(|w| matches!(w.state, State::Requested | State::Provisioning));
        // A stop or deletion is finished rather than undone: the person asked for it, and
        // the agent's side of both can be done twice.
        for workspace in ending {
            let finished = match workspace.state {
                State::Stopping => self.workspaces.finish_stop(workspace.id).await,
                _ => self.workspaces.finish_delete(workspace.id).await,
            };
            match finished {
                Ok(()) => {
                    tracing::info!(workspace = %workspace.id, state = %workspace.state, "finished a stop or deletion left in transition")
                }
                Err(error) => tracing::warn!(
                    workspace = %workspace.id,
                    error = format!("{error:#}"),
                    "cannot finish a stop or deletion left in transition"
                ),
            }
        }
        for workspace in preparing {
            let reason = "the sam preparing this workspace stopped before it was ready; write `/sam open` again";
            tracing::warn!(workspace = %workspace.id, state = %workspace.state, "failing a workspace left in transition");
            // Only from where it was left: another process taking over at the same moment,
            // or a late answer of the one that died, may have moved it on already.
            match self
                .workspaces
                .fail_from(workspace.id, &[workspace.state], reason)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot fail a stranded workspace"
                    );
                    continue;
                }
            }
            let phase = replies::Phase::Failed {
                reason,
                log: String::new(),
            };
            self.edit_status(&workspace, phase).await;
        }
    }

    /// Stops, now and then, every ready workspace whose terminals carried no traffic for
    /// `timeout`, and says so in its status comment.
    async fn stop_idle_workspaces(self: Arc<Self>, timeout: Duration) {
        let started = OffsetDateTime::now_utc();
        // Checked a few times per timeout, so a workspace stops at most a quarter late.
        let period = (timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let reason = format!(
            "after {} without terminal activity",
            humantime::format_duration(timeout)
        );
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let ready = match self.workspaces.ready().await {
                Ok(ready) => ready,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot look for idle workspaces"
                    );
                    continue;
                }
            };
            let now = OffsetDateTime::now_utc();
            for workspace in ready {
                let active = [
                    Some(started),
                    Some(workspace.updated_at),
                    self.workspaces.activity().last(workspace.id),
                ]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(started);
                if now - active < timeout {
                    continue;
                }
                match self.workspaces.stop(&workspace).await {
                    Ok(true) => {
                        tracing::info!(workspace = %workspace.id, "stopped an idle workspace");
                        self.edit_status(&workspace, replies::Phase::Stopped { reason: &reason })
                            .await;
                    }
                    Ok(false) => {}
                    Err(error) => tracing::warn!(
                        workspace = %workspace.id,
                        error = format!("{error:#}"),
                        "cannot stop an idle workspace"
                    ),
                }
            }
        }
    }

    /// Edits a workspace's status comment, if it has one; failures are logged.
    pub async fn edit_status(&self, workspace: &WorkspaceModel, phase: replies::Phase<'_>) {
        let Some(comment) = workspace.status_comment_id else {
            return;
        };
        let body = replies::status(workspace, phase);
        let edited = async {
            self.github
                .repo(workspace.installation_id as u64, &workspace.repo_full_name)?
                .update_comment(comment as u64, &body)
                .await
        };
        if let Err(error) = edited.await {
            tracing::warn!(
                workspace = %workspace.id,
                error = format!("{error:#}"),
                "cannot edit a workspace's status comment"
            );
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

/// Takes the data directory for this process. Two sams on one directory would share the
/// setup link, the local agent's workspaces and its credential sockets, each believing
/// them its own; the second is refused instead. The lock goes with the process, however
/// it ends.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("sam.lock");
    // sam's alone: anyone who may open it may also hold the lock, and keep sam from
    // starting. One made before this rule is narrowed.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("narrowing {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            anyhow::anyhow!(
                "another sam is running with the data directory {}; give each sam its own \
                 SAM_DATA_DIR",
                dir.display()
            )
        } else {
            anyhow::anyhow!("cannot lock {}: {errno}", path.display())
        }
    })
}
