//! The HTTP server: routes, the webhook endpoint, health, metrics, the status page, and
//! static assets.

pub mod agents;
mod assets;
mod health;
pub mod metrics;
pub mod signature;
mod status;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::setup;
use crate::terminal::{page, signin};

/// Shared state of every handler.
pub type AppState = Arc<App>;

/// All of sam's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(setup::front))
        .route(&format!("/{}", setup::DONE_PATH), get(setup::done))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics::scrape))
        .route("/status", get(status::page))
        .route(
            "/api/github/webhook",
            post(webhook::receive)
                .layer(webhook::body_limit())
                .layer(axum::middleware::from_fn(metrics::count_deliveries)),
        )
        .route(
            "/api/agents/workspaces/{id}/git-credentials",
            post(agents::credentials::issue),
        )
        .route("/api/agents/register", post(agents::register::register))
        .route("/w/{id}", get(page::open))
        .route("/w/{id}/ws", get(page::socket))
        .route("/w/{id}/state", get(page::workspace_state))
        .route("/auth/github/callback", get(signin::callback))
        .nest("/assets", assets::router())
        // Browsers must take every answer of sam's for the type it says it is.
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Every request gets an `x-request-id` (the caller's, or a new one), in its log
        // lines and in the answer, so that a person's report can be found in the log.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_failure(log_failure),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(state)
}

/// A span per request naming the method and path only: link tokens and OAuth codes travel
/// in query strings, and must never reach a log line. A webhook's delivery id ties its
/// answer to the worker's lines about it, which carry the same id.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 200)
            .unwrap_or_default()
            .to_owned()
    };
    let request_id = header("x-request-id");
    let delivery = header("x-github-delivery");
    if delivery.is_empty() {
        tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
    } else {
        tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id, delivery)
    }
}

/// tower_http's default logs every 5xx at ERROR. sam answers 503 on purpose (no App yet,
/// the database away) and its handlers log why at the level the cause deserves, so such an
/// answer is no error of its own, and must not count in `sam_log_events_total` as one.
/// Any other server error, or a request that ended with no answer, is worth a warning.
fn log_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    let latency_ms = latency.as_millis();
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(latency_ms, "answered 503: unavailable for now");
        }
        class => tracing::warn!(%class, latency_ms, "request failed"),
    }
}

/// Serves until the process is asked to stop.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, public_url = %state.config.public_url, "sam is serving");
    // Requests in flight are answered before the server stops; then the workers finish
    // the deliveries in hand. Anything not finished is claimed again at the next start.
    axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    state.stop_workers().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}
