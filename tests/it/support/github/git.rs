//! `GITHUB_URL/owner/name.git`: git's smart HTTP protocol on the bare repositories of the
//! `GitServer` given to `use_git_server`, served by `git http-backend`.
//!
//! Repositories are served as private ones: every fetch and push needs an installation
//! token as the Basic password, as git sends it after a credential helper answered. The
//! token must be unexpired and valid for the repository (else 401, or 404 where GitHub
//! hides a repository), and hold `contents: read` to fetch, `contents: write` to push
//! (else 403).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use time::OffsetDateTime;

use super::Shared;
use super::errors::ApiError;
use super::model::{GitAccess, Model, repo_key};
use crate::support::git_http::{self, Service};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/{owner}/{repo}/info/refs", get(smart_http))
        .route("/{owner}/{repo}/git-upload-pack", post(smart_http))
        .route("/{owner}/{repo}/git-receive-pack", post(smart_http))
        .layer(DefaultBodyLimit::disable())
}

async fn smart_http(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(name) = repo.strip_suffix(".git") else {
        return ApiError::not_found().into_response();
    };
    let full_name = format!("{owner}/{name}");
    let rest = uri
        .path()
        .strip_prefix(&format!("/{owner}/{repo}/"))
        .unwrap_or_default();
    let Some(service) = git_http::service(rest, uri.query()) else {
        return ApiError::not_found().into_response();
    };
    let token = basic_password(&headers);
    let decision = shared.read(|model| authorize(model, token.as_deref(), &full_name, service));
    let response = match decision {
        Ok(root) => {
            git_http::serve(
                &root,
                &method,
                uri.path(),
                uri.query(),
                &headers,
                &body,
                "x-access-token",
            )
            .await
        }
        Err(refusal) => refusal.into_response(),
    };
    let status = response.status().as_u16();
    shared.update(|model| {
        model.git_accesses.push(GitAccess {
            repo: full_name,
            push: service == Service::Push,
            token,
            status,
        });
    });
    response
}

/// The folder of the bare repositories when the token may do `service` on `full_name`.
fn authorize(
    model: &Model,
    token: Option<&str>,
    full_name: &str,
    service: Service,
) -> Result<std::path::PathBuf, ApiError> {
    // Without this header git does not ask its credential helper.
    let ask_for_credentials =
        || ApiError::bad_credentials().with_header("www-authenticate", "Basic realm=\"GitHub\"");
    let issued = token
        .and_then(|token| model.tokens.get(token))
        .filter(|issued| issued.expires_at > OffsetDateTime::now_utc())
        .ok_or_else(ask_for_credentials)?;
    let key = repo_key(full_name);
    let installed = model
        .installations
        .get(&issued.installation)
        .is_some_and(|installation| installation.repos.contains(&key));
    let in_scope = issued
        .repos
        .as_ref()
        .is_none_or(|repos| repos.contains(&key));
    if !installed || !in_scope {
        return Err(ApiError::new(404, "Repository not found."));
    }
    let level = issued
        .permissions
        .get("contents")
        .and_then(|level| level.as_str());
    let allowed = match service {
        Service::Fetch => matches!(level, Some("read" | "write" | "admin")),
        Service::Push => matches!(level, Some("write" | "admin")),
    };
    if !allowed {
        return Err(ApiError::new(
            403,
            format!("Permission to {full_name}.git denied to the token."),
        ));
    }
    let root = model
        .git_dir
        .clone()
        .filter(|dir| dir.join(format!("{full_name}.git")).is_dir())
        .ok_or_else(|| ApiError::new(404, "Repository not found."))?;
    Ok(root)
}

/// The password of `Authorization: Basic …`, which is where git puts the token.
fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use base64::Engine;
    use serde_json::{Value, json};

    use crate::support::git::GitServer;
    use crate::support::github::GitHubStandIn;
    use crate::support::http_client;

    /// A token the stand-in issues for `body` (`repository_ids`, `permissions`).
    async fn token(github: &GitHubStandIn, installation: u64, body: Value) -> String {
        let answer: Value = http_client()
            .post(format!(
                "{}/app/installations/{installation}/access_tokens",
                github.url()
            ))
            .bearer_auth(github.app_jwt())
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["token"].as_str().expect("a token").to_owned()
    }

    /// git with only `token` as its credential (none when empty), in `dir`.
    fn git(dir: &Path, token: &str, args: &[&str]) -> std::process::Output {
        let mut command = Command::new("git");
        if !token.is_empty() {
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
            command.args([
                "-c",
                &format!("http.extraHeader=Authorization: Basic {basic}"),
            ]);
        }
        command
            .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetch_and_push_need_a_token_with_the_repository_and_permission() {
        let server = GitServer::new();
        server.create_repo("octo/hello");
        server.create_repo("octo/other");
        let github = GitHubStandIn::start().await;
        github.use_git_server(server.dir());
        let installation = github.add_installation("octo");
        let hello = github.add_repo("octo/hello", installation);
        let other = github.add_repo("octo/other", installation);
        let url = format!("{}/octo/hello.git", github.url());

        let read = token(
            &github,
            installation,
            json!({ "repository_ids": [hello], "permissions": { "contents": "read" } }),
        )
        .await;
        let write = token(
            &github,
            installation,
            json!({ "repository_ids": [hello], "permissions": { "contents": "write" } }),
        )
        .await;
        let elsewhere = token(
            &github,
            installation,
            json!({ "repository_ids": [other], "permissions": { "contents": "write" } }),
        )
        .await;

        let work = tempfile::tempdir().unwrap();
        for refused in ["", "ghs_made_up", elsewhere.as_str()] {
            let output = git(work.path(), refused, &["ls-remote", &url]);
            assert!(!output.status.success(), "fetched with {refused:?}");
        }
        let clone = git(work.path(), &read, &["clone", "--quiet", &url, "hello"]);
        assert!(
            clone.status.success(),
            "{}",
            String::from_utf8_lossy(&clone.stderr)
        );

        let checkout = work.path().join("hello");
        let commit = git(&checkout, "", &["commit", "-q", "--allow-empty", "-m", "x"]);
        assert!(commit.status.success());
        let denied = git(
            &checkout,
            &read,
            &["push", "origin", "HEAD:refs/heads/pushed"],
        );
        assert!(!denied.status.success());
        assert!(String::from_utf8_lossy(&denied.stderr).contains("403"));
        assert!(!server.has_ref("octo/hello", "refs/heads/pushed"));

        let pushed = git(
            &checkout,
            &write,
            &["push", "origin", "HEAD:refs/heads/pushed"],
        );
        assert!(
            pushed.status.success(),
            "{}",
            String::from_utf8_lossy(&pushed.stderr)
        );
        assert!(server.has_ref("octo/hello", "refs/heads/pushed"));
        let statuses: Vec<(bool, u16)> = github
            .git_accesses()
            .iter()
            .map(|a| (a.push, a.status))
            .collect();
        assert!(statuses.contains(&(true, 403)), "{statuses:?}");
        assert!(statuses.contains(&(true, 200)), "{statuses:?}");
    }
}
