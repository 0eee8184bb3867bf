//! Error answers of the HTTP API, always JSON `{"error": ...}` so sam can show them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::workspace::CheckoutError;

/// An error answer: a status and plain words for whoever called the agent.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// git's stderr tail, for checkout failures only.
    log: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<&'a str>,
}

impl ApiError {
    /// An answer with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            log: None,
        }
    }

    /// 401: the bearer token is missing or not valid for this workspace.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 400: the path or body is not something the API understands.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: the workspace has not been checked out.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500 for a failure of the agent itself; the cause is logged here, once.
    pub fn internal(error: &anyhow::Error) -> Self {
        tracing::error!("{error:#}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"))
    }
}

impl From<CheckoutError> for ApiError {
    fn from(error: CheckoutError) -> Self {
        match error {
            CheckoutError::Refused { message, log } => {
                tracing::info!(%message, "checkout refused");
                ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    message,
                    log: Some(log),
                }
            }
            CheckoutError::Internal(error) => ApiError {
                log: Some(String::new()),
                ..ApiError::internal(&error)
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            log: self.log.as_deref(),
        };
        (self.status, Json(body)).into_response()
    }
}
