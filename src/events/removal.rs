//! Workspaces whose reason to exist went away: their pull request closed (merged or not),
//! or the App removed from their repository. They are deleted, files and shells both.

use crate::app::App;
use crate::database::workspaces::WorkspaceModel;
use crate::github::events::{InstallationEvent, InstallationRepositoriesEvent, PullRequestEvent};
use crate::replies::Phase;

/// `pull_request` `closed`: deletes the pull request's workspaces and says so in their
/// status comments.
pub async fn pull_request(app: &App, event: PullRequestEvent) -> anyhow::Result<()> {
    if event.action != "closed" {
        return Ok(());
    }
    let workspaces = app
        .workspaces
        .on_issue(event.repository.id, event.number)
        .await?;
    let reason = "when the pull request was closed";
    delete_all(app, &workspaces, Some(reason)).await
}

/// `installation` `deleted`: deletes every workspace of the installation. GitHub no longer
/// lets sam comment there, so status comments stay as they were.
pub async fn installation(app: &App, event: InstallationEvent) -> anyhow::Result<()> {
    if event.action != "deleted" {
        return Ok(());
    }
    let workspaces = app
        .workspaces
        .of_installation(event.installation.id, None)
        .await?;
    delete_all(app, &workspaces, None).await
}

/// `installation_repositories` `removed`: deletes the workspaces of those repositories.
pub async fn repositories(app: &App, event: InstallationRepositoriesEvent) -> anyhow::Result<()> {
    if event.action != "removed" || event.repositories_removed.is_empty() {
        return Ok(());
    }
    let removed: Vec<u64> = event.repositories_removed.iter().map(|r| r.id).collect();
    let workspaces = app
        .workspaces
        .of_installation(event.installation.id, Some(&removed))
        .await?;
    delete_all(app, &workspaces, None).await
}

/// Deletes each workspace that is not gone already, one being prepared included: its
/// checkout is removed as soon as git is done with it.
async fn delete_all(
    app: &App,
    workspaces: &[WorkspaceModel],
    reason: Option<&str>,
) -> anyhow::Result<()> {
    for workspace in workspaces {
        if !app.workspaces.delete(workspace).await? {
            continue;
        }
        tracing::info!(workspace = %workspace.id, "workspace deleted");
        if let Some(reason) = reason {
            app.edit_status(workspace, Phase::Deleted { reason }).await;
        }
    }
    Ok(())
}
