//! `POST /api/agents/register`: an agent on a new host redeems its one-time bootstrap
//! token and receives the key it checks sam's requests with.
//!
//! The token (bearer) is all the agent proves: it was written into one host's user data,
//! is stored by sam only as a hash, works once, and expires. The body names the port the
//! agent listens on and the certificate it serves there, which sam then pins; its address
//! is the one the provider's API gave the host.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{bearer, no_store, refuse};
use crate::server::AppState;
use crate::workspaces::Provider;
use crate::workspaces::hetzner::Redemption;

/// What the agent sends.
#[derive(Deserialize)]
pub struct Registration {
    /// The port the agent listens on.
    pub port: u16,
    /// The certificate the agent serves its API with: DER, in base64. Optional here
    /// only so that an older agent, which sends none, is told why it is refused.
    #[serde(default)]
    pub certificate: Option<String>,
}

/// What the agent gets back.
#[derive(Serialize)]
pub struct Registered {
    /// The host sam recorded the agent as.
    pub host: Uuid,
    /// The hex key of the agent's tokens.
    pub key: String,
}

/// Redeems the bearer bootstrap token.
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<Registration>, JsonRejection>,
) -> Response {
    let Provider::Hetzner(pool) = state.workspaces.provider() else {
        return refuse(StatusCode::NOT_FOUND, "this sam does not create hosts");
    };
    let Some(token) = bearer(&headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "a bootstrap token is required");
    };
    let Ok(Json(registration)) = body else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the body must be JSON like {\"port\": 4100, \"certificate\": \"<base64 DER>\"}",
        );
    };
    if registration.port == 0 {
        return refuse(StatusCode::BAD_REQUEST, "port 0 is not a listening port");
    }
    let Some(certificate) = registration.certificate else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the agent sent no TLS certificate; install the sam-agent that comes with this sam",
        );
    };
    let certificate = match BASE64.decode(certificate.trim()) {
        Ok(der) => der,
        Err(_) => return refuse(StatusCode::BAD_REQUEST, "the certificate is not base64"),
    };
    if let Err(error) = crate::workspaces::pinned::check_certificate(&certificate) {
        return refuse(StatusCode::BAD_REQUEST, &format!("{error:#}"));
    }
    match pool.register(token, registration.port, &certificate).await {
        Ok(Redemption::Registered { host, key }) => {
            let mut response = Json(Registered {
                host,
                key: hex::encode(key),
            })
            .into_response();
            no_store(&mut response);
            response
        }
        // The agent retries on 503, and sam will know the server in a moment.
        Ok(Redemption::TooEarly) => {
            let mut response = refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "sam is still recording this host's server; try again in a moment",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Ok(Redemption::Refused) => {
            tracing::warn!("an agent presented a bootstrap token that is unknown, used or expired");
            refuse(
                StatusCode::UNAUTHORIZED,
                "the bootstrap token is unknown, used already, or expired",
            )
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "registering an agent failed");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "sam cannot register agents right now",
            )
        }
    }
}
