//! Installation tokens narrowed to one repository and one level of access, for git in a
//! workspace's shells.
//!
//! The installation's own token (the one octocrab caches) reaches every repository of the
//! installation with every permission the App holds. A shell gets less: a token for its
//! workspace's repository alone, with `contents` only, and read-only where the code in
//! the workspace came from a fork.

use anyhow::Context;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::GitHub;

/// What git may do with a repository token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Fetch only.
    Read,
    /// Fetch and push.
    Write,
}

impl Access {
    /// The level of the `contents` permission, as GitHub names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// A token GitHub issued, and when it stops working.
pub struct RepositoryToken {
    pub token: SecretString,
    pub expires_at: OffsetDateTime,
}

#[derive(Deserialize)]
struct Issued {
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

impl GitHub {
    /// A new installation token for repository `repo_id` alone, with `contents` at
    /// `access` (`POST /app/installations/{id}/access_tokens`).
    pub async fn repository_token(
        &self,
        installation: u64,
        repo_id: u64,
        access: Access,
    ) -> anyhow::Result<RepositoryToken> {
        let body = json!({
            "repository_ids": [repo_id],
            "permissions": { "contents": access.as_str() },
        });
        self.narrowed_token(installation, &body)
            .await
            .with_context(|| {
                format!(
                    "obtaining a {} token for repository {repo_id}",
                    access.as_str()
                )
            })
    }

    /// A new read-only token for the checkout of `full_name` (`owner/name`), named as
    /// the App's installation on its owner sees it. The checkout needs no more, and the
    /// agent never holds a token that could write.
    pub async fn checkout_token(
        &self,
        installation: u64,
        full_name: &str,
    ) -> anyhow::Result<RepositoryToken> {
        let name = full_name
            .split_once('/')
            .map_or(full_name, |(_, name)| name);
        let body = json!({
            "repositories": [name],
            "permissions": { "contents": Access::Read.as_str() },
        });
        self.narrowed_token(installation, &body)
            .await
            .with_context(|| format!("obtaining a read token for {full_name}"))
    }

    async fn narrowed_token(
        &self,
        installation: u64,
        body: &serde_json::Value,
    ) -> anyhow::Result<RepositoryToken> {
        let route = format!("/app/installations/{installation}/access_tokens");
        let clients = self.clients()?;
        // Minting a second token after a lost answer is harmless: the first simply expires.
        let issued: Issued = super::retry::run(
            "minting a repository token",
            super::retry::idempotent,
            || clients.app.post(&route, Some(body)),
        )
        .await?;
        Ok(RepositoryToken {
            token: SecretString::from(issued.token),
            expires_at: issued.expires_at,
        })
    }
}
