//! Workspaces on Hetzner Cloud hosts, against the API stand-in: the stand-in boots each
//! server by running the real `sam-agent` from the user data sam gave it, on a loopback
//! address of its own, and the agent registers with sam by redeeming its bootstrap token
//! and handing over the certificate sam then reaches it with, over TLS.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sam_protocol::frame::Frame;
use serde_json::Value;
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message;

use sam::workspaces::agent::AgentClient;

use crate::scene::{PULL, REPO, REQUESTER, ReadyWorkspace, ready_workspace_prepared, workspace_of};
use crate::support::fixtures;
use crate::support::github::PullRequestSpec;
use crate::support::hetzner::{HetznerStandIn, ServerView};
use crate::support::http_client;
use crate::support::visitor::Visitor;

const WAIT: Duration = Duration::from_secs(60);
const BRANCH: &str = "feature/on-a-host";
/// Where sam's user data writes the bootstrap token on a host.
const TOKEN_PATH: &str = "/etc/sam-agent/bootstrap-token";

/// sam with the hetzner provider against a fresh stand-in, and a workspace ready on it.
async fn hosted(extra: &[(&str, &str)]) -> (HetznerStandIn, ReadyWorkspace) {
    hosted_on(HetznerStandIn::start().await, extra).await
}

/// [`hosted`] on a stand-in prepared already.
async fn hosted_on(
    hetzner: HetznerStandIn,
    extra: &[(&str, &str)],
) -> (HetznerStandIn, ReadyWorkspace) {
    let url = hetzner.url().to_owned();
    let token = hetzner.token().to_owned();
    let mut settings = vec![
        ("SAM_PROVIDER", "hetzner"),
        ("HETZNER_API_URL", url.as_str()),
        ("HETZNER_API_TOKEN", token.as_str()),
        ("HETZNER_AGENT_URL", "https://downloads.example/sam-agent"),
        // Each agent picks a free port on its address and tells sam at registration.
        ("HETZNER_AGENT_PORT", "0"),
    ];
    settings.extend_from_slice(extra);
    let scene =
        ready_workspace_prepared(BRANCH, &settings, |git| hetzner.agents_use_git(git)).await;
    (hetzner, scene)
}

/// `body` on pull request `pull` (pushed first), and sam's status comment once it says
/// ready or failed.
async fn open_on(scene: &ReadyWorkspace, pull: u64, body: &str) -> String {
    scene.add_pull_request(&format!("feature/pull-{pull}"), pull);
    scene
        .write_on_pull_request(pull, body, &format!("open-{pull}-{}", uuid::Uuid::new_v4()))
        .await;
    scene
        .github
        .wait_for_comment_where(REPO, pull, WAIT, |c| {
            c.via_api && (c.body.contains("/w/") || c.body.contains(":x:"))
        })
        .await
        .body
}

fn link_in(body: &str) -> String {
    let start = body
        .find("](")
        .unwrap_or_else(|| panic!("no link in {body}"))
        + 2;
    let end = start + body[start..].find(')').unwrap();
    body[start..end].to_owned()
}

