//! A ready workspace behind a running sam: the scene the main path and the terminal tests
//! start from.

use std::time::Duration;

use reqwest::header::{LOCATION, ORIGIN};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;

use crate::server::SamServer;
use crate::support::db::TestDatabase;
use crate::support::fixtures;
use crate::support::git::GitServer;
use crate::support::github::{Comment, GitHubStandIn, PullRequestSpec};

/// The repository of the `issue_comment/created-on-pull-request` fixture.
pub const REPO: &str = "chhsia0/knative-route-demo";
/// The pull request that fixture comments on.
pub const PULL: u64 = 3;
/// Who writes `/sam open` (the pull request's author, with write access), and so whom the
/// link is made for.
pub const REQUESTER: &str = "chhsia0";
/// How long setting the scene (sam starting, the checkout) may take.
pub const SET_UP: Duration = Duration::from_secs(60);

/// A workspace sam reported ready, and everything behind it; sam is dropped first.
pub struct ReadyWorkspace {
    pub sam: SamServer,
    pub github: GitHubStandIn,
    /// The repositories sam clones from, kept for as long as the workspace is used.
    pub git: GitServer,
    /// Kept for as long as the workspace is used: sam's database.
    db: TestDatabase,
    /// sam's status comment, once it said "ready".
    pub ready: Comment,
    /// The link in that comment.
    pub link: String,
    /// The commit the branch points at.
    pub head: String,
}

impl ReadyWorkspace {
    /// The workspace's id, as its link names it.
    pub fn workspace_id(&self) -> uuid::Uuid {
        workspace_of(&self.link).parse().unwrap()
    }

    /// A pool on sam's database, to look at what sam stored.
    pub async fn database(&self) -> sqlx::PgPool {
        self.db.pool().await
    }

    /// Sets the workspace's state in sam's database behind sam's back, as if it had
    /// stopped (or become ready again) while the page was open.
    pub async fn set_state(&self, state: &str) {
        let pool = self.db.pool().await;
        let updated = sqlx::query("UPDATE workspaces SET state = $1 WHERE id = $2")
            .bind(state)
            .bind(self.workspace_id())
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(updated.rows_affected(), 1);
        pool.close().await;
    }

    /// The `sam_session` cookie of the requester, obtained by following the link and the
    /// sign-in redirects by hand, as a browser would.
    pub async fn session_cookie(&self) -> String {
        self.session_cookie_of(&self.link).await
    }

    /// [`ReadyWorkspace::session_cookie`] of the workspace `link` names (another workspace
    /// behind the same sam): the cookie is scoped to that workspace.
    pub async fn session_cookie_of(&self, link: &str) -> String {
        self.github.sign_in_as(REQUESTER);
        let manual = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        // Through sign-in by hand: link → GitHub → callback → link → page.
        let mut cookies: Vec<String> = Vec::new();
        let mut url = link.to_owned();
        for _ in 0..6 {
            let mut request = manual.get(&url);
            if !cookies.is_empty() {
                request = request.header("cookie", cookies.join("; "));
            }
            let response = request.send().await.unwrap();
            for value in response.headers().get_all("set-cookie") {
                let pair = value
                    .to_str()
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .to_owned();
                let name = pair.split('=').next().unwrap().to_owned();
                cookies.retain(|c| !c.starts_with(&format!("{name}=")));
                cookies.push(pair);
            }
            match response.headers().get(LOCATION) {
                Some(location) => {
                    let location = location.to_str().unwrap();
                    url = if location.starts_with('/') {
                        format!("{}{location}", self.sam.url)
                    } else {
                        location.to_owned()
                    };
                }
                None => break,
            }
        }
        cookies
            .into_iter()
            .find(|c| c.starts_with("sam_session="))
            .expect("a session cookie after sign-in")
    }

    /// The WebSocket handshake of the workspace's terminal session `session`, carrying
    /// `cookie` and sent from a page of `origin`.
    pub fn terminal_request(&self, session: &str, cookie: &str, origin: &str) -> Request {
        self.terminal_request_of(&self.link, session, cookie, origin)
    }

    /// [`ReadyWorkspace::terminal_request`] for the workspace `link` names.
    pub fn terminal_request_of(
        &self,
        link: &str,
        session: &str,
        cookie: &str,
        origin: &str,
    ) -> Request {
        let url = format!(
            "{}/w/{}/ws?session={session}",
            self.sam.url.replacen("http", "ws", 1),
            workspace_of(link)
        );
        let mut request = url.into_client_request().unwrap();
        let headers = request.headers_mut();
        headers.insert(ORIGIN, origin.parse().unwrap());
        headers.insert("cookie", cookie.parse().unwrap());
        request
    }

