//! Workspaces and the log of their state changes.

use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::workspaces::State;

/// A workspace row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceModel {
    pub id: Uuid,
    pub installation_id: i64,
    pub repo_id: i64,
    pub repo_full_name: String,
    pub clone_url: String,
    pub issue_number: i64,
    pub is_pull_request: bool,
    pub branch: String,
    pub fetch_ref: String,
    pub head_sha: String,
    pub requester_id: i64,
    pub requester_login: String,
    #[sqlx(try_from = "String")]
    pub state: State,
    pub status_comment_id: Option<i64>,
    pub error: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// What `/sam open --size` asked for, as written; `None` when it named no size.
    pub size: Option<String>,
    /// The host a remote provider placed the workspace on.
    pub host_id: Option<Uuid>,
}

/// What a new workspace is made of.
#[derive(Debug, Clone)]
pub struct NewWorkspace<'a> {
    pub installation_id: i64,
    pub repo_id: i64,
    pub repo_full_name: &'a str,
    pub clone_url: &'a str,
    pub issue_number: i64,
    pub is_pull_request: bool,
    pub branch: &'a str,
    pub fetch_ref: &'a str,
    pub head_sha: &'a str,
    pub requester_id: i64,
    pub requester_login: &'a str,
    pub size: Option<&'a str>,
}

/// The columns of [`WorkspaceModel`]; a macro so that queries stay `&'static str`, which
/// sqlx requires to rule out SQL built from data.
macro_rules! columns {
    () => {
        "id, installation_id, repo_id, repo_full_name, clone_url, issue_number, is_pull_request,
         branch, fetch_ref, head_sha, requester_id, requester_login, state, status_comment_id,
         error, created_at, updated_at, size, host_id"
    };
}

/// Creates the workspace, or returns the live one for the same repository, ref and
/// person. The boolean is true when this call created it.
pub async fn create_or_find(
    db: &PgPool,
    new: &NewWorkspace<'_>,
) -> sqlx::Result<(WorkspaceModel, bool)> {
    let mut tx = db.begin().await?;
    let created: Option<WorkspaceModel> = sqlx::query_as(concat!(
        "INSERT INTO workspaces (id, installation_id, repo_id, repo_full_name, clone_url,
             issue_number, is_pull_request, branch, fetch_ref, head_sha, requester_id,
             requester_login, size, state, worked_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'requested',
                 current_setting('application_name'))
         ON CONFLICT (repo_id, fetch_ref, requester_id) WHERE state NOT IN ('deleted', 'failed')
         DO NOTHING
         RETURNING ",
        columns!(),
        ""
    ))
    .bind(Uuid::new_v4())
    .bind(new.installation_id)
    .bind(new.repo_id)
    .bind(new.repo_full_name)
    .bind(new.clone_url)
    .bind(new.issue_number)
    .bind(new.is_pull_request)
    .bind(new.branch)
    .bind(new.fetch_ref)
    .bind(new.head_sha)
    .bind(new.requester_id)
    .bind(new.requester_login)
    .bind(new.size)
    .fetch_optional(&mut *tx)
    .await?;

    let result = match created {
        Some(workspace) => {
            record_event(&mut *tx, workspace.id, State::Requested, None).await?;
            (workspace, true)
        }
        None => {
            let existing = sqlx::query_as(concat!(
                "SELECT ",
                columns!(),
                " FROM workspaces
                 WHERE repo_id = $1 AND fetch_ref = $2 AND requester_id = $3
                   AND state NOT IN ('deleted', 'failed')"
            ))
            .bind(new.repo_id)
            .bind(new.fetch_ref)
            .bind(new.requester_id)
            .fetch_one(&mut *tx)
            .await?;
            (existing, false)
        }
    };
    tx.commit().await?;
    Ok(result)
}

/// Reads one workspace.
pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<WorkspaceModel>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM workspaces WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Moves a workspace to `state` and logs the change, in one transaction.
pub async fn transition(
    db: &PgPool,
    id: Uuid,
    state: State,
    message: Option<&str>,
) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE workspaces SET state = $2, updated_at = now(),
             error = CASE WHEN $2 = 'failed' THEN $3 ELSE NULL END,
             worked_by = current_setting('application_name')
         WHERE id = $1",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(message)
    .execute(&mut *tx)
    .await?;
    record_event(&mut *tx, id, state, message).await?;
    tx.commit().await
}

