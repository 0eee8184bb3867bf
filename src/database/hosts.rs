//! Hosts a remote provider created, which workspaces sit on which, and the servers the
//! provider lists that sam does not know.

use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

/// A host row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HostModel {
    pub id: Uuid,
    pub provider: String,
    pub size: String,
    pub capacity: i32,
    pub state: String,
    pub server_name: String,
    pub server_id: Option<i64>,
    pub address: Option<String>,
    pub agent_port: Option<i32>,
    /// The certificate the agent registered with, DER; sam trusts no other for it.
    pub agent_certificate: Option<Vec<u8>>,
    pub bootstrap_expires_at: OffsetDateTime,
    pub error: Option<String>,
    pub created_at: OffsetDateTime,
}

/// The columns of [`HostModel`], kept `&'static str` as sqlx requires.
macro_rules! columns {
    () => {
        "h.id, h.provider, h.size, h.capacity, h.state, h.server_name, h.server_id, h.address,
         h.agent_port, h.agent_certificate, h.bootstrap_expires_at, h.error, h.created_at"
    };
}

/// A host to record when no live one has room.
pub struct NewHost<'a> {
    pub id: Uuid,
    pub provider: &'a str,
    pub size: &'a str,
    pub capacity: i32,
    pub server_name: &'a str,
    pub bootstrap_hash: &'a [u8],
    pub bootstrap_expires_at: OffsetDateTime,
}

/// Every placement, sweep and deletion decision about hosts takes this lock, so that a
/// workspace is never placed on a host being deleted, and two placements never both
/// think a host has room for one more.
async fn lock(tx: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('sam hosts'))")
        .execute(tx)
        .await?;
    Ok(())
}

/// Puts `workspace` on a live host of `new`'s provider and size, serving the workspace's
/// installation, that has room, or, when none has, on the host `new` describes, recorded
/// here in state `creating`. True when
/// the host is the new one, which the caller must then create at the provider.
pub async fn place(
    db: &PgPool,
    workspace: Uuid,
    new: &NewHost<'_>,
) -> sqlx::Result<(HostModel, bool)> {
    let mut tx = db.begin().await?;
    lock(&mut tx).await?;
    let roomy: Option<HostModel> = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM hosts h
         WHERE h.provider = $1 AND h.size = $2 AND h.state IN ('creating', 'ready')
           AND h.installation_id = (SELECT installation_id FROM workspaces WHERE id = $3)
           AND (SELECT count(*) FROM workspaces w
                WHERE w.host_id = h.id AND w.id <> $3
                  AND w.state NOT IN ('deleted', 'failed')) < h.capacity
         ORDER BY h.created_at LIMIT 1"
    ))
    .bind(new.provider)
    .bind(new.size)
    .bind(workspace)
    .fetch_optional(&mut *tx)
    .await?;
    let (host, created) = match roomy {
        Some(host) => (host, false),
        None => {
            let host = sqlx::query_as(concat!(
                "INSERT INTO hosts AS h (id, provider, size, capacity, state, server_name,
                     bootstrap_hash, bootstrap_expires_at, installation_id)
                 VALUES ($1, $2, $3, $4, 'creating', $5, $6, $7,
                     (SELECT installation_id FROM workspaces WHERE id = $8))
                 RETURNING ",
                columns!()
            ))
            .bind(new.id)
            .bind(new.provider)
            .bind(new.size)
            .bind(new.capacity)
            .bind(new.server_name)
            .bind(new.bootstrap_hash)
            .bind(new.bootstrap_expires_at)
            .bind(workspace)
            .fetch_one(&mut *tx)
            .await?;
            (host, true)
        }
    };
    sqlx::query("UPDATE workspaces SET host_id = $2 WHERE id = $1")
        .bind(workspace)
        .bind(host.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE hosts SET empty_since = NULL WHERE id = $1")
        .bind(host.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((host, created))
}

/// Reads the hosts of `ids` (those that exist), in one query.
pub async fn get_many(db: impl PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<HostModel>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM hosts h WHERE h.id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(db)
    .await
}

/// Reads one host.
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<HostModel>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM hosts h WHERE h.id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// The host a workspace was placed on.
pub async fn of_workspace(
    db: impl PgExecutor<'_>,
    workspace: Uuid,
) -> sqlx::Result<Option<HostModel>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM hosts h JOIN workspaces w ON w.host_id = h.id WHERE w.id = $1"
    ))
    .bind(workspace)
    .fetch_optional(db)
    .await
}

/// Records the server the provider created for a host, and the address it gave it when
/// it is known yet.
pub async fn set_server(
    db: impl PgExecutor<'_>,
    id: Uuid,
    server_id: i64,
    address: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE hosts SET server_id = $2, address = $3, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(server_id)
        .bind(address)
        .execute(db)
        .await?;
    Ok(())
}

