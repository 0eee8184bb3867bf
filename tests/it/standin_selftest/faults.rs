//! The stand-in's faults and records: planned failures, slow answers, the request log and
//! the waits tests synchronise on.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::{WAIT, get, installation_token, stand_in_with_repos};
use crate::support::github::{AuthKind, Failure, GitHubStandIn};
use crate::support::http_client;

#[tokio::test]
async fn fault_injection_fails_only_the_planned_requests() {
    let (github, octo) = stand_in_with_repos().await;
    let token = installation_token(&github, octo, json!({})).await;
    let pattern = "/repos/*/*/issues/*/comments";
    github.fail_next("POST", pattern, Failure::Status(502));
    github.fail_next("POST", pattern, Failure::SecondaryRateLimit);
    github.fail_next(
        "POST",
        pattern,
        Failure::TooManyRequests {
            retry_after_secs: 7,
        },
    );
    let post = || {
        http_client()
            .post(format!(
                "{}/repos/octo/hello/issues/1/comments",
                github.url()
            ))
            .bearer_auth(&token)
            .json(&json!({ "body": "hello" }))
            .send()
    };

    assert_eq!(
        post().await.expect("send").status(),
        StatusCode::BAD_GATEWAY
    );
    let secondary = post().await.expect("send");
    assert_eq!(secondary.status(), StatusCode::FORBIDDEN);
    assert_eq!(secondary.headers()["retry-after"], "1");
    let limited = post().await.expect("send");
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert!(
        github.comments("octo/hello", 1).is_empty(),
        "failed requests have no effect"
    );

    assert_eq!(post().await.expect("send").status(), StatusCode::CREATED);
    assert_eq!(github.comments("octo/hello", 1).len(), 1);

    let statuses: Vec<(u16, bool)> = github
        .requests()
        .iter()
        .filter(|r| r.path == "/repos/octo/hello/issues/1/comments")
        .map(|r| (r.status, r.injected))
        .collect();
    assert_eq!(
        statuses,
        [(502, true), (403, true), (429, true), (201, false)]
    );
}

#[tokio::test]
async fn slow_response_still_takes_effect() {
    let (github, octo) = stand_in_with_repos().await;
    let token = installation_token(&github, octo, json!({})).await;
    github.fail_next(
        "POST",
        "/repos/octo/hello/issues/2/comments",
        Failure::SlowResponse(Duration::from_secs(5)),
    );
    let result = http_client()
        .post(format!(
            "{}/repos/octo/hello/issues/2/comments",
            github.url()
        ))
        .bearer_auth(&token)
        .timeout(Duration::from_millis(200))
        .json(&json!({ "body": "maybe twice" }))
        .send()
        .await;
    assert!(result.is_err_and(|e| e.is_timeout()));
    assert_eq!(
        github.wait_for_comment("octo/hello", 2, WAIT).await.body,
        "maybe twice"
    );
}

#[tokio::test]
async fn request_log_records_auth_kinds_but_never_tokens() {
    let (github, octo) = stand_in_with_repos().await;
    let token = installation_token(&github, octo, json!({})).await;
    get(&github, "/repos/octo/hello", &token).await;
    let log = github.requests();
    let kinds: Vec<AuthKind> = log.iter().map(|r| r.auth).collect();
    assert_eq!(kinds, [AuthKind::AppJwt, AuthKind::InstallationToken]);
    assert!(!format!("{log:?}").contains(&token));
}

#[tokio::test]
#[should_panic(expected = "saw no a reaction on comment 1")]
async fn sync_point_times_out_with_a_clear_message() {
    let github = GitHubStandIn::start().await;
    github.wait_for_reaction(1, Duration::from_millis(50)).await;
}
