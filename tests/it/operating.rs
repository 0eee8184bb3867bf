//! Operating sam: `/metrics`, JSON logs and a clean stop, and the status page.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::scene::{REQUESTER, ready_workspace_with};
use crate::server::{Launch, SamServer};
use crate::stage::{Fixture, Stage, WAIT};
use crate::support::db::TestDatabase;
use crate::support::fixtures;
use crate::support::git::GitServer;
use crate::support::github::{Failure, GitHubStandIn};
use crate::support::http_client;
use crate::support::visitor::Visitor;

/// One sample of a Prometheus text exposition: its name and labels.
type Series = (String, BTreeMap<String, String>);

/// Parses the text format strictly enough that a malformed line fails the test.
fn parse_metrics(text: &str) -> BTreeMap<Series, f64> {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line:?}"));
                let labels = inner
                    .split(',')
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once('=').expect("label=value");
                        let value = value
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .unwrap_or_else(|| panic!("unquoted label in {line:?}"));
                        (key.to_owned(), value.to_owned())
                    })
                    .collect();
                (name, labels)
            }
            None => (series, BTreeMap::new()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line:?}"
        );
        samples.insert((name.to_owned(), labels), value);
    }
    samples
}

fn sample(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .get(&(name.to_owned(), labels))
        .copied()
        .unwrap_or(0.0)
}

