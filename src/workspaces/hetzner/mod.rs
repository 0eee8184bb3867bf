//! The `hetzner` provider: workspaces on Hetzner Cloud servers that sam creates, shares
//! between workspaces while they have room, and deletes once they stay empty.
//!
//! A new host boots with user data that installs `sam-agent` and starts it with a
//! one-time bootstrap token ([`cloud_init`]). The agent redeems the token at
//! `POST /api/agents/register`, sending the certificate it serves its API with, and
//! receives its key there; sam reaches it at the address the Hetzner API gave the server,
//! never at one the agent claims, over TLS that accepts that certificate alone.

pub mod api;
pub mod cloud_init;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;
use url::Url;
use uuid::Uuid;

use super::agent::{AgentClient, CheckoutFailed};
use super::settings::HetznerSettings;
use crate::commands::HostSize;
use crate::database::hosts::{self as db, HostModel, NewHost};
use api::{CreateServer, HetznerApi};

/// The provider's name in the `hosts` table.
const PROVIDER: &str = "hetzner";

/// The label every server of sam's carries, with [`INSTANCE_LABEL`] naming which sam.
const MANAGED_LABEL: (&str, &str) = ("managed-by", "sam");
const INSTANCE_LABEL: &str = "sam-instance";
const HOST_LABEL: &str = "sam-host";

/// Hosts on Hetzner Cloud, shared by workspaces.
#[derive(Clone)]
pub struct HetznerPool {
    inner: Arc<Inner>,
}

struct Inner {
    db: PgPool,
    api: HetznerApi,
    settings: HetznerSettings,
    register_url: Url,
    /// Agent keys are derived from this per host, so none is stored in the database.
    master_key: [u8; 32],
    /// One client per host, so that connections to an agent are reused.
    clients: Mutex<HashMap<Uuid, AgentClient>>,
}

/// What came of an agent presenting its bootstrap token.
pub enum Redemption {
    /// The token is redeemed: what the agent needs to serve.
    Registered { host: Uuid, key: Vec<u8> },
    /// The token is good, but sam has not recorded the host's server yet; the agent should
    /// try again in a moment.
    TooEarly,
    /// The token is unknown, used already, or expired.
    Refused,
}

impl HetznerPool {
    /// The pool, and its sweep (empty hosts, expired tokens, unknown servers) running in
    /// the background. Agents register at `public_url`.
    pub fn start(
        settings: HetznerSettings,
        db: PgPool,
        data_dir: &Path,
        public_url: &Url,
    ) -> anyhow::Result<Self> {
        let master_key = crate::private_files::key(
            &data_dir.join("agent-hosts.key"),
            "hosts made with the old one stop working",
        )?;
        if public_url.scheme() != "https" {
            tracing::warn!(
                public_url = %public_url,
                "SAM_PUBLIC_URL is not https: agents on Hetzner hosts receive their keys, and send the certificates sam pins, over plain HTTP"
            );
        }
        let api = HetznerApi::new(&settings.api_url, settings.api_token.clone());
        let pool = Self {
            inner: Arc::new(Inner {
                db,
                api,
                settings,
                register_url: public_url.clone(),
                master_key,
                clients: Mutex::default(),
            }),
        };
        tokio::spawn(pool.clone().sweep_forever());
        Ok(pool)
    }

    /// Puts a workspace on a host of its size with room (creating one when none has),
    /// and waits until that host's agent registered. `Err(CheckoutFailed)` says in plain
    /// words why there is no host, for the person who asked.
    pub async fn place(
        &self,
        workspace: Uuid,
        size: Option<HostSize>,
    ) -> anyhow::Result<Result<(), CheckoutFailed>> {
        let inner = &self.inner;
        if let Some(host) = db::of_workspace(&inner.db, workspace).await?
            && host.state == "ready"
        {
            return Ok(Ok(()));
        }
        let size_name = size.unwrap_or(HostSize::Small).as_str();
        let sized = inner.settings.size(size);
        let token = hex::encode(rand::rng().random::<[u8; 32]>());
        let id = Uuid::new_v4();
        let server_name = format!("sam-{}-{}", inner.settings.instance, id.simple());
        let expires = OffsetDateTime::now_utc() + inner.settings.bootstrap_ttl;
        let new = NewHost {
            id,
            provider: PROVIDER,
            size: size_name,
            capacity: i32::try_from(sized.workspaces).unwrap_or(i32::MAX),
            server_name: &server_name,
            bootstrap_hash: &Sha256::digest(token.as_bytes()),
            bootstrap_expires_at: expires,
        };
        let (host, created) = db::place(&inner.db, workspace, &new)
            .await
            .context("placing the workspace on a host")?;
        if created {
            tracing::info!(host = %host.id, size = size_name, server_type = %sized.server_type, "creating a host");
            if let Err(failed) = self.create_server(&host, &sized.server_type, &token).await {
                db::give_up(&inner.db, host.id, &failed.message).await?;
                return Ok(Err(failed));
            }
        }
        self.wait_until_ready(host.id).await
    }

