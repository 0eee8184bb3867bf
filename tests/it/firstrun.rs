//! A fresh sam, with no GitHub App: registering one through GitHub's manifest flow from its
//! front page, rotating the webhook secret, and replaying deliveries with `sam receive`.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::server::{Launch, SamServer, WEBHOOK_SECRET};
use crate::stage::{Fixture, Stage, WAIT};
use crate::support::db::TestDatabase;
use crate::support::fixtures;
use crate::support::git::GitServer;
use crate::support::github::{Comment, GitHubStandIn};
use crate::support::http_client;
use crate::support::visitor::{Visitor, attribute_after};

/// The repository the `issue_comment/created` fixture is about.
const REPO: &str = "Codertocat/Hello-World";

/// The `issue_comment/created` fixture announcing `comment` through `installation`.
fn announce(comment: &Comment, installation: u64) -> Vec<u8> {
    let mut payload: Value =
        serde_json::from_slice(&fixtures::webhook("issue_comment", "created")).unwrap();
    payload["comment"]["id"] = comment.id.into();
    payload["comment"]["body"] = comment.body.as_str().into();
    payload["comment"]["user"]["login"] = comment.author.as_str().into();
    payload["issue"]["number"] = comment.issue.into();
    payload["installation"]["id"] = installation.into();
    serde_json::to_vec(&payload).unwrap()
}

async fn post_delivery(sam: &SamServer, secret: &str, body: &[u8]) -> (u16, String) {
    post_event(sam, "issue_comment", secret, body).await
}

async fn post_event(sam: &SamServer, event: &str, secret: &str, body: &[u8]) -> (u16, String) {
    let answer = http_client()
        .post(format!("{}/api/github/webhook", sam.url))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
        .header("x-hub-signature-256", fixtures::sign(secret, body))
        .body(body.to_vec())
        .send()
        .await
        .expect("posting a delivery");
    (answer.status().as_u16(), answer.text().await.unwrap())
}

