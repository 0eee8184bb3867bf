//! sam's check run on pull requests: a neutral "sam workspace" run on each head with an
//! "Open workspace" button, and what clicking the button does.

use serde_json::Value;

use crate::commands::{settled_status, workspace_in};
use crate::stage::{Fixture, Stage, WAIT};
use crate::support::fixtures;
use crate::support::github::{CheckRun, PullRequestSpec};

/// The number of the pull request in the `pull_request` fixtures.
const NUMBER: u64 = 2;
const AUTHOR: &str = "Codertocat";

/// A stage whose repository has pull request #2 from branch `changes`; returns its head.
async fn pull_request_stage() -> (Stage, String) {
    let stage = Stage::start(Fixture::Issues).await;
    let head = stage
        .git
        .push_branch(stage.repo, "changes", &[("c.txt", "c\n")]);
    stage.github.add_pull_request(
        stage.repo,
        NUMBER,
        PullRequestSpec {
            head_ref: "changes".into(),
            head_sha: head.clone(),
            author: AUTHOR.into(),
            ..Default::default()
        },
    );
    (stage, head)
}

/// The stage, once sam heard pull request #2 open: its head, and sam's run on it.
async fn opened_pull_request() -> (Stage, String, CheckRun) {
    let (stage, head) = pull_request_stage().await;
    let opened = pull_request(&stage, "opened", &head);
    deliver(&stage, "pull_request", &opened, 1).await;
    let run = sam_run_on(&stage, &head).await;
    (stage, head, run)
}

/// Delivers `event` with `payload`, checking sam took it, and waits until sam handled the
/// `handled`-th delivery.
async fn deliver(stage: &Stage, event: &str, payload: &Value, handled: usize) {
    let body = serde_json::to_vec(payload).unwrap();
    let delivery = uuid::Uuid::new_v4().to_string();
    let answer = stage.sam.deliver(event, &delivery, &body).await;
    assert_eq!(answer.status(), 202, "{event} was not accepted");
    stage.wait_until_handled(handled).await;
}

/// The `pull_request/<action>` fixture, through the stage's installation, at `head`.
fn pull_request(stage: &Stage, action: &str, head: &str) -> Value {
    let mut payload: Value =
        serde_json::from_slice(&fixtures::webhook("pull_request", action)).unwrap();
    payload["installation"]["id"] = Value::from(stage.installation());
    payload["pull_request"]["head"]["sha"] = Value::from(head);
    payload
}

/// The `check_run/<action>` fixture about sam's `run` on the stage's repository, sent by
/// `login`; a click is on the "Open workspace" button. The run lists no pull requests, as
/// runs on forks' commits do.
fn check_run(stage: &Stage, action: &str, run: &CheckRun, login: &str) -> Value {
    let mut payload: Value =
        serde_json::from_slice(&fixtures::webhook("check_run", action)).unwrap();
    let opened: Value =
        serde_json::from_slice(&fixtures::webhook("pull_request", "opened")).unwrap();
    payload["repository"] = opened["repository"].clone();
    payload["installation"] = serde_json::json!({ "id": stage.installation() });
    let check_run = &mut payload["check_run"];
    check_run["id"] = Value::from(run.id);
    check_run["name"] = Value::from(run.name.as_str());
    check_run["head_sha"] = Value::from(run.head_sha.as_str());
    check_run["external_id"] = Value::from(run.external_id.clone());
    check_run["pull_requests"] = Value::Array(Vec::new());
    check_run["app"]["id"] = Value::from(stage.github.app_id());
    if action == "requested_action" {
        payload["requested_action"]["identifier"] = Value::from("open");
    }
    payload["sender"]["login"] = Value::from(login);
    payload["sender"]["type"] = Value::from("User");
    payload
}

async fn sam_run_on(stage: &Stage, head: &str) -> CheckRun {
    stage
        .github
        .wait_for_check_run(stage.repo, WAIT, |r| {
            r.name == "sam workspace" && r.head_sha == head
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pull_request_head_gets_a_neutral_run_with_the_button() {
    let (stage, _, run) = opened_pull_request().await;
    assert_eq!(run.status, "completed");
    assert_eq!(run.conclusion.as_deref(), Some("neutral"));
    assert_eq!(run.external_id.as_deref(), Some("2"));
    assert_eq!(run.actions[0]["label"], "Open workspace");
    assert_eq!(run.actions[0]["identifier"], "open");
    assert!(
        run.actions[0]["description"].as_str().unwrap().len() <= 40,
        "GitHub refuses longer descriptions"
    );

    // A new push moves the head: the new commit gets its own run.
    let moved = stage
        .git
        .push_branch(stage.repo, "changes", &[("d.txt", "d\n")]);
    deliver(
        &stage,
        "pull_request",
        &pull_request(&stage, "synchronize", &moved),
        2,
    )
    .await;
    sam_run_on(&stage, &moved).await;

    // "Re-run" on the run makes a fresh one.
    let before = stage.github.check_runs(stage.repo).len();
    deliver(
        &stage,
        "check_run",
        &check_run(&stage, "rerequested", &run, AUTHOR),
        3,
    )
    .await;
    assert_eq!(stage.github.check_runs(stage.repo).len(), before + 1);

    // Other Apps' runs are not sam's business.
    let mut theirs = check_run(&stage, "rerequested", &run, AUTHOR);
    theirs["check_run"]["app"]["id"] = Value::from(stage.github.app_id() + 1);
    deliver(&stage, "check_run", &theirs, 4).await;
    assert_eq!(stage.github.check_runs(stage.repo).len(), before + 1);
    assert!(stage.replies(NUMBER).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_button_opens_a_workspace_for_whoever_clicks_it_if_they_may() {
    let (stage, head, run) = opened_pull_request().await;

    stage.github.set_permission(stage.repo, "reader", "read");
    deliver(
        &stage,
        "check_run",
        &check_run(&stage, "requested_action", &run, "reader"),
        2,
    )
    .await;
    let replies = stage.replies(NUMBER);
    assert_eq!(replies.len(), 1, "{replies:#?}");
    assert!(
        replies[0]
            .body
            .starts_with("Sorry @reader, opening a workspace needs write access"),
        "{}",
        replies[0].body
    );
    assert_eq!(stage.workspace_count().await, 0);
    let refused = sam_run_on(&stage, &head).await;
    assert_eq!(
        refused.output["title"], "Open a workspace",
        "the button is offered again"
    );

    stage.github.set_permission(stage.repo, AUTHOR, "write");
    deliver(
        &stage,
        "check_run",
        &check_run(&stage, "requested_action", &run, AUTHOR),
        3,
    )
    .await;
    let status = settled_status(&stage, NUMBER).await;
    assert!(
        status.body.starts_with(":white_check_mark: @Codertocat,"),
        "{}",
        status.body
    );
    let id = workspace_in(&status.body, &stage.sam.url);
    let ready = sam_run_on(&stage, &head).await;
    assert_eq!(ready.output["title"], "Workspace ready");
    let summary = ready.output["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!("]({}/w/{id}?t=", stage.sam.url)),
        "{summary}"
    );
    assert_eq!(ready.conclusion.as_deref(), Some("neutral"));
    assert!(stage.checkout_dir(&id).join("c.txt").is_file());
}
