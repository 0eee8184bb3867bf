//! Tests of the GitHub stand-in itself: it must refuse what GitHub refuses, or the tests
//! built on it prove nothing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::github::{GitHubStandIn, PullRequestSpec};
use crate::support::http_client;

mod faults;
mod web;

pub(super) const WAIT: Duration = Duration::from_secs(10);

/// A stand-in with `octo/hello` and `octo/other` on one installation and `else/where`
/// on another; returns the first installation's id.
pub(super) async fn stand_in_with_repos() -> (GitHubStandIn, u64) {
    let github = GitHubStandIn::start().await;
    let octo = github.add_installation("octo");
    github.add_repo("octo/hello", octo);
    github.add_repo("octo/other", octo);
    let elsewhere = github.add_installation("else");
    github.add_repo("else/where", elsewhere);
    (github, octo)
}

pub(super) async fn installation_token(
    github: &GitHubStandIn,
    installation: u64,
    body: Value,
) -> String {
    let response = http_client()
        .post(format!(
            "{}/app/installations/{installation}/access_tokens",
            github.url()
        ))
        .bearer_auth(github.app_jwt())
        .json(&body)
        .send()
        .await
        .expect("request a token");
    assert_eq!(response.status(), StatusCode::CREATED);
    let answer: Value = response.json().await.expect("JSON");
    answer["token"].as_str().expect("a token").to_owned()
}

pub(super) async fn get(github: &GitHubStandIn, path: &str, token: &str) -> reqwest::Response {
    http_client()
        .get(format!("{}{path}", github.url()))
        .header("authorization", format!("token {token}"))
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn app_endpoints_check_the_jwt() {
    let github = GitHubStandIn::start().await;
    let client = http_client();
    let app_url = format!("{}/app", github.url());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let id = json!(github.app_id());

    let unsigned = client.get(&app_url).send().await.expect("send");
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);

    let other_key = rsa::PrivateKey::new(&mut rand::rng(), 2048).expect("key");
    let der = rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_der(&other_key).expect("DER");
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &json!({ "iat": now - 60, "exp": now + 300, "iss": id }),
        &jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
    )
    .expect("sign");

    let refused = [
        ("another key", forged),
        (
            "expired",
            github.app_jwt_with(id.clone(), now - 700, now - 100),
        ),
        (
            "exp too far",
            github.app_jwt_with(id.clone(), now - 60, now + 660),
        ),
        (
            "iat in the future",
            github.app_jwt_with(id.clone(), now + 120, now + 300),
        ),
        (
            "another app",
            github.app_jwt_with(json!(github.app_id() + 1), now - 60, now + 300),
        ),
    ];
    for (case, jwt) in refused {
        let response = client
            .get(&app_url)
            .bearer_auth(jwt)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    }

    let response = client
        .get(&app_url)
        .bearer_auth(github.app_jwt())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    let app: Value = response.json().await.expect("JSON");
    assert_eq!(app["id"], id);
    assert_eq!(app["slug"], "sam-test");
    assert!(app.get("pem").is_none() && app.get("client_secret").is_none());
}