#[tokio::test]
async fn a_fresh_sam_registers_its_app_on_github_and_handles_the_first_delivery() {
    let mut git = GitServer::new();
    git.create_repo(REPO);
    let github = GitHubStandIn::start().await;
    git.also_serve(github.url());
    github.use_git_server(git.dir());
    github.sign_in_as("octocat");
    let db = TestDatabase::create().await;
    let launch = Launch {
        without_app: true,
        ..Launch::default()
    };
    let sam = SamServer::launch(&github, &git, &db, &[], launch).await;

    // Without an App, deliveries are refused in words, and the front page says what is
    // missing without offering the form to whoever comes by.
    let (status, text) = post_delivery(&sam, WEBHOOK_SECRET, b"{}").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("no GitHub App"), "{text}");
    let mut stranger = Visitor::default();
    let front = stranger.get(&format!("{}/", sam.url)).await;
    assert_eq!(front.status, 200);
    assert!(front.body.contains("no GitHub App yet"), "{}", front.body);
    assert!(!front.body.contains("name=\"manifest\""), "{}", front.body);
    let wrong = stranger.get(&format!("{}/?setup=guess", sam.url)).await;
    assert_eq!(wrong.status, 403);
    assert!(
        wrong
            .body
            .contains("This setup code is not the one sam wrote"),
        "{}",
        wrong.body
    );
    assert!(
        wrong.body.contains("SAM_DATA_DIR/setup-link"),
        "{}",
        wrong.body
    );

    // The operator opens the setup link sam left in its data directory.
    let link_file = sam.data_dir.path().join("setup-link");
    let mode = std::fs::metadata(&link_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the setup link is sam's user's alone");
    let link = std::fs::read_to_string(&link_file).unwrap();
    // The App may be named otherwise, and registered for an organization.
    let mut other = Visitor::default();
    let for_org = other
        .get(&format!("{}&name=Our+sam&org=acme", link.trim()))
        .await;
    assert_eq!(for_org.status, 200, "{}", for_org.body);
    // The tests' sam is on 127.0.0.1, where GitHub's webhooks cannot reach it.
    assert!(
        for_org.body.contains("GitHub cannot deliver webhooks to"),
        "{}",
        for_org.body
    );
    let action = attribute_after(&for_org.body, "<form method=\"post\"", "action").unwrap();
    assert!(
        action.starts_with(&format!(
            "{}/organizations/acme/settings/apps/new?state=",
            github.url()
        )),
        "{action}"
    );
    let manifest = attribute_after(&for_org.body, "name=\"manifest\"", "value").unwrap();
    let parsed: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(parsed["name"], "Our sam");
    let bad_org = other.get(&format!("{}&org=not+a+login", link.trim())).await;
    assert_eq!(bad_org.status, 400, "{}", bad_org.body);

    let mut operator = Visitor::default();
    let form_page = operator.get(link.trim()).await;
    assert_eq!(form_page.status, 200, "{}", form_page.body);
    let action = attribute_after(&form_page.body, "<form method=\"post\"", "action")
        .expect("a form posting to GitHub");
    assert!(
        action.starts_with(&format!("{}/settings/apps/new?state=", github.url())),
        "{action}"
    );
    let manifest =
        attribute_after(&form_page.body, "name=\"manifest\"", "value").expect("the manifest field");
    let parsed: Value = serde_json::from_str(&manifest).expect("the manifest is JSON");
    assert_eq!(
        parsed["hook_attributes"]["url"],
        format!("{}/api/github/webhook", sam.url)
    );

    // A code that comes back with another state is refused, and registers nothing.
    let forged = operator
        .get(&format!(
            "{}/setup/github/done?code=abc&state=other",
            sam.url
        ))
        .await;
    assert_eq!(forged.status, 400, "{}", forged.body);

    // The browser posts the form to GitHub, which registers the App and sends it back.
    let done = operator
        .post_form(&action, &[("manifest", manifest.as_str())])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.url
            .starts_with(&format!("{}/setup/github/done?code=", sam.url))
    );
    let slug = github.app_slug();
    assert!(done.body.contains(&slug), "{}", done.body);
    assert!(
        done.body
            .contains(&format!("{}/apps/{slug}/installations/new", github.url())),
        "{}",
        done.body
    );
    let stored = sam.data_dir.path().join("github-app.json");
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the App's key is sam's user's alone");

    // Registering twice is refused: the App sam runs as stays.
    let again = operator.get(link.trim()).await;
    assert!(again.body.contains(&slug), "{}", again.body);
    assert!(!again.body.contains("name=\"manifest\""), "{}", again.body);

    // Someone installs it; the first delivery, signed with the secret GitHub generated, is
    // accepted and answered, as the new App.
    let installation = github.add_installation("Codertocat");
    github.add_repo(REPO, installation);
    let comment = github.add_comment(REPO, 1, "Codertocat", "/sam help");
    let secret = github
        .webhook_secret()
        .expect("GitHub made a webhook secret");
    let payload = announce(&comment, installation);
    let (status, text) = post_delivery(&sam, WEBHOOK_SECRET, &payload).await;
    assert_eq!(status, 401, "the old test secret means nothing now: {text}");
    let (status, text) = post_delivery(&sam, &secret, &payload).await;
    assert_eq!(status, 202, "{text}");
    let reply = github.wait_for_comment(REPO, 1, WAIT).await;
    assert!(reply.body.contains("/sam open"), "{}", reply.body);
    assert_eq!(reply.author, format!("{slug}[bot]"));
}

