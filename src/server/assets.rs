//! Static assets of the terminal page, compiled into the binary: sam serves xterm.js
//! itself, pinned, so pages load no code from any CDN.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::Embed;

use super::AppState;

#[derive(Embed)]
#[folder = "assets/"]
#[exclude = "*.sh"]
#[exclude = "*.md"]
struct Assets;

/// `GET /assets/{*path}`.
pub fn router() -> Router<AppState> {
    Router::new().route("/{*path}", get(asset))
}

async fn asset(Path(path): Path<String>) -> Response {
    let Some(file) = Assets::get(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mime = file.metadata.mimetype();
    let mut response = file.data.into_owned().into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(mime) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}
