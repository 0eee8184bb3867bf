//! The HTTP handlers: health, checkout, stop, removal and the terminal socket.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::AppState;
use super::auth::Authorized;
use super::error::ApiError;
use crate::terminal::{self, SessionName};
use crate::workspace::{CheckoutRequest, Ready};

/// What `/healthz` reports, so sam can see the agent is alive and how busy it is.
#[derive(Serialize)]
pub struct Health {
    workspaces: usize,
    sessions: usize,
}

/// `GET /healthz`: the only unauthenticated route, for liveness checks.
pub async fn health(State(state): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        workspaces: state.workspaces.count(),
        sessions: state.sessions.count(),
    })
}

/// `PUT /workspaces/{id}`: checks out a branch, or reports the existing checkout.
pub async fn check_out(
    Authorized(id): Authorized,
    State(state): State<Arc<AppState>>,
    body: Result<Json<CheckoutRequest>, JsonRejection>,
) -> Result<Json<Ready>, ApiError> {
    let Json(request) = body.map_err(|rejection| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, rejection.body_text())
    })?;
    let _guard = state.workspaces.lock(id).await;
    tracing::info!(workspace = %id, branch = %request.branch, commit = %request.commit, "checkout");
    let ready = state.workspaces.check_out(id, &request).await?;
    Ok(Json(ready))
}

/// `DELETE /workspaces/{id}`: hangs up its sessions and removes its directory.
pub async fn remove(
    Authorized(id): Authorized,
    State(state): State<Arc<AppState>>,
) -> Result<StatusCode, ApiError> {
    let _guard = state.workspaces.lock(id).await;
    state.sessions.hang_up_workspace(id).await;
    state
        .workspaces
        .remove(id)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    tracing::info!(workspace = %id, "workspace removed");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /workspaces/{id}/stop`: hangs up its sessions and ends what they left running,
/// keeping the checkout.
pub async fn stop(
    Authorized(id): Authorized,
    State(state): State<Arc<AppState>>,
) -> Result<StatusCode, ApiError> {
    let _guard = state.workspaces.lock(id).await;
    state.sessions.hang_up_workspace(id).await;
    state
        .workspaces
        .end_processes(id)
        .await
        .map_err(|error| ApiError::internal(&error))?;
    tracing::info!(workspace = %id, "sessions stopped");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /workspaces/{id}/sessions/{name}`: the terminal socket.
pub async fn terminal(
    Authorized(id): Authorized,
    State(state): State<Arc<AppState>>,
    Path((_, name)): Path<(String, String)>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let name = SessionName::parse(&name)
        .ok_or_else(|| ApiError::bad_request("session name must match [A-Za-z0-9_-]{1,64}"))?;
    if state.workspaces.ready_dir(id).is_none() {
        return Err(ApiError::not_found("workspace is not checked out"));
    }
    let upgrade = upgrade.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    Ok(terminal::accept(
        upgrade,
        state.sessions.clone(),
        state.workspaces.clone(),
        id,
        name,
    ))
}