fn bootstrap_token(server: &ServerView) -> String {
    let document: Value =
        serde_json::from_str(server.user_data.strip_prefix("#cloud-config\n").unwrap()).unwrap();
    document["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == TOKEN_PATH)
        .and_then(|f| f["content"].as_str())
        .expect("the user data writes a bootstrap token")
        .to_owned()
}

/// Registers as an agent on port 4100 serving `certificate` (DER).
async fn register(scene: &ReadyWorkspace, token: &str, certificate: &[u8]) -> (u16, String) {
    use base64::Engine;
    let certificate = base64::engine::general_purpose::STANDARD.encode(certificate);
    let body = serde_json::json!({ "port": 4100, "certificate": certificate });
    register_with(scene, token, &body).await
}

/// [`register`] with any body.
async fn register_with(scene: &ReadyWorkspace, token: &str, body: &Value) -> (u16, String) {
    let response = http_client()
        .post(format!("{}/api/agents/register", scene.sam.url))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// `(host id, state, address)` of the host a workspace sits on.
async fn host_of(pool: &PgPool, workspace: &str) -> (uuid::Uuid, String, Option<String>) {
    sqlx::query_as(
        "SELECT h.id, h.state, h.address FROM hosts h JOIN workspaces w ON w.host_id = h.id
         WHERE w.id = $1::uuid",
    )
    .bind(workspace)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Where sam reaches the agent of a workspace's host, and the certificate it pinned:
/// `(address, port, certificate)`.
async fn agent_of(pool: &PgPool, workspace: &str) -> (String, u16, Vec<u8>) {
    let (address, port, certificate): (String, i32, Vec<u8>) = sqlx::query_as(
        "SELECT h.address, h.agent_port, h.agent_certificate FROM hosts h
         JOIN workspaces w ON w.host_id = h.id WHERE w.id = $1::uuid",
    )
    .bind(workspace)
    .fetch_one(pool)
    .await
    .unwrap();
    (address, u16::try_from(port).unwrap(), certificate)
}

/// A client of the agent at `address:port` that trusts `certificate` alone, as sam's does.
fn pinned_client(address: &str, port: u16, certificate: &[u8]) -> AgentClient {
    AgentClient::pinned(address, port, Arc::from(&[0u8; 32][..]), certificate).unwrap()
}

/// Polls `check` until it holds, failing with `what` after [`WAIT`].
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(settles(check).await, "{what} within {WAIT:?}");
}

/// Whether `check` holds within [`WAIT`].
async fn settles<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// sam's record of its hosts, workspaces and deliveries, for a failure to show.
async fn holdings(pool: &PgPool) -> String {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT format('host %s: %s, empty since %s, updated %s, server %s, error %s',
                       id, state, empty_since, updated_at, server_id, error) FROM hosts
         UNION ALL
         SELECT format('workspace %s: %s on host %s, worked by %s, error %s; events: %s',
                       w.id, w.state, w.host_id, w.worked_by, w.error,
                       (SELECT string_agg(e.state || ' at ' || e.at, ', ' ORDER BY e.id)
                        FROM workspace_events e WHERE e.workspace_id = w.id))
         FROM workspaces w
         UNION ALL
         SELECT format('delivery %s (%s): %s after %s attempts, error %s',
                       github_delivery, event, state, attempts, last_error) FROM deliveries",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| vec![(format!("cannot read sam's records: {e}"),)]);
    rows.into_iter().map(|(row,)| row + "\n").collect()
}

/// Types a command into a shell of the workspace behind `link`, through sam's relay, and
/// waits for what it prints: its arithmetic, and `branch` checked out.
async fn shell_answers(scene: &ReadyWorkspace, link: &str, branch: &str) {
    let cookie = scene.session_cookie_of(link).await;
    let request = scene.terminal_request_of(link, "t1", &cookie, &scene.sam.url);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the terminal socket opens through sam");
    let hello = Frame::Hello {
        offset: 0,
        cols: 80,
        rows: 24,
    };
    socket
        .send(Message::Binary(hello.encode().into()))
        .await
        .unwrap();
    let input = Frame::Input("echo host-says-$((6*7)); git rev-parse --abbrev-ref HEAD\n".into());
    socket
        .send(Message::Binary(input.encode().into()))
        .await
        .unwrap();
    let mut output = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = String::from_utf8_lossy(&output).into_owned();
        if text.contains("host-says-42") && text.lines().any(|l| l.trim() == branch) {
            break;
        }
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("the shell did not answer; it printed {text:?}"))
            .expect("the socket stays open")
            .unwrap();
        if let Message::Binary(bytes) = message
            && let Ok(Frame::Output { data, .. }) = Frame::decode(&bytes)
        {
            output.extend_from_slice(&data);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sam_open_creates_a_server_whose_agent_serves_the_shell() {
    let (hetzner, scene) = hosted(&[("HETZNER_LOCATION", "nbg1")]).await;
    let servers = hetzner.servers();
    assert_eq!(servers.len(), 1, "{servers:#?}");
    let server = &servers[0];
    assert_eq!(server.server_type, "cx22");
    assert_eq!(server.image, "ubuntu-24.04");
    assert_eq!(server.location, "nbg1");
    assert_eq!(
        server.labels.get("managed-by").map(String::as_str),
        Some("sam")
    );
    // Only the one-time token is in the user data: nothing of sam's lasting secrets.
    for secret in [
        hetzner.token(),
        crate::server::WEBHOOK_SECRET,
        "PRIVATE KEY",
    ] {
        assert!(
            !server.user_data.contains(secret),
            "the user data holds {secret:?}"
        );
    }

    let workspace = workspace_of(&scene.link);
    let pool = scene.database().await;
    let (_, state, address) = host_of(&pool, &workspace).await;
    assert_eq!(state, "ready");
    assert_eq!(address.as_deref(), Some(server.ip.as_str()));
    // The checkout is on the server, not beside sam.
    assert!(server.root.join(&workspace).join("README.md").is_file());
    assert!(!scene.sam.workspaces_dir().join(&workspace).exists());

    // sam pinned the certificate the agent serves: a client trusting it is served, one
    // trusting any other certificate is not, and plain HTTP gets no answer.
    let (address, port, certificate) = agent_of(&pool, &workspace).await;
    assert_eq!(address, server.ip);
    assert!(
        pinned_client(&address, port, &certificate)
            .is_healthy()
            .await
    );
    let mut other = certificate.clone();
    *other.last_mut().unwrap() ^= 1;
    assert!(
        !pinned_client(&address, port, &other).is_healthy().await,
        "the agent was trusted with a certificate other than the pinned one"
    );
    let plain = http_client()
        .get(format!("http://{address}:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "the agent answered plain HTTP: {plain:?}");
    // The agent keeps its registration and TLS key for its restarts, for root alone.
    let saved = server.state_dir.join("registration.json");
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", saved.display());

    shell_answers(&scene, &scene.link, BRANCH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_registers_before_the_api_answered_sam_is_told_to_try_again() {
    let hetzner = HetznerStandIn::start().await;
    hetzner.answer_creates_after(Duration::from_secs(2));
    let (hetzner, scene) = hosted_on(hetzner, &[]).await;
    let server = hetzner.servers().remove(0);
    let log = hetzner.agent_log(server.id);
    assert!(
        log.contains("503") && log.contains("registered with sam"),
        "the agent did not register early and then again:\n{log}"
    );
    shell_answers(&scene, &scene.link, BRANCH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_and_started_again_keeps_serving_its_workspaces() {
    let (hetzner, scene) = hosted(&[]).await;
    let server = hetzner.servers().remove(0);
    let pool = scene.database().await;
    let workspace = workspace_of(&scene.link);
    let (address, port, certificate) = agent_of(&pool, &workspace).await;
    shell_answers(&scene, &scene.link, BRANCH).await;

    // SIGKILL: the agent saves nothing on its way out. Its bootstrap token is spent.
    hetzner.restart_agent(server.id).await;
    let agent = pinned_client(&address, port, &certificate);
    eventually(
        "the restarted agent serves its pinned certificate on its port",
        || agent.is_healthy(),
    )
    .await;
    assert!(
        hetzner.agent_running(server.id),
        "the restarted agent exited"
    );
    assert_eq!(
        agent_of(&pool, &workspace).await,
        (address, port, certificate),
        "sam's record of the agent changed"
    );
    let (_, state, _) = host_of(&pool, &workspace).await;
    assert_eq!(state, "ready");

    // The workspace works through sam as before: a new shell on the same checkout.
    shell_answers(&scene, &scene.link, BRANCH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_share_a_host_while_it_has_room_and_large_ones_get_a_large_server() {
    let (hetzner, scene) = hosted(&[
        ("HETZNER_WORKSPACES_SMALL", "2"),
        ("HETZNER_SERVER_TYPE_LARGE", "cx52"),
    ])
    .await;
    let pool = scene.database().await;
    let first = workspace_of(&scene.link);

    let second = open_on(&scene, 4, "/sam open").await;
    let second = workspace_of(&link_in(&second));
    assert_eq!(
        hetzner.servers().len(),
        1,
        "the second workspace got a server of its own"
    );
    assert_eq!(
        host_of(&pool, &first).await.0,
        host_of(&pool, &second).await.0
    );

    // The host is full now.
    let third = open_on(&scene, 5, "/sam open --size small").await;
    let third = workspace_of(&link_in(&third));
    assert_ne!(
        host_of(&pool, &third).await.0,
        host_of(&pool, &first).await.0
    );
    assert_eq!(hetzner.servers().len(), 2);

    let large = open_on(&scene, 6, "/sam open --size large").await;
    let large_link = link_in(&large);
    let servers = hetzner.servers();
    assert_eq!(servers.len(), 3, "{servers:#?}");
    assert_eq!(servers[2].server_type, "cx52");
    let size: Option<String> =
        sqlx::query_scalar("SELECT size FROM workspaces WHERE id = $1::uuid")
            .bind(workspace_of(&large_link))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(size.as_deref(), Some("large"));
    shell_answers(&scene, &large_link, "feature/pull-6").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_takes_workspaces_of_one_installation_only() {
    let (hetzner, scene) = hosted(&[("HETZNER_WORKSPACES_SMALL", "3")]).await;
    let pool = scene.database().await;
    let first = workspace_of(&scene.link);

    // The same requester, on a repository of an organisation that installed the App apart.
    let other = "octo-org/elsewhere";
    let installation = scene.github.add_installation("octo-org");
    let repo_id = scene.github.add_repo(other, installation);
    scene.github.set_permission(other, REQUESTER, "write");
    scene.git.create_repo(other);
    let head = scene
        .git
        .push_branch(other, "feature/elsewhere", &[("README.md", "elsewhere\n")]);
    scene.github.add_pull_request(
        other,
        1,
        PullRequestSpec {
            head_ref: "feature/elsewhere".into(),
            head_sha: head,
            author: REQUESTER.into(),
            ..Default::default()
        },
    );
    let comment = scene.github.add_comment(other, 1, REQUESTER, "/sam open");
    let mut payload: Value = serde_json::from_slice(&fixtures::webhook(
        "issue_comment",
        "created-on-pull-request",
    ))
    .unwrap();
    payload["issue"]["number"] = 1.into();
    payload["comment"]["id"] = comment.id.into();
    payload["comment"]["body"] = "/sam open".into();
    payload["comment"]["user"]["id"] = scene.github.add_user(REQUESTER).into();
    payload["repository"]["id"] = repo_id.into();
    payload["repository"]["name"] = "elsewhere".into();
    payload["repository"]["full_name"] = other.into();
    payload["repository"]["owner"]["login"] = "octo-org".into();
    let answer = scene
        .sam
        .deliver(
            "issue_comment",
            "open-elsewhere",
            &serde_json::to_vec(&payload).unwrap(),
        )
        .await;
    assert_eq!(answer.status(), 202);
    let ready = scene
        .github
        .wait_for_comment_where(other, 1, WAIT, |c| {
            c.via_api && (c.body.contains("/w/") || c.body.contains(":x:"))
        })
        .await
        .body;
    let elsewhere = workspace_of(&link_in(&ready));

    assert_ne!(
        host_of(&pool, &elsewhere).await.0,
        host_of(&pool, &first).await.0,
        "two installations' workspaces share a host"
    );
    assert_eq!(hetzner.servers().len(), 2);
    // The first installation's next workspace still joins its host, which has room.
    let second = workspace_of(&link_in(&open_on(&scene, 4, "/sam open").await));
    assert_eq!(
        host_of(&pool, &second).await.0,
        host_of(&pool, &first).await.0
    );
    assert_eq!(hetzner.servers().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_token_works_once_and_not_after_it_expires() {
    let (hetzner, scene) = hosted(&[("HETZNER_BOOTSTRAP_TTL", "5s")]).await;
    let pool = scene.database().await;
    // A real certificate, so that only the token decides below.
    let (_, _, certificate) = agent_of(&pool, &workspace_of(&scene.link)).await;
    // The first server's agent redeemed its token: a second use is refused.
    let used = bootstrap_token(&hetzner.servers()[0]);
    let (status, body) = register(&scene, &used, &certificate).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("used already, or expired"), "{body}");
    let (status, _) = register(&scene, "not-a-token", &certificate).await;
    assert_eq!(status, 401);
    // Something that is no certificate is refused before any token is looked at.
    let (status, body) = register(&scene, &used, b"not a certificate").await;
    assert_eq!(status, 400, "{body}");
    // So is a body without the port, in words that say what is expected.
    let (status, body) = register_with(&scene, &used, &serde_json::json!({})).await;
    assert_eq!(status, 400);
    assert!(body.contains("must be JSON like"), "{body}");

    // A host that never boots never registers: its token expires, and the workspace fails.
    hetzner.hold_boots(true);
    scene.add_pull_request("feature/pull-4", 4);
    scene
        .write_on_pull_request(4, "/sam open --size medium", "open-held")
        .await;
    let mut held = None;
    eventually("a medium server is created", || {
        held = hetzner
            .servers()
            .into_iter()
            .find(|s| s.server_type == "cx32");
        let found = held.is_some();
        async move { found }
    })
    .await;
    let held = held.unwrap();
    let failed = scene
        .github
        .wait_for_comment_where(REPO, 4, WAIT, |c| c.via_api && c.body.contains(":x:"))
        .await
        .body;
    assert!(failed.contains("did not register"), "{failed}");
    // The token was never used, so only its expiry refuses it now.
    let (status, body) = register(&scene, &bootstrap_token(&held), &certificate).await;
    assert_eq!(status, 401, "an expired token was accepted: {body}");
    eventually("the given-up host's server is deleted", || {
        let gone = !hetzner.servers().iter().any(|s| s.id == held.id);
        async move { gone }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_host_is_deleted_after_the_grace_period() {
    let (hetzner, scene) = hosted(&[("HETZNER_HOST_GRACE", "2s")]).await;
    let pool = scene.database().await;
    let (host, _, _) = host_of(&pool, &workspace_of(&scene.link)).await;
    assert_eq!(hetzner.servers().len(), 1);

    scene
        .write_on_pull_request(PULL, "/sam delete", "delete-the-workspace")
        .await;
    let deleted = settles(|| {
        let empty = hetzner.servers().is_empty();
        let pool = &pool;
        async move {
            let state: String = sqlx::query_scalar("SELECT state FROM hosts WHERE id = $1")
                .bind(host)
                .fetch_one(pool)
                .await
                .unwrap();
            empty && state == "deleted"
        }
    })
    .await;
    assert!(
        deleted,
        "the empty host and its server were not deleted within {WAIT:?}; servers: {:?}\n{}\ncomments: {:#?}",
        hetzner.servers().iter().map(|s| s.id).collect::<Vec<_>>(),
        holdings(&pool).await,
        scene.github.comments(REPO, PULL),
    );
    let (state, waited): (String, f64) = sqlx::query_as(
        "SELECT state, extract(epoch FROM updated_at - empty_since)::float8 FROM hosts WHERE id = $1",
    )
    .bind(host)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(state, "deleted");
    assert!(waited >= 2.0, "the host went {waited}s after it was empty");
    let workspace_state: String =
        sqlx::query_scalar("SELECT state FROM workspaces WHERE id = $1::uuid")
            .bind(workspace_of(&scene.link))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(workspace_state, "deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_server_sam_does_not_know_is_reported() {
    let (hetzner, scene) = hosted(&[("HETZNER_HOST_GRACE", "2s")]).await;
    let pool = scene.database().await;
    let stray = hetzner.add_foreign_server(
        "left-behind",
        &[("managed-by", "sam"), ("sam-instance", "sam")],
    );
    let other_sam = hetzner.add_foreign_server(
        "another-sams-host",
        &[("managed-by", "sam"), ("sam-instance", "elsewhere")],
    );
    let unlabelled = hetzner.add_foreign_server("a-database", &[]);
    let reported = || async {
        sqlx::query_scalar::<_, i64>("SELECT server_id FROM unknown_servers ORDER BY server_id")
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    eventually("the stray server is reported", || async {
        reported().await.contains(&stray)
    })
    .await;
    let reported = reported().await;
    assert_eq!(reported, vec![stray], "only the stray server is unknown");
    assert!(!reported.contains(&other_sam) && !reported.contains(&unlabelled));
    // sam never deletes what it does not know.
    assert_eq!(hetzner.servers().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_the_hetzner_api_fails_the_workspace_with_its_reason() {
    let (hetzner, scene) = hosted(&[]).await;
    hetzner.fail_next_create(422, "invalid_input", "invalid input in field 'server_type'");
    let failed = open_on(&scene, 4, "/sam open --size large").await;
    assert!(failed.contains(":x:"), "{failed}");
    assert!(
        failed.contains("Hetzner Cloud refused to create a host"),
        "{failed}"
    );
    assert!(failed.contains("invalid_input"), "{failed}");
    assert!(failed.contains("an operator must fix them"), "{failed}");

    hetzner.fail_next_create(
        429,
        "rate_limit_exceeded",
        "limit of 3600 requests per hour reached",
    );
    let failed = open_on(&scene, 5, "/sam open --size medium").await;
    assert!(failed.contains(":x:"), "{failed}");
    assert!(failed.contains("try again in a minute"), "{failed}");
    assert_eq!(
        hetzner.servers().len(),
        1,
        "a refused server was made anyway"
    );

    let pool = scene.database().await;
    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM hosts ORDER BY created_at")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(states, ["ready", "failed", "failed"]);

    // No server holds anything of a workspace whose host was refused: deleting it asks
    // no agent.
    scene
        .write_on_pull_request(4, "/sam delete", "delete-on-a-refused-host")
        .await;
    let reply = scene
        .github
        .wait_for_comment_where(REPO, 4, WAIT, |c| c.body.contains(": deleted"))
        .await;
    assert!(!reply.body.contains("not deleted"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_provider_says_that_it_has_no_sizes() {
    let scene = crate::scene::ready_workspace(BRANCH).await;
    assert!(!scene.ready.body.contains("--size"), "{}", scene.ready.body);
    let ready = open_on(&scene, 4, "/sam open --size large").await;
    assert!(ready.contains("/w/"), "{ready}");
    assert!(
        ready.contains("`--size large` changes nothing here"),
        "{ready}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_names_the_server_a_workspace_runs_on() {
    let (hetzner, scene) = hosted(&[]).await;
    let server = hetzner.servers().remove(0);
    scene.github.sign_in_as("sam-owner");
    let page = Visitor::default()
        .get(&format!("{}/status", scene.sam.url))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Hetzner Cloud"), "{}", page.body);
    assert!(page.body.contains(BRANCH), "{}", page.body);
    assert!(
        page.body.contains(&server.name) && page.body.contains(&server.ip),
        "the workspace's row names its server {} at {}: {}",
        server.name,
        server.ip,
        page.body
    );
    assert!(!page.body.contains("this machine"), "{}", page.body);
}

#[tokio::test]
async fn the_api_client_reads_every_page_and_the_apis_refusals() {
    use sam::workspaces::hetzner::api::{ApiError, CreateServer, HetznerApi};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let hetzner = HetznerStandIn::start().await;
    let url = url::Url::parse(hetzner.url()).unwrap();
    for n in 0..60 {
        hetzner.add_foreign_server(&format!("mine-{n}"), &[("managed-by", "sam")]);
    }
    hetzner.add_foreign_server("not-mine", &[("managed-by", "someone")]);
    let api = HetznerApi::new(&url, hetzner.token().to_owned().into());
    let listed = api.list_servers("managed-by=sam").await.unwrap();
    assert_eq!(
        listed.len(),
        60,
        "every page is read, and only matching servers"
    );
    assert!(listed.iter().all(|s| s.name.starts_with("mine-")));

    let request = CreateServer {
        name: "sam-test",
        server_type: "cx99",
        image: "ubuntu-24.04",
        location: "fsn1",
        user_data: "",
        labels: Default::default(),
        start_after_create: true,
        networks: Vec::new(),
    };
    let refused = api.create_server(&request).await.unwrap_err();
    let refused = refused
        .downcast_ref::<ApiError>()
        .expect("the API's own error");
    assert_eq!(
        (refused.status, refused.code.as_str()),
        (422, "invalid_input")
    );
    assert!(refused.explain().contains("an operator must fix them"));

    let stranger = HetznerApi::new(&url, "wrong-token".to_owned().into());
    let refused = stranger.list_servers("managed-by=sam").await.unwrap_err();
    let refused = refused
        .downcast_ref::<ApiError>()
        .expect("the API's own error");
    assert_eq!(refused.status, 401);
    assert!(refused.explain().contains("HETZNER_API_TOKEN"));

    let first = listed[0].id;
    api.delete_server(first).await.unwrap();
    api.delete_server(first)
        .await
        .expect("a server gone already counts as deleted");
    assert_eq!(api.list_servers("managed-by=sam").await.unwrap().len(), 59);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_private_network_sam_reaches_agents_at_their_private_address() {
    let hetzner = HetznerStandIn::start().await;
    let network = hetzner.add_network().to_string();
    let (hetzner, scene) = hosted_on(hetzner, &[("HETZNER_NETWORK", network.as_str())]).await;
    let server = hetzner.servers().remove(0);
    let (network_id, private) = server
        .network
        .clone()
        .expect("the server is in the network");
    assert_eq!(network_id.to_string(), network);
    let pool = scene.database().await;
    let (_, state, address) = host_of(&pool, &workspace_of(&scene.link)).await;
    assert_eq!(state, "ready");
    assert_eq!(address.as_deref(), Some(private.as_str()));
    assert_ne!(address.as_deref(), Some(server.ip.as_str()));
    shell_answers(&scene, &scene.link, BRANCH).await;
}