#[tokio::test]
async fn a_registered_app_survives_a_restart() {
    let git = GitServer::new();
    let github = GitHubStandIn::start().await;
    github.sign_in_as("octocat");
    let db = TestDatabase::create().await;
    let launch = || Launch {
        without_app: true,
        ..Launch::default()
    };
    let sam = SamServer::launch(&github, &git, &db, &[], launch()).await;
    let link = std::fs::read_to_string(sam.data_dir.path().join("setup-link")).unwrap();
    let mut operator = Visitor::default();
    let page = operator.get(link.trim()).await;
    let action = attribute_after(&page.body, "<form method=\"post\"", "action").unwrap();
    let manifest = attribute_after(&page.body, "name=\"manifest\"", "value").unwrap();
    let done = operator
        .post_form(&action, &[("manifest", manifest.as_str())])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let slug = github.app_slug();
    let mut sam = sam;
    let data_dir = std::mem::replace(&mut sam.data_dir, tempfile::tempdir().unwrap());
    drop(sam);

    // Restarted on the same data directory, sam runs as the App at once.
    let restarted = Launch {
        data_dir: Some(data_dir),
        ..launch()
    };
    let sam = SamServer::launch(&github, &git, &db, &[], restarted).await;
    let front = Visitor::default().get(&format!("{}/", sam.url)).await;
    assert!(
        front
            .body
            .contains(&format!("runs as the GitHub App <strong>{slug}")),
        "{}",
        front.body
    );
    assert!(!sam.data_dir.path().join("setup-link").exists());
    let secret = github.webhook_secret().unwrap();
    let (status, text) = post_event(&sam, "ping", &secret, br#"{"zen":"hello"}"#).await;
    assert_eq!(status, 202, "{text}");
}

#[tokio::test]
async fn while_the_webhook_secret_changes_old_and_new_are_both_accepted() {
    let git = GitServer::new();
    let github = GitHubStandIn::start().await;
    let db = TestDatabase::create().await;
    let new_secret = "the secret GitHub is switching to";
    let settings = [
        ("GITHUB_WEBHOOK_SECRET", new_secret),
        ("GITHUB_WEBHOOK_SECRET_PREVIOUS", WEBHOOK_SECRET),
    ];
    let sam = SamServer::start_with(&github, &git, &db, &settings).await;
    let ping = br#"{"zen":"Keep it logically awesome."}"#;
    for secret in [WEBHOOK_SECRET, new_secret] {
        let (status, text) = post_event(&sam, "ping", secret, ping).await;
        assert_eq!(status, 202, "signed with {secret:?}: {text}");
    }
    let (status, text) = post_event(&sam, "ping", "some other secret", ping).await;
    assert_eq!(status, 401, "{text}");
    drop(sam);

    // Once the rotation is over, the old secret is refused.
    let settings = [("GITHUB_WEBHOOK_SECRET", new_secret)];
    let sam = SamServer::start_with(&github, &git, &db, &settings).await;
    let (status, _) = post_event(&sam, "ping", WEBHOOK_SECRET, ping).await;
    assert_eq!(status, 401);
    let (status, text) = post_event(&sam, "ping", new_secret, ping).await;
    assert_eq!(status, 202, "{text}");
}

/// `sam receive`, configured as the server is.
async fn receive(stage: &Stage, args: &[&str]) -> std::process::Output {
    let github = &stage.github;
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sam"))
        .arg("receive")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", stage.db.url())
        .env("GITHUB_APP_ID", github.app_id().to_string())
        .env("GITHUB_APP_SLUG", github.app_slug())
        .env("GITHUB_APP_PRIVATE_KEY", github.private_key_pem())
        .env("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("GITHUB_CLIENT_ID", github.client_id())
        .env("GITHUB_CLIENT_SECRET", github.client_secret())
        .output()
        .await
        .expect("running sam receive")
}

/// `sam receive`'s arguments for a comment in `file`, delivered to `url`.
fn receive_args<'a>(file: &'a str, url: &'a str) -> [&'a str; 6] {
    ["--event", "issue_comment", "--payload", file, "--url", url]
}

#[tokio::test]
async fn sam_receive_signs_and_delivers_a_payload_to_a_running_sam() {
    let stage = Stage::start(Fixture::Issues).await;
    let (comment, payload) = stage.write(1, "Codertocat", "/sam help");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("comment.json");
    std::fs::write(&file, &payload).unwrap();
    let file = file.to_str().unwrap();
    let args = receive_args(file, &stage.sam.url);

    let output = receive(&stage, &args).await;
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(printed.starts_with("202"), "{printed}");
    assert!(printed.contains("stored"), "{printed}");
    let reply = stage
        .github
        .wait_for_comment(stage.repo, comment.issue, WAIT)
        .await;
    assert!(reply.body.contains("/sam open"), "{}", reply.body);

    // Each run is a new delivery: a second one is stored again, and the comment, already
    // answered, is not answered twice.
    let output = receive(&stage, &args).await;
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("202"));
    stage.wait_until_handled(2).await;
    assert_eq!(stage.replies(1).len(), 1);

    // A file that is not JSON is refused before anything is sent.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, b"{ not json").unwrap();
    let args = receive_args(broken.to_str().unwrap(), &stage.sam.url);
    let output = receive(&stage, &args).await;
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("is not JSON"), "{error}");

    // A URL where sam takes no deliveries is named as the mistake it is.
    let elsewhere = format!("{}/healthz", stage.sam.url);
    let args = receive_args(file, &elsewhere);
    let output = receive(&stage, &args).await;
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("nothing takes deliveries at"), "{error}");
    assert_eq!(stage.deliveries().await.len(), 2);
}

#[tokio::test]
async fn a_setup_link_left_from_before_an_app_was_set_is_removed() {
    let (mut sam, (github, git, db)) = SamServer::without_app().await;
    assert!(sam.data_dir.path().join("setup-link").exists());
    let data_dir = std::mem::replace(&mut sam.data_dir, tempfile::tempdir().unwrap());
    drop(sam);

    // Started again with the App's settings, sam has no use for the link.
    let with_app = Launch {
        data_dir: Some(data_dir),
        ..Launch::default()
    };
    let sam = SamServer::launch(&github, &git, &db, &[], with_app).await;
    assert!(!sam.data_dir.path().join("setup-link").exists());
}
