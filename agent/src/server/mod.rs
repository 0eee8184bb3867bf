//! The agent's HTTP server: routes, shared state and an orderly shutdown.

mod auth;
mod error;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;

use crate::terminal::Sessions;
use crate::workspace::Workspaces;

/// Largest request body; a checkout request is a few hundred bytes.
const BODY_LIMIT: usize = 64 * 1024;

/// How long open connections get to finish once the sessions are hung up.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// What every handler shares.
pub struct AppState {
    /// The HS256 key agent tokens are checked with.
    pub key: Vec<u8>,
    /// The checkouts under the root directory.
    pub workspaces: Workspaces,
    /// The running shells.
    pub sessions: Sessions,
}

/// The agent's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(routes::health))
        .route(
            "/workspaces/{id}",
            put(routes::check_out).delete(routes::remove),
        )
        .route("/workspaces/{id}/stop", post(routes::stop))
        .route("/workspaces/{id}/sessions/{name}", get(routes::terminal))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// SIGTERM and SIGINT, caught from the moment this exists. It must exist before
/// the agent announces its address: a signal arriving earlier would kill the agent
/// without hanging up anything.
pub struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    /// Starts catching the signals; needs the runtime.
    pub fn catch() -> anyhow::Result<Self> {
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
        })
    }

    async fn received(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = self.interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
}

/// Serves until SIGTERM or SIGINT, then hangs up every session (so no shell
/// outlives the agent) and gives connections a moment to close.
pub async fn serve<L>(
    listener: L,
    state: Arc<AppState>,
    mut signals: StopSignals,
) -> anyhow::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let mut server = tokio::spawn(
        axum::serve(listener, router(state.clone()))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );

    tokio::select! {
        result = &mut server => {
            return result.context("server task failed")?.context("server failed");
        }
        () = signals.received() => {}
    }

    state.sessions.hang_up_all().await;
    let _ = stop.send(());
    match tokio::time::timeout(SHUTDOWN_WAIT, server).await {
        Ok(result) => result
            .context("server task failed")?
            .context("server failed"),
        Err(_) => {
            tracing::warn!("connections still open after shutdown; leaving anyway");
            Ok(())
        }
    }
}
