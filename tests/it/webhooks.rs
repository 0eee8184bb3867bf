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

/// The two content types a GitHub webhook can be set to.
const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// `body` as GitHub sends it when the webhook's content type is a form: one field,
/// `payload`, holding the JSON, percent-encoded.
fn form_encoded(body: &[u8]) -> Vec<u8> {
    format!("payload={}", urlencoding::encode_binary(body)).into_bytes()
}

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
    let response = send(sam, headers, body).await;
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

/// [`post`], for the whole answer.
async fn send(
    sam: &SamServer,
    headers: &BTreeMap<&'static str, String>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = http_client().post(format!("{}/api/github/webhook", sam.url));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.body(body).send().await.expect("posting to sam")
}

/// A `ping` payload of exactly `size` bytes, its `zen` padded out.
fn ping_of(size: usize) -> Vec<u8> {
    let mut body = b"{\"zen\":\"".to_vec();
    body.resize(size - 2, b'x');
    body.extend_from_slice(b"\"}");
    body
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
        ("an uppercase SHA256= prefix", format!("SHA256={digest}")),
        ("a space inside the header", format!("sha256= {digest}")),
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
    let (status, text) = post(&stage.sam, &github_headers("ping", &body), body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");

    // Hex digits are case-blind: the same digest in capitals is the same signature.
    let mut headers = github_headers("ping", &body);
    headers.insert(
        "x-hub-signature-256",
        format!("sha256={}", digest.to_uppercase()),
    );
    let (status, text) = post(&stage.sam, &headers, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "uppercase hex: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_encoded_delivery_is_checked_over_the_form_and_acted_on_like_json() {
    let stage = Stage::start(Fixture::Issues).await;
    let (comment, payload) = stage.write(1, "octocat", "/sam help");
    let form = form_encoded(&payload);

    // Signed over the JSON inside rather than the bytes sent: not GitHub's signature.
    let mut headers = github_headers("issue_comment", &payload);
    headers.insert("content-type", FORM.to_owned());
    let (status, text) = post(&stage.sam, &headers, form.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert_nothing_kept(&stage).await;

    let mut headers = github_headers("issue_comment", &form);
    headers.insert("content-type", format!("{FORM}; charset=utf-8"));
    let (status, text) = post(&stage.sam, &headers, form).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");

    stage.wait_until_handled(1).await;
    let replies = stage.replies(1);
    assert_eq!(replies.len(), 1, "{replies:#?}");
    assert!(
        replies[0].body.contains("| `/sam help` |"),
        "{}",
        replies[0].body
    );
    assert_eq!(stage.github.reactions(comment.id).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_signed_deliveries_are_kept_and_get_the_answer_they_call_for() {
    let stage = Stage::start(Fixture::Issues).await;
    let repo = stage.repo;
    let mut silent: Vec<(&str, String, Vec<u8>)> = Vec::new();

    let comment = stage.github.add_comment(repo, 1, "octocat", "/sam help");
    let mut payload = stage.announce("created", &comment);
    payload["action"] = "pinned".into();
    silent.push((
        "an action sam does not know",
        "issue_comment".into(),
        payload.to_string().into_bytes(),
    ));
    for event in ["star", "workflow_job", "security_advisory"] {
        let body = br#"{"action":"created","sender":{"login":"octocat","id":1}}"#.to_vec();
        silent.push(("an event sam does not handle", event.into(), body));
    }
    silent.push((
        "ping",
        "ping".into(),
        fixtures::webhook("ping", "repository"),
    ));
    silent.push((
        "push",
        "push".into(),
        fixtures::webhook("push", "new-branch"),
    ));

    // Commands only look like commands: nothing is said, nothing reacted to.
    let mut look_alikes = Vec::new();
    for body in [
        "/samantha help",
        "/sam-help",
        "@sam help",
        "x /sam help",
        "- /sam help",
        "# /sam help",
        "<b>/sam help</b>",
        "> /sam help",
        "`/sam help`",
    ] {
        let comment = stage.github.add_comment(repo, 2, "octocat", body);
        look_alikes.push(comment.id);
        let payload = stage.announce("created", &comment);
        silent.push((
            "a look-alike",
            "issue_comment".into(),
            payload.to_string().into_bytes(),
        ));
    }
    for (_, event, body) in &silent {
        let answer = stage
            .sam
            .deliver(event, &uuid::Uuid::new_v4().to_string(), body)
            .await;
        assert_eq!(answer.status(), StatusCode::ACCEPTED, "{event}");
    }

    // Formatting variants and payloads GitHub may grow are answered, each once.
    let mut answered = Vec::new();
    for (issue, body) in [
        (3, "/SAM HELP"),
        (4, "Hello!\r\n\t /sam   help\t\r\n"),
        (5, "thanks\r/sam help"),
    ] {
        let (comment, payload) = stage.write(issue, "octocat", body);
        stage.deliver(&payload).await;
        answered.push((issue, comment.id));
    }
    let (comment, payload) = stage.write(6, "octocat", "/sam help");
    let mut payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    payload["a_field_github_added_later"] = serde_json::json!({"nested": [1, null, "x"]});
    payload["comment"]["reactions"] = serde_json::json!("not the usual shape");
    stage.deliver(&serde_json::to_vec(&payload).unwrap()).await;
    answered.push((6, comment.id));
    let (comment, payload) = stage.write(7, "octocat", "/sam help");
    let mut payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    payload.as_object_mut().unwrap().remove("installation");
    stage.deliver(&serde_json::to_vec(&payload).unwrap()).await;
    answered.push((7, comment.id));

    stage
        .wait_until_handled(silent.len() + answered.len())
        .await;
    for (issue, comment) in answered {
        let replies = stage.replies(issue);
        assert_eq!(replies.len(), 1, "issue {issue}: {replies:#?}");
        assert!(
            replies[0].body.contains("| `/sam help` |"),
            "{}",
            replies[0].body
        );
        assert_eq!(stage.github.reactions(comment).len(), 1, "issue {issue}");
    }
    for issue in [1, 2] {
        assert!(
            stage.replies(issue).is_empty(),
            "issue {issue}: {:#?}",
            stage.replies(issue)
        );
    }
    for id in look_alikes {
        assert!(stage.github.reactions(id).is_empty(), "comment {id}");
    }
    // Events sam never acts on are kept (a redelivery is known) but no worker claims them.
    let claimed: Vec<(String, i32)> = sqlx::query_as(
        "SELECT event, attempts FROM deliveries WHERE event <> 'issue_comment' ORDER BY id",
    )
    .fetch_all(&stage.pool)
    .await
    .unwrap();
    assert_eq!(claimed.len(), 5, "{claimed:?}");
    assert!(
        claimed.iter().all(|(_, attempts)| *attempts == 0),
        "{claimed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_not_the_event_it_claims_is_kept_and_failed_without_retries() {
    let stage = Stage::start(Fixture::Issues).await;
    for (event, body) in [
        ("issue_comment", b"[]".to_vec()),
        ("issue_comment", br#"{"action":"created"}"#.to_vec()),
        (
            "pull_request",
            br#"{"action":"opened","number":"seven"}"#.to_vec(),
        ),
        ("check_run", b"null".to_vec()),
    ] {
        let answer = stage
            .sam
            .deliver(event, &uuid::Uuid::new_v4().to_string(), &body)
            .await;
        assert_eq!(answer.status(), StatusCode::ACCEPTED, "{event}");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stored = stage.deliveries().await;
        if stored.len() == 4 && stored.iter().all(|(_, state, _)| state == "failed") {
            for (delivery, _, error) in &stored {
                let error = error.as_deref().unwrap_or_default();
                assert!(error.contains("unreadable"), "{delivery}: {error}");
            }
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stored:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT attempts FROM deliveries")
        .fetch_all(&stage.pool)
        .await
        .unwrap();
    assert_eq!(
        attempts,
        [1, 1, 1, 1],
        "an unreadable payload is not tried again"
    );
    assert!(stage.github.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_few_large_bodies_are_read_at_once_and_small_ones_never_wait() {
    use tokio::io::AsyncWriteExt;
    let stage = Stage::start(Fixture::Issues).await;
    let address = stage.sam.url.trim_start_matches("http://").to_owned();
    let large = ping_of(2 * 1024 * 1024);

    // Clients that send a large body's headers and then dawdle: each holds a reading.
    let mut dawdlers = Vec::new();
    for _ in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST /api/github/webhook HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\nx-github-event: ping\r\nx-github-delivery: {}\r\ncontent-length: {}\r\n\r\n{{",
            uuid::Uuid::new_v4(),
            large.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        dawdlers.push(stream);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let refused = loop {
        let response = send(&stage.sam, &github_headers("ping", &large), large.clone()).await;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a fifth large body was read while four were: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused.headers()["retry-after"], "60");
    assert!(refused.text().await.unwrap().contains("redeliver"));

    // A delivery of ordinary size goes in meanwhile.
    let small = ping_of(10_000);
    let (status, text) = post(&stage.sam, &github_headers("ping", &small), small).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");

    // Once the dawdlers go, large bodies are read again.
    drop(dawdlers);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, text) = post(&stage.sam, &github_headers("ping", &large), large.clone()).await;
        if status == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "large bodies stay refused after the dawdlers left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_unsupported_or_malformed_deliveries_get_a_4xx_and_are_not_stored() {
    let stage = Stage::start(Fixture::Issues).await;
    let ping = fixtures::webhook("ping", "app");

    let too_big = ping_of(MAX_BODY + 1);
    let (status, text) = post(&stage.sam, &github_headers("ping", &too_big), too_big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "a body over 25 MiB");
    assert!(text.contains("\"message\""), "answered in JSON: {text}");

    for content_type in ["text/plain", "application/xml", "multipart/form-data"] {
        let mut headers = github_headers("ping", &ping);
        headers.insert("content-type", content_type.to_owned());
        let (status, text) = post(&stage.sam, &headers, ping.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}: {text}"
        );
    }
    let mut headers = github_headers("ping", &ping);
    headers.remove("content-type");
    let (status, text) = post(&stage.sam, &headers, ping.clone()).await;
    assert_eq!(
        status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "no content type: {text}"
    );

    let no_payload_field = format!("zen={}", urlencoding::encode_binary(&ping)).into_bytes();
    let not_json_in_form = b"payload=%7B%22zen%22".to_vec();
    let cases: [(&str, &[u8], Option<&str>, &str); 6] = [
        ("malformed JSON", b"{\"action\": \"created\",", None, JSON),
        (
            "JSON with trailing bytes",
            b"{\"zen\": \"x\"} }",
            None,
            JSON,
        ),
        ("no X-GitHub-Event", &ping, Some("x-github-event"), JSON),
        (
            "no X-GitHub-Delivery",
            &ping,
            Some("x-github-delivery"),
            JSON,
        ),
        (
            "a form without a payload field",
            &no_payload_field,
            None,
            FORM,
        ),
        (
            "a form whose payload is not JSON",
            &not_json_in_form,
            None,
            FORM,
        ),
    ];
    for (case, body, missing, content_type) in cases {
        let mut headers = github_headers("ping", body);
        headers.insert("content-type", content_type.to_owned());
        if let Some(name) = missing {
            headers.remove(name);
        }
        let (status, text) = post(&stage.sam, &headers, body.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {text}");
        if missing.is_some() {
            assert!(text.contains("header is missing"), "{case}: {text}");
        }
    }
    // A delivery id no GitHub sends is refused for what it is, not called missing.
    let mut headers = github_headers("ping", &ping);
    headers.insert("x-github-delivery", "d".repeat(201));
    let (status, text) = post(&stage.sam, &headers, ping.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("longer than 200 characters"), "{text}");

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
async fn many_copies_of_one_delivery_at_once_are_stored_once_and_answered_once() {
    // Deliveries that arrive together are stored together (several to a commit); copies of
    // one delivery among them must still make one row, one 202 and one reply.
    let stage = Stage::start(Fixture::Issues).await;
    let (_, payload) = stage.write(1, "octocat", "/sam help");
    let delivery = "the-same-delivery-many-times";
    let answers = futures_util::future::join_all(
        (0..24).map(|_| stage.sam.deliver("issue_comment", delivery, &payload)),
    )
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    statuses.sort_unstable();
    let mut expected = vec![200; 23];
    expected.push(202);
    assert_eq!(
        statuses, expected,
        "one copy is new, the others redeliveries"
    );

    stage.wait_until_handled(1).await;
    let stored = stage.deliveries().await;
    assert_eq!(stored.len(), 1, "{stored:#?}");
    assert_eq!(stage.replies(1).len(), 1, "{:#?}", stage.replies(1));
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
