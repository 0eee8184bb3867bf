//! How much of GitHub's rate limit is left to each installation sam acts for, for
//! `/metrics`. octocrab keeps the rate-limit headers of its answers to itself, so sam asks
//! GitHub directly: `GET /rate_limit` costs nothing against the limit it reports.

use std::time::Duration;

use serde::Deserialize;

use super::GitHub;

/// One installation's REST (`core`) rate limit, as GitHub reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headroom {
    pub installation: u64,
    pub limit: u64,
    pub remaining: u64,
    /// When the window resets, in seconds since the Unix epoch.
    pub reset: u64,
}

#[derive(Deserialize)]
struct RateLimit {
    resources: Resources,
}

#[derive(Deserialize)]
struct Resources {
    core: Core,
}

#[derive(Deserialize)]
struct Core {
    limit: u64,
    remaining: u64,
    reset: u64,
}

impl GitHub {
    /// The headroom of every installation sam has called since it started, each asked of
    /// GitHub within `timeout`; an installation whose answer did not come in time is left
    /// out, so that a slow GitHub never holds up a scrape for long.
    pub async fn headroom(&self, timeout: Duration) -> Vec<Headroom> {
        let asks = self
            .installation_clients()
            .into_iter()
            .map(|(id, crab)| async move {
                let asked = tokio::time::timeout(
                    timeout,
                    crab.get::<RateLimit, _, ()>("/rate_limit", None),
                )
                .await;
                match asked {
                    Ok(Ok(rate)) => Some(Headroom {
                        installation: id,
                        limit: rate.resources.core.limit,
                        remaining: rate.resources.core.remaining,
                        reset: rate.resources.core.reset,
                    }),
                    Ok(Err(error)) => {
                        tracing::debug!(installation = id, %error, "cannot read the rate limit");
                        None
                    }
                    Err(_) => None,
                }
            });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}
