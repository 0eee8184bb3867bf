//! sam restarting while a workspace is being prepared: nobody is left waiting on a status
//! comment that will never move.

use std::time::Duration;

use crate::server::SamServer;
use crate::support::db::TestDatabase;
use crate::support::git::GitServer;
use crate::support::github::GitHubStandIn;

const REPO: &str = "octo-org/restarts";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_provisioning_fails_the_workspace_and_says_so() {
    let git = GitServer::new();
    let github = GitHubStandIn::start().await;
    let installation = github.add_installation("octo-org");
    let repo_id = github.add_repo(REPO, installation);
    let db = TestDatabase::create().await;
    // A first run creates the schema; the workspace below is what a killed run leaves.
    drop(SamServer::start(&github, &git, &db).await);

    let status = github.add_comment(REPO, 7, "octocat", "preparing a workspace…");
    let pool = db.pool().await;
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO workspaces (id, installation_id, repo_id, repo_full_name, clone_url,
             issue_number, is_pull_request, branch, fetch_ref, head_sha, requester_id,
             requester_login, state, status_comment_id)
         VALUES ($1, $2, $3, $4, 'https://github.com/octo-org/restarts.git', 7, true, 'topic',
             'refs/heads/topic', $5, 1, 'octocat', 'provisioning', $6)",
    )
    .bind(id)
    .bind(installation as i64)
    .bind(repo_id as i64)
    .bind(REPO)
    .bind("a".repeat(40))
    .bind(status.id as i64)
    .execute(&pool)
    .await
    .unwrap();

    let _sam = SamServer::start(&github, &git, &db).await;
    let edited = github
        .wait_for_comment_where(REPO, 7, Duration::from_secs(30), |c| {
            c.id == status.id && c.body.contains("sam restarted")
        })
        .await;
    assert!(edited.body.contains("`topic`"), "{}", edited.body);
    let state: String = sqlx::query_scalar("SELECT state FROM workspaces WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "failed");
}
