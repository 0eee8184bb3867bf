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

/// Migrations compiled into the binary, so that an upgrade is one binary and one restart.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects lazily: sam starts, and answers `/healthz` with 503, while the database is away.
pub fn pool(url: &str) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .parse()
        .context("DATABASE_URL is not a PostgreSQL URL")?;
    Ok(PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options))
}

/// Applies pending migrations; several sam processes may race here, sqlx takes a lock.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("applying database migrations")
}

/// True when a trivial query answers within the pool's acquire timeout.
pub async fn is_usable(pool: &PgPool) -> bool {
    sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(pool)
        .await
        .is_ok()
}
