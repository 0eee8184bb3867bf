//! Registration with sam, for an agent on a host sam created: the agent trades the
//! one-time bootstrap token from its user data for the key sam signs its requests with,
//! and tells sam the port it listens on and the certificate it serves there.
//!
//! What registration gave is saved in the agent's state directory, readable by root
//! alone: the token works once, so an agent that restarts (a crash, a reboot) must serve
//! again with the same key, port and certificate rather than register anew.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use crate::control;
use crate::tls::Identity;

/// The variable that may hold the bootstrap token instead of a file. Like the key's, it is
/// removed from the agent's environment once read, so no shell ever sees it.
pub const TOKEN_VAR: &str = "SAM_AGENT_BOOTSTRAP_TOKEN";

/// How long the agent keeps trying to reach sam (a host may boot before its network or
/// sam are ready); the token expires anyway.
const PATIENCE: Duration = Duration::from_secs(300);

/// The file in the state directory that holds a registration.
const SAVED: &str = "registration.json";

#[derive(Deserialize)]
struct Answer {
    host: Uuid,
    key: String,
}

/// What an agent serves with once registered.
pub struct Registration {
    /// The host sam recorded the agent as.
    pub host: Uuid,
    /// The key of the tokens sam and the agent exchange.
    pub key: Vec<u8>,
    /// The port sam reaches the agent at.
    pub port: u16,
    /// The certificate sam pinned, and its key.
    pub identity: Identity,
}

/// The saved form of a [`Registration`].
#[derive(Serialize, Deserialize)]
struct SavedRegistration {
    host: Uuid,
    key: String,
    port: u16,
    certificate: String,
    private_key: String,
}

/// How an agent with `--register` starts.
pub enum Start {
    /// It registered before and serves as it did then.
    Registered(Registration),
    /// It has yet to register, with this bootstrap token.
    New(String),
}

/// The saved registration in `state_dir`, or else the bootstrap token (see
/// [`take_token`]). Call it before any thread starts.
pub fn prepare(state_dir: &Path, token_file: Option<&Path>) -> anyhow::Result<Start> {
    match Registration::load(state_dir)? {
        Some(registration) => {
            // The token was spent at the first start; one still in the environment is
            // worthless, but shells must not see it either.
            // SAFETY: no other thread exists yet: the runtime and tracing start after this.
            unsafe { std::env::remove_var(TOKEN_VAR) };
            Ok(Start::Registered(registration))
        }
        None => Ok(Start::New(take_token(token_file)?)),
    }
}

impl Registration {
    fn load(state_dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = state_dir.join(SAVED);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let damaged = || format!("{} is damaged", path.display());
        let saved: SavedRegistration = serde_json::from_str(&text).with_context(damaged)?;
        Ok(Some(Self {
            host: saved.host,
            key: control::parse_key(&saved.key).with_context(damaged)?,
            port: saved.port,
            identity: Identity::from_der(
                BASE64.decode(&saved.certificate).with_context(damaged)?,
                BASE64.decode(&saved.private_key).with_context(damaged)?,
            ),
        }))
    }

    /// Writes the registration into `state_dir` (made readable by root alone if it does
    /// not exist): a new file, mode 0600 from the start, moved into place so that a
    /// crash leaves the whole file or none.
    pub fn save(&self, state_dir: &Path) -> anyhow::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .with_context(|| format!("cannot create {}", state_dir.display()))?;
        let saved = SavedRegistration {
            host: self.host,
            key: hex::encode(&self.key),
            port: self.port,
            certificate: BASE64.encode(self.identity.certificate()),
            private_key: BASE64.encode(self.identity.key()),
        };
        let path = state_dir.join(SAVED);
        let partial = state_dir.join(format!("{SAVED}.partial"));
        let _ = std::fs::remove_file(&partial);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        file.write_all(&serde_json::to_vec(&saved)?)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", partial.display()))?;
        std::fs::rename(&partial, &path)
            .with_context(|| format!("cannot move {} into place", path.display()))?;
        // The rename itself must survive a power cut, or a reboot finds no registration.
        std::fs::File::open(state_dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("cannot sync {}", state_dir.display()))
    }
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

/// Registers with the sam at `control_plane` as listening on `port` with `identity`'s
/// certificate.
pub async fn register(
    control_plane: &Url,
    token: &str,
    port: u16,
    identity: Identity,
) -> anyhow::Result<Registration> {
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
            .json(&serde_json::json!({
                "port": port,
                "certificate": BASE64.encode(identity.certificate()),
            }))
            .send()
            .await;
        match attempt {
            Ok(response) if response.status().is_success() => {
                let answer: Answer = response
                    .json()
                    .await
                    .context("sam's registration answer is unreadable")?;
                let key = control::parse_key(&answer.key).context("sam sent an unusable key")?;
                tracing::info!(%url, host = %answer.host, "registered with sam");
                return Ok(Registration {
                    host: answer.host,
                    key,
                    port,
                    identity,
                });
            }
            Ok(response) if response.status().is_client_error() => {
                let why = control::refusal_reason(response).await;
                bail!("sam refused the registration: {why}");
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
    fn a_saved_registration_is_private_and_read_back_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let token = dir.path().join("bootstrap-token");
        std::fs::write(&token, "0123abcd").unwrap();
        let identity = Identity::generate().unwrap();
        let certificate = identity.certificate().to_vec();
        let registration = Registration {
            host: Uuid::new_v4(),
            key: vec![7; 32],
            port: 4100,
            identity,
        };
        registration.save(&state).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(SAVED)), 0o600);

        // A restart reads the registration and leaves the token alone.
        let Start::Registered(again) = prepare(&state, Some(&token)).unwrap() else {
            panic!("the saved registration was not found");
        };
        assert_eq!(again.host, registration.host);
        assert_eq!(again.key, registration.key);
        assert_eq!(again.port, 4100);
        assert_eq!(again.identity.certificate(), certificate);
        assert_eq!(again.identity.key(), registration.identity.key());

        std::fs::write(state.join(SAVED), "{").unwrap();
        let damaged = prepare(&state, Some(&token))
            .err()
            .expect("damage is an error");
        assert!(format!("{damaged:#}").contains("is damaged"), "{damaged:#}");
        std::fs::remove_file(state.join(SAVED)).unwrap();
        assert!(matches!(
            prepare(&state, Some(&token)).unwrap(),
            Start::New(t) if t == "0123abcd"
        ));
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap-token");
        std::fs::write(&path, "\n").unwrap();
        assert!(format!("{:#}", take_token(Some(&path)).unwrap_err()).contains("empty"));
    }
}
