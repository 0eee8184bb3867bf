//! PostgreSQL: the pool, migrations, and one module of SQL per concern.

pub mod deliveries;
pub mod hosts;
pub mod inbox;
pub mod replies;
pub mod workspaces;

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The processes connected to this database now, by the name [`pool`] gives each, as a SQL
/// subquery: a row taken in hand (`current_setting('application_name')` when it was
/// written) by a name not among them belongs to a process that is gone.
macro_rules! live_processes {
    () => {
        "(SELECT application_name FROM pg_stat_activity
          WHERE datname = current_database() AND application_name LIKE 'sam %')"
    };
}
pub(crate) use live_processes;

/// Migrations compiled into the binary, so that an upgrade is one binary and one restart.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects lazily: sam starts, and answers `/healthz` with 503, while the database is away.
pub fn pool(url: &str) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .parse()
        .context("DATABASE_URL is not a PostgreSQL URL")?;
    // Every connection of this process carries one name, so that other processes can tell
    // from PostgreSQL alone whether this one is still alive.
    let options = options.application_name(&format!("sam {}", uuid::Uuid::new_v4()));
    Ok(PgPoolOptions::new()
        .max_connections(16)
        // At least one connection stays open, so that the name stays in pg_stat_activity
        // while the process lives, even when it is idle.
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options))
}

/// Applies pending migrations; several sam processes may race here, sqlx takes a lock.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    reach(pool).await?;
    MIGRATOR
        .run(pool)
        .await
        .context("applying database migrations")
}

/// The database as `sam check-config` reports it.
pub struct Standing {
    /// PostgreSQL's version, as the server gives it.
    pub server_version: String,
    /// Migrations the database has had, and those this sam knows.
    pub applied: usize,
    pub known: usize,
}

/// Reaches the database and reads its version and how far it is migrated, changing
/// nothing.
pub async fn standing(pool: &PgPool) -> anyhow::Result<Standing> {
    reach(pool).await?;
    let server_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(pool)
        .await
        .context("reading the server's version")?;
    let tracked: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .context("looking for sam's migrations")?;
    let applied: i64 = if tracked {
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .context("counting sam's migrations")?
    } else {
        0
    };
    Ok(Standing {
        server_version,
        applied: usize::try_from(applied).unwrap_or(0),
        known: MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .count(),
    })
}

/// True when a trivial query answers within the pool's acquire timeout.
pub async fn is_usable(pool: &PgPool) -> bool {
    sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(pool)
        .await
        .is_ok()
}

/// Opens one connection of the pool's own, outside it: a pool that cannot connect says
/// only that it timed out, where a connection says why (refused, no such database, wrong
/// password), and the message names the server (never the password) so the operator
/// knows which setting to look at.
async fn reach(pool: &PgPool) -> anyhow::Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let options = pool.connect_options();
    let server = format!(
        "{}:{} (database {})",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("named like the user")
    );
    let what = || format!("cannot reach the database at {server}");
    let connection = tokio::time::timeout(Duration::from_secs(10), options.connect())
        .await
        .map_err(|_| anyhow::anyhow!("no answer within 10 s"))
        .with_context(what)?
        .map_err(|error| anyhow::anyhow!(in_words(&error)))
        .with_context(what)?;
    let _ = connection.close().await;
    Ok(())
}

/// A connection error as the operator can act on it: PostgreSQL's own message, without
/// sqlx's wrapping or the line of PostgreSQL's source code that raised it, and where TLS
/// is what went wrong, that the server may not speak PostgreSQL at all.
fn in_words(error: &sqlx::Error) -> String {
    let not_postgres =
        |why: &dyn std::fmt::Display| format!("{why} (is a PostgreSQL server listening there?)");
    match error {
        sqlx::Error::Database(error) => error.message().to_owned(),
        sqlx::Error::Tls(why) => not_postgres(why),
        sqlx::Error::Protocol(why) => not_postgres(why),
        error => error.to_string(),
    }
}
