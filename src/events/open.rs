//! Opening a workspace for someone, from a comment or from the check run's button:
//! authorization, the branch to check out, and the status comment that follows it.

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::app::App;
use crate::commands::HostSize;
use crate::database::workspaces::{self as workspaces_db, WorkspaceModel};
use crate::github::events::{Account, Repository};
use crate::github::{RepoClient, clone_url};
use crate::replies::{self, Phase};
use crate::workspaces::{OpenRequest, Provisioned, State, Step};

/// Who asked for a workspace, and on which issue or pull request.
pub struct Asked<'a> {
    pub installation: u64,
    pub repository: &'a Repository,
    pub number: u64,
    pub is_pull_request: bool,
    pub person: &'a Account,
}

/// `/sam open [branch]`, or the check run's button: authorizes, resolves the branch, and
/// provisions or re-posts. Returns the link once the workspace is ready.
pub async fn open(
    app: &App,
    repo: &RepoClient,
    asked: &Asked<'_>,
    branch: Option<String>,
    size: Option<HostSize>,
) -> anyhow::Result<Option<String>> {
    let person = asked.person;
    let issue = asked.number;
    if !repo.permission(&person.login).await?.may_open_workspaces() {
        let reply = replies::render(&replies::NotAllowed {
            login: &person.login,
            verb: "open",
        });
        repo.create_comment(issue, &reply).await?;
        return Ok(None);
    }

    let Some(target) = resolve_target(repo, asked, branch).await? else {
        return Ok(None);
    };
    let request = OpenRequest {
        installation_id: asked.installation,
        repo_id: asked.repository.id,
        repo_full_name: asked.repository.full_name.clone(),
        clone_url: clone_url(&app.config.github_url, &asked.repository.full_name)?,
        issue_number: issue,
        is_pull_request: asked.is_pull_request,
        branch: target.branch,
        fetch_ref: target.fetch_ref,
        head_sha: target.sha,
        requester_id: person.id,
        requester_login: person.login.clone(),
        size,
    };
    let (workspace, created) = app.workspaces.find_or_create(&request).await?;
    tracing::info!(workspace = %workspace.id, created, state = %workspace.state, "open");

    if !created && workspace.state == State::Ready {
        let link = app.link(workspace.id, &person.login)?;
        let body = replies::status(&workspace, Phase::Ready { link: &link });
        repo.create_comment(issue, &body).await?;
        return Ok(Some(link));
    }
    if !created && workspace.state != State::Stopped {
        // Another delivery is preparing it and will post the link.
        return Ok(None);
    }
    Ok(match prepare(app, repo, &workspace).await? {
        Prepared::Ready { link } => Some(link),
        Prepared::Failed | Prepared::Overtaken => None,
    })
}

/// How [`prepare`] ended, for the replies that mention it.
pub enum Prepared {
    Ready {
        link: String,
    },
    Failed,
    /// Another delivery is preparing the workspace and reports on it.
    Overtaken,
}

/// Provisions a requested or stopped workspace, saying so in its status comment (posted
/// now if it has none) as it goes: queued, cloning or starting, then ready with the link,
/// or failed.
pub async fn prepare(
    app: &App,
    repo: &RepoClient,
    workspace: &WorkspaceModel,
) -> anyhow::Result<Prepared> {
    let queued = replies::status(workspace, Phase::Queued);
    let comment_id = match workspace.status_comment_id {
        Some(id) => {
            repo.update_comment(id as u64, &queued).await?;
            id as u64
        }
        None => {
            let id = repo
                .create_comment(workspace.issue_number as u64, &queued)
                .await?;
            crate::database::workspaces::set_status_comment(&app.db, workspace.id, id as i64)
                .await?;
            id
        }
    };

    let progress = Progress::start(app.db.clone(), repo.clone(), comment_id, workspace.clone());
    let provisioned = app
        .workspaces
        .provision(workspace, |step| progress.report(step))
        .await;
    progress.finish().await;

    let (body, prepared) = match provisioned {
        Ok(Provisioned::Ready) => {
            let link = app.link(workspace.id, &workspace.requester_login)?;
            let mut body = replies::status(workspace, Phase::Ready { link: &link });
            if let Some(size) = &workspace.size
                && !app.workspaces.provider().has_sizes()
            {
                body.push_str("\n\n");
                body.push_str(&replies::render(&replies::SizeIgnored { size }));
            }
            (body, Prepared::Ready { link })
        }
        Ok(Provisioned::Failed(failed)) => {
            let log = if failed.log.is_empty() {
                String::new()
            } else {
                replies::Status::failed_log(&failed.log)
            };
            let phase = Phase::Failed {
                reason: &failed.message,
                log,
            };
            (replies::status(workspace, phase), Prepared::Failed)
        }
        Ok(Provisioned::Overtaken) => return Ok(Prepared::Overtaken),
        Err(error) => {
            let reason = "sam could not reach GitHub or the workspace host; try again in a minute";
            tracing::error!(error = format!("{error:#}"), "provisioning failed");
            app.workspaces.fail(workspace.id, reason).await?;
            let phase = Phase::Failed {
                reason,
                log: String::new(),
            };
            (replies::status(workspace, phase), Prepared::Failed)
        }
    };
    repo.update_comment(comment_id, &body)
        .await
        .context("posting the workspace's status")?;
    Ok(prepared)
}

