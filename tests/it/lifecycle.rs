//! A workspace's life after `/sam open`: `/sam stop`, `/sam restart`, `/sam delete` and
//! `/sam status` on a real workspace (what each answers, what it does to the status
//! comment, the database and the checkout), and the stop of a workspace left idle.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::browser::Browser;
use crate::commands::{settled_status, workspace_in};
use crate::scene::{PULL, REPO, SET_UP, ready_workspace_with};
use crate::stage::{Fixture, Stage};
use crate::support::github::Comment;

const MAINTAINER: &str = "Codertocat";

/// A stage with branch `topic` opened by the maintainer on issue 1; returns the stage, the
/// workspace id and the commit.
async fn opened_workspace() -> (Stage, String, String) {
    let stage = Stage::start(Fixture::Issues).await;
    let head = stage
        .git
        .push_branch(stage.repo, "topic", &[("notes.txt", "hello\n")]);
    stage.github.set_permission(stage.repo, MAINTAINER, "write");
    let id = open(&stage, 1, "topic").await;
    (stage, id, head)
}

/// The maintainer opens `branch` on issue `number`; returns the workspace id once ready.
async fn open(stage: &Stage, number: u64, branch: &str) -> String {
    let (_, payload) = stage.write(number, MAINTAINER, &format!("/sam open {branch}"));
    stage.deliver(&payload).await;
    let status = settled_status(stage, number).await;
    assert!(
        status.body.starts_with(":white_check_mark:"),
        "{}",
        status.body
    );
    let seen = phases(&status);
    assert!(
        seen == ["queued", "ready"] || seen == ["queued", "cloning", "ready"],
        "a new workspace is queued, maybe shown cloning, then ready: {seen:?}"
    );
    workspace_in(&status.body, &stage.sam.url)
}

/// The phases a status comment went through, oldest first, told by their words.
fn phases(comment: &Comment) -> Vec<&'static str> {
    const WORDS: [(&str, &str); 7] = [
        ("is queued", "queued"),
        (", cloning ", "cloning"),
        ("starting the workspace", "starting"),
        ("is ready", "ready"),
        ("was stopped", "stopped"),
        ("was deleted", "deleted"),
        ("could not be prepared", "failed"),
    ];
    comment
        .earlier
        .iter()
        .chain([&comment.body])
        .map(|body| {
            WORDS
                .iter()
                .find(|(words, _)| body.contains(words))
                .map_or("unknown", |(_, phase)| phase)
        })
        .collect()
}

/// Waits until the one workspace sam recorded is in `wanted`; returns its id.
async fn wait_for_state(stage: &Stage, wanted: &str) -> String {
    wait_for_state_in(stage, &[wanted]).await
}

