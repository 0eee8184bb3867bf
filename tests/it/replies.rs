//! Every reply sam posts goes out exactly once, whatever GitHub answers: server errors,
//! rate limits (primary and secondary, with their waits), and answers lost after GitHub
//! did the work, within one try of a delivery and across tries.

use serde_json::Value;

use crate::stage::{Fixture, Stage, WAIT};
use crate::support::fixtures;
use crate::support::github::{Failure, PullRequestSpec};

const COMMENTS: &str = "/repos/*/*/issues/*/comments";
const CHECK_RUNS: &str = "/repos/*/*/check-runs";

/// Every failure GitHub (or what stands between it and sam) may answer a post with.
fn failures() -> Vec<(&'static str, Failure)> {
    vec![
        ("500", Failure::Status(500)),
        ("502", Failure::Status(502)),
        ("403 secondary rate limit", Failure::SecondaryRateLimit),
        (
            "429 with Retry-After",
            Failure::TooManyRequests {
                retry_after_secs: 1,
            },
        ),
        ("posted, then a 502", Failure::Lost(502)),
        ("posted, then a 504", Failure::Lost(504)),
    ]
}

/// The requests that got the injected failure: proof that the fault was met.
fn injected(stage: &Stage, method: &str) -> usize {
    stage
        .github
        .requests()
        .iter()
        .filter(|r| r.injected && r.method == method)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_whose_post_fails_once_in_any_way_is_posted_exactly_once() {
    let stage = Stage::start(Fixture::Issues).await;
    let cases = failures();
    for (issue, (case, failure)) in (1..).zip(&cases) {
        stage.github.fail_next("POST", COMMENTS, failure.clone());
        let (_, payload) = stage.write(issue, "octocat", "/sam help");
        stage.deliver(&payload).await;
        stage.wait_until_handled(issue as usize).await;
        let replies = stage.replies(issue);
        assert_eq!(replies.len(), 1, "{case}: {replies:#?}");
        assert!(replies[0].body.contains("| `/sam help` |"), "{case}");
        assert_eq!(
            injected(&stage, "POST"),
            issue as usize,
            "{case} was not met"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_posted_by_an_earlier_try_of_the_delivery_is_not_posted_again() {
    let stage = Stage::start(Fixture::Issues).await;
    // The post goes out but its answer is lost, and every look for it fails until this
    // try of the delivery gives up: the next try must find it rather than post again.
    stage.github.fail_next("POST", COMMENTS, Failure::Lost(502));
    for _ in 0..5 {
        stage
            .github
            .fail_next("GET", COMMENTS, Failure::Status(503));
    }
    let (_, payload) = stage.write(1, "octocat", "/sam help");
    stage.deliver(&payload).await;
    stage.wait_until_handled(1).await;

    let replies = stage.replies(1);
    assert_eq!(replies.len(), 1, "{replies:#?}");
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM deliveries")
        .fetch_one(&stage.pool)
        .await
        .unwrap();
    assert_eq!(
        attempts, 2,
        "the first try was to fail and the second to finish"
    );
    let posted: Option<i64> = sqlx::query_scalar("SELECT github_id FROM replies")
        .fetch_one(&stage.pool)
        .await
        .unwrap();
    assert_eq!(posted, Some(replies[0].id as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_failures_in_a_row_still_give_one_reply() {
    let stage = Stage::start(Fixture::Issues).await;
    stage.github.fail_next("POST", COMMENTS, Failure::Lost(502));
    stage
        .github
        .fail_next("GET", COMMENTS, Failure::Status(500));
    stage
        .github
        .fail_next("POST", COMMENTS, Failure::SecondaryRateLimit);
    stage
        .github
        .fail_next("POST", COMMENTS, Failure::Status(502));
    let (comment, payload) = stage.write(1, "octocat", "/sam help");
    stage.deliver(&payload).await;
    stage.wait_until_handled(1).await;
    assert_eq!(stage.replies(1).len(), 1, "{:#?}", stage.replies(1));
    assert_eq!(stage.github.reactions(comment.id).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_run_whose_creation_fails_once_in_any_way_is_created_exactly_once() {
    let stage = Stage::start(Fixture::Issues).await;
    let cases = failures();
    for (n, (case, failure)) in (1..).zip(&cases) {
        let branch = format!("changes-{n}");
        let head = stage
            .git
            .push_branch(stage.repo, &branch, &[("c.txt", "c\n")]);
        stage.github.add_pull_request(
            stage.repo,
            n,
            PullRequestSpec {
                head_ref: branch,
                head_sha: head.clone(),
                author: "Codertocat".into(),
                ..Default::default()
            },
        );
        stage.github.fail_next("POST", CHECK_RUNS, failure.clone());
        let mut payload: Value =
            serde_json::from_slice(&fixtures::webhook("pull_request", "opened")).unwrap();
        payload["installation"]["id"] = Value::from(stage.installation());
        payload["number"] = Value::from(n);
        payload["pull_request"]["head"]["sha"] = Value::from(head.as_str());
        let body = serde_json::to_vec(&payload).unwrap();
        let delivery = uuid::Uuid::new_v4().to_string();
        let answer = stage.sam.deliver("pull_request", &delivery, &body).await;
        assert_eq!(answer.status(), 202, "{case}");
        stage.wait_until_handled(n as usize).await;

        let runs: Vec<_> = stage
            .github
            .check_runs(stage.repo)
            .into_iter()
            .filter(|r| r.head_sha == head)
            .collect();
        assert_eq!(runs.len(), 1, "{case}: {runs:#?}");
        assert_eq!(runs[0].external_id.as_deref(), Some(n.to_string().as_str()));
        assert_eq!(injected(&stage, "POST"), n as usize, "{case} was not met");
    }
    let _ = WAIT;
}
