//! The delivery queue: webhook bodies stored on receipt and claimed by workers.

use sqlx::{PgExecutor, PgPool};

use super::live_processes;
use time::OffsetDateTime;

/// How long a worker may hold a delivery before another may take it over.
const LEASE_SECONDS: i32 = 300;

/// A stored delivery, as a worker sees it.
#[derive(Debug, sqlx::FromRow)]
pub struct DeliveryModel {
    pub id: i64,
    pub github_delivery: String,
    pub event: String,
    pub body: Vec<u8>,
    pub attempts: i32,
    pub received_at: OffsetDateTime,
}

/// Whether storing a delivery created a new row or found one with the same GitHub id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    Duplicate,
}

/// A delivery as received, to be stored.
#[derive(Debug)]
pub struct NewDelivery {
    /// GitHub's `X-GitHub-Delivery`, unique per delivery and kept by a redelivery.
    pub github_delivery: String,
    pub event: String,
    pub body: Vec<u8>,
    /// False for an event sam does not act on: stored finished, kept so that its
    /// redelivery is known, but never claimed.
    pub to_do: bool,
}

/// Stores deliveries in one statement, skipping those whose `X-GitHub-Delivery` is stored
/// already; returns the ids of those it inserted. Rows go in the order given, so that
/// workers take them in order of arrival.
pub async fn store_many(
    db: impl PgExecutor<'_>,
    deliveries: &[NewDelivery],
) -> sqlx::Result<Vec<String>> {
    let ids: Vec<&str> = deliveries
        .iter()
        .map(|d| d.github_delivery.as_str())
        .collect();
    let events: Vec<&str> = deliveries.iter().map(|d| d.event.as_str()).collect();
    let bodies: Vec<&[u8]> = deliveries.iter().map(|d| d.body.as_slice()).collect();
    let to_do: Vec<bool> = deliveries.iter().map(|d| d.to_do).collect();
    sqlx::query_scalar(
        "INSERT INTO deliveries (github_delivery, event, body, state, finished_at)
         SELECT id, event, body, CASE WHEN to_do THEN 'pending' ELSE 'done' END,
                CASE WHEN to_do THEN NULL ELSE now() END
         FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bool[])
              WITH ORDINALITY AS arrived(id, event, body, to_do, position)
         ORDER BY position
         ON CONFLICT (github_delivery) DO NOTHING
         RETURNING github_delivery",
    )
    .bind(ids)
    .bind(events)
    .bind(bodies)
    .bind(to_do)
    .fetch_all(db)
    .await
}

/// Claims the oldest delivery that is due, or one whose worker's lease ran out.
///
/// `SKIP LOCKED` lets several workers, in one process or many, share the queue without
/// waiting on each other or taking the same row.
pub async fn claim(db: &PgPool) -> sqlx::Result<Option<DeliveryModel>> {
    sqlx::query_as(
        "UPDATE deliveries SET state = 'working', attempts = attempts + 1,
                locked_until = now() + make_interval(secs => $1),
                claimed_by = current_setting('application_name')
         WHERE id = (
             SELECT id FROM deliveries
             WHERE available_at <= now()
               AND (state = 'pending' OR (state = 'working' AND locked_until < now()))
             ORDER BY available_at, id
             FOR UPDATE SKIP LOCKED
             LIMIT 1)
         RETURNING id, github_delivery, event, body, attempts, received_at",
    )
    .bind(LEASE_SECONDS)
    .fetch_optional(db)
    .await
}

/// Hands the deliveries that a sam process which is gone was working on back to the queue,
/// at once rather than when their lease runs out; returns how many. Deliveries in the
/// hands of a process still connected, this one or another sharing the database, are left
/// to it.
pub async fn release_abandoned(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    Ok(sqlx::query(concat!(
        "UPDATE deliveries SET state = 'pending', locked_until = NULL, available_at = now()
         WHERE state = 'working' AND (claimed_by IS NULL OR claimed_by NOT IN ",
        live_processes!(),
        ")"
    ))
    .execute(db)
    .await?
    .rows_affected())
}

/// Marks a delivery handled.
pub async fn finish(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deliveries SET state = 'done', finished_at = now(), locked_until = NULL,
                last_error = NULL WHERE id = $1",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(())
}

/// Puts a delivery back for another try after `delay_seconds`, or fails it for good.
pub async fn retry_or_fail(
    db: impl PgExecutor<'_>,
    id: i64,
    error: &str,
    delay_seconds: Option<i32>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deliveries SET
            state = CASE WHEN $3::int IS NULL THEN 'failed' ELSE 'pending' END,
            available_at = now() + make_interval(secs => coalesce($3, 0)),
            finished_at = CASE WHEN $3::int IS NULL THEN now() END,
            locked_until = NULL, last_error = $2
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(delay_seconds)
    .execute(db)
    .await?;
    Ok(())
}

/// Records that a comment's commands are acted on by this delivery; false when another
/// delivery of the same comment already did. A retry of the same delivery may go on.
pub async fn claim_comment(
    db: impl PgExecutor<'_>,
    comment_id: i64,
    delivery_id: i64,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO handled_comments (comment_id, delivery_id) VALUES ($1, $2)
         ON CONFLICT (comment_id) DO UPDATE SET comment_id = EXCLUDED.comment_id
         WHERE handled_comments.delivery_id = EXCLUDED.delivery_id",
    )
    .bind(comment_id)
    .bind(delivery_id)
    .execute(db)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
