//! A fresh, empty PostgreSQL database per test, on the server that `scripts/test` set up.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

/// How long creating or dropping a database may take before the test gives up.
const DDL_TIMEOUT: Duration = Duration::from_secs(30);

/// A database named `sam_test_<uuid>`, created empty (no migrations: sam applies them
/// when it starts) and dropped, best-effort, when this value is dropped.
pub struct TestDatabase {
    name: String,
    url: String,
    server_url: String,
}

impl TestDatabase {
    /// Creates the database on the server named by `SAM_TEST_DATABASE_URL`, else
    /// `DATABASE_URL`. Panics when neither is set: `scripts/test` sets both.
    pub async fn create() -> Self {
        let server_url = server_url();
        let name = format!("sam_test_{}", uuid::Uuid::new_v4().simple());

        let ddl = async {
            let mut conn = admin_options(&server_url).connect().await?;
            sqlx::query(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
                .execute(&mut conn)
                .await?;
            conn.close().await
        };
        tokio::time::timeout(DDL_TIMEOUT, ddl)
            .await
            .unwrap_or_else(|_| panic!("creating database {name} took over {DDL_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("creating database {name} on {}: {e}", redact(&server_url)));

        let url = with_database(&server_url, &name);
        Self {
            name,
            url,
            server_url,
        }
    }

    /// The URL of this database, with the server's credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name, `sam_test_<uuid>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A small pool on this database, for tests that look at what sam stored.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name))
    }
}

impl Drop for TestDatabase {
    /// Drops the database on a thread of its own (this may run inside an async test, where
    /// blocking on the test's runtime would deadlock). Failures are only printed: a leftover
    /// `sam_test_*` database costs disk, not correctness.
    fn drop(&mut self) {
        let name = self.name.clone();
        let server_url = self.server_url.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let ddl = async {
                    let mut conn = admin_options(&server_url).connect().await?;
                    let sql = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
                    sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
                    conn.close().await
                };
                match tokio::time::timeout(DDL_TIMEOUT, ddl).await {
                    Ok(result) => result.map_err(std::io::Error::other),
                    Err(_) => Err(std::io::Error::other("timed out")),
                }
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

fn server_url() -> String {
    std::env::var("SAM_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .ok()
        .filter(|url| !url.is_empty())
        .expect(
            "neither SAM_TEST_DATABASE_URL nor DATABASE_URL is set: run the tests with \
             scripts/test, which sets up PostgreSQL and exports them",
        )
}

/// Connection options for the server's own database (the one the URL names), from
/// which test databases are created and dropped. Statement logging is off: these are
/// not the statements a test is about.
fn admin_options(server_url: &str) -> PgConnectOptions {
    server_url
        .parse::<PgConnectOptions>()
        .unwrap_or_else(|e| panic!("invalid database URL {}: {e}", redact(server_url)))
        .disable_statement_logging()
}

/// `server_url` naming `database` instead, everything else (credentials, query) kept.
fn with_database(server_url: &str, database: &str) -> String {
    let mut url = url::Url::parse(server_url)
        .unwrap_or_else(|e| panic!("invalid database URL {}: {e}", redact(server_url)));
    url.set_path(&format!("/{database}"));
    url.into()
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.into()
        }
        Ok(parsed) => parsed.into(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_keeps_credentials_and_query() {
        assert_eq!(
            with_database(
                "postgres://sam:p%40ss@127.0.0.1:5432/sam?sslmode=disable",
                "t1"
            ),
            "postgres://sam:p%40ss@127.0.0.1:5432/t1?sslmode=disable"
        );
    }

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            redact("postgres://sam:secret@h:1/sam"),
            "postgres://sam:***@h:1/sam"
        );
    }

    #[tokio::test]
    async fn test_database_is_fresh_and_dropped_afterwards() {
        let db = TestDatabase::create().await;
        let name = db.name().to_owned();
        let pool = db.pool().await;
        let (current, tables): (String, i64) = sqlx::query_as(
            "SELECT current_database()::text, \
             (SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public')",
        )
        .fetch_one(&pool)
        .await
        .expect("query the test database");
        assert_eq!(current, name);
        assert_eq!(tables, 0);
        pool.close().await;
        drop(db);

        let mut conn = admin_options(&server_url())
            .connect()
            .await
            .expect("connect");
        let left: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_optional(&mut conn)
            .await
            .expect("query pg_database");
        assert_eq!(left, None, "{name} still exists");
    }
}