/// Waits until the one workspace sam recorded is in one of `wanted`; returns its id.
async fn wait_for_state_in(stage: &Stage, wanted: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT id::text, state FROM workspaces")
                .fetch_optional(&stage.pool)
                .await
                .unwrap();
        if let Some((id, state)) = &row
            && wanted.contains(&state.as_str())
        {
            return id.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no workspace got to {wanted:?}: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `author` writes `body` on issue 1; returns sam's one reply to it once handled.
async fn command(stage: &Stage, handled: &mut usize, author: &str, body: &str) -> Comment {
    let before = stage.replies(1).len();
    let (_, payload) = stage.write(1, author, body);
    stage.deliver(&payload).await;
    *handled += 1;
    stage.wait_until_handled(*handled).await;
    // The status comment is edited, never reposted, so the one new comment is the reply.
    let replies = stage.replies(1);
    assert_eq!(replies.len(), before + 1, "{body}: {replies:#?}");
    replies.last().cloned().unwrap()
}

async fn state(stage: &Stage, id: &str) -> String {
    sqlx::query_scalar("SELECT state FROM workspaces WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&stage.pool)
        .await
        .unwrap()
}

/// sam's status comment of the workspace on issue 1, as it reads now.
fn status_comment(stage: &Stage) -> Comment {
    status_comment_on(stage, 1)
}

fn status_comment_on(stage: &Stage, number: u64) -> Comment {
    let replies = stage.replies(number);
    replies
        .into_iter()
        .find(|c| c.edits >= 1)
        .expect("a status comment that sam edited")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_is_stopped_started_again_and_deleted_by_commands() {
    let (stage, id, head) = opened_workspace().await;
    let checkout = stage.checkout_dir(&id);
    let line = format!("- `topic` at `{}`, for {MAINTAINER}: ", &head[..12]);
    let mut handled = 1;

    let status = command(&stage, &mut handled, MAINTAINER, "/sam status").await;
    assert!(
        status
            .body
            .starts_with("@Codertocat, the workspaces of this issue:"),
        "{}",
        status.body
    );
    assert!(
        status.body.contains(&format!("{line}ready since ")),
        "{}",
        status.body
    );

    let stop = command(&stage, &mut handled, MAINTAINER, "/sam stop").await;
    assert!(
        stop.body.contains(&format!("{line}stopped")),
        "{}",
        stop.body
    );
    assert_eq!(state(&stage, &id).await, "stopped");
    assert!(
        status_comment(&stage).body.starts_with(":pause_button:"),
        "the status comment no longer offers the link"
    );
    assert!(
        checkout.join("notes.txt").is_file(),
        "a stop keeps the files"
    );

    // `/sam open` on a stopped workspace starts the same one again.
    let (_, payload) = stage.write(1, MAINTAINER, "/sam open topic");
    stage.deliver(&payload).await;
    handled += 1;
    stage.wait_until_handled(handled).await;
    let reopened = status_comment(&stage);
    assert!(
        reopened.body.starts_with(":white_check_mark:"),
        "{}",
        reopened.body
    );
    assert_eq!(workspace_in(&reopened.body, &stage.sam.url), id);
    assert_eq!(state(&stage, &id).await, "ready");
    let seen = phases(&reopened);
    let since_stop = &seen[seen.iter().rposition(|p| *p == "stopped").unwrap() + 1..];
    assert!(
        since_stop == ["queued", "ready"] || since_stop == ["queued", "starting", "ready"],
        "a stopped workspace comes back from its files, without a new clone: {seen:?}"
    );

    let restart = command(&stage, &mut handled, MAINTAINER, "/sam restart").await;
    assert!(
        restart.body.contains(&format!(
            "{line}ready again: [open the terminal]({}/w/{id}?t=",
            stage.sam.url
        )),
        "{}",
        restart.body
    );
    assert_eq!(state(&stage, &id).await, "ready");

    let delete = command(&stage, &mut handled, MAINTAINER, "/sam delete").await;
    assert!(
        delete.body.contains(&format!("{line}deleted")),
        "{}",
        delete.body
    );
    assert_eq!(state(&stage, &id).await, "deleted");
    assert!(status_comment(&stage).body.starts_with(":wastebasket:"));
    assert!(!checkout.exists(), "a deletion removes the checkout");

    let status = command(&stage, &mut handled, MAINTAINER, "/sam status").await;
    assert_eq!(
        crate::stage::shown(&status.body),
        "@Codertocat, there is no workspace on this issue. `/sam open` starts one."
    );

    let events: Vec<String> = sqlx::query_scalar(
        "SELECT state FROM workspace_events WHERE workspace_id = $1::uuid ORDER BY id",
    )
    .bind(&id)
    .fetch_all(&stage.pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            "requested",
            "provisioning",
            "ready",
            "stopping",
            "stopped",
            "provisioning",
            "ready",
            "stopping",
            "stopped",
            "provisioning",
            "ready",
            "deleting",
            "deleted"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_workspace_is_deleted_beside_the_one_opened_again_on_its_branch() {
    let stage = Stage::start(Fixture::Issues).await;
    stage.github.set_permission(stage.repo, MAINTAINER, "write");
    // GitHub knows the branch, the repository does not give it yet: the fetch fails.
    let missing = "0123456789abcdef0123456789abcdef01234567";
    stage.github.set_branch(stage.repo, "topic", missing);
    let (_, payload) = stage.write(1, MAINTAINER, "/sam open topic");
    stage.deliver(&payload).await;
    stage.wait_until_handled(1).await;
    let failed = wait_for_state(&stage, "failed").await;

    let head = stage
        .git
        .push_branch(stage.repo, "topic", &[("notes.txt", "hello\n")]);
    stage.github.set_branch(stage.repo, "topic", &head);
    let (_, payload) = stage.write(1, MAINTAINER, "/sam open topic");
    stage.deliver(&payload).await;
    let mut handled = 2;
    stage.wait_until_handled(handled).await;
    let ready = stage
        .github
        .wait_for_comment_where(stage.repo, 1, crate::stage::WAIT, |c| {
            c.via_api && c.body.starts_with(":white_check_mark:")
        })
        .await;
    let ready = workspace_in(&ready.body, &stage.sam.url);
    assert_ne!(ready, failed);
    let checkout = stage.checkout_dir(&ready);
    assert!(checkout.join("notes.txt").is_file());

    let delete = command(&stage, &mut handled, MAINTAINER, "/sam delete").await;
    for sha in [missing, head.as_str()] {
        let line = format!("- `topic` at `{}`, for {MAINTAINER}: deleted", &sha[..12]);
        assert!(delete.body.contains(&line), "{line}:\n{}", delete.body);
    }
    assert_eq!(state(&stage, &failed).await, "deleted");
    assert_eq!(state(&stage, &ready).await, "deleted");
    assert!(!checkout.exists(), "a deletion removes the checkout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_may_ask_for_the_status_but_not_stop_or_delete() {
    let (stage, id, _) = opened_workspace().await;
    stage.github.set_permission(stage.repo, "reader", "read");
    let mut handled = 1;

    for verb in ["stop", "restart", "delete"] {
        let reply = command(&stage, &mut handled, "reader", &format!("/sam {verb}")).await;
        assert_eq!(
            crate::stage::shown(&reply.body),
            format!("Sorry @reader, `/sam {verb}` needs write access to this repository.")
        );
    }
    assert_eq!(state(&stage, &id).await, "ready");
    assert!(stage.checkout_dir(&id).is_dir());

    let status = command(&stage, &mut handled, "reader", "/sam status").await;
    assert!(status.body.contains(": ready since "), "{}", status.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_an_issue_without_workspaces_say_there_is_none() {
    let stage = Stage::start(Fixture::Issues).await;
    stage.github.set_permission(stage.repo, MAINTAINER, "write");
    let mut handled = 0;
    let reply = command(&stage, &mut handled, MAINTAINER, "/sam stop").await;
    assert_eq!(
        crate::stage::shown(&reply.body),
        "@Codertocat, there is no workspace on this issue to stop. `/sam open` starts one."
    );
    assert_eq!(stage.workspace_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_in_use_stays_up_and_stops_once_its_terminal_goes_quiet() {
    const IDLE: Duration = Duration::from_secs(4);
    let (scene, browser) = tokio::join!(
        ready_workspace_with("feature/idle", &[("SAM_IDLE_TIMEOUT", "4s")]),
        Browser::start()
    );
    browser.open_terminal(&scene.link, SET_UP).await;

    // Typing for twice the idle time keeps the workspace up.
    let typing = Instant::now();
    let mut typed = 0;
    while typing.elapsed() < IDLE * 2 && typed < 40 {
        typed += 1;
        browser.type_text(&format!("echo tick-{typed}\n")).await;
        browser
            .wait_for_terminal(Duration::from_secs(10), &format!("tick-{typed}"), |text| {
                text.lines().any(|l| l == format!("tick-{typed}"))
            })
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = scene.github.comment(scene.ready.id).unwrap();
    assert!(
        status.body.starts_with(":white_check_mark:"),
        "stopped while in use: {}",
        status.body
    );

    // Left open but quiet, it stops, and its status comment says why.
    let stopped = scene
        .github
        .wait_for_comment_where(REPO, PULL, Duration::from_secs(30), |c| {
            c.id == scene.ready.id && c.body.starts_with(":pause_button:")
        })
        .await;
    assert!(
        stopped
            .body
            .contains("was stopped after 4s without terminal activity"),
        "{}",
        stopped.body
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_pull_request_deletes_its_workspaces_and_no_other() {
    let (stage, kept, _) = opened_workspace().await;
    // The `pull_request/closed` fixture closes #2 of the same repository.
    stage
        .git
        .push_branch(stage.repo, "changes", &[("a.txt", "a\n")]);
    let closed = open(&stage, 2, "changes").await;

    let payload = crate::support::fixtures::webhook("pull_request", "closed");
    let answer = stage
        .sam
        .deliver("pull_request", "closed-2", &payload)
        .await;
    assert_eq!(answer.status(), 202);
    stage.wait_until_handled(3).await;

    assert_eq!(state(&stage, &closed).await, "deleted");
    assert!(!stage.checkout_dir(&closed).exists());
    let status = status_comment_on(&stage, 2);
    assert!(
        status
            .body
            .contains("was deleted when the pull request was closed"),
        "{}",
        status.body
    );
    assert_eq!(state(&stage, &kept).await, "ready", "issue 1 is not #2");
    assert!(stage.checkout_dir(&kept).is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_closed_while_its_workspace_is_cloning_deletes_it_once_git_is_done() {
    let stage = Stage::start(Fixture::Issues).await;
    stage
        .git
        .push_branch(stage.repo, "changes", &[("a.txt", "a\n")]);
    stage.github.set_permission(stage.repo, MAINTAINER, "write");
    let gate = stage.git.hold_fetches();
    let (_, payload) = stage.write(2, MAINTAINER, "/sam open changes");
    stage.deliver(&payload).await;
    let id = wait_for_state(&stage, "provisioning").await;

    // The `pull_request/closed` fixture closes #2 while git is still fetching.
    let payload = crate::support::fixtures::webhook("pull_request", "closed");
    let answer = stage
        .sam
        .deliver("pull_request", "closed-2", &payload)
        .await;
    assert_eq!(answer.status(), 202);
    // The deletion does not wait for git: the row may pass `deleting` before it is seen.
    wait_for_state_in(&stage, &["deleting", "deleted"]).await;
    gate.release();

    // Neither delivery fails or waits for a retry.
    stage.wait_until_handled(2).await;
    assert_eq!(state(&stage, &id).await, "deleted");
    assert!(
        !stage.checkout_dir(&id).exists(),
        "the checkout made after the deletion is removed"
    );
    let status = status_comment_on(&stage, 2);
    assert!(
        status
            .body
            .contains("was deleted when the pull request was closed"),
        "{}",
        status.body
    );
    assert!(
        !phases(&status).contains(&"ready"),
        "no link was offered for a deleted workspace: {:?}",
        status.earlier
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_app_deletes_the_workspaces_it_held() {
    let (stage, id, _) = opened_workspace().await;

    // Taking the repository out of the installation: the fixture names another repository
    // first, which changes nothing.
    let mut removed: Value = serde_json::from_slice(&crate::support::fixtures::webhook(
        "installation_repositories",
        "removed",
    ))
    .unwrap();
    removed["installation"]["id"] = Value::from(stage.installation());
    let body = serde_json::to_vec(&removed).unwrap();
    stage
        .sam
        .deliver("installation_repositories", "removed-1", &body)
        .await;
    stage.wait_until_handled(2).await;
    assert_eq!(state(&stage, &id).await, "ready");

    let repo_id: i64 = sqlx::query_scalar("SELECT repo_id FROM workspaces WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&stage.pool)
        .await
        .unwrap();
    removed["repositories_removed"][0]["id"] = Value::from(repo_id);
    let body = serde_json::to_vec(&removed).unwrap();
    stage
        .sam
        .deliver("installation_repositories", "removed-2", &body)
        .await;
    stage.wait_until_handled(3).await;
    assert_eq!(state(&stage, &id).await, "deleted");
    assert!(!stage.checkout_dir(&id).exists());

    // Uninstalling altogether takes every workspace of the installation.
    stage
        .git
        .push_branch(stage.repo, "again", &[("b.txt", "b\n")]);
    let again = open(&stage, 1, "again").await;
    let mut deleted: Value = serde_json::from_slice(&crate::support::fixtures::webhook(
        "installation",
        "deleted",
    ))
    .unwrap();
    deleted["installation"]["id"] = Value::from(stage.installation());
    let body = serde_json::to_vec(&deleted).unwrap();
    stage.sam.deliver("installation", "deleted-1", &body).await;
    stage.wait_until_handled(5).await;
    assert_eq!(state(&stage, &again).await, "deleted");
    assert!(!stage.checkout_dir(&again).exists());
}
