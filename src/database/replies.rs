//! The replies a delivery's handling means to post, and the GitHub ids of those it did.

use sqlx::PgExecutor;
use time::OffsetDateTime;

/// A reply as recorded before posting it.
#[derive(Debug, sqlx::FromRow)]
pub struct Intent {
    /// GitHub's id, once the reply is known to be posted.
    pub github_id: Option<i64>,
    pub intended_at: OffsetDateTime,
    /// Whether this call recorded it: an intent found already recorded belongs to an
    /// earlier try, which may have posted it without learning so.
    pub fresh: bool,
}

/// Records the `seq`-th reply of a delivery, or returns the one an earlier try recorded.
pub async fn intend(
    db: impl PgExecutor<'_> + Copy,
    delivery_id: i64,
    seq: i32,
    kind: &str,
    target: &str,
) -> sqlx::Result<Intent> {
    let inserted: Option<Intent> = sqlx::query_as(
        "INSERT INTO replies (delivery_id, seq, kind, target) VALUES ($1, $2, $3, $4)
         ON CONFLICT (delivery_id, seq) DO NOTHING
         RETURNING github_id, intended_at, true AS fresh",
    )
    .bind(delivery_id)
    .bind(seq)
    .bind(kind)
    .bind(target)
    .fetch_optional(db)
    .await?;
    match inserted {
        Some(intent) => Ok(intent),
        None => {
            sqlx::query_as(
                "SELECT github_id, intended_at, false AS fresh FROM replies
                 WHERE delivery_id = $1 AND seq = $2",
            )
            .bind(delivery_id)
            .bind(seq)
            .fetch_one(db)
            .await
        }
    }
}

/// Records that the `seq`-th reply of a delivery is on GitHub with id `github_id`.
pub async fn posted(
    db: impl PgExecutor<'_>,
    delivery_id: i64,
    seq: i32,
    github_id: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE replies SET github_id = $3, posted_at = now()
         WHERE delivery_id = $1 AND seq = $2",
    )
    .bind(delivery_id)
    .bind(seq)
    .bind(github_id)
    .execute(db)
    .await?;
    Ok(())
}