    /// Pushes `branch` (new: one commit on top of `main`) and makes it the head of pull
    /// request `pull`, written by the requester, for [`ReadyWorkspace::open_pull_request`]:
    /// another workspace behind the same sam (workspaces are one per repository, branch and
    /// requester). Returns the branch's commit.
    #[allow(
        dead_code,
        reason = "so far only the benchmarks open more workspaces behind one sam"
    )]
    pub fn add_pull_request(&self, branch: &str, pull: u64) -> String {
        pull_request_on_new_branch(&self.git, &self.github, branch, pull)
    }

    /// `/sam open` on pull request `pull` by the requester, through the webhook, as the
    /// scene's own workspace was opened; the link in sam's "ready" comment.
    #[allow(
        dead_code,
        reason = "so far only the terminal benchmark opens more workspaces behind one sam"
    )]
    pub async fn open_pull_request(&self, pull: u64) -> String {
        open_pull_request(&self.sam, &self.github, pull).await.1
    }

    /// Commits `files` on `main` of the repository, so that branches pushed after it
    /// carry them, and packs the repository (see [`GitServer::repack`]).
    #[allow(
        dead_code,
        reason = "so far only the provisioning benchmark adds files"
    )]
    pub fn commit_on_main(&self, files: &[(&str, &[u8])]) -> String {
        let head = self.git.push_branch_bytes(REPO, "main", files);
        self.git.repack(REPO);
        head
    }

    /// `body` written on pull request `pull` by the requester and delivered to sam as
    /// delivery `delivery` (one id per delivery: sam handles an id once).
    #[allow(
        dead_code,
        reason = "so far only the provisioning benchmark writes commands"
    )]
    pub async fn write_on_pull_request(&self, pull: u64, body: &str, delivery: &str) {
        write_on_pull_request(&self.sam, &self.github, pull, body, delivery).await;
    }
}

/// Pull request #3 with head `branch`, `/sam open` written on it by its author (who has
/// write access), and sam's answer once the workspace is ready. The requester is signed in
/// to the GitHub stand-in, so following the link passes sign-in without a login form.
pub async fn ready_workspace(branch: &str) -> ReadyWorkspace {
    ready_workspace_with(branch, &[]).await
}

/// [`ready_workspace`], with more of sam's settings in its environment.
pub async fn ready_workspace_with(branch: &str, settings: &[(&str, &str)]) -> ReadyWorkspace {
    ready_workspace_prepared(branch, settings, |_| {}).await
}

/// [`ready_workspace_with`], where `prepare` sees the git server before sam starts (to
/// point agents that sam does not start itself at its repositories).
pub async fn ready_workspace_prepared(
    branch: &str,
    settings: &[(&str, &str)],
    prepare: impl FnOnce(&GitServer),
) -> ReadyWorkspace {
    let mut git = GitServer::new();
    git.create_repo(REPO);
    prepare(&git);
    let github = GitHubStandIn::start().await;
    git.also_serve(github.url());
    let installation = github.add_installation(REQUESTER);
    github.add_repo(REPO, installation);
    github.set_permission(REPO, REQUESTER, "write");
    let head = pull_request_on_new_branch(&git, &github, branch, PULL);
    github.sign_in_as(REQUESTER);
    let db = TestDatabase::create().await;
    let sam = SamServer::start_with(&github, &git, &db, settings).await;

    let (ready, link) = open_pull_request(&sam, &github, PULL).await;
    ReadyWorkspace {
        sam,
        github,
        git,
        db,
        ready,
        link,
        head,
    }
}

