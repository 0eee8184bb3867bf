//! `issue_comment`: commands written in comments on issues and pull requests.

use std::sync::Arc;

use tracing::Instrument;

use super::lifecycle;
use super::open::{Asked, open};
use super::repo;
use crate::app::App;
use crate::commands::{self, Command};
use crate::database::deliveries;
use crate::github::events::IssueCommentEvent;
use crate::github::once::Ledger;
use crate::replies;

/// Acts on the commands of a newly created comment, once per comment.
pub async fn handle(
    app: &App,
    ledger: &Arc<Ledger>,
    delivery_id: i64,
    event: IssueCommentEvent,
) -> anyhow::Result<()> {
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
        let (installation, repo) =
            repo(app, ledger, event.installation.as_ref(), &event.repository).await?;
        repo.react_to_comment(event.comment.id, "eyes").await?;

        for command in commands {
            let verb = command.as_ref().map_or("unreadable", Command::verb);
            metrics::counter!("sam_commands_total", "command" => verb).increment(1);
            let login = &event.comment.user.login;
            match command {
                Ok(Command::Open(args)) => {
                    let asked = Asked {
                        installation,
                        repository: &event.repository,
                        number: event.issue.number,
                        is_pull_request: event.issue.is_pull_request(),
                        person: &event.comment.user,
                    };
                    open(app, &repo, &asked, args.branch, args.size).await?;
                }
                Ok(Command::Help) => {
                    let slug = app.registered().map(|a| a.slug.clone()).unwrap_or_default();
                    let help = replies::render(&replies::Help { slug: &slug });
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
