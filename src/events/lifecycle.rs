//! `/sam stop`, `/sam restart`, `/sam delete` and `/sam status`: commands on the
//! workspaces an issue or pull request already has, whoever opened them.
//!
//! Each answers with one reply listing every workspace and what happened to it, and edits
//! the status comments of the workspaces it changed, so the conversation never shows a
//! link to a workspace that is gone.

use super::open::{Prepared, prepare};
use crate::app::App;
use crate::commands::Command;
use crate::database::workspaces::WorkspaceModel;
use crate::github::RepoClient;
use crate::github::events::IssueCommentEvent;
use crate::replies::{self, Phase, WorkspaceRow};
use crate::workspaces::State;

/// What a person reads when the workspace host did not answer.
const HOST_AWAY: &str = "the workspace host did not answer; write the command again in a minute";

/// Runs one of the commands on existing workspaces and answers it.
pub async fn run(
    app: &App,
    repo: &RepoClient,
    event: &IssueCommentEvent,
    command: &Command,
) -> anyhow::Result<()> {
    let login = &event.comment.user.login;
    let issue = event.issue.number;
    let verb = command.verb();
    // Anyone may ask where things stand; changing them takes what opening them takes.
    if *command != Command::Status && !repo.permission(login).await?.may_open_workspaces() {
        let reply = replies::render(&replies::NotAllowed { login, verb });
        repo.create_comment(issue, &reply).await?;
        return Ok(());
    }

    let workspaces = app.workspaces.on_issue(event.repository.id, issue).await?;
    let mut rows = Vec::with_capacity(workspaces.len());
    for workspace in &workspaces {
        let outcome = match command {
            Command::Stop => stop(app, workspace).await?,
            Command::Restart => restart(app, repo, workspace).await?,
            Command::Delete => delete(app, workspace).await?,
            _ => describe(workspace),
        };
        rows.push(WorkspaceRow::new(
            &workspace.branch,
            &workspace.head_sha,
            &workspace.requester_login,
            outcome,
        ));
    }
    let place = if event.issue.is_pull_request() {
        "pull request"
    } else {
        "issue"
    };
    let reply = replies::render(&replies::Workspaces {
        login,
        verb,
        place,
        rows,
    });
    repo.create_comment(issue, &reply).await?;
    Ok(())
}

async fn stop(app: &App, workspace: &WorkspaceModel) -> anyhow::Result<String> {
    match workspace.state {
        State::Ready | State::Stopping => {}
        _ => return Ok(describe(workspace)),
    }
    match app.workspaces.stop(workspace).await {
        Ok(true) => {
            app.edit_status(
                workspace,
                Phase::Stopped {
                    reason: "on request",
                },
            )
            .await;
            Ok("stopped".to_owned())
        }
        // Moved on between reading and stopping: say where it is now.
        Ok(false) => now(app, workspace).await,
        Err(error) => {
            tracing::error!(workspace = %workspace.id, error = format!("{error:#}"), "stop failed");
            Ok(format!("not stopped: {HOST_AWAY}"))
        }
    }
}

async fn restart(
    app: &App,
    repo: &RepoClient,
    workspace: &WorkspaceModel,
) -> anyhow::Result<String> {
    match workspace.state {
        State::Ready | State::Stopping => {
            if let Err(error) = app.workspaces.stop(workspace).await {
                tracing::error!(workspace = %workspace.id, error = format!("{error:#}"), "stop before restart failed");
                return Ok(format!("not restarted: {HOST_AWAY}"));
            }
        }
        State::Stopped => {}
        State::Failed => {
            return Ok("failed earlier; write `/sam open` to prepare it again".to_owned());
        }
        _ => return Ok(describe(workspace)),
    }
    let Some(stopped) = app.workspaces.get(workspace.id).await? else {
        return Ok("gone".to_owned());
    };
    Ok(match prepare(app, repo, &stopped).await? {
        Prepared::Ready { link } => format!("ready again: [open the terminal]({link})"),
        Prepared::Failed => "could not be started again; its status comment says why".to_owned(),
        Prepared::Overtaken => "being started by another command".to_owned(),
    })
}

async fn delete(app: &App, workspace: &WorkspaceModel) -> anyhow::Result<String> {
    if workspace.state == State::Deleted {
        return Ok(describe(workspace));
    }
    match app.workspaces.delete(workspace).await {
        Ok(true) => {
            app.edit_status(
                workspace,
                Phase::Deleted {
                    reason: "on request",
                },
            )
            .await;
            Ok("deleted".to_owned())
        }
        Ok(false) => now(app, workspace).await,
        Err(error) => {
            tracing::error!(workspace = %workspace.id, error = format!("{error:#}"), "delete failed");
            Ok(format!("not deleted: {HOST_AWAY}"))
        }
    }
}

/// Where a workspace is, in the words of a status list.
fn describe(workspace: &WorkspaceModel) -> String {
    let since = workspace
        .updated_at
        .format(&time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default();
    match workspace.state {
        State::Requested | State::Provisioning => {
            format!("being prepared (since {since}); try again once it is ready")
        }
        State::Failed => format!(
            "failed ({}) at {since}",
            workspace.error.as_deref().unwrap_or("no reason recorded")
        ),
        state => format!("{state} since {since}"),
    }
}

/// The description of a workspace as it is in the database now.
async fn now(app: &App, workspace: &WorkspaceModel) -> anyhow::Result<String> {
    Ok(match app.workspaces.get(workspace.id).await? {
        Some(current) => describe(&current),
        None => "gone".to_owned(),
    })
}