#[tokio::test]
async fn repo_installation_is_found_with_the_app_jwt() {
    let (github, octo) = stand_in_with_repos().await;
    let client = http_client();
    let url = format!("{}/repos/octo/hello/installation", github.url());

    let found: Value = client
        .get(&url)
        .bearer_auth(github.app_jwt())
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON");
    assert_eq!(found["id"], json!(octo));
    assert_eq!(found["account"]["login"], "octo");

    github.add_repo_without_installation("octo/not-installed");
    let missing = client
        .get(format!(
            "{}/repos/octo/not-installed/installation",
            github.url()
        ))
        .bearer_auth(github.app_jwt())
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn installation_token_is_scoped_to_its_repositories() {
    let (github, octo) = stand_in_with_repos().await;
    github.add_pull_request("octo/hello", 1, PullRequestSpec::default());
    github.add_pull_request("octo/other", 1, PullRequestSpec::default());
    github.add_pull_request("else/where", 1, PullRequestSpec::default());

    let token = installation_token(&github, octo, json!({})).await;
    assert!(token.starts_with("ghs_"));
    assert_eq!(
        get(&github, "/repos/octo/hello/pulls/1", &token)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&github, "/repos/octo/other/pulls/1", &token)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&github, "/repos/else/where/pulls/1", &token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    let narrowed = installation_token(&github, octo, json!({ "repositories": ["hello"] })).await;
    assert_eq!(
        get(&github, "/repos/octo/hello/pulls/1", &narrowed)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&github, "/repos/octo/other/pulls/1", &narrowed)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    let bogus = get(&github, "/repos/octo/hello/pulls/1", "ghs_not-a-token").await;
    assert_eq!(bogus.status(), StatusCode::UNAUTHORIZED);

    github.expire_tokens();
    assert_eq!(
        get(&github, "/repos/octo/hello/pulls/1", &token)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn token_for_a_repository_outside_the_installation_is_refused() {
    let (github, octo) = stand_in_with_repos().await;
    let response = http_client()
        .post(format!(
            "{}/app/installations/{octo}/access_tokens",
            github.url()
        ))
        .bearer_auth(github.app_jwt())
        .json(&json!({ "repositories": ["where"] }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn token_without_the_permission_gets_403() {
    let (github, octo) = stand_in_with_repos().await;
    github.set_installation_permissions(octo, json!({ "metadata": "read", "issues": "read" }));
    let token = installation_token(&github, octo, json!({})).await;
    let response = http_client()
        .post(format!(
            "{}/repos/octo/hello/issues/1/comments",
            github.url()
        ))
        .bearer_auth(&token)
        .json(&json!({ "body": "hi" }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn permission_answers_follow_githubs_documented_shape() {
    let (github, octo) = stand_in_with_repos().await;
    github.set_permission("octo/hello", "writer", "write");
    github.set_permission("octo/hello", "keeper", "maintain");
    github.add_user("stranger");
    let token = installation_token(&github, octo, json!({})).await;
    let permission = |login: &'static str| {
        let (github, token) = (&github, token.clone());
        async move {
            let response = get(
                github,
                &format!("/repos/octo/hello/collaborators/{login}/permission"),
                &token,
            )
            .await;
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (
                status,
                body["permission"].clone(),
                body["role_name"].clone(),
            )
        }
    };

    assert_eq!(
        permission("writer").await,
        (StatusCode::OK, json!("write"), json!("write"))
    );
    assert_eq!(
        permission("keeper").await,
        (StatusCode::OK, json!("write"), json!("maintain"))
    );
    assert_eq!(
        permission("stranger").await,
        (StatusCode::OK, json!("read"), json!("read"))
    );
    assert_eq!(permission("nobody-at-all").await.0, StatusCode::NOT_FOUND);

    github.set_repo_private("octo/hello", true);
    assert_eq!(
        permission("stranger").await,
        (StatusCode::OK, json!("none"), json!("none"))
    );
}

#[tokio::test]
async fn pull_request_answer_names_head_and_base() {
    let (github, octo) = stand_in_with_repos().await;
    github.add_repo_without_installation("forker/hello");
    let spec = PullRequestSpec {
        head_ref: "topic/x".into(),
        head_sha: "a".repeat(40),
        head_repo: Some("forker/hello".into()),
        author: "forker".into(),
        ..PullRequestSpec::default()
    };
    github.add_pull_request("octo/hello", 7, spec);
    let token = installation_token(&github, octo, json!({})).await;

    let pull: Value = get(&github, "/repos/octo/hello/pulls/7", &token)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(pull["number"], 7);
    assert_eq!(pull["state"], "open");
    assert_eq!(pull["head"]["ref"], "topic/x");
    assert_eq!(pull["head"]["sha"], "a".repeat(40));
    assert_eq!(pull["head"]["repo"]["full_name"], "forker/hello");
    assert_eq!(
        pull["head"]["repo"]["clone_url"],
        "https://github.com/forker/hello.git"
    );
    assert_eq!(pull["base"]["repo"]["full_name"], "octo/hello");
    assert_eq!(pull["user"]["login"], "forker");
}

#[tokio::test]
async fn comments_reactions_and_sync_points() {
    let (github, octo) = stand_in_with_repos().await;
    let trigger = github.add_comment("octo/hello", 3, "writer", "/sam open");
    let token = installation_token(&github, octo, json!({})).await;
    let client = http_client();
    let api = format!("{}/repos/octo/hello", github.url());

    let poster = {
        let (client, api, token) = (client.clone(), api.clone(), token.clone());
        tokio::spawn(async move {
            client
                .post(format!("{api}/issues/3/comments"))
                .bearer_auth(&token)
                .json(&json!({ "body": "Opening a shell…" }))
                .send()
                .await
                .expect("send")
        })
    };
    let posted = github.wait_for_comment("octo/hello", 3, WAIT).await;
    assert_eq!(posted.body, "Opening a shell…");
    assert_eq!(posted.author, "sam-test[bot]");
    assert_eq!(poster.await.expect("task").status(), StatusCode::CREATED);

    let edit = client
        .patch(format!("{api}/issues/comments/{}", posted.id))
        .bearer_auth(&token)
        .json(&json!({ "body": "Ready" }))
        .send()
        .await
        .expect("send");
    assert_eq!(edit.status(), StatusCode::OK);
    let edited = github
        .wait_for_comment_where("octo/hello", 3, WAIT, |c| c.body == "Ready")
        .await;
    assert_eq!((edited.id, edited.edits), (posted.id, 1));

    let react = || {
        client
            .post(format!("{api}/issues/comments/{}/reactions", trigger.id))
            .bearer_auth(&token)
            .json(&json!({ "content": "eyes" }))
            .send()
    };
    assert_eq!(react().await.expect("send").status(), StatusCode::CREATED);
    assert_eq!(react().await.expect("send").status(), StatusCode::OK);
    assert_eq!(
        github.wait_for_reaction(trigger.id, WAIT).await.content,
        "eyes"
    );
    assert_eq!(github.reactions(trigger.id).len(), 1);

    let listed: Vec<Value> = client
        .get(format!("{api}/issues/3/comments"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON");
    let bodies: Vec<&str> = listed.iter().filter_map(|c| c["body"].as_str()).collect();
    assert_eq!(bodies, ["/sam open", "Ready"]);
}

#[tokio::test]
async fn check_runs_are_created_and_completed() {
    let (github, octo) = stand_in_with_repos().await;
    let token = installation_token(&github, octo, json!({})).await;
    let client = http_client();
    let api = format!("{}/repos/octo/hello/check-runs", github.url());

    let created: Value = client
        .post(&api)
        .bearer_auth(&token)
        .json(&json!({ "name": "sam", "head_sha": "b".repeat(40), "status": "in_progress" }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON");
    let id = created["id"].as_u64().expect("an id");

    let incomplete = client
        .patch(format!("{api}/{id}"))
        .bearer_auth(&token)
        .json(&json!({ "status": "completed" }))
        .send();
    assert_eq!(
        incomplete.await.expect("send").status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let done = client
        .patch(format!("{api}/{id}"))
        .bearer_auth(&token)
        .json(&json!({ "conclusion": "success", "output": { "title": "ok", "summary": "fine" } }))
        .send();
    assert_eq!(done.await.expect("send").status(), StatusCode::OK);
    let run = github
        .wait_for_check_run("octo/hello", WAIT, |r| r.status == "completed")
        .await;
    assert_eq!(run.conclusion.as_deref(), Some("success"));
    assert_eq!(run.output["title"], "ok");
}

#[tokio::test]
async fn branches_come_from_the_git_server() {
    let (github, octo) = stand_in_with_repos().await;
    let git = crate::support::git::GitServer::new();
    git.create_repo("octo/hello");
    let sha = git.push_branch("octo/hello", "feature/a", &[("f", "1")]);
    github.use_git_server(git.dir());
    let token = installation_token(&github, octo, json!({})).await;

    let branch: Value = get(&github, "/repos/octo/hello/branches/feature/a", &token)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(branch["commit"]["sha"], sha);
    let missing = get(&github, "/repos/octo/hello/branches/nope", &token).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn comment_from_a_webhook_keeps_its_id_and_takes_reactions() {
    let payload = crate::support::fixtures::webhook("issue_comment", "created-on-pull-request");
    let event: Value = serde_json::from_slice(&payload).expect("JSON");
    let repo = event["repository"]["full_name"].as_str().expect("a name");
    let github = GitHubStandIn::start().await;
    let installation = github.add_installation(repo.split('/').next().expect("an owner"));
    github.add_repo(repo, installation);

    let comment = github.add_comment_from_webhook(&payload);
    assert_eq!(json!(comment.id), event["comment"]["id"]);
    assert_eq!(comment.body, "/build");

    let token = installation_token(&github, installation, json!({})).await;
    let response = http_client()
        .post(format!(
            "{}/repos/{repo}/issues/comments/{}/reactions",
            github.url(),
            comment.id
        ))
        .bearer_auth(&token)
        .json(&json!({ "content": "+1" }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
}
