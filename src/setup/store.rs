//! The App a registration produced, kept in `SAM_DATA_DIR/github-app.json`: readable and
//! writable by sam's user alone (mode 0600), written whole or not at all.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use jsonwebtoken::EncodingKey;
use serde::{Deserialize, Serialize};

use crate::config::{AppCredentials, OAuthClient};

/// The file's name inside the data directory.
pub const FILE: &str = "github-app.json";

/// What GitHub hands out once when it registers an App from a manifest, and sam keeps.
#[derive(Serialize, Deserialize)]
pub struct Registration {
    pub id: u64,
    pub slug: String,
    /// The login of the account that owns the App.
    pub owner: Option<String>,
    pub pem: String,
    pub webhook_secret: String,
    pub client_id: String,
    pub client_secret: String,
}

impl Registration {
    /// The credentials sam runs with.
    pub fn credentials(&self) -> anyhow::Result<AppCredentials> {
        let private_key = EncodingKey::from_rsa_pem(self.pem.as_bytes())
            .context("the App's private key is not an RSA key in PEM format")?;
        anyhow::ensure!(self.id > 0, "the App's id is not a positive number");
        Ok(AppCredentials {
            id: self.id,
            slug: self.slug.clone(),
            private_key,
            webhook_secret: self.webhook_secret.clone().into(),
            previous_webhook_secret: None,
            oauth: OAuthClient {
                client_id: self.client_id.clone(),
                client_secret: self.client_secret.clone().into(),
            },
            owner: self.owner.clone(),
        })
    }
}

/// Where the registration lives for a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The stored registration, if there is one.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<Registration>> {
    let path = path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mode = std::fs::metadata(&path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the App's key and secrets are readable by other users; chmod 600 it"
        );
    }
    let registration = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a registration sam wrote", path.display()))?;
    Ok(Some(registration))
}

/// Stores a registration, replacing any earlier one atomically.
pub fn save(data_dir: &Path, registration: &Registration) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = path(data_dir);
    let bytes = serde_json::to_vec_pretty(registration)?;
    crate::private_files::replace(&path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration() -> Registration {
        Registration {
            id: 9,
            slug: "my-sam".into(),
            owner: Some("octocat".into()),
            pem: "not a key".into(),
            webhook_secret: "w".into(),
            client_id: "Iv1.x".into(),
            client_secret: "c".into(),
        }
    }

    #[test]
    fn a_saved_registration_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        save(dir.path(), &registration()).unwrap();
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut changed = registration();
        changed.slug = "other".into();
        save(dir.path(), &changed).unwrap();
        let read = load(dir.path()).unwrap().expect("stored");
        assert_eq!(read.slug, "other");
        assert_eq!(read.owner.as_deref(), Some("octocat"));
    }

    #[test]
    fn a_bad_key_is_named() {
        let error = registration().credentials().err().expect("refused");
        assert!(error.to_string().contains("private key"), "{error}");
    }
}
