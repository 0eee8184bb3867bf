//! What sam does with each stored webhook delivery.

mod checks;
mod comment;
mod lifecycle;
mod open;
mod removal;
pub mod worker;

use std::sync::Arc;

use crate::app::App;
use crate::database::deliveries::DeliveryModel;
use crate::github::RepoClient;
use crate::github::events::{
    CheckRunEvent, InstallationEvent, InstallationRef, InstallationRepositoriesEvent,
    IssueCommentEvent, PullRequestEvent, Repository,
};
use crate::github::once::Ledger;

/// How handling a delivery went wrong, which decides whether to try again.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The payload cannot be read as the event it claims to be; trying again cannot help.
    #[error("unreadable {event} payload: {source}")]
    Unreadable {
        event: String,
        source: serde_json::Error,
    },
    /// Something outside sam failed (GitHub, the database, a host); worth another try.
    #[error(transparent)]
    Transient(#[from] anyhow::Error),
}

/// The events [`handle`] acts on; deliveries of any other are stored already finished, so
/// that the workers never spend a claim on them.
const ACTED_ON: [&str; 5] = [
    "issue_comment",
    "pull_request",
    "check_run",
    "installation",
    "installation_repositories",
];

/// Whether sam acts on deliveries of `event` (the `X-GitHub-Event` header).
pub fn acts_on(event: &str) -> bool {
    ACTED_ON.contains(&event)
}

/// Acts on a delivery, and counts how that went for `/metrics`.
pub async fn handle(app: &App, delivery: &DeliveryModel) -> Result<(), HandleError> {
    let outcome = route(app, delivery).await;
    let label = match &outcome {
        Ok(()) => "done",
        Err(HandleError::Unreadable { .. }) => "unreadable",
        Err(HandleError::Transient(_)) => "failed",
    };
    // In the worker's span, which names the delivery: the line that closes its story.
    tracing::info!(outcome = label, "delivery handled");
    let event = crate::server::metrics::event_label(&delivery.event);
    metrics::counter!("sam_deliveries_handled_total", "event" => event, "outcome" => label)
        .increment(1);
    outcome
}

/// Routes a delivery by its event name; events sam does not act on are done at once.
async fn route(app: &App, delivery: &DeliveryModel) -> Result<(), HandleError> {
    // Counts this try's posts from the first, so that they meet an earlier try's records.
    let ledger = Arc::new(Ledger::new(
        app.db.clone(),
        delivery.id,
        &delivery.github_delivery,
    ));
    match delivery.event.as_str() {
        "issue_comment" => {
            let event: IssueCommentEvent = read(delivery)?;
            comment::handle(app, &ledger, delivery.id, event).await?;
        }
        "pull_request" => {
            let event: PullRequestEvent = read(delivery)?;
            if event.action == "closed" {
                removal::pull_request(app, event).await?;
            } else {
                checks::pull_request(app, &ledger, event).await?;
            }
        }
        "check_run" => {
            let event: CheckRunEvent = read(delivery)?;
            checks::check_run(app, &ledger, event).await?;
        }
        "installation" => {
            let event: InstallationEvent = read(delivery)?;
            removal::installation(app, event).await?;
        }
        "installation_repositories" => {
            let event: InstallationRepositoriesEvent = read(delivery)?;
            removal::repositories(app, event).await?;
        }
        other => tracing::debug!(event = other, "nothing to do for this event"),
    }
    Ok(())
}

fn read<T: serde::de::DeserializeOwned>(delivery: &DeliveryModel) -> Result<T, HandleError> {
    serde_json::from_slice(&delivery.body).map_err(|source| HandleError::Unreadable {
        event: delivery.event.clone(),
        source,
    })
}

/// The installation an event came through (asked of GitHub when a repository webhook names
/// none), and a client for its repository that posts each reply of the delivery once.
async fn repo(
    app: &App,
    ledger: &Arc<Ledger>,
    installation: Option<&InstallationRef>,
    repository: &Repository,
) -> anyhow::Result<(u64, RepoClient)> {
    let installation = match installation {
        Some(installation) => installation.id,
        None => {
            app.github
                .repo_installation(&repository.owner.login, &repository.name)
                .await?
        }
    };
    Ok((
        installation,
        app.github
            .repo(installation, &repository.full_name)?
            .with_ledger(ledger.clone()),
    ))
}
