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
            c.id == status.id && c.body.contains("stopped before it was ready")
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

/// The name the connections of the one sam connected to `pool`'s database carry.
async fn connected_sams(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT DISTINCT application_name FROM pg_stat_activity
         WHERE datname = current_database() AND application_name LIKE 'sam %'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sams_sharing_a_database_leave_each_others_work_alone_until_one_dies() {
    let git = GitServer::new();
    let github = GitHubStandIn::start().await;
    let installation = github.add_installation("octo-org");
    let repo_id = github.add_repo(REPO, installation);
    let db = TestDatabase::create().await;
    let pool = db.pool().await;

    let mut first = SamServer::start(&github, &git, &db).await;
    let names = connected_sams(&pool).await;
    assert_eq!(names.len(), 1, "{names:?}");
    let first_name = names[0].clone();

    // What the first sam has in hand: a workspace it is preparing, and a delivery.
    let status = github.add_comment(REPO, 9, "octocat", "preparing a workspace…");
    let workspace = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO workspaces (id, installation_id, repo_id, repo_full_name, clone_url,
             issue_number, is_pull_request, branch, fetch_ref, head_sha, requester_id,
             requester_login, state, status_comment_id, worked_by)
         VALUES ($1, $2, $3, $4, 'https://github.com/octo-org/restarts.git', 9, true, 'shared',
             'refs/heads/shared', $5, 1, 'octocat', 'provisioning', $6, $7)",
    )
    .bind(workspace)
    .bind(installation as i64)
    .bind(repo_id as i64)
    .bind(REPO)
    .bind("b".repeat(40))
    .bind(status.id as i64)
    .bind(&first_name)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO deliveries (github_delivery, event, body, state, attempts, locked_until,
             claimed_by)
         VALUES ('in-the-first-sams-hands', 'issue_comment', '{}', 'working', 1,
             now() + interval '1 hour', $1)",
    )
    .bind(&first_name)
    .execute(&pool)
    .await
    .unwrap();

    // A second sam starting on the same database takes over what is abandoned, and this
    // is not: the first is alive.
    let _second = SamServer::start(&github, &git, &db).await;
    let states = || async {
        let workspace: String = sqlx::query_scalar("SELECT state FROM workspaces WHERE id = $1")
            .bind(workspace)
            .fetch_one(&pool)
            .await
            .unwrap();
        let delivery: String = sqlx::query_scalar(
            "SELECT state FROM deliveries WHERE github_delivery = 'in-the-first-sams-hands'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        (workspace, delivery)
    };
    assert_eq!(
        states().await,
        ("provisioning".to_owned(), "working".to_owned()),
        "the second sam took work from a sam that is alive"
    );

    // Once the first dies, the second takes its work over without a restart of its own.
    first.kill();
    let edited = github
        .wait_for_comment_where(REPO, 9, Duration::from_secs(60), |c| {
            c.id == status.id && c.body.contains("stopped before it was ready")
        })
        .await;
    assert!(edited.body.contains("`shared`"), "{}", edited.body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (workspace, delivery) = states().await;
        if workspace == "failed" && delivery != "working" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead sam's work was not taken over: workspace {workspace}, delivery {delivery}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
