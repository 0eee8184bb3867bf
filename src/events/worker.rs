//! Background workers that claim stored deliveries and handle them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::Instrument;

use super::{HandleError, handle};
use crate::app::App;
use crate::database::deliveries::{self, DeliveryModel};

/// Attempts before a delivery that keeps failing is given up on: with waits doubling from
/// 2 s up to [`LONGEST_WAIT`], about 40 minutes of trying, enough to outlast a GitHub or
/// database outage of that long.
const MAX_ATTEMPTS: i32 = 12;
/// The longest wait between two attempts, in seconds.
const LONGEST_WAIT: i32 = 600;
/// How often idle workers look for work that no notification announced (another process
/// stored it, or a retry came due).
const POLL: Duration = Duration::from_secs(1);

/// Runs one worker until sam stops.
pub async fn run(app: Arc<App>, wake: Arc<Notify>) {
    loop {
        // Asked to stop: the delivery in hand is finished, no new one is taken.
        if *app.stopping.borrow() {
            return;
        }
        match deliveries::claim(&app.db).await {
            Ok(Some(delivery)) => work(&app, delivery).await,
            Ok(None) => {
                let _ = tokio::time::timeout(POLL, wake.notified()).await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot claim deliveries; the database may be away");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

async fn work(app: &App, delivery: DeliveryModel) {
    let span = tracing::info_span!("delivery", delivery = %delivery.github_delivery, event = %delivery.event, attempt = delivery.attempts);
    async {
        let outcome = handle(app, &delivery).await;
        let recorded = match &outcome {
            Ok(()) => deliveries::finish(&app.db, delivery.id).await,
            Err(HandleError::Unreadable { .. }) => {
                tracing::warn!(error = %outcome.as_ref().unwrap_err(), "delivery dropped");
                deliveries::retry_or_fail(&app.db, delivery.id, &outcome.as_ref().unwrap_err().to_string(), None).await
            }
            Err(HandleError::Transient(error)) => {
                let message = format!("{error:#}");
                let delay = (delivery.attempts < MAX_ATTEMPTS)
                    .then(|| 2_i32.saturating_pow(delivery.attempts as u32).min(LONGEST_WAIT));
                match delay {
                    Some(seconds) => tracing::warn!(error = %message, retry_in_seconds = seconds, "delivery failed; will retry"),
                    None => tracing::error!(error = %message, "delivery failed for good"),
                }
                deliveries::retry_or_fail(&app.db, delivery.id, &message, delay).await
            }
        };
        if let Err(error) = recorded {
            // The lease runs out and another worker takes the delivery again.
            tracing::error!(%error, "cannot record the outcome of a delivery");
        }
    }
    .instrument(span)
    .await
}
