//! `POST /api/github/webhook`: checks a delivery, stores it, and answers before working on it.
//!
//! The order of checks is deliberate: the body limit first (nothing over it is buffered,
//! and only a few bodies near it at once), then the signature over the exact bytes
//! (nothing unsigned is even parsed), then the content type and JSON, then storage.
//! GitHub gets 2xx only once the delivery is stored, so a crash afterwards loses nothing.
//!
//! GitHub sends a webhook's payload as `application/json`, or, when the webhook's content
//! type is set to `application/x-www-form-urlencoded`, as the form field `payload`. Either
//! way the signature covers the bytes as sent, and what is stored is the JSON.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::sync::Semaphore;

use super::AppState;
use super::signature;
use crate::database::deliveries::{NewDelivery, Stored};

/// GitHub caps payloads at 25 MB; anything larger is not from GitHub.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

/// The body limit of the webhook route; larger bodies get 413.
pub fn body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_BODY)
}

/// The most a delivery of the events sam subscribes to weighs, within reason: tens of
/// kilobytes, and an `installation` event of a few thousand repositories under this.
const LARGE_BODY: u64 = 1024 * 1024;
/// How many bodies larger than [`LARGE_BODY`] are read at once.
const LARGE_AT_ONCE: usize = 4;

/// Lets only a few large bodies be read at once. A body is held whole before its
/// signature can be checked, so without this anyone reaching the webhook could make sam
/// hold 25 MiB per connection. Past those few, a large body gets 503 and `Retry-After`,
/// which GitHub's delivery log shows for redelivery; small ones never wait.
pub async fn few_large_bodies(request: Request, next: Next) -> Response {
    static READING: Semaphore = Semaphore::const_new(LARGE_AT_ONCE);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A body without a length may be anything up to the limit; one over it is refused
    // before a byte is read.
    let large = declared.is_none_or(|length| length > LARGE_BODY && length <= MAX_BODY as u64);
    if !large {
        return next.run(request).await;
    }
    let Ok(_reading) = READING.try_acquire() else {
        tracing::warn!(
            declared,
            "a large body refused: {LARGE_AT_ONCE} are being read already"
        );
        let busy = answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "sam is reading as many large deliveries as it reads at once; redeliver this one in a minute",
        );
        return ([(header::RETRY_AFTER, "60")], busy).into_response();
    };
    next.run(request).await
}

/// Receives one delivery.
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        // Answered in JSON like every other refusal, for GitHub's delivery log.
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is larger than GitHub's 25 MiB limit for webhook payloads",
            );
        }
        Err(rejection) => return answer(rejection.status(), &rejection.body_text()),
    };
    let Some(app) = state.registered() else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "sam has no GitHub App yet; register one on sam's front page",
        );
    };
    // During a rotation the previous secret is still accepted.
    let secrets: Vec<&[u8]> = app
        .webhook_secrets()
        .map(|secret| secret.expose_secret().as_bytes())
        .collect();
    let header_value = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(error) = signature::verify_any(&secrets, header_value, &body) {
        tracing::info!(%error, "webhook refused");
        return answer(StatusCode::UNAUTHORIZED, &error.to_string());
    }

    let payload = match payload(&headers, &body) {
        Ok(payload) => payload,
        Err(refusal) => return refusal,
    };
    let event = match header_str(&headers, "X-GitHub-Event") {
        Ok(event) => event,
        Err(refusal) => return refusal,
    };
    let delivery = match header_str(&headers, "X-GitHub-Delivery") {
        Ok(delivery) => delivery,
        Err(refusal) => return refusal,
    };
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
        return answer(
            StatusCode::BAD_REQUEST,
            &format!("the body is not JSON: {error}"),
        );
    }

    let to_do = crate::events::acts_on(event);
    let stored = state
        .inbox
        .store(NewDelivery {
            github_delivery: delivery.to_owned(),
            event: event.to_owned(),
            body: payload.into(),
            to_do,
        })
        .await;
    match stored {
        Ok(Stored::New) => {
            if to_do {
                state.deliveries_waiting.notify_one();
            }
            tracing::info!(delivery, event, "delivery stored");
            answer(StatusCode::ACCEPTED, "stored")
        }
        Ok(Stored::Duplicate) => {
            tracing::info!(delivery, event, "redelivery ignored");
            answer(StatusCode::OK, "already received")
        }
        Err(error) => {
            // 503 keeps the delivery in GitHub's log, where it can be redelivered.
            tracing::error!(%error, delivery, "cannot store a delivery");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "sam cannot store deliveries right now",
            )
        }
    }
}

/// The longest event name or delivery id taken; GitHub's are a few dozen characters.
const MAX_HEADER: usize = 200;

/// A header GitHub always sends, or a refusal saying what is wrong with it.
#[allow(
    clippy::result_large_err,
    reason = "the refusal is the answer itself, built once per refused delivery"
)]
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, Response> {
    let refuse = |why: &str| {
        Err(answer(
            StatusCode::BAD_REQUEST,
            &format!("the {name} header {why}"),
        ))
    };
    let Some(value) = headers.get(name) else {
        return refuse("is missing");
    };
    let Ok(value) = value.to_str().map(str::trim) else {
        return refuse("is not plain ASCII text");
    };
    if value.is_empty() {
        return refuse("is empty");
    }
    if value.len() > MAX_HEADER {
        return refuse(&format!("is longer than {MAX_HEADER} characters"));
    }
    Ok(value)
}

/// The JSON payload of a signed body, by its content type; a refusal for anything else.
#[allow(
    clippy::result_large_err,
    reason = "the refusal is the answer itself, built once per refused delivery"
)]
fn payload(headers: &HeaderMap, body: &Bytes) -> Result<Bytes, Response> {
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if mime.eq_ignore_ascii_case("application/json") {
        return Ok(body.clone());
    }
    if mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return url::form_urlencoded::parse(body)
            .find(|(name, _)| name == "payload")
            .map(|(_, value)| Bytes::from(value.into_owned()))
            .ok_or_else(|| {
                answer(
                    StatusCode::BAD_REQUEST,
                    "the form has no payload field, where GitHub puts the event",
                )
            });
    }
    Err(answer(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "set the webhook's content type to application/json or application/x-www-form-urlencoded",
    ))
}

fn answer(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}
