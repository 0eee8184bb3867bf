//! Error answers in GitHub's shape: `{"message", "documentation_url", "status"}`.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub(super) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(status).expect("a valid status code");
        Self {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl ToString) -> Self {
        let value = HeaderValue::from_str(&value.to_string()).expect("a valid header value");
        self.headers.push((HeaderName::from_static(name), value));
        self
    }

    /// 401, for a missing, malformed, unknown or expired credential.
    pub fn bad_credentials() -> Self {
        Self::new(401, "Bad credentials")
    }

    /// 404, also GitHub's answer for what the credential may not see.
    pub fn not_found() -> Self {
        Self::new(404, "Not Found")
    }

    /// 403, for a token without the permission an endpoint needs.
    pub fn not_accessible() -> Self {
        Self::new(403, "Resource not accessible by integration")
    }

    /// 422, for a request GitHub understands but refuses.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(422, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "message": self.message,
            "documentation_url": "https://docs.github.com/rest",
            "status": self.status.as_u16().to_string(),
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}