/// A registered host whose address was learnt only at registration becomes ready.
pub async fn ready_at(db: impl PgExecutor<'_>, id: Uuid, address: &str) -> sqlx::Result<bool> {
    let moved = sqlx::query(
        "UPDATE hosts SET address = $2, state = 'ready', updated_at = now()
         WHERE id = $1 AND state = 'creating' AND agent_port IS NOT NULL",
    )
    .bind(id)
    .bind(address)
    .execute(db)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

/// Gives up on a host: `failed` when it has no server to delete, else `deleting` (the
/// sweep deletes the server); either way the reason stays for the workspaces on it.
pub async fn give_up(db: impl PgExecutor<'_>, id: Uuid, reason: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE hosts SET state = CASE WHEN server_id IS NULL THEN 'failed' ELSE 'deleting' END,
             error = $2, bootstrap_hash = NULL, updated_at = now()
         WHERE id = $1 AND state IN ('creating', 'ready')",
    )
    .bind(id)
    .bind(reason)
    .execute(db)
    .await?;
    Ok(())
}

/// Redeems a bootstrap token: the token is gone, the host's agent is on `port` serving
/// `certificate`, and the host is ready if its address is known (else it stays
/// `creating` until [`ready_at`]). `None` for a token that is unknown, used or expired.
pub async fn redeem(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
    port: u16,
    certificate: &[u8],
) -> sqlx::Result<Option<HostModel>> {
    sqlx::query_as(concat!(
        "UPDATE hosts h SET agent_port = $2, agent_certificate = $3, bootstrap_hash = NULL,
             updated_at = now(),
             state = CASE WHEN h.address IS NULL THEN h.state ELSE 'ready' END
         WHERE h.bootstrap_hash = $1 AND h.state = 'creating' AND h.server_id IS NOT NULL
           AND h.bootstrap_expires_at > now()
         RETURNING ",
        columns!()
    ))
    .bind(token_hash)
    .bind(i32::from(port))
    .bind(certificate)
    .fetch_optional(db)
    .await
}

/// Whether `token_hash` is a live token that [`redeem`] turned down all the same, which
/// only a host whose server sam had not recorded yet makes it do: the provider may start
/// a server, and its agent may register, before it answered sam's request to create it.
/// The server may be recorded by now; the agent's next try redeems the token then.
pub async fn awaits_its_server(db: impl PgExecutor<'_>, token_hash: &[u8]) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM hosts WHERE bootstrap_hash = $1 AND state = 'creating'
                          AND bootstrap_expires_at > now())",
    )
    .bind(token_hash)
    .fetch_one(db)
    .await
}

/// One sweep's bookkeeping, under the hosts lock: hosts whose token expired unredeemed are
/// given up; a ready host with no live workspace is marked empty from now, one with a
/// workspace is not; an empty host past `grace` moves to `deleting`. Returns every host
/// in `deleting`, whose servers the caller deletes.
pub async fn sweep(
    db: &PgPool,
    provider: &str,
    grace: std::time::Duration,
) -> sqlx::Result<Vec<HostModel>> {
    let mut tx = db.begin().await?;
    lock(&mut tx).await?;
    sqlx::query(
        "UPDATE hosts SET state = CASE WHEN server_id IS NULL THEN 'failed' ELSE 'deleting' END,
             error = 'the host did not register before its bootstrap token expired',
             bootstrap_hash = NULL, updated_at = now()
         WHERE provider = $1 AND state = 'creating' AND bootstrap_expires_at < now()",
    )
    .bind(provider)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE hosts h SET empty_since = CASE
                 WHEN EXISTS (SELECT 1 FROM workspaces w WHERE w.host_id = h.id
                              AND w.state NOT IN ('deleted', 'failed')) THEN NULL
                 ELSE coalesce(h.empty_since, now()) END
         WHERE h.provider = $1 AND h.state = 'ready'",
    )
    .bind(provider)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE hosts SET state = 'deleting', updated_at = now()
         WHERE provider = $1 AND state = 'ready' AND empty_since <= now() - $2::interval",
    )
    .bind(provider)
    .bind(format!("{} milliseconds", grace.as_millis()))
    .execute(&mut *tx)
    .await?;
    let deleting = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM hosts h WHERE h.provider = $1 AND h.state = 'deleting' ORDER BY h.created_at"
    ))
    .bind(provider)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(deleting)
}

/// Records that a host's server is gone.
pub async fn deleted(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE hosts SET state = 'deleted', updated_at = now() WHERE id = $1 AND state = 'deleting'",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// The server names of the hosts whose server exists or may exist. A deleted server
/// lingers in the provider's list while its deletion runs, so recently deleted hosts count
/// as known for a while; one still listed after that is a leak worth reporting.
pub async fn known_server_names(
    db: impl PgExecutor<'_>,
    provider: &str,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT server_name FROM hosts
         WHERE provider = $1 AND (state IN ('creating', 'ready', 'deleting')
               OR (state = 'deleted' AND updated_at > now() - interval '10 minutes'))",
    )
    .bind(provider)
    .fetch_all(db)
    .await
}

/// Replaces the list of servers the provider holds under sam's label and sam does not
/// know, keeping when each was first seen.
pub async fn record_unknown(
    db: &PgPool,
    provider: &str,
    servers: &[(i64, String)],
) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    let ids: Vec<i64> = servers.iter().map(|(id, _)| *id).collect();
    sqlx::query("DELETE FROM unknown_servers WHERE provider = $1 AND NOT (server_id = ANY($2))")
        .bind(provider)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    for (id, name) in servers {
        sqlx::query(
            "INSERT INTO unknown_servers (provider, server_id, name) VALUES ($1, $2, $3)
             ON CONFLICT (provider, server_id) DO UPDATE SET name = $3, last_seen = now()",
        )
        .bind(provider)
        .bind(id)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
