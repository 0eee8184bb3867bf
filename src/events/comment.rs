//! `issue_comment`: commands written in comments on issues and pull requests.

use anyhow::Context;
use tracing::Instrument;

use super::lifecycle;
use crate::app::App;
use crate::commands::{self, Command, OpenArgs};
use crate::database::deliveries;
use crate::database::workspaces::WorkspaceModel;
use crate::github::events::IssueCommentEvent;
use crate::github::{RepoClient, clone_url};
use crate::replies::{self, Phase};
use crate::workspaces::{OpenRequest, Provisioned, State};

/// Acts on the commands of a newly created comment, once per comment.
pub async fn handle(app: &App, delivery_id: i64, event: IssueCommentEvent) -> anyhow::Result<()> {
    // Only new comments count: editing an old comment must not reopen or repeat anything.
    if event.action != "created" || event.comment.user.is_bot() {
        return Ok(());
    }
    let commands = commands::parse_commands(event.comment.body.as_deref().unwrap_or_default());
    if commands.is_empty() {
        return Ok(());
    }
    let span = tracing::info_span!(
        "comment",
        repo = %event.repository.full_name,
        number = event.issue.number,
        sender = %event.comment.user.login,
    );
    async {
        if !deliveries::claim_comment(&app.db, event.comment.id as i64, delivery_id).await? {
            tracing::info!(
                comment = event.comment.id,
                "comment already handled by another delivery"
            );
            return Ok(());
        }
        let installation = match &event.installation {
            Some(installation) => installation.id,
            None => {
                app.github
                    .repo_installation(&event.repository.owner.login, &event.repository.name)
                    .await?
            }
        };
        let repo = app.github.repo(installation, &event.repository.full_name)?;
        repo.react_to_comment(event.comment.id, "eyes").await?;

        for command in commands {
            let login = &event.comment.user.login;
            match command {
                Ok(Command::Open(args)) => open(app, &repo, installation, &event, args).await?,
                Ok(Command::Help) => {
                    let help = replies::render(&replies::Help {
                        slug: &app.config.app.slug,
                    });
                    repo.create_comment(event.issue.number, &help).await?;
                }
                Ok(command) => lifecycle::run(app, &repo, &event, &command).await?,
                Err(error) => {
                    let error = error.to_string();
                    let reply = replies::render(&replies::CommandError {
                        login,
                        error: &error,
                    });
                    repo.create_comment(event.issue.number, &reply).await?;
                }
            }
        }
        Ok(())
    }
    .instrument(span)
    .await
}

/// `/sam open [branch]`: authorizes, resolves the branch, and provisions or re-posts.
async fn open(
    app: &App,
    repo: &RepoClient,
    installation: u64,
    event: &IssueCommentEvent,
    args: OpenArgs,
) -> anyhow::Result<()> {
    let person = &event.comment.user;
    let issue = event.issue.number;
    if !repo.permission(&person.login).await?.may_open_workspaces() {
        let reply = replies::render(&replies::NotAllowed {
            login: &person.login,
            verb: "open",
        });
        repo.create_comment(issue, &reply).await?;
        return Ok(());
    }

    let Some(target) = resolve_target(repo, event, args.branch).await? else {
        return Ok(());
    };
    let request = OpenRequest {
        installation_id: installation,
        repo_id: event.repository.id,
        repo_full_name: event.repository.full_name.clone(),
        clone_url: clone_url(&app.config.github_url, &event.repository.full_name)?,
        issue_number: issue,
        is_pull_request: event.issue.is_pull_request(),
        branch: target.branch,
        fetch_ref: target.fetch_ref,
        head_sha: target.sha,
        requester_id: person.id,
        requester_login: person.login.clone(),
    };
    let (workspace, created) = app.workspaces.find_or_create(&request).await?;
    tracing::info!(workspace = %workspace.id, created, state = %workspace.state, "open");

    if !created && workspace.state == State::Ready {
        let link = app.link(workspace.id, &person.login)?;
        let body = status_of(&workspace, Phase::Ready { link: &link });
        repo.create_comment(issue, &body).await?;
        return Ok(());
    }
    if !created && workspace.state != State::Stopped {
        // Another delivery is preparing it and will post the link.
        return Ok(());
    }
    prepare(app, repo, &workspace).await?;
    Ok(())
}

/// How [`prepare`] ended, for the replies that mention it.
pub(super) enum Prepared {
    Ready {
        link: String,
    },
    Failed,
    /// Another delivery is preparing the workspace and reports on it.
    Overtaken,
}

/// Provisions a requested or stopped workspace, saying so in its status comment (posted
/// now if it has none) as it goes: preparing, then ready with the link, or failed.
pub(super) async fn prepare(
    app: &App,
    repo: &RepoClient,
    workspace: &WorkspaceModel,
) -> anyhow::Result<Prepared> {
    let preparing = status_of(workspace, Phase::Preparing);
    let comment_id = match workspace.status_comment_id {
        Some(id) => {
            repo.update_comment(id as u64, &preparing).await?;
            id as u64
        }
        None => {
            let id = repo
                .create_comment(workspace.issue_number as u64, &preparing)
                .await?;
            crate::database::workspaces::set_status_comment(&app.db, workspace.id, id as i64)
                .await?;
            id
        }
    };

    let (body, prepared) = match app.workspaces.provision(workspace).await {
        Ok(Provisioned::Ready) => {
            let link = app.link(workspace.id, &workspace.requester_login)?;
            let body = status_of(workspace, Phase::Ready { link: &link });
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
            (status_of(workspace, phase), Prepared::Failed)
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
            (status_of(workspace, phase), Prepared::Failed)
        }
    };
    repo.update_comment(comment_id, &body)
        .await
        .context("posting the workspace's status")?;
    Ok(prepared)
}

/// The text of a workspace's status comment in `phase`.
pub(super) fn status_of(workspace: &WorkspaceModel, phase: Phase<'_>) -> String {
    replies::render(&replies::Status::new(
        &workspace.requester_login,
        &workspace.branch,
        &workspace.head_sha,
        phase,
    ))
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
    event: &IssueCommentEvent,
    branch: Option<String>,
) -> anyhow::Result<Option<Target>> {
    if event.issue.is_pull_request() && branch.is_none() {
        let pr = repo.pull_request(event.issue.number).await?;
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
    let branch = match branch.or_else(|| event.repository.default_branch.clone()) {
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
            repo.create_comment(event.issue.number, &reply).await?;
            Ok(None)
        }
    }
}
