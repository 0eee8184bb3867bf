//! The request log and fault injection, one middleware in front of every route.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use super::Shared;
use super::auth;
use super::errors::ApiError;
use super::model::RequestRecord;

/// A made-up answer for the next request that matches, see `GitHubStandIn::fail_next`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// This status with a GitHub-shaped error body; the request has no effect.
    Status(u16),
    /// 403 "You have exceeded a secondary rate limit", with `retry-after: 1`.
    SecondaryRateLimit,
    /// 429 with `retry-after` and `x-ratelimit-remaining: 0` (the primary limit).
    TooManyRequests { retry_after_secs: u64 },
    /// The request takes effect, but the answer comes only after this delay: what a
    /// client with a shorter timeout sees as a failure although GitHub did the work.
    SlowResponse(Duration),
    /// The request takes effect, and its answer is then lost: the client gets this status
    /// (a gateway's 502, say) with a GitHub-shaped error body instead.
    Lost(u16),
}

pub(super) struct PlannedFailure {
    pub method: String,
    pub pattern: String,
    pub failure: Failure,
}

impl PlannedFailure {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.eq_ignore_ascii_case(method) && path_matches(&self.pattern, path)
    }
}

/// Whether `path` fits `pattern`, where a `*` segment matches any one segment and a final
/// `**` any rest: `/repos/*/*/issues/*/comments`.
pub(super) fn path_matches(pattern: &str, path: &str) -> bool {
    let mut pattern = pattern.trim_end_matches('/').split('/');
    let mut path = path.trim_end_matches('/').split('/');
    loop {
        match (pattern.next(), path.next()) {
            (Some("**"), Some(_)) => return true,
            (Some(p), Some(s)) if p == "*" || p == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Takes the first planned failure for this request, answers with it (or lets the request
/// through), and logs the request with the status it got.
pub(super) async fn record_and_inject(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let auth = auth::kind(request.headers());

    let failure = shared.update(|model| {
        let index = model
            .failures
            .iter()
            .position(|f| f.matches(&method, &path))?;
        Some(model.failures.remove(index).failure)
    });
    let injected = failure.is_some();
    let response = match failure {
        None => next.run(request).await,
        Some(Failure::SlowResponse(delay)) => {
            let response = next.run(request).await;
            tokio::time::sleep(delay).await;
            response
        }
        Some(Failure::Lost(status)) => {
            let _ = next.run(request).await;
            failure_response(&Failure::Status(status))
        }
        Some(failure) => failure_response(&failure),
    };

    let status = response.status().as_u16();
    shared.update(|model| {
        model.requests.push(RequestRecord {
            method,
            path,
            auth,
            status,
            injected,
        });
    });
    response
}

fn failure_response(failure: &Failure) -> Response {
    match failure {
        Failure::Status(status) => {
            let reason = axum::http::StatusCode::from_u16(*status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Injected failure");
            ApiError::new(*status, reason).into_response()
        }
        Failure::SecondaryRateLimit => ApiError::new(
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        )
        .with_header("retry-after", 1)
        .into_response(),
        Failure::TooManyRequests { retry_after_secs } => {
            let reset = OffsetDateTime::now_utc().unix_timestamp() + *retry_after_secs as i64;
            ApiError::new(429, "API rate limit exceeded.")
                .with_header("retry-after", retry_after_secs)
                .with_header("x-ratelimit-remaining", 0)
                .with_header("x-ratelimit-reset", reset)
                .into_response()
        }
        Failure::SlowResponse(_) | Failure::Lost(_) => {
            unreachable!("these answer after the real request")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::path_matches;

    #[test]
    fn star_matches_one_segment_and_double_star_the_rest() {
        assert!(path_matches(
            "/repos/*/*/issues/*/comments",
            "/repos/o/r/issues/3/comments"
        ));
        assert!(!path_matches(
            "/repos/*/*/issues/*/comments",
            "/repos/o/r/issues/comments/3"
        ));
        assert!(path_matches("/repos/o/r/**", "/repos/o/r/pulls/1"));
        assert!(!path_matches("/app", "/app/installations/1/access_tokens"));
        assert!(path_matches("/app/", "/app"));
    }
}
