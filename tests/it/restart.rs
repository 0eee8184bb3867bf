//! sam restarting while a workspace is being prepared, or dying beside another sam on the
//! same database: nobody is left waiting on a status comment that will never move, and no
//! sam takes work from one that is alive.

use std::time::Duration;

use sqlx::PgPool;

use crate::server::SamServer;
use crate::support::db::TestDatabase;
use crate::support::git::GitServer;
use crate::support::github::GitHubStandIn;

const REPO: &str = "octo-org/restarts";

/// A repository installed on the GitHub stand-in, and a database with sam's schema.
struct Setting {
    git: GitServer,
    github: GitHubStandIn,
    installation: u64,
    repo_id: u64,
    db: TestDatabase,
    pool: PgPool,
}

impl Setting {
    async fn new() -> Self {
        let git = GitServer::new();
        let github = GitHubStandIn::start().await;
        let installation = github.add_installation("octo-org");
        let repo_id = github.add_repo(REPO, installation);
        let db = TestDatabase::create().await;
        let pool = db.pool().await;
        Self {
            git,
            github,
            installation,
            repo_id,
            db,
            pool,
        }
    }

    async fn sam(&self) -> SamServer {
        SamServer::start(&self.github, &self.git, &self.db).await
    }

    /// A workspace on pull request `number`, on `branch`, that a sam (`worked_by`, or one
    /// from before sam recorded who) was preparing, and its status comment's id.
    async fn preparing(
        &self,
        number: u64,
        branch: &str,
        worked_by: Option<&str>,
    ) -> (uuid::Uuid, u64) {
        let status = self
            .github
            .add_comment(REPO, number, "octocat", "preparing a workspace…");
        let id = uuid::Uuid::new_v4();
        sqlx::query(
            "INSERT INTO workspaces (id, installation_id, repo_id, repo_full_name, clone_url,
                 issue_number, is_pull_request, branch, fetch_ref, head_sha, requester_id,
                 requester_login, state, status_comment_id, worked_by)
             VALUES ($1, $2, $3, $4, 'https://github.com/octo-org/restarts.git', $5, true, $6,
                 'refs/heads/' || $6, $7, 1, 'octocat', 'provisioning', $8, $9)",
        )
        .bind(id)
        .bind(self.installation as i64)
        .bind(self.repo_id as i64)
        .bind(REPO)
        .bind(number as i64)
        .bind(branch)
        .bind("a".repeat(40))
        .bind(status.id as i64)
        .bind(worked_by)
        .execute(&self.pool)
        .await
        .unwrap();
        (id, status.id)
    }

    async fn state_of(&self, workspace: uuid::Uuid) -> String {
        sqlx::query_scalar("SELECT state FROM workspaces WHERE id = $1")
            .bind(workspace)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_provisioning_fails_the_workspace_and_says_so() {
    let setting = Setting::new().await;
    // A first run creates the schema; the workspace below is what a killed run leaves.
    drop(setting.sam().await);
    let (id, status) = setting.preparing(7, "topic", None).await;

    let _sam = setting.sam().await;
    let edited = setting
        .github
        .wait_for_comment_where(REPO, 7, Duration::from_secs(30), |c| {
            c.id == status && c.body.contains("stopped before it was ready")
        })
        .await;
    assert!(edited.body.contains("`topic`"), "{}", edited.body);
    assert_eq!(setting.state_of(id).await, "failed");
}

/// The names the connections of the sams connected to `pool`'s database carry.
async fn connected_sams(pool: &PgPool) -> Vec<String> {
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
    let setting = Setting::new().await;
    let mut first = setting.sam().await;
    let names = connected_sams(&setting.pool).await;
    assert_eq!(names.len(), 1, "{names:?}");
    let first_name = names[0].as_str();

    // What the first sam has in hand: a workspace it is preparing, and a delivery.
    let (workspace, status) = setting.preparing(9, "shared", Some(first_name)).await;
    sqlx::query(
        "INSERT INTO deliveries (github_delivery, event, body, state, attempts, locked_until,
             claimed_by)
         VALUES ('in-the-first-sams-hands', 'issue_comment', '{}', 'working', 1,
             now() + interval '1 hour', $1)",
    )
    .bind(first_name)
    .execute(&setting.pool)
    .await
    .unwrap();
    let states = || async {
        let delivery: String = sqlx::query_scalar(
            "SELECT state FROM deliveries WHERE github_delivery = 'in-the-first-sams-hands'",
        )
        .fetch_one(&setting.pool)
        .await
        .unwrap();
        (setting.state_of(workspace).await, delivery)
    };

    // A second sam starting on the same database takes over what is abandoned, and this
    // is not: the first is alive.
    let _second = setting.sam().await;
    assert_eq!(
        states().await,
        ("provisioning".to_owned(), "working".to_owned()),
        "the second sam took work from a sam that is alive"
    );

    // Once the first dies, the second takes its work over without a restart of its own.
    first.kill();
    let edited = setting
        .github
        .wait_for_comment_where(REPO, 9, Duration::from_secs(60), |c| {
            c.id == status && c.body.contains("stopped before it was ready")
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
