//! What every HTML page of sam's is sent with, whichever part of sam renders it: its
//! Content-Security-Policy, no referrer, and no caching (pages name workspaces, settings
//! and setup codes). And the page that says, in plain words, why something is refused.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum_extra::extract::CookieJar;

#[derive(Template)]
#[template(path = "refused.html")]
struct RefusedPage<'a> {
    reason: &'a str,
}

/// The refusal page for `reason`, rendered.
pub fn refused(reason: &str) -> askama::Result<String> {
    RefusedPage { reason }.render()
}

/// A rendered page with `policy` as its Content-Security-Policy, and `jar`'s cookies.
pub fn html(
    status: StatusCode,
    rendered: askama::Result<String>,
    policy: &str,
    jar: CookieJar,
) -> Response {
    let body = match rendered {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "rendering a page");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut response = (status, jar, Html(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