    async fn create_server(
        &self,
        host: &HostModel,
        server_type: &str,
        token: &str,
    ) -> Result<(), CheckoutFailed> {
        let inner = &self.inner;
        let user_data = cloud_init::user_data(&cloud_init::Boot {
            agent_url: &inner.settings.agent_url,
            agent_sha256: inner.settings.agent_sha256.as_deref(),
            agent_port: inner.settings.agent_port,
            register_url: &inner.register_url,
            bootstrap_token: token,
        });
        let labels = BTreeMap::from([
            (MANAGED_LABEL.0, MANAGED_LABEL.1.to_owned()),
            (INSTANCE_LABEL, inner.settings.instance.clone()),
            (HOST_LABEL, host.id.to_string()),
        ]);
        let request = CreateServer {
            name: &host.server_name,
            server_type,
            image: &inner.settings.image,
            location: &inner.settings.location,
            user_data: &user_data,
            labels,
            start_after_create: true,
            networks: inner.settings.network.into_iter().collect(),
        };
        let failed = |message: String| CheckoutFailed {
            message,
            log: String::new(),
        };
        let server = match inner.api.create_server(&request).await {
            Ok(server) => server,
            Err(error) => {
                tracing::error!(host = %host.id, error = format!("{error:#}"), "creating a server failed");
                return Err(failed(match error.downcast_ref::<api::ApiError>() {
                    Some(refused) => refused.explain(),
                    None => format!(
                        "sam could not reach Hetzner Cloud to create a host ({error:#}); try again in a minute"
                    ),
                }));
            }
        };
        // In a private network the address may come only after creation: registration
        // asks for it then.
        let address = match inner.settings.network {
            Some(network) => server.private_address(network),
            None => server.address(),
        };
        db::set_server(&inner.db, host.id, server.id, address.as_deref())
            .await
            .map_err(|e| failed(format!("sam could not record its new host: {e}")))?;
        if address.is_none() && inner.settings.network.is_none() {
            return Err(failed(
                "Hetzner Cloud created a host without a public address; an operator must check the image and network settings".into(),
            ));
        }
        let address = address.unwrap_or_default();
        tracing::info!(host = %host.id, server = server.id, %address, "host created; waiting for its agent to register");
        Ok(())
    }

