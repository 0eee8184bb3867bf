//! The bearer-token check in front of every workspace route.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sam_protocol::token;

use super::AppState;
use super::error::ApiError;
use crate::workspace::WorkspaceId;

/// The workspace in the path, for a request whose token names exactly that
/// workspace. Handlers that take it can never run for an unauthorized caller.
pub struct Authorized(pub WorkspaceId);

impl FromRequestParts<Arc<AppState>> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::bad_request("unreadable path"))?;
        let raw_id = params
            .get("id")
            .ok_or_else(|| ApiError::bad_request("no workspace in the path"))?;

        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        // The token names the id exactly as the path spells it.
        token::verify(&state.key, token.trim(), raw_id).map_err(|error| {
            tracing::info!(%error, workspace = %raw_id, "token refused");
            ApiError::unauthorized(format!("token refused: {error}"))
        })?;

        let id = raw_id
            .parse()
            .map_err(|_| ApiError::bad_request("workspace id must be a UUID"))?;
        Ok(Authorized(id))
    }
}
