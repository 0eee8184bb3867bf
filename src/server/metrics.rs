//! `GET /metrics`, in Prometheus' text format: what sam received and did, and the state of
//! its workspaces, read from the database at each scrape.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::AppState;
use crate::github::headroom::Headroom;
use crate::workspaces::State as WorkspaceState;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The events GitHub sends sam; any other name is counted as `other`, so that senders
/// cannot grow the metrics without bound.
const EVENTS: &[&str] = &[
    "issue_comment",
    "check_run",
    "pull_request",
    "installation",
    "installation_repositories",
    "ping",
];

/// Installs the process-wide recorder that `/metrics` renders; once per process.
pub fn install() -> anyhow::Result<()> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    let _ = HANDLE.set(handle);
    describe_counter!(
        "sam_webhook_deliveries_total",
        "Webhook deliveries received, by event and by what sam answered"
    );
    describe_counter!(
        "sam_deliveries_handled_total",
        "Stored deliveries worked on, by event and outcome (done, unreadable, failed)"
    );
    describe_counter!("sam_commands_total", "Commands read in comments, by verb");
    describe_gauge!("sam_workspaces", "Workspaces by state, at scrape time");
    describe_gauge!(
        "sam_terminal_sessions_open",
        "Terminals relayed between a browser and a workspace right now"
    );
    describe_gauge!(
        "sam_github_rate_limit_remaining",
        "Calls left in GitHub's REST rate limit window, per installation sam acted for"
    );
    describe_gauge!(
        "sam_github_rate_limit",
        "GitHub's REST rate limit per window, per installation sam acted for"
    );
    describe_gauge!(
        "sam_github_rate_limit_reset_seconds",
        "When the rate limit window resets, in seconds since the Unix epoch"
    );
    describe_counter!(
        "sam_github_api_calls_total",
        "Calls to GitHub's API made through sam's App client, by outcome"
    );
    describe_counter!(
        "sam_log_events_total",
        "Warnings and errors logged, by level"
    );
    // A gauge shows from the start, so that a graph of it has no hole before its first
    // terminal.
    gauge!("sam_terminal_sessions_open").set(0.0);
    Ok(())
}

/// The name of an event as a metric label.
pub fn event_label(event: &str) -> &'static str {
    EVENTS
        .iter()
        .find(|known| **known == event)
        .copied()
        .unwrap_or("other")
}

/// Middleware of the webhook route: counts each delivery by event and by sam's answer.
pub async fn count_deliveries(request: Request, next: Next) -> Response {
    let event = request
        .headers()
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .map(event_label)
        .unwrap_or("none");
    let response = next.run(request).await;
    let outcome = match response.status() {
        StatusCode::ACCEPTED => "stored",
        StatusCode::OK => "duplicate",
        StatusCode::UNAUTHORIZED => "bad_signature",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        _ => "refused",
    };
    counter!("sam_webhook_deliveries_total", "event" => event, "outcome" => outcome).increment(1);
    response
}

/// `GET /metrics`.
/// How long a scrape waits for GitHub to tell each installation's rate limit.
const HEADROOM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an answer about rate limits is reused: `/metrics` needs no sign-in, and however
/// often it is scraped, GitHub is asked at most this often.
const HEADROOM_MAX_AGE: Duration = Duration::from_secs(15);

/// The installations' rate-limit headroom, asked of GitHub at most every
/// [`HEADROOM_MAX_AGE`] (sooner when sam has begun acting for another installation);
/// scrapes at the same moment share one asking.
async fn headroom(state: &AppState) -> Vec<Headroom> {
    type Asked = (Instant, Vec<u64>, Vec<Headroom>);
    static LAST: tokio::sync::Mutex<Option<Asked>> = tokio::sync::Mutex::const_new(None);
    let installations = state.github.installations_called();
    let mut last = LAST.lock().await;
    if let Some((asked, of, headroom)) = last.as_ref()
        && asked.elapsed() < HEADROOM_MAX_AGE
        && *of == installations
    {
        return headroom.clone();
    }
    let headroom = state.github.headroom(HEADROOM_TIMEOUT).await;
    *last = Some((Instant::now(), installations, headroom.clone()));
    headroom
}

pub async fn scrape(State(state): State<AppState>) -> Response {
    let counts: Result<Vec<(String, i64)>, _> =
        sqlx::query_as("SELECT state, count(*) FROM workspaces GROUP BY state")
            .fetch_all(&state.db)
            .await;
    match counts {
        Ok(counts) => {
            for workspace_state in WorkspaceState::ALL {
                let name = workspace_state.as_str();
                let count = counts
                    .iter()
                    .find(|(state, _)| state == name)
                    .map_or(0, |(_, count)| *count);
                gauge!("sam_workspaces", "state" => name).set(count as f64);
            }
        }
        // The other figures are still worth having; the gauges keep their last values.
        Err(error) => tracing::warn!(%error, "cannot count workspaces for /metrics"),
    }
    for headroom in headroom(&state).await {
        let installation = headroom.installation.to_string();
        gauge!("sam_github_rate_limit_remaining", "installation" => installation.clone())
            .set(headroom.remaining as f64);
        gauge!("sam_github_rate_limit", "installation" => installation.clone())
            .set(headroom.limit as f64);
        gauge!("sam_github_rate_limit_reset_seconds", "installation" => installation)
            .set(headroom.reset as f64);
    }
    let Some(handle) = HANDLE.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not recorded in this process\n",
        )
            .into_response();
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// Counts an open terminal for as long as it lives.
pub struct OpenTerminal(());

impl OpenTerminal {
    /// One more terminal open.
    pub fn count() -> Self {
        gauge!("sam_terminal_sessions_open").increment(1.0);
        Self(())
    }
}

impl Drop for OpenTerminal {
    fn drop(&mut self) {
        gauge!("sam_terminal_sessions_open").decrement(1.0);
    }
}
