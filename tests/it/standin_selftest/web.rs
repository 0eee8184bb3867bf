//! The stand-in's web side: GitHub's OAuth web flow and the App manifest flow.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::github::GitHubStandIn;
use crate::support::http_client;

#[tokio::test]
async fn oauth_web_flow_round_trip() {
    let github = GitHubStandIn::start().await;
    github.sign_in_as("octocat");
    let client = http_client();
    let callback = "http://127.0.0.1:1/auth/callback";

    let authorize = client
        .get(format!("{}/login/oauth/authorize", github.url()))
        .query(&[
            ("client_id", github.client_id().as_str()),
            ("redirect_uri", callback),
            ("state", "xyz"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(authorize.status(), StatusCode::FOUND);
    let location =
        url::Url::parse(authorize.headers()["location"].to_str().expect("text")).expect("URL");
    assert!(location.as_str().starts_with(callback));
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["state"], "xyz");

    let exchange = |code: String, secret: String| {
        client
            .post(format!("{}/login/oauth/access_token", github.url()))
            .header("accept", "application/json")
            .form(&[
                ("client_id", github.client_id()),
                ("client_secret", secret),
                ("code", code),
            ])
            .send()
    };
    let wrong_secret: Value = exchange(query["code"].clone(), "nope".into())
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON");
    assert_eq!(wrong_secret["error"], "incorrect_client_credentials");

    let answer: Value = exchange(query["code"].clone(), github.client_secret())
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["token_type"], "bearer");
    let token = answer["access_token"].as_str().expect("a token");
    assert!(token.starts_with("gho_"));

    let reused: Value = exchange(query["code"].clone(), github.client_secret())
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON");
    assert_eq!(reused["error"], "bad_verification_code");

    let user: Value = client
        .get(format!("{}/user", github.url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON");
    assert_eq!(user["login"], "octocat");
}

#[tokio::test]
async fn oauth_authorize_without_a_signed_in_user_is_refused() {
    let github = GitHubStandIn::start().await;
    let response = http_client()
        .get(format!("{}/login/oauth/authorize", github.url()))
        .query(&[
            ("client_id", github.client_id().as_str()),
            ("redirect_uri", "http://127.0.0.1:1/cb"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn manifest_conversion_registers_a_new_app_once() {
    let github = GitHubStandIn::start().await;
    let manifest = json!({
        "name": "My sam",
        "url": "https://sam.example",
        "hook_attributes": { "url": "https://sam.example/webhook" },
        "redirect_url": "https://sam.example/setup/done",
        "default_permissions": { "issues": "write" },
        "default_events": ["issue_comment"],
    });
    let code = github.create_manifest_code(manifest);
    let convert = || {
        http_client()
            .post(format!("{}/app-manifests/{code}/conversions", github.url()))
            .send()
    };

    let response = convert().await.expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
    let app: Value = response.json().await.expect("JSON");
    assert_eq!(app["slug"], "my-sam");
    assert_eq!(app["id"], json!(github.app_id()));
    assert_eq!(app["pem"], json!(github.private_key_pem()));
    assert_eq!(
        app["webhook_secret"],
        json!(github.webhook_secret().expect("a webhook secret"))
    );
    assert_eq!(app["client_secret"], json!(github.client_secret()));
    assert!(
        app["pem"]
            .as_str()
            .expect("PEM")
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );

    let as_new_app = http_client()
        .get(format!("{}/app", github.url()))
        .bearer_auth(github.app_jwt())
        .send()
        .await
        .expect("send");
    assert_eq!(as_new_app.status(), StatusCode::OK);

    assert_eq!(
        convert().await.expect("send").status(),
        StatusCode::NOT_FOUND,
        "codes work once"
    );
}

#[tokio::test]
async fn manifest_form_redirects_back_with_a_code() {
    let github = GitHubStandIn::start().await;
    let manifest = json!({
        "url": "https://sam.example",
        "hook_attributes": { "url": "https://sam.example/webhook" },
        "redirect_url": "http://127.0.0.1:1/setup/done",
    });
    let response = http_client()
        .post(format!("{}/settings/apps/new?state=s1", github.url()))
        .form(&[("manifest", manifest.to_string())])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(
        location.starts_with("http://127.0.0.1:1/setup/done?code="),
        "{location}"
    );
    assert!(location.ends_with("&state=s1"), "{location}");
}
