//! The stage the webhook and command tests share: a repository with sam installed on it,
//! a running `sam serve` with its own database, and the comments people write there,
//! announced with the fixture payloads GitHub would deliver.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

use crate::server::SamServer;
use crate::support::db::TestDatabase;
use crate::support::fixtures;
use crate::support::git::GitServer;
use crate::support::github::{Comment, GitHubStandIn};

/// How long one thing sam does (a reply, a checkout) may take before a test gives up.
pub const WAIT: Duration = Duration::from_secs(60);

/// Which fixture a stage's comments are made from, and so which repository it is about.
#[derive(Clone, Copy, Debug)]
pub enum Fixture {
    /// `issue_comment/created`: comments on plain issues of `Codertocat/Hello-World`; the
    /// payload names the installation.
    Issues,
    /// `issue_comment/created-on-pull-request`: comments on pull requests of
    /// `chhsia0/knative-route-demo`, from a repository webhook, so without an installation:
    /// sam has to look it up.
    PullRequests,
}

impl Fixture {
    fn variant(self) -> &'static str {
        match self {
            Fixture::Issues => "created",
            Fixture::PullRequests => "created-on-pull-request",
        }
    }

    fn repo(self) -> &'static str {
        match self {
            Fixture::Issues => "Codertocat/Hello-World",
            Fixture::PullRequests => "chhsia0/knative-route-demo",
        }
    }
}

/// sam serving one repository that the App is installed on, whose bare git repository
/// (with a `main` branch) is what clones and the branches endpoint read.
pub struct Stage {
    // Declared first so that it is dropped first: sam stops before its database goes.
    pub sam: SamServer,
    pub github: GitHubStandIn,
    pub git: GitServer,
    pub db: TestDatabase,
    /// A pool on sam's database, for looking at what sam stored.
    pub pool: PgPool,
    /// `owner/name` of the repository.
    pub repo: &'static str,
    fixture: Fixture,
    installation: u64,
}

impl Stage {
    /// Sets the stage and starts sam; returns once sam answers `/healthz`.
    pub async fn start(fixture: Fixture) -> Self {
        let repo = fixture.repo();
        let mut git = GitServer::new();
        git.create_repo(repo);
        let github = GitHubStandIn::start().await;
        git.also_serve(github.url());
        github.use_git_server(git.dir());
        let owner = repo.split_once('/').expect("owner/name").0;
        let installation = github.add_installation(owner);
        github.add_repo(repo, installation);
        let db = TestDatabase::create().await;
        let sam = SamServer::start(&github, &git, &db).await;
        let pool = db.pool().await;
        Self {
            sam,
            github,
            git,
            db,
            pool,
            repo,
            fixture,
            installation,
        }
    }

    /// `author` writes `body` on issue (or pull request) `number`; returns the comment as
    /// the stand-in recorded it, and the payload of the webhook that announces it.
    pub fn write(&self, number: u64, author: &str, body: &str) -> (Comment, Vec<u8>) {
        let comment = self.github.add_comment(self.repo, number, author, body);
        let payload = serde_json::to_vec(&self.announce(self.fixture.variant(), &comment))
            .expect("a payload serializes");
        (comment, payload)
    }

    /// The fixture `issue_comment/<variant>` announcing `comment`: its id, body, author
    /// and issue number are the comment's, and the installation it names (if any) is the
    /// stand-in's. Everything else is the fixture's, for tests to change further.
    pub fn announce(&self, variant: &str, comment: &Comment) -> Value {
        let bytes = fixtures::webhook("issue_comment", variant);
        let mut payload: Value = serde_json::from_slice(&bytes).expect("fixtures are JSON");
        payload["comment"]["id"] = Value::from(comment.id);
        payload["comment"]["body"] = Value::from(comment.body.as_str());
        payload["comment"]["user"]["login"] = Value::from(comment.author.as_str());
        payload["issue"]["number"] = Value::from(comment.issue);
        if let Some(installation) = payload.get_mut("installation").filter(|i| i.is_object()) {
            installation["id"] = Value::from(self.installation);
        }
        payload
    }

    /// Delivers an `issue_comment` payload under a new delivery id, as GitHub does for
    /// each event, and checks that sam accepted it; returns the delivery id.
    pub async fn deliver(&self, payload: &[u8]) -> String {
        let delivery = uuid::Uuid::new_v4().to_string();
        let answer = self.sam.deliver("issue_comment", &delivery, payload).await;
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert_eq!(status, 202, "delivery {delivery} was not accepted: {text}");
        delivery
    }

    /// The id of the App's installation on the repository.
    pub fn installation(&self) -> u64 {
        self.installation
    }

    /// The comments sam posted on issue (or pull request) `number`, oldest first.
    pub fn replies(&self, number: u64) -> Vec<Comment> {
        self.github
            .comments(self.repo, number)
            .into_iter()
            .filter(|c| c.via_api)
            .collect()
    }

    /// The stored deliveries as `(X-GitHub-Delivery, state, last error)`, oldest first.
    pub async fn deliveries(&self) -> Vec<(String, String, Option<String>)> {
        sqlx::query_as("SELECT github_delivery, state, last_error FROM deliveries ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .expect("reading deliveries")
    }

    /// Waits until `count` deliveries are stored and sam has finished with each of them,
    /// then checks that it handled every one without an error. Once this returns, whatever
    /// sam was going to do about those deliveries is done.
    pub async fn wait_until_handled(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let deliveries = loop {
            let deliveries = self.deliveries().await;
            let finished = deliveries
                .iter()
                .filter(|(_, state, _)| state == "done" || state == "failed")
                .count();
            if deliveries.len() == count && finished == count {
                break deliveries;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sam did not finish {count} deliveries within {WAIT:?}: {deliveries:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for (delivery, state, error) in &deliveries {
            assert_eq!(state, "done", "delivery {delivery} failed: {error:?}");
        }
    }

    /// How many workspaces sam recorded.
    pub async fn workspace_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM workspaces")
            .fetch_one(&self.pool)
            .await
            .expect("counting workspaces")
    }

    /// Where the agent checks out workspace `id`.
    pub fn checkout_dir(&self, id: &str) -> std::path::PathBuf {
        self.sam.workspaces_dir().join(id)
    }
}

/// A reply's text as GitHub shows it: without the hidden marker (an HTML comment) sam ends
/// each new reply with, to find it again if its posting was not confirmed.
pub fn shown(body: &str) -> &str {
    let body = body.trim_end();
    match body.rfind("<!-- sam:reply ") {
        Some(start) if body.ends_with("-->") => body[..start].trim_end(),
        _ => body,
    }
}

/// The files and folders named `name` anywhere under `dir`, symlinks not followed.
pub fn entries_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name() == name)
        .map(walkdir::DirEntry::into_path)
        .collect()
}
