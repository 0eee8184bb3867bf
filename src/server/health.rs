//! `GET /healthz`: 200 when sam and its database are usable, 503 otherwise.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use crate::database;

/// Load balancers and operators ask this; it answers within the pool's acquire timeout.
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if database::is_usable(&state.db).await {
        (StatusCode::OK, Json(json!({ "status": "ok" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "database": "unreachable" })),
        )
    }
}
