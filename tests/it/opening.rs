//! Which commit a workspace gets: pull requests from forks, and the same `/sam open`
//! delivered twice at once.

use std::process::Command;

use crate::commands::{rev_parse, settled_status, workspace_in};
use crate::stage::{Fixture, Stage};
use crate::support::github::PullRequestSpec;

const AUTHOR: &str = "chhsia0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_is_checked_out_at_the_commit_seen_when_the_command_was_authorized() {
    let stage = Stage::start(Fixture::PullRequests).await;
    let repo = stage.repo;
    stage.github.set_permission(repo, AUTHOR, "write");
    stage
        .github
        .add_repo_without_installation("contributor/fork");

    // The fork's commits reach the base repository only as `refs/pull/7/head`; by the time
    // sam fetches, the contributor has pushed once more.
    let seen = stage
        .git
        .push_branch(repo, "fork-topic", &[("f.txt", "seen\n")]);
    let later = stage
        .git
        .push_branch(repo, "fork-topic", &[("f.txt", "pushed later\n")]);
    stage.git.pull_ref(repo, 7, &later);
    let deleted = Command::new("git")
        .arg("-C")
        .arg(stage.git.repo_path(repo))
        .args(["update-ref", "-d", "refs/heads/fork-topic"])
        .status()
        .unwrap();
    assert!(deleted.success());
    stage.github.add_pull_request(
        repo,
        7,
        PullRequestSpec {
            head_ref: "fork-topic".into(),
            head_sha: seen.clone(),
            head_repo: Some("contributor/fork".into()),
            author: AUTHOR.into(),
            ..Default::default()
        },
    );

    let (_, payload) = stage.write(7, AUTHOR, "/sam open");
    stage.deliver(&payload).await;
    let status = settled_status(&stage, 7).await;
    assert!(
        status.body.starts_with(":white_check_mark:"),
        "{}",
        status.body
    );
    assert!(
        status.body.contains(&format!("at `{}`", &seen[..12])),
        "the status names the commit: {}",
        status.body
    );
    let checkout = stage.checkout_dir(&workspace_in(&status.body, &stage.sam.url));
    assert_eq!(rev_parse(&checkout, &["HEAD"]), seen);
    assert_eq!(
        rev_parse(&checkout, &["--abbrev-ref", "HEAD"]),
        "fork-topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deliveries_racing_for_one_workspace_make_one() {
    let stage = Stage::start(Fixture::PullRequests).await;
    let repo = stage.repo;
    stage.github.set_permission(repo, AUTHOR, "write");
    let head = stage.git.push_branch(repo, "topic", &[("t.txt", "t\n")]);
    stage.github.add_pull_request(
        repo,
        3,
        PullRequestSpec {
            head_ref: "topic".into(),
            head_sha: head,
            author: AUTHOR.into(),
            ..Default::default()
        },
    );

    // Two comments, as from a double submit, delivered at the same moment.
    let (_, first) = stage.write(3, AUTHOR, "/sam open");
    let (_, second) = stage.write(3, AUTHOR, "/sam open");
    tokio::join!(stage.deliver(&first), stage.deliver(&second));
    stage.wait_until_handled(2).await;

    assert_eq!(stage.workspace_count().await, 1);
    let replies = stage.replies(3);
    let ids: Vec<String> = replies
        .iter()
        .filter(|c| c.body.contains("/w/"))
        .map(|c| workspace_in(&c.body, &stage.sam.url))
        .collect();
    assert!(!ids.is_empty(), "{replies:#?}");
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let checkouts = std::fs::read_dir(stage.sam.workspaces_dir())
        .unwrap()
        .flatten()
        // The agent's own folders (unfinished checkouts, credential sockets) are hidden.
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(checkouts, 1);
}
