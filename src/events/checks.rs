//! sam's check run, "sam workspace": a completed, neutral run on each pull request's head
//! whose "Open workspace" button opens a workspace for whoever clicks it, with the same
//! authorization as `/sam open`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::open::{Asked, open};
use super::repo;
use crate::app::App;
use crate::github::answer_status;
use crate::github::events::{CheckRunEvent, PullRequestEvent};
use crate::github::once::Ledger;
use crate::replies;

/// The check run's name, as pull requests show it.
const NAME: &str = "sam workspace";
/// The identifier of the "Open workspace" button.
const OPEN: &str = "open";

/// `pull_request` `opened`, `reopened` or `synchronize`: offers the button on the new head.
pub async fn pull_request(
    app: &App,
    ledger: &Arc<Ledger>,
    event: PullRequestEvent,
) -> anyhow::Result<()> {
    if !matches!(event.action.as_str(), "opened" | "reopened" | "synchronize") {
        return Ok(());
    }
    let repo = repo(app, ledger, event.installation.as_ref(), &event.repository)
        .await?
        .1;
    match repo
        .create_check_run(&event.pull_request.head.sha, &offer(event.number))
        .await
    {
        Ok(id) => {
            tracing::info!(
                check_run = id,
                number = event.number,
                "offered the workspace button"
            );
            Ok(())
        }
        // The installation cannot see the repository (or the commit) any more, as when the
        // App was removed from it after the push: trying again would not change that.
        Err(error) if answer_status(&error) == Some(404) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "no check run: GitHub does not know the repository or commit"
            );
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// `check_run`: the button clicked on one of sam's runs, or the run asked for again.
pub async fn check_run(
    app: &App,
    ledger: &Arc<Ledger>,
    event: CheckRunEvent,
) -> anyhow::Result<()> {
    let run = &event.check_run;
    // GitHub tells sam about other Apps' runs too; only its own have its button.
    if run.name != NAME || run.app.as_ref().map(|a| a.id) != app.registered().map(|a| a.id) {
        return Ok(());
    }
    // sam stores the pull request's number in the run, since forks' runs list none.
    let number = run
        .external_id
        .as_deref()
        .and_then(|id| id.parse::<u64>().ok())
        .or_else(|| run.pull_requests.first().map(|pr| pr.number));
    let Some(number) = number else {
        tracing::warn!(check_run = run.id, "sam's check run names no pull request");
        return Ok(());
    };
    let (installation, repo) =
        repo(app, ledger, event.installation.as_ref(), &event.repository).await?;

    match (event.action.as_str(), &event.requested_action) {
        ("rerequested", _) => {
            repo.create_check_run(&run.head_sha, &offer(number)).await?;
        }
        ("requested_action", Some(action)) if action.identifier == OPEN => {
            if event.sender.is_bot() {
                return Ok(());
            }
            let asked = Asked {
                installation,
                repository: &event.repository,
                number,
                is_pull_request: true,
                person: &event.sender,
            };
            let preparing = json!({ "output": {
                "title": "Preparing a workspace",
                "summary": format!("Preparing a workspace for @{}…", event.sender.login),
            }});
            repo.update_check_run(run.id, &preparing).await?;
            let output = match open(app, &repo, &asked, None, None).await? {
                Some(link) => json!({ "output": {
                    "title": "Workspace ready",
                    "summary": replies::render(&replies::CheckReady {
                        login: &event.sender.login,
                        link: &link,
                    }),
                }}),
                // Refused or failed: the pull request's conversation says why.
                None => offer(number),
            };
            repo.update_check_run(run.id, &output).await?;
        }
        _ => {}
    }
    Ok(())
}

/// The run with its button, for pull request `number`.
fn offer(number: u64) -> Value {
    json!({
        "name": NAME,
        "status": "completed",
        "conclusion": "neutral",
        "external_id": number.to_string(),
        "output": {
            "title": "Open a workspace",
            "summary": replies::render(&replies::CheckOffer),
        },
        // GitHub's limits: labels up to 20 characters, descriptions up to 40.
        "actions": [{
            "label": "Open workspace",
            "description": "A shell on this branch, in your browser",
            "identifier": OPEN,
        }],
    })
}
