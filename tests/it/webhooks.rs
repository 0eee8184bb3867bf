//! The webhook endpoint as GitHub and operators meet it: what it accepts, what it refuses
//! and with which status, that a refused delivery leaves no trace, that a redelivery is
//! acted on once, and that `/healthz` tells the truth about the database.

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::server::{SamServer, WEBHOOK_SECRET};
use crate::stage::{Fixture, Stage, WAIT};
use crate::support::fixtures;
use crate::support::http_client;

/// GitHub's cap on payloads, which sam enforces: 25 MiB.
const MAX_BODY: usize = 25 * 1024 * 1024;

/// The headers GitHub sends with a delivery of `body`, validly signed; tests take some
/// away or change them.
fn github_headers(event: &str, body: &[u8]) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("content-type", "application/json".to_owned()),
        ("x-github-event", event.to_owned()),
        ("x-github-delivery", uuid::Uuid::new_v4().to_string()),
        ("x-hub-signature-256", fixtures::sign(WEBHOOK_SECRET, body)),
    ])
}

/// Posts `body` to sam's webhook endpoint with exactly `headers`; returns the status and
/// the text of the answer.
async fn post(
    sam: &SamServer,
    headers: &BTreeMap<&'static str, String>,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let mut request = http_client().post(format!("{}/api/github/webhook", sam.url));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.body(body).send().await.expect("posting to sam");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

/// The legacy `X-Hub-Signature` GitHub also sends: HMAC-SHA1 of `body`.
fn sha1_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn healthz(sam: &SamServer) -> StatusCode {
    http_client()
        .get(format!("{}/healthz", sam.url))
        .send()
        .await
        .expect("asking /healthz")
        .status()
}

/// Asserts that sam stored no delivery and asked GitHub for nothing.
async fn assert_nothing_kept(stage: &Stage) {
    let stored = stage.deliveries().await;
    assert!(
        stored.is_empty(),
        "refused deliveries were stored: {stored:#?}"
    );
    let requests = stage.github.requests();
    assert!(
        requests.is_empty(),
        "sam called GitHub about refused deliveries: {requests:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_payload_signed_is_accepted_and_handled_and_sam_stays_healthy() {
    let stage = Stage::start(Fixture::Issues).await;
    let all = fixtures::all_webhooks();

    for (event, variant, body) in &all {
        let delivery = format!("fixture-{event}-{variant}");
        let answer = stage.sam.deliver(event, &delivery, body).await;
        assert_eq!(
            answer.status(),
            StatusCode::ACCEPTED,
            "{event}/{variant}: {}",
            answer.text().await.unwrap_or_default()
        );
    }

    stage.wait_until_handled(all.len()).await;
    assert_eq!(healthz(&stage.sam).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_payload_with_a_wrong_signature_is_refused_and_leaves_no_trace() {
    let stage = Stage::start(Fixture::Issues).await;

    for (event, variant, body) in fixtures::all_webhooks() {
        let mut headers = github_headers(&event, &body);
        let forged = fixtures::sign("not the webhook secret", &body);
        headers.insert("x-hub-signature-256", forged);
        let (status, text) = post(&stage.sam, &headers, body).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{event}/{variant}: {text}"
        );
    }

    assert_nothing_kept(&stage).await;
    assert_eq!(healthz(&stage.sam).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_without_a_valid_sha256_signature_are_refused() {
    let stage = Stage::start(Fixture::Issues).await;
    let body = fixtures::webhook("ping", "app");
    let good = fixtures::sign(WEBHOOK_SECRET, &body);
    let digest = good.strip_prefix("sha256=").expect("sha256= prefix");

    let mut variants: Vec<(&str, BTreeMap<&'static str, String>)> = Vec::new();
    let mut headers = github_headers("ping", &body);
    headers.remove("x-hub-signature-256");
    variants.push(("no signature header", headers.clone()));
    headers.insert("x-hub-signature", sha1_signature(WEBHOOK_SECRET, &body));
    variants.push(("only the legacy sha1 X-Hub-Signature", headers));
    for (case, value) in [
        ("an empty signature", String::new()),
        ("sha256= and nothing", "sha256=".to_owned()),
        (
            "a sha1 signature in the sha256 header",
            sha1_signature(WEBHOOK_SECRET, &body),
        ),
        (
            "a digest one digit short",
            good[..good.len() - 1].to_owned(),
        ),
        ("a digest one byte long", format!("{good}00")),
        ("the digest without sha256=", digest.to_owned()),
        (
            "a signature over other bytes",
            fixtures::sign(WEBHOOK_SECRET, b"{\"zen\":\"other bytes\"}"),
        ),
    ] {
        let mut headers = github_headers("ping", &body);
        headers.insert("x-hub-signature-256", value);
        variants.push((case, headers));
    }

    for (case, headers) in &variants {
        let (status, text) = post(&stage.sam, headers, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {text}");
    }
    assert_nothing_kept(&stage).await;

    // The same delivery, signed as GitHub signs it, is taken: only the signature was wrong.
    let (status, text) = post(&stage.sam, &github_headers("ping", &body), body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_unsupported_or_malformed_deliveries_get_a_4xx_and_are_not_stored() {
    let stage = Stage::start(Fixture::Issues).await;
    let ping = fixtures::webhook("ping", "app");

    let mut too_big = b"{\"zen\":\"".to_vec();
    too_big.resize(MAX_BODY + 1 - 2, b'x');
    too_big.extend_from_slice(b"\"}");
    let (status, _) = post(&stage.sam, &github_headers("ping", &too_big), too_big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "a body over 25 MiB");

    // GitHub's other content type: the JSON as a form field, signed over the form's bytes.
    let form = format!("payload={}", urlencoding::encode_binary(&ping)).into_bytes();
    let mut headers = github_headers("ping", &form);
    headers.insert(
        "content-type",
        "application/x-www-form-urlencoded".to_owned(),
    );
    let (status, text) = post(&stage.sam, &headers, form).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{text}");

    let cases: [(&str, &[u8], Option<&str>); 4] = [
        ("malformed JSON", b"{\"action\": \"created\",", None),
        ("JSON with trailing bytes", b"{\"zen\": \"x\"} }", None),
        ("no X-GitHub-Event", &ping, Some("x-github-event")),
        ("no X-GitHub-Delivery", &ping, Some("x-github-delivery")),
    ];
    for (case, body, missing) in cases {
        let mut headers = github_headers("ping", body);
        if let Some(name) = missing {
            headers.remove(name);
        }
        let (status, text) = post(&stage.sam, &headers, body.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {text}");
    }

    assert_nothing_kept(&stage).await;
    assert_eq!(healthz(&stage.sam).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_comment_is_stored_once_and_answered_once() {
    let stage = Stage::start(Fixture::Issues).await;

    // GitHub's "Redeliver" button: the same delivery id again.
    let (_, payload) = stage.write(1, "octocat", "/sam help");
    let delivery = stage.deliver(&payload).await;
    let again = stage
        .sam
        .deliver("issue_comment", &delivery, &payload)
        .await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "a redelivery is acknowledged"
    );

    // The same comment announced twice under different delivery ids.
    let (_, payload) = stage.write(2, "octocat", "/sam help");
    stage.deliver(&payload).await;
    stage.deliver(&payload).await;

    stage.wait_until_handled(3).await;
    let stored = stage.deliveries().await;
    let copies = stored.iter().filter(|(id, _, _)| *id == delivery).count();
    assert_eq!(copies, 1, "the redelivery was stored again: {stored:#?}");
    for issue in [1, 2] {
        let replies = stage.replies(issue);
        assert_eq!(replies.len(), 1, "issue {issue}: {replies:#?}");
        assert!(
            replies[0].body.contains("| `/sam help` |"),
            "{}",
            replies[0].body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_says_503_while_the_database_refuses_connections_and_recovers() {
    let stage = Stage::start(Fixture::Issues).await;
    assert_eq!(healthz(&stage.sam).await, StatusCode::OK);
    let mut admin = admin_connection().await;
    let database = stage.db.name();

    set_allow_connections(&mut admin, database, false).await;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .execute(&mut admin)
    .await
    .expect("ending the database's connections");

    wait_for_health(&stage.sam, StatusCode::SERVICE_UNAVAILABLE).await;
    // A delivery that cannot be stored is not acknowledged, so GitHub keeps it.
    let body = fixtures::webhook("ping", "app");
    let answer = stage
        .sam
        .deliver("ping", "while-the-database-is-away", &body)
        .await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);

    set_allow_connections(&mut admin, database, true).await;
    wait_for_health(&stage.sam, StatusCode::OK).await;
    let answer = stage
        .sam
        .deliver("ping", "while-the-database-is-away", &body)
        .await;
    assert_eq!(
        answer.status(),
        StatusCode::ACCEPTED,
        "the redelivery is stored"
    );
}

/// A connection to the server's own database, from which test databases are managed.
async fn admin_connection() -> PgConnection {
    let url = std::env::var("SAM_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .expect("DATABASE_URL is set for the integration tests");
    PgConnection::connect(&url)
        .await
        .expect("connecting to the test server's own database")
}

async fn set_allow_connections(admin: &mut PgConnection, database: &str, allow: bool) {
    let sql = format!(r#"ALTER DATABASE "{database}" ALLOW_CONNECTIONS {allow}"#);
    sqlx::query(AssertSqlSafe(sql))
        .execute(admin)
        .await
        .expect("changing ALLOW_CONNECTIONS");
}

/// Asks `/healthz` until it answers `expected`; each answer takes at most the pool's
/// acquire timeout, and the whole wait is bounded.
async fn wait_for_health(sam: &SamServer, expected: StatusCode) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = healthz(sam).await;
        if status == expected {
            return;
        }
        assert!(
            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
            "/healthz answered {status}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz still answered {status}, not {expected}, after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
