//! Registration with sam, for an agent on a host sam created: the agent trades the
//! one-time bootstrap token from its user data for the key sam signs its requests with.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use url::Url;

/// The variable that may hold the bootstrap token instead of a file. Like the key's, it is
/// removed from the agent's environment once read, so no shell ever sees it.
pub const TOKEN_VAR: &str = "SAM_AGENT_BOOTSTRAP_TOKEN";

/// How long the agent keeps trying to reach sam (a host may boot before its network or
/// sam are ready); the token expires anyway.
const PATIENCE: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
struct Registered {
    key: String,
}

#[derive(Deserialize)]
struct Refused {
    error: String,
}

/// Reads the bootstrap token from `file` (then deletes the file) or from
/// [`TOKEN_VAR`] (then removes it from the environment). Call it before any thread starts.
pub fn take_token(file: Option<&Path>) -> anyhow::Result<String> {
    let token = match file {
        Some(path) => {
            let token = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the bootstrap token from {}", path.display())
            })?;
            std::fs::remove_file(path).with_context(|| {
                format!("cannot remove the used bootstrap token {}", path.display())
            })?;
            token
        }
        None => {
            let token = std::env::var(TOKEN_VAR).with_context(|| {
                format!("--register needs a bootstrap token: --bootstrap-token-file or {TOKEN_VAR}")
            })?;
            // SAFETY: no other thread exists yet: the runtime and tracing start after this.
            unsafe { std::env::remove_var(TOKEN_VAR) };
            token
        }
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the bootstrap token is empty");
    }
    Ok(token)
}

/// Registers with the sam at `control_plane` as listening on `port`; returns the key.
pub async fn register(control_plane: &Url, token: &str, port: u16) -> anyhow::Result<Vec<u8>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = control_plane
        .join("api/agents/register")
        .context("the control plane URL cannot take a path")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build an HTTP client")?;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut backoff = Duration::from_millis(500);
    loop {
        let attempt = http
            .post(url.clone())
            .bearer_auth(token)
            .json(&serde_json::json!({ "port": port }))
            .send()
            .await;
        match attempt {
            Ok(response) if response.status().is_success() => {
                let registered: Registered = response
                    .json()
                    .await
                    .context("sam's registration answer is unreadable")?;
                let key =
                    hex::decode(registered.key.trim()).context("sam sent a key that is not hex")?;
                tracing::info!(%url, "registered with sam");
                return Ok(key);
            }
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let why = response
                    .json::<Refused>()
                    .await
                    .map_or_else(|_| status.to_string(), |r| r.error);
                bail!("sam refused the registration ({status}): {why}");
            }
            Ok(response) => {
                tracing::warn!(status = %response.status(), "sam could not register the agent yet")
            }
            Err(error) => tracing::warn!(%error, "cannot reach sam to register yet"),
        }
        if tokio::time::Instant::now() + backoff > deadline {
            bail!("could not register with sam at {url} within {PATIENCE:?}");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_read_once_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap-token");
        std::fs::write(&path, "  0123abcd\n").unwrap();
        assert_eq!(take_token(Some(&path)).unwrap(), "0123abcd");
        assert!(!path.exists(), "the used token stayed on disk");
        let again = take_token(Some(&path)).unwrap_err();
        assert!(format!("{again:#}").contains("cannot read the bootstrap token"));
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap-token");
        std::fs::write(&path, "\n").unwrap();
        assert!(format!("{:#}", take_token(Some(&path)).unwrap_err()).contains("empty"));
    }
}