/// Moves a workspace to `state` only if it is in one of `from`, and logs the change; false
/// when it was elsewhere. Commands that race (a stop during a delete, a checkout finishing
/// after a delete) are decided here, by the row, not by who came first in memory.
pub async fn transition_from(
    db: &PgPool,
    id: Uuid,
    from: &[State],
    state: State,
    message: Option<&str>,
) -> sqlx::Result<bool> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let mut tx = db.begin().await?;
    let moved = sqlx::query(
        "UPDATE workspaces SET state = $2, updated_at = now(),
             error = CASE WHEN $2 = 'failed' THEN $3 ELSE NULL END,
             worked_by = current_setting('application_name')
         WHERE id = $1 AND state = ANY($4)",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(message)
    .bind(&from)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if moved {
        record_event(&mut *tx, id, state, message).await?;
    }
    tx.commit().await?;
    Ok(moved)
}

/// Locks a workspace's row until the transaction ends if it is in `state`; false (and
/// nothing locked) when it is elsewhere. Transitions of the row wait for the lock.
pub async fn lock_in_state(db: impl PgExecutor<'_>, id: Uuid, state: State) -> sqlx::Result<bool> {
    let found: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM workspaces WHERE id = $1 AND state = $2 FOR UPDATE")
            .bind(id)
            .bind(state.as_str())
            .fetch_optional(db)
            .await?;
    Ok(found.is_some())
}

/// The workspaces of one issue or pull request that have not been deleted, oldest first.
pub async fn on_issue(
    db: impl PgExecutor<'_>,
    repo_id: i64,
    issue_number: i64,
) -> sqlx::Result<Vec<WorkspaceModel>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM workspaces
         WHERE repo_id = $1 AND issue_number = $2 AND state <> 'deleted'
         ORDER BY created_at"
    ))
    .bind(repo_id)
    .bind(issue_number)
    .fetch_all(db)
    .await
}

/// The workspaces of an installation that have not been deleted, all of them or those of
/// some of its repositories.
pub async fn of_installation(
    db: impl PgExecutor<'_>,
    installation_id: i64,
    repo_ids: Option<&[i64]>,
) -> sqlx::Result<Vec<WorkspaceModel>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM workspaces
         WHERE installation_id = $1 AND ($2::bigint[] IS NULL OR repo_id = ANY($2))
           AND state <> 'deleted'
         ORDER BY created_at"
    ))
    .bind(installation_id)
    .bind(repo_ids)
    .fetch_all(db)
    .await
}

/// Remembers the comment sam edits as the workspace moves.
pub async fn set_status_comment(
    db: impl PgExecutor<'_>,
    id: Uuid,
    comment_id: i64,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE workspaces SET status_comment_id = $2 WHERE id = $1")
        .bind(id)
        .bind(comment_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Workspaces left in the middle of a change by a sam process that is gone, for another
/// (or the next) to finish or fail. Those a process still connected is working on are
/// its own business.
pub async fn abandoned(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<WorkspaceModel>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM workspaces
         WHERE state IN ('requested', 'provisioning', 'stopping', 'deleting')
           AND (worked_by IS NULL OR worked_by NOT IN ",
        super::live_processes!(),
        ") ORDER BY created_at"
    ))
    .fetch_all(db)
    .await
}

/// Workspaces that should have a running checkout, for re-adoption at start-up.
pub async fn ready(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<WorkspaceModel>> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM workspaces WHERE state = 'ready' ORDER BY created_at"
    ))
    .fetch_all(db)
    .await
}

async fn record_event(
    db: impl PgExecutor<'_>,
    id: Uuid,
    state: State,
    message: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO workspace_events (workspace_id, state, message) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(state.as_str())
        .bind(message)
        .execute(db)
        .await?;
    Ok(())
}

/// The states a workspace went through, oldest first.
pub async fn events(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> sqlx::Result<Vec<(String, Option<String>)>> {
    sqlx::query_as(
        "SELECT state, message FROM workspace_events WHERE workspace_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(db)
    .await
}