/// [`ready_workspace`] with the repositories behind the GitHub stand-in's smart HTTP, where
/// every fetch and push needs a token the stand-in issued; with `fork` (`owner/name`), the
/// pull request comes from that repository, and its head is reached through
/// `refs/pull/<n>/head` of the scene's repository, as on GitHub.
pub async fn ready_workspace_over_http(branch: &str, fork: Option<&str>) -> ReadyWorkspace {
    let mut git = GitServer::new();
    git.create_repo(REPO);
    let github = GitHubStandIn::start().await;
    github.use_git_server(git.dir());
    git.serve_over_http(github.url());
    let installation = github.add_installation(REQUESTER);
    github.add_repo(REPO, installation);
    github.set_permission(REPO, REQUESTER, "write");
    let head = git.push_branch(REPO, branch, &[("README.md", "checked out by sam\n")]);
    if let Some(fork) = fork {
        github.add_repo_without_installation(fork);
        git.pull_ref(REPO, PULL, &head);
    }
    github.add_pull_request(
        REPO,
        PULL,
        PullRequestSpec {
            head_ref: branch.into(),
            head_sha: head.clone(),
            head_repo: fork.map(Into::into),
            author: REQUESTER.into(),
            ..Default::default()
        },
    );
    github.sign_in_as(REQUESTER);
    let db = TestDatabase::create().await;
    let sam = SamServer::start(&github, &git, &db).await;

    let (ready, link) = open_pull_request(&sam, &github, PULL).await;
    ReadyWorkspace {
        sam,
        github,
        git,
        db,
        ready,
        link,
        head,
    }
}

/// `branch` pushed to the repository and made the head of pull request `pull` by the
/// requester; the branch's commit.
fn pull_request_on_new_branch(
    git: &GitServer,
    github: &GitHubStandIn,
    branch: &str,
    pull: u64,
) -> String {
    let head = git.push_branch(REPO, branch, &[("README.md", "checked out by sam\n")]);
    github.add_pull_request(
        REPO,
        pull,
        PullRequestSpec {
            head_ref: branch.into(),
            head_sha: head.clone(),
            author: REQUESTER.into(),
            ..Default::default()
        },
    );
    head
}

/// `/sam open` written on pull request `pull` by the requester and delivered to sam; sam's
/// status comment once it said "ready", and the link in it.
async fn open_pull_request(
    sam: &SamServer,
    github: &GitHubStandIn,
    pull: u64,
) -> (Comment, String) {
    let delivery = format!("scene-open-{pull}");
    let comment = write_on_pull_request(sam, github, pull, "/sam open", &delivery).await;
    github.wait_for_reaction(comment.id, SET_UP).await;
    let ready = github
        .wait_for_comment_where(REPO, pull, SET_UP, |c| {
            c.via_api && (c.body.contains("/w/") || c.body.contains(":x:"))
        })
        .await;
    assert!(ready.body.contains("/w/"), "{}", ready.body);
    let link = link_in(&ready.body);
    (ready, link)
}

/// `body` written on pull request `pull` by the requester and delivered to sam as
/// `delivery`, which sam accepts; the comment.
async fn write_on_pull_request(
    sam: &SamServer,
    github: &GitHubStandIn,
    pull: u64,
    body: &str,
    delivery: &str,
) -> Comment {
    let comment = github.add_comment(REPO, pull, REQUESTER, body);
    let ids = (github.repo_id(REPO), github.add_user(REQUESTER));
    let payload = comment_on_pull_request(pull, comment.id, body, ids);
    let answer = sam.deliver("issue_comment", delivery, &payload).await;
    assert_eq!(
        answer.status(),
        202,
        "{}",
        answer.text().await.unwrap_or_default()
    );
    comment
}

/// The workspace id in a link.
pub fn workspace_of(link: &str) -> String {
    link.split("/w/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned()
}

/// The fixture comment on pull request #3, moved to pull request `pull`, with its body
/// replaced by `body`, its id by the one the stand-in gave the comment, and the ids of the
/// repository and of the requester by the stand-in's (sam asks GitHub for tokens by
/// repository id, and makes the requester's commit address from their id).
fn comment_on_pull_request(
    pull: u64,
    comment_id: u64,
    body: &str,
    (repo_id, requester_id): (u64, u64),
) -> Vec<u8> {
    let mut payload: Value = serde_json::from_slice(&fixtures::webhook(
        "issue_comment",
        "created-on-pull-request",
    ))
    .unwrap();
    payload["issue"]["number"] = Value::from(pull);
    payload["comment"]["body"] = Value::String(body.to_owned());
    payload["comment"]["id"] = Value::from(comment_id);
    payload["repository"]["id"] = Value::from(repo_id);
    payload["comment"]["user"]["id"] = Value::from(requester_id);
    serde_json::to_vec(&payload).unwrap()
}

/// The link in sam's "ready" status comment.
fn link_in(body: &str) -> String {
    let start = body
        .find("](")
        .unwrap_or_else(|| panic!("no link in sam's answer: {body}"))
        + 2;
    let end = start + body[start..].find(')').unwrap();
    body[start..end].to_owned()
}
