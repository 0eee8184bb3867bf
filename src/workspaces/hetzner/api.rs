//! The part of the Hetzner Cloud API sam uses: create, list (by label) and delete servers.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

/// A client of `https://api.hetzner.cloud/v1` (or a stand-in), with the project's token.
#[derive(Clone)]
pub struct HetznerApi {
    base: Url,
    token: SecretString,
    http: reqwest::Client,
}

/// `POST /servers`: the fields sam sets.
#[derive(Debug, Serialize)]
pub struct CreateServer<'a> {
    pub name: &'a str,
    pub server_type: &'a str,
    pub image: &'a str,
    pub location: &'a str,
    pub user_data: &'a str,
    pub labels: BTreeMap<&'a str, String>,
    pub start_after_create: bool,
    /// Private networks to attach the server to, by id.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<i64>,
}

/// A server as the API describes it, narrowed to what sam reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Server {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub public_net: PublicNet,
    /// The server's addresses in private networks; they may show up only once the
    /// network's attachment, which follows creation, has run.
    #[serde(default)]
    pub private_net: Vec<PrivateNet>,
}

/// A server's place in one private network.
#[derive(Debug, Clone, Deserialize)]
pub struct PrivateNet {
    pub network: i64,
    pub ip: String,
}

/// A server's public addresses.
#[derive(Debug, Clone, Deserialize)]
pub struct PublicNet {
    pub ipv4: Option<Address>,
    pub ipv6: Option<Address>,
}

/// One public address (for IPv6, the network, like `2001:db8::/64`).
#[derive(Debug, Clone, Deserialize)]
pub struct Address {
    pub ip: String,
}

impl Server {
    /// The address to reach the server's agent at: its IPv4 address, else the first
    /// address of its IPv6 network (`::1`, the one Hetzner configures).
    pub fn address(&self) -> Option<String> {
        if let Some(v4) = &self.public_net.ipv4 {
            return Some(v4.ip.clone());
        }
        let network = self.public_net.ipv6.as_ref()?.ip.split('/').next()?;
        Some(format!("[{network}1]"))
    }

    /// The server's address in private network `network`, once it has one.
    pub fn private_address(&self, network: i64) -> Option<String> {
        self.private_net
            .iter()
            .find(|n| n.network == network)
            .map(|n| n.ip.clone())
    }
}

#[derive(Deserialize)]
struct One {
    server: Server,
}

#[derive(Deserialize)]
struct Created {
    server: Server,
}

#[derive(Deserialize)]
struct Listed {
    servers: Vec<Server>,
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    next_page: Option<u32>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ApiErrorDetail,
}

#[derive(Deserialize)]
struct ApiErrorDetail {
    code: String,
    message: String,
}

/// An answer of the API that is not a success, in its own words.
#[derive(Debug, thiserror::Error)]
#[error("Hetzner Cloud answered {status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    /// A sentence for the person who asked for a workspace.
    pub fn explain(&self) -> String {
        let advice = match (self.status, self.code.as_str()) {
            (429, _) | (_, "rate_limit_exceeded") => {
                "sam is asking Hetzner Cloud too often; try again in a minute"
            }
            (401 | 403, _) => "sam's HETZNER_API_TOKEN is not accepted; an operator must fix it",
            (_, "resource_limit_exceeded") => {
                "the Hetzner project has reached its server limit; an operator must raise it"
            }
            (_, "resource_unavailable") => {
                "that server type is not available in the configured location right now"
            }
            (422, _) | (_, "invalid_input") => {
                "sam's Hetzner settings (server type, image or location) are not accepted; an operator must fix them"
            }
            _ => "try again later",
        };
        format!(
            "Hetzner Cloud refused to create a host ({} {}: {}); {advice}",
            self.status, self.code, self.message
        )
    }
}

impl HetznerApi {
    /// A client of the API at `base` (like `https://api.hetzner.cloud/v1`).
    pub fn new(base: &Url, token: SecretString) -> Self {
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a plain HTTP client always builds");
        Self { base, token, http }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("API paths are relative URLs")
    }

    /// Creates a server; its public address is known from this answer on.
    pub async fn create_server(&self, request: &CreateServer<'_>) -> anyhow::Result<Server> {
        let response = self
            .http
            .post(self.url("servers"))
            .bearer_auth(self.token.expose_secret())
            .json(request)
            .send()
            .await
            .context("reaching the Hetzner Cloud API")?;
        let created: Created = read(response).await?;
        Ok(created.server)
    }

    /// One server, as it is now.
    pub async fn get_server(&self, id: i64) -> anyhow::Result<Server> {
        let response = self
            .http
            .get(self.url(&format!("servers/{id}")))
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .context("reaching the Hetzner Cloud API")?;
        let one: One = read(response).await?;
        Ok(one.server)
    }

    /// Every server carrying all of `labels` (a label selector like `a=b,c=d`), all pages.
    pub async fn list_servers(&self, label_selector: &str) -> anyhow::Result<Vec<Server>> {
        let mut servers = Vec::new();
        let mut page = 1;
        loop {
            let response = self
                .http
                .get(self.url("servers"))
                .bearer_auth(self.token.expose_secret())
                .query(&[
                    ("label_selector", label_selector),
                    ("page", &page.to_string()),
                    ("per_page", "50"),
                ])
                .send()
                .await
                .context("reaching the Hetzner Cloud API")?;
            let listed: Listed = read(response).await?;
            servers.extend(listed.servers);
            match listed
                .meta
                .and_then(|m| m.pagination)
                .and_then(|p| p.next_page)
            {
                Some(next) if next > page => page = next,
                _ => return Ok(servers),
            }
        }
    }

    /// Deletes a server; one that is gone already counts as deleted.
    pub async fn delete_server(&self, id: i64) -> anyhow::Result<()> {
        let response = self
            .http
            .delete(self.url(&format!("servers/{id}")))
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .context("reaching the Hetzner Cloud API")?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        let _: serde_json::Value = read(response).await?;
        Ok(())
    }
}

/// The body of a successful answer, or the API's error in its own words.
async fn read<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .context("reading the Hetzner Cloud API's answer")?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .context("the Hetzner Cloud API answered with an unexpected body");
    }
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => (body.error.code, body.error.message),
        Err(_) => (
            "unknown".to_owned(),
            String::from_utf8_lossy(&bytes).chars().take(200).collect(),
        ),
    };
    Err(ApiError {
        status: status.as_u16(),
        code,
        message,
    }
    .into())
}