    async fn wait_until_ready(&self, host: Uuid) -> anyhow::Result<Result<(), CheckoutFailed>> {
        // Past its token's expiry a host can no longer register; the sweep gives it up,
        // and this wait ends at the latest a while after.
        let deadline = tokio::time::Instant::now()
            + self.inner.settings.bootstrap_ttl
            + self.sweep_period() * 2
            + Duration::from_secs(5);
        loop {
            let row = db::get(&self.inner.db, host)
                .await?
                .context("the workspace's host vanished from the database")?;
            match row.state.as_str() {
                "ready" => return Ok(Ok(())),
                "creating" if tokio::time::Instant::now() < deadline => {}
                "creating" => {
                    let reason = "the host did not register in time";
                    db::give_up(&self.inner.db, host, reason).await?;
                    return Ok(Err(host_failed(reason)));
                }
                _ => {
                    let reason = row.error.as_deref().unwrap_or("the host went away");
                    return Ok(Err(host_failed(reason)));
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The agent on the host of `workspace` while its server stands (or is on its way);
    /// none once the server is failed, deleted or being deleted, taking its files along.
    pub async fn holder_of(&self, workspace: Uuid) -> anyhow::Result<Option<AgentClient>> {
        match db::of_workspace(&self.inner.db, workspace).await? {
            Some(host) if matches!(host.state.as_str(), "creating" | "ready") => {
                self.agent_on(host).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The agent on the host of `workspace`.
    pub async fn agent_for(&self, workspace: Uuid) -> anyhow::Result<AgentClient> {
        let host = db::of_workspace(&self.inner.db, workspace)
            .await?
            .context("the workspace has no host")?;
        self.agent_on(host)
    }

    /// The agent on `host`, once it registered.
    fn agent_on(&self, host: HostModel) -> anyhow::Result<AgentClient> {
        let (Some(address), Some(port), Some(certificate), "ready") = (
            host.address.as_deref(),
            host.agent_port.and_then(|p| u16::try_from(p).ok()),
            host.agent_certificate.as_deref(),
            host.state.as_str(),
        ) else {
            if host.state == "ready" && host.agent_certificate.is_none() {
                bail!(
                    "the workspace's host registered without a TLS certificate (an agent older than this sam); delete the workspace and open it again"
                );
            }
            bail!(
                "the workspace's host is {}{}",
                host.state,
                host.error.map(|e| format!(": {e}")).unwrap_or_default()
            );
        };
        if let Some(client) = self
            .inner
            .clients
            .lock()
            .expect("clients lock")
            .get(&host.id)
        {
            return Ok(client.clone());
        }
        let client = AgentClient::pinned(
            address,
            port,
            Arc::from(self.host_key(host.id).as_slice()),
            certificate,
        )?;
        let mut clients = self.inner.clients.lock().expect("clients lock");
        Ok(clients.entry(host.id).or_insert(client).clone())
    }

    /// Redeems a bootstrap token for an agent now listening on `port` with `certificate`.
    pub async fn register(
        &self,
        token: &str,
        port: u16,
        certificate: &[u8],
    ) -> anyhow::Result<Redemption> {
        let hash = Sha256::digest(token.trim().as_bytes());
        let Some(mut host) = db::redeem(&self.inner.db, &hash, port, certificate).await? else {
            return Ok(if db::awaits_its_server(&self.inner.db, &hash).await? {
                Redemption::TooEarly
            } else {
                Redemption::Refused
            });
        };
        if host.state != "ready" {
            let address = self.private_address(&host).await;
            match address {
                Ok(address) if db::ready_at(&self.inner.db, host.id, &address).await? => {
                    host.address = Some(address);
                }
                Ok(_) => bail!("the host was given up while it registered"),
                Err(error) => {
                    let reason = format!("{error:#}");
                    db::give_up(&self.inner.db, host.id, &reason).await?;
                    return Err(error);
                }
            }
        }
        tracing::info!(host = %host.id, address = host.address.as_deref().unwrap_or(""), port, "host registered");
        Ok(Redemption::Registered {
            host: host.id,
            key: self.host_key(host.id),
        })
    }

    /// The address of a host in the configured private network, from the API.
    async fn private_address(&self, host: &HostModel) -> anyhow::Result<String> {
        let (Some(server), Some(network)) = (host.server_id, self.inner.settings.network) else {
            bail!("the host has no address");
        };
        let server = self.inner.api.get_server(server).await?;
        server
            .private_address(network)
            .with_context(|| format!("the host's server is not in network {network}"))
    }

    /// The key of one host's agent: an HMAC of its id under the master key, so that one
    /// host's key opens nothing on another.
    fn host_key(&self, host: Uuid) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.inner.master_key)
            .expect("HMAC takes keys of any length");
        mac.update(b"sam agent host key\0");
        mac.update(host.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    fn sweep_period(&self) -> Duration {
        (self.inner.settings.host_grace / 4)
            .clamp(Duration::from_millis(500), Duration::from_secs(30))
    }

    async fn sweep_forever(self) {
        let mut ticks = tokio::time::interval(self.sweep_period());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = self.sweep().await {
                tracing::warn!(error = format!("{error:#}"), "the host sweep failed");
            }
        }
    }

    /// Deletes the servers of hosts that stayed empty past the grace period or were given
    /// up, and reports the servers under sam's label that sam does not know.
    async fn sweep(&self) -> anyhow::Result<()> {
        let inner = &self.inner;
        let deleting = db::sweep(&inner.db, PROVIDER, inner.settings.host_grace).await?;
        let selector = format!(
            "{}={},{INSTANCE_LABEL}={}",
            MANAGED_LABEL.0, MANAGED_LABEL.1, inner.settings.instance
        );
        let listed = inner.api.list_servers(&selector).await?;
        for host in deleting {
            // A host whose creation was cut short may not know its server's id: its name
            // finds it.
            let server = host.server_id.or_else(|| {
                listed
                    .iter()
                    .find(|s| s.name == host.server_name)
                    .map(|s| s.id)
            });
            if let Some(server) = server {
                inner.api.delete_server(server).await?;
            } else if OffsetDateTime::now_utc() - host.created_at < inner.settings.bootstrap_ttl {
                // Its creation may still be in flight; the next sweeps look again.
                continue;
            }
            inner.clients.lock().expect("clients lock").remove(&host.id);
            db::deleted(&inner.db, host.id).await?;
            tracing::info!(host = %host.id, server = ?server, reason = host.error.as_deref().unwrap_or("empty past the grace period"), "deleted a host");
        }
        let known = db::known_server_names(&inner.db, PROVIDER).await?;
        let unknown: Vec<(i64, String)> = listed
            .iter()
            .filter(|s| !known.contains(&s.name))
            .map(|s| (s.id, s.name.clone()))
            .collect();
        for (id, name) in &unknown {
            tracing::warn!(server = id, name = %name, selector = %selector, "Hetzner Cloud holds a server with sam's labels that sam does not know; delete it by hand if nothing else uses it");
        }
        db::record_unknown(&inner.db, PROVIDER, &unknown).await?;
        Ok(())
    }
}

fn host_failed(reason: &str) -> CheckoutFailed {
    CheckoutFailed {
        message: format!("no workspace host: {reason}"),
        log: String::new(),
    }
}