/// Shows provisioning's steps in the status comment without holding provisioning up: the
/// edits run beside it, and a step that is over before GitHub took the last edit is
/// skipped, so a fast checkout goes straight from queued to ready.
struct Progress {
    steps: watch::Sender<Option<Step>>,
    editor: JoinHandle<()>,
}

impl Progress {
    fn start(db: PgPool, repo: RepoClient, comment_id: u64, workspace: WorkspaceModel) -> Self {
        let (steps, mut latest) = watch::channel(None);
        let editor = tokio::spawn(async move {
            while latest.changed().await.is_ok() {
                let Some(step) = *latest.borrow_and_update() else {
                    break;
                };
                let phase = match step {
                    Step::Cloning => Phase::Cloning,
                    Step::Starting => Phase::Starting,
                };
                let body = replies::status(&workspace, phase);
                if let Err(error) = show_step(&db, &repo, comment_id, workspace.id, &body).await {
                    // Only a passing step is lost; the outcome is posted regardless.
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot show a provisioning step"
                    );
                }
            }
        });
        Self { steps, editor }
    }

    fn report(&self, step: Step) {
        self.steps.send_replace(Some(step));
    }

    /// Waits for an edit in flight, so that it cannot land after the outcome's edit;
    /// steps not yet shown are dropped.
    async fn finish(self) {
        self.steps.send_replace(None);
        if let Err(error) = self.editor.await {
            tracing::warn!(%error, "the status comment's editor ended badly");
        }
    }
}

/// Edits the status comment to a step of provisioning while the workspace is still being
/// provisioned, holding its row meanwhile. Another delivery that moves the workspace on (a
/// pull request closed mid-clone deletes it) waits for the edit before its own
/// transition, and so edits the comment after it: a late step never covers the outcome.
async fn show_step(
    db: &PgPool,
    repo: &RepoClient,
    comment_id: u64,
    workspace: Uuid,
    body: &str,
) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    if !workspaces_db::lock_in_state(&mut *tx, workspace, State::Provisioning).await? {
        return Ok(());
    }
    repo.update_comment(comment_id, body).await?;
    tx.commit().await?;
    Ok(())
}

/// What to check out: a branch name, the ref to fetch it by, and the commit.
struct Target {
    branch: String,
    fetch_ref: String,
    sha: String,
}

/// On a pull request, its head (fetched through the base repository, so forks work too);
/// elsewhere the named branch or the default branch. `None` once a reply was posted.
async fn resolve_target(
    repo: &RepoClient,
    asked: &Asked<'_>,
    branch: Option<String>,
) -> anyhow::Result<Option<Target>> {
    if asked.is_pull_request && branch.is_none() {
        let pr = repo.pull_request(asked.number).await?;
        // `refs/pull/N/head` exists in the base repository for every pull request, and is the
        // only way to reach a fork's branch without trusting the fork's repository.
        let fetch_ref = if pr.is_from_fork() {
            format!("refs/pull/{}/head", pr.number)
        } else {
            format!("refs/heads/{}", pr.head_ref)
        };
        return Ok(Some(Target {
            branch: pr.head_ref,
            fetch_ref,
            sha: pr.head_sha,
        }));
    }
    let branch = match branch.or_else(|| asked.repository.default_branch.clone()) {
        Some(branch) => branch,
        None => "main".to_owned(),
    };
    match repo.branch_head(&branch).await? {
        Some(sha) => Ok(Some(Target {
            fetch_ref: format!("refs/heads/{branch}"),
            branch,
            sha,
        })),
        None => {
            let reply = replies::render(&replies::NoSuchBranch::new(&branch));
            repo.create_comment(asked.number, &reply).await?;
            Ok(None)
        }
    }
}
