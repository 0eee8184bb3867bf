//! The main path end to end: a real `issue_comment` delivery saying `/sam open` on a pull
//! request, a running `sam serve`, real PostgreSQL and git, and a real browser typing into
//! the shell behind the link sam posts.

use std::time::Duration;

use serde_json::Value;

use crate::browser::Browser;
use crate::server::SamServer;
use crate::support::db::TestDatabase;
use crate::support::fixtures;
use crate::support::git::GitServer;
use crate::support::github::{GitHubStandIn, PullRequestSpec};

const REPO: &str = "chhsia0/knative-route-demo";
const PULL: u64 = 3;
const WAIT: Duration = Duration::from_secs(60);

/// The fixture comment on pull request #3, with its body replaced by `body` and its id by
/// the one the stand-in gave the comment.
fn comment_on_pull_request(comment_id: u64, body: &str) -> Vec<u8> {
    let mut payload: Value = serde_json::from_slice(&fixtures::webhook(
        "issue_comment",
        "created-on-pull-request",
    ))
    .unwrap();
    payload["comment"]["body"] = Value::String(body.to_owned());
    payload["comment"]["id"] = Value::from(comment_id);
    serde_json::to_vec(&payload).unwrap()
}

/// The link in sam's "ready" status comment.
fn link_in(body: &str) -> String {
    let start = body.find("](").expect("a Markdown link") + 2;
    let end = start + body[start..].find(')').unwrap();
    body[start..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sam_open_on_a_pull_request_gives_a_shell_on_its_branch() {
    let branch = "feature/terminal-check";
    let mut git = GitServer::new();
    git.create_repo(REPO);
    let head = git.push_branch(REPO, branch, &[("README.md", "checked out by sam\n")]);
    let github = GitHubStandIn::start().await;
    git.also_serve(github.url());
    let installation = github.add_installation("chhsia0");
    github.add_repo(REPO, installation);
    github.set_permission(REPO, "chhsia0", "write");
    github.add_pull_request(
        REPO,
        PULL,
        PullRequestSpec {
            head_ref: branch.into(),
            head_sha: head.clone(),
            author: "chhsia0".into(),
            ..Default::default()
        },
    );
    let db = TestDatabase::create().await;
    let sam = SamServer::start(&github, &git, &db).await;

    let comment = github.add_comment(REPO, PULL, "chhsia0", "/sam open");
    let body = comment_on_pull_request(comment.id, "/sam open");
    let answer = sam.deliver("issue_comment", "e2e-main-path-1", &body).await;
    assert_eq!(
        answer.status(),
        202,
        "{}",
        answer.text().await.unwrap_or_default()
    );

    github.wait_for_reaction(comment.id, WAIT).await;
    let ready = github
        .wait_for_comment_where(REPO, PULL, WAIT, |c| {
            c.body.contains("/w/") || c.body.contains(":x:")
        })
        .await;
    assert!(
        ready.body.contains(&format!("`{branch}`")),
        "{}",
        ready.body
    );
    let link = link_in(&ready.body);
    assert!(link.starts_with(&format!("{}/w/", sam.url)), "{link}");

    let browser = Browser::start().await;
    browser.client.goto(&link).await.unwrap();
    // The token is traded for a cookie and a clean URL.
    let current = browser.client.current_url().await.unwrap();
    assert!(
        current.query().is_none(),
        "the link's token stayed in the address bar: {current}"
    );
    browser
        .wait_for_js(
            "return window.samTerminal && window.samTerminal.state() === 'connected'",
            WAIT,
            "the terminal to connect",
        )
        .await;
    let page = browser.client.source().await.unwrap();
    assert!(
        page.contains(REPO) && page.contains(branch),
        "the page names the repository and branch"
    );

    browser
        .type_text("git rev-parse --abbrev-ref HEAD; git rev-parse HEAD\n")
        .await;
    let text = browser
        .wait_for_terminal(WAIT, "the branch name and head commit", |text| {
            text.lines().any(|line| line.trim() == branch) && text.contains(&head)
        })
        .await;
    assert!(!text.contains("fatal:"), "git complained: {text}");
    browser.close().await;
}
