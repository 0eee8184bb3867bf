//! git's smart HTTP protocol served by git itself: `git http-backend` run as a CGI
//! program for one request. Whoever mounts it decides who may fetch and push; this only
//! translates between HTTP and CGI.

use std::path::Path;
use std::process::Stdio;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use tokio::io::AsyncWriteExt;

/// What git asks for: a fetch (upload-pack) or a push (receive-pack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Fetch,
    Push,
}

/// The service a request of the smart protocol is part of: `rest` is the path after the
/// repository (`info/refs`, `git-upload-pack`, `git-receive-pack`), `query` the query
/// string. `None` for anything else (the dumb protocol is not served).
pub fn service(rest: &str, query: Option<&str>) -> Option<Service> {
    match rest {
        "info/refs" => match query?.split('&').find_map(|p| p.strip_prefix("service="))? {
            "git-upload-pack" => Some(Service::Fetch),
            "git-receive-pack" => Some(Service::Push),
            _ => None,
        },
        "git-upload-pack" => Some(Service::Fetch),
        "git-receive-pack" => Some(Service::Push),
        _ => None,
    }
}

/// Runs `git http-backend` for one request on the repositories under `root`, as
/// `remote_user` (which also enables pushing), and turns its CGI answer into a response.
pub async fn serve(
    root: &Path,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    remote_user: &str,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query.unwrap_or_default())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", remote_user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{error}")),
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let body = body.to_vec();
    // Written beside the read: a large answer must not wait for the request to be taken.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = match child.wait_with_output().await {
        Ok(output) => output,
        Err(error) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{error}")),
    };
    let _ = writer.await;
    cgi_response(&output.stdout).unwrap_or_else(|| {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "git http-backend answered no CGI headers: {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    })
}

/// A CGI answer: header lines (`Status:` among them), a blank line, the body.
fn cgi_response(output: &[u8]) -> Option<Response> {
    let (head, body) = split_head(output)?;
    let mut status = StatusCode::OK;
    let mut response = Response::builder();
    for line in std::str::from_utf8(head).ok()?.lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value.split(' ').next()?.parse().ok()?;
        } else {
            response = response.header(
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value).ok()?,
            );
        }
    }
    response.status(status).body(Body::from(body.to_vec())).ok()
}

fn split_head(output: &[u8]) -> Option<(&[u8], &[u8])> {
    for separator in [b"\r\n\r\n".as_slice(), b"\n\n".as_slice()] {
        if let Some(at) = output
            .windows(separator.len())
            .position(|window| window == separator)
        {
            return Some((&output[..at], &output[at + separator.len()..]));
        }
    }
    None
}

fn plain(status: StatusCode, text: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Body::from(text.to_owned()))
        .expect("a plain response builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_told_apart() {
        let push = Some("service=git-receive-pack");
        assert_eq!(service("info/refs", push), Some(Service::Push));
        let fetch = Some("service=git-upload-pack");
        assert_eq!(service("info/refs", fetch), Some(Service::Fetch));
        assert_eq!(service("git-receive-pack", None), Some(Service::Push));
        assert_eq!(service("git-upload-pack", None), Some(Service::Fetch));
        assert_eq!(service("info/refs", None), None);
        assert_eq!(service("HEAD", None), None);
    }

    #[test]
    fn cgi_headers_become_status_and_headers() {
        let response =
            cgi_response(b"Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno").unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()["content-type"], "text/plain");
        let response = cgi_response(b"Content-Type: application/x-git\n\nPACK").unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