async fn scrape(sam: &SamServer) -> BTreeMap<Series, f64> {
    let response = http_client()
        .get(format!("{}/metrics", sam.url))
        .send()
        .await
        .expect("scraping");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    parse_metrics(&response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_a_delivery_its_command_and_the_calls_to_github() {
    let stage = Stage::start(Fixture::Issues).await;
    let before = scrape(&stage.sam).await;
    assert_eq!(
        sample(
            &before,
            "sam_webhook_deliveries_total",
            &[("event", "issue_comment"), ("outcome", "stored")]
        ),
        0.0
    );
    assert_eq!(
        sample(&before, "sam_workspaces", &[("state", "ready")]),
        0.0
    );
    let sessions = ("sam_terminal_sessions_open".to_owned(), BTreeMap::new());
    assert_eq!(
        before.get(&sessions),
        Some(&0.0),
        "the sessions gauge is there before the first terminal"
    );

    stage
        .github
        .set_rate_limit_remaining(stage.installation(), 4321);
    let (_, payload) = stage.write(1, "Codertocat", "/sam help");
    stage.deliver(&payload).await;
    stage.wait_until_handled(1).await;

    // The worker counts its outcome after recording it; scrape until it shows.
    let deadline = tokio::time::Instant::now() + WAIT;
    let after = loop {
        let after = scrape(&stage.sam).await;
        let handled = sample(
            &after,
            "sam_deliveries_handled_total",
            &[("event", "issue_comment"), ("outcome", "done")],
        );
        if handled >= 1.0 {
            break after;
        }
        assert!(tokio::time::Instant::now() < deadline, "{after:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        sample(
            &after,
            "sam_webhook_deliveries_total",
            &[("event", "issue_comment"), ("outcome", "stored")]
        ),
        1.0
    );
    assert_eq!(
        sample(&after, "sam_commands_total", &[("command", "help")]),
        1.0
    );
    // A reaction and a reply, at least, each through the installation's token.
    assert!(
        sample(
            &after,
            "sam_github_api_calls_total",
            &[("outcome", "success")]
        ) >= 2.0,
        "{after:#?}"
    );
    assert_eq!(sample(&after, "sam_workspaces", &[("state", "ready")]), 0.0);
    // What GitHub says is left of the rate limit of the installation sam acted for.
    let installation = stage.installation().to_string();
    assert_eq!(
        sample(
            &after,
            "sam_github_rate_limit_remaining",
            &[("installation", installation.as_str())]
        ),
        4321.0,
        "{after:#?}"
    );
    assert_eq!(
        sample(
            &after,
            "sam_github_rate_limit",
            &[("installation", installation.as_str())]
        ),
        5000.0
    );

    // A delivery with a bad signature is counted as such.
    let refused = http_client()
        .post(format!("{}/api/github/webhook", stage.sam.url))
        .header("content-type", "application/json")
        .header("x-github-event", "made_up_event")
        .header("x-github-delivery", "d-1")
        .header("x-hub-signature-256", format!("sha256={}", "0".repeat(64)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let last = scrape(&stage.sam).await;
    assert_eq!(
        sample(
            &last,
            "sam_webhook_deliveries_total",
            &[("event", "other"), ("outcome", "bad_signature")]
        ),
        1.0
    );
}

/// A log file's text, and its lines read as JSON; a line that is not JSON fails the test.
fn json_lines(path: &std::path::Path) -> (String, Vec<Value>) {
    let text = std::fs::read_to_string(path).unwrap();
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (text, lines)
}

#[tokio::test]
async fn json_logs_are_json_lines_and_sam_stops_cleanly_on_sigterm() {
    let repo = "Codertocat/Hello-World";
    let git = GitServer::new();
    let github = GitHubStandIn::start().await;
    let installation = github.add_installation("Codertocat");
    github.add_repo(repo, installation);
    let db = TestDatabase::create().await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let agent_log = tempfile::NamedTempFile::new().unwrap();
    let launch = Launch {
        log_to: Some(log.path().to_owned()),
        errors_to: Some(agent_log.path().to_owned()),
        ..Launch::default()
    };
    let settings = [("SAM_LOG_FORMAT", "json")];
    let mut sam = SamServer::launch(&github, &git, &db, &settings, launch).await;
    let comment = github.add_comment(repo, 1, "Codertocat", "/sam help");
    let mut payload: Value =
        serde_json::from_slice(&fixtures::webhook("issue_comment", "created")).unwrap();
    payload["comment"]["id"] = comment.id.into();
    payload["comment"]["body"] = comment.body.as_str().into();
    payload["installation"]["id"] = installation.into();
    let delivery = "9a0b5c1e-0000-4000-8000-000000000001";
    let answer = sam
        .deliver(
            "issue_comment",
            delivery,
            &serde_json::to_vec(&payload).unwrap(),
        )
        .await;
    assert_eq!(answer.status(), 202);
    let request_id = answer.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    github.wait_for_comment(repo, 1, WAIT).await;

    let status = sam.terminate(WAIT).await;
    assert!(status.success(), "sam exited with {status} after SIGTERM");

    let (text, lines) = json_lines(log.path());
    assert!(lines.len() >= 3, "{text}");
    // The local agent writes to the standard error sam passes through: JSON too.
    let (agent_text, agent_lines) = json_lines(agent_log.path());
    assert!(
        agent_lines
            .iter()
            .any(|l| l["target"] == "sam_agent" && l["fields"]["message"] == "agent listening"),
        "{agent_text}"
    );
    for line in lines.iter().chain(&agent_lines) {
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(line["level"].is_string(), "{line}");
        assert!(line["fields"].is_object(), "{line}");
    }
    // The answer's request id and the delivery id find the request's lines and the
    // worker's.
    let stored = lines
        .iter()
        .find(|l| l["fields"]["message"] == "delivery stored")
        .unwrap_or_else(|| panic!("no 'delivery stored' line in {text}"));
    assert_eq!(
        stored["span"]["request_id"],
        request_id.as_str(),
        "{stored}"
    );
    let in_worker = lines
        .iter()
        .filter(|l| {
            l["spans"].as_array().is_some_and(|spans| {
                spans
                    .iter()
                    .any(|s| s["name"] == "delivery" && s["delivery"] == delivery)
            })
        })
        .count();
    assert!(
        in_worker >= 1,
        "no line of the worker's delivery span in {text}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["fields"]["message"], "stopped", "{text}");
}

#[tokio::test]
async fn on_sigterm_the_delivery_in_hand_is_finished_before_sam_exits() {
    let repo = "Codertocat/Hello-World";
    let git = GitServer::new();
    let github = GitHubStandIn::start().await;
    let installation = github.add_installation("Codertocat");
    github.add_repo(repo, installation);
    let db = TestDatabase::create().await;
    let mut sam = SamServer::start(&github, &git, &db).await;
    // GitHub takes the reaction at once but answers late, so the worker is caught in the
    // middle of the delivery when sam is asked to stop.
    github.fail_next(
        "POST",
        "/repos/*/*/issues/comments/*/reactions",
        Failure::SlowResponse(Duration::from_secs(3)),
    );
    let comment = github.add_comment(repo, 1, "Codertocat", "/sam help");
    let mut payload: Value =
        serde_json::from_slice(&fixtures::webhook("issue_comment", "created")).unwrap();
    payload["comment"]["id"] = comment.id.into();
    payload["comment"]["body"] = comment.body.as_str().into();
    payload["installation"]["id"] = installation.into();
    let answer = sam
        .deliver(
            "issue_comment",
            "in-hand-1",
            &serde_json::to_vec(&payload).unwrap(),
        )
        .await;
    assert_eq!(answer.status(), 202);
    github.wait_for_reaction(comment.id, WAIT).await;

    let status = sam.terminate(WAIT).await;
    assert!(status.success(), "sam exited with {status} after SIGTERM");
    let replies: Vec<_> = github
        .comments(repo, 1)
        .into_iter()
        .filter(|c| c.via_api)
        .collect();
    assert_eq!(
        replies.len(),
        1,
        "the reply was not posted before sam exited"
    );
    let state: String =
        sqlx::query_scalar("SELECT state FROM deliveries WHERE github_delivery = 'in-hand-1'")
            .fetch_one(&db.pool().await)
            .await
            .unwrap();
    assert_eq!(state, "done");
}

#[tokio::test]
async fn the_status_page_is_for_the_owner_and_operators_only() {
    let scene = ready_workspace_with("feature/status", &[("SAM_OPERATORS", "Carol, dave")]).await;
    let status_url = format!("{}/status", scene.sam.url);

    // The App's owner (the stand-in's App belongs to `sam-owner`) and an operator see it.
    for login in ["sam-owner", "carol"] {
        scene.github.sign_in_as(login);
        let mut browser = Visitor::default();
        let page = browser.get(&status_url).await;
        assert_eq!(page.status, 200, "{login}: {}", page.body);
        assert!(
            page.body.contains(&format!("Signed in as {login}")),
            "{}",
            page.body
        );
        assert!(page.body.contains("sam-test"), "{}", page.body);
        assert!(
            page.body.contains("/apps/sam-test/installations/new"),
            "{}",
            page.body
        );
        // The workspace running now, on the machine that runs it.
        assert!(page.body.contains("feature/status"), "{}", page.body);
        assert!(page.body.contains(REQUESTER), "{}", page.body);
        assert!(page.body.contains("this machine"), "{}", page.body);
    }

    // Anyone else, even with access to the repository, is refused in words.
    scene.github.sign_in_as(REQUESTER);
    let mut browser = Visitor::default();
    let page = browser.get(&status_url).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains(&format!("signed in as {REQUESTER}")),
        "{}",
        page.body
    );
    assert!(page.body.contains("SAM_OPERATORS"), "{}", page.body);
    assert!(!page.body.contains("feature/status"), "{}", page.body);

    // GitHub not knowing the App is a mistake in the settings, which waiting won't mend.
    scene.github.sign_in_as("sam-owner");
    scene.github.fail_next("GET", "/app", Failure::Status(404));
    let page = Visitor::default().get(&status_url).await;
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(
        page.body.contains("GitHub does not know the App") && page.body.contains("GITHUB_APP_ID"),
        "{}",
        page.body
    );

    // Without signing in, the page sends the browser to GitHub first.
    let unsigned = http_client().get(&status_url).send().await.unwrap();
    assert_eq!(unsigned.status(), 303);
    let location = unsigned.headers()["location"].to_str().unwrap();
    assert!(location.contains("/login/oauth/authorize"), "{location}");
}

#[tokio::test]
async fn without_an_app_the_status_page_says_why_it_cannot_sign_anyone_in() {
    let (sam, _keep) = SamServer::without_app().await;
    let page = Visitor::default().get(&format!("{}/status", sam.url)).await;
    assert_eq!(page.status, 503);
    assert!(page.body.contains("no GitHub App yet"), "{}", page.body);
}

#[tokio::test]
async fn answers_sam_gives_on_purpose_are_not_logged_as_errors() {
    let (sam, _keep) = SamServer::without_app().await;
    // Without an App, a delivery and the status page get 503 and a sentence saying why.
    let delivery = sam
        .deliver("ping", "6f0e1d2c-0000-4000-8000-000000000001", b"{}")
        .await;
    assert_eq!(delivery.status(), 503);
    let page = Visitor::default().get(&format!("{}/status", sam.url)).await;
    assert_eq!(page.status, 503);
    let missing = http_client()
        .get(format!("{}/no/such/page", sam.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let samples = scrape(&sam).await;
    assert_eq!(
        sample(&samples, "sam_log_events_total", &[("level", "error")]),
        0.0,
        "{samples:?}"
    );
}
