//! The HTTP server: routes, the webhook endpoint, health, and static assets.

pub mod agents;
mod assets;
mod health;
pub mod signature;
mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::terminal::{page, signin};

/// Shared state of every handler.
pub type AppState = Arc<App>;

/// All of sam's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route(
            "/api/github/webhook",
            post(webhook::receive).layer(webhook::body_limit()),
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
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// A span per request naming the method and path only: link tokens and OAuth codes travel
/// in query strings, and must never reach a log line.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
}

/// Serves until the process is asked to stop.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, public_url = %state.config.public_url, "sam is serving");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
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
