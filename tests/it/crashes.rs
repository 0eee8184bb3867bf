//! sam killed with SIGKILL at random moments while deliveries stream in, and started again
//! on the same database: every delivery it accepted is handled exactly once, one reply per
//! comment and one workspace per `/sam open`, as the GitHub stand-in counts them.
//!
//! The moments are drawn from a seeded random; the seed is printed, and
//! `SAM_CRASH_SEED=<seed>` reruns the same draw.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use reqwest::StatusCode;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::server::{SamServer, WEBHOOK_SECRET};
use crate::stage::{Fixture, Stage, WAIT};
use crate::support::{fixtures, http_client};

/// Comments written, one per issue; every fourth is a `/sam open`, the rest `/sam help`.
const COMMENTS: u64 = 48;
/// How many times sam is killed while they stream in.
const KILLS: usize = 4;
/// The whole test, restarts included, must end within this.
const DEADLINE: Duration = Duration::from_secs(240);

fn is_open(issue: u64) -> bool {
    issue % 4 == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sam_killed_at_random_moments_handles_every_accepted_delivery_exactly_once() {
    let seed = std::env::var("SAM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    eprintln!("crash test seed: {seed} (rerun with SAM_CRASH_SEED={seed})");
    let mut random = StdRng::seed_from_u64(seed);
    let deadline = Instant::now() + DEADLINE;

    let mut stage = Stage::start(Fixture::Issues).await;
    let mut deliveries = Vec::new();
    for issue in 1..=COMMENTS {
        let (author, body) = if is_open(issue) {
            // One person per open, so that no two opens converge on one workspace.
            let author = format!("dev{issue}");
            stage.github.set_permission(stage.repo, &author, "write");
            (author, "/sam open main")
        } else {
            ("octocat".to_owned(), "/sam help")
        };
        let (_, payload) = stage.write(issue, &author, body);
        // The fixture's author id is one for all; workspaces are per person by id.
        let mut payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        payload["comment"]["user"]["id"] = (100_000 + issue).into();
        let payload = serde_json::to_vec(&payload).unwrap();
        deliveries.push((uuid::Uuid::new_v4().to_string(), payload));
    }
    let gaps: Vec<Duration> = (0..deliveries.len())
        .map(|_| Duration::from_millis(random.random_range(0..40)))
        .collect();
    let kills: Vec<Duration> = (0..KILLS)
        .map(|_| Duration::from_millis(random.random_range(100..1500)))
        .collect();

    // GitHub's side: each delivery is posted until sam acknowledges it, wherever sam
    // listens now, as GitHub's redelivery would.
    let (url_tx, url_rx) = watch::channel(stage.sam.url.clone());
    let stream = tokio::spawn(async move {
        let client = http_client();
        for ((delivery, payload), gap) in deliveries.iter().zip(gaps) {
            tokio::time::sleep(gap).await;
            loop {
                assert!(
                    Instant::now() < deadline,
                    "delivery {delivery} never accepted"
                );
                let url = url_rx.borrow().clone();
                let answer = client
                    .post(format!("{url}/api/github/webhook"))
                    .header("content-type", "application/json")
                    .header("x-github-event", "issue_comment")
                    .header("x-github-delivery", delivery)
                    .header(
                        "x-hub-signature-256",
                        fixtures::sign(WEBHOOK_SECRET, payload),
                    )
                    .timeout(Duration::from_secs(5))
                    .body(payload.clone())
                    .send()
                    .await;
                match answer.map(|a| a.status()) {
                    Ok(StatusCode::ACCEPTED | StatusCode::OK) => break,
                    Ok(status) => panic!("delivery {delivery} got {status}"),
                    // sam is down or went down mid-answer: try again shortly.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    });

    for pause in kills {
        tokio::time::sleep(pause).await;
        stage.sam.kill();
        stage.sam = SamServer::start(&stage.github, &stage.git, &stage.db).await;
        url_tx.send_replace(stage.sam.url.clone());
        assert!(Instant::now() < deadline, "the kills took too long");
    }
    tokio::time::timeout_at(deadline, stream)
        .await
        .expect("every delivery accepted within the deadline")
        .expect("the delivery stream ended well");

    stage.wait_until_handled(COMMENTS as usize).await;
    for issue in 1..=COMMENTS {
        let replies = stage.replies(issue);
        assert_eq!(replies.len(), 1, "issue {issue}, seed {seed}: {replies:#?}");
        let body = &replies[0].body;
        if is_open(issue) {
            let settled = stage
                .github
                .wait_for_comment_where(stage.repo, issue, WAIT, |c| {
                    c.via_api
                        && (c.body.starts_with(":white_check_mark:") || c.body.starts_with(":x:"))
                })
                .await;
            let rows: Vec<(String, Option<String>, i32)> = sqlx::query_as(
                "SELECT w.state, w.error, coalesce((SELECT max(d.attempts) FROM deliveries d), 0)
                 FROM workspaces w WHERE issue_number = $1 ORDER BY created_at",
            )
            .bind(issue as i64)
            .fetch_all(&stage.pool)
            .await
            .unwrap();
            assert!(
                settled.body.starts_with(":white_check_mark:"),
                "issue {issue}, seed {seed}: {}\nworkspaces: {rows:?}",
                settled.body
            );
            assert_eq!(settled.id, replies[0].id, "issue {issue}, seed {seed}");
        } else {
            assert!(
                body.contains("| `/sam help` |"),
                "issue {issue}, seed {seed}: {body}"
            );
        }
    }
    let live: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT issue_number, count(*) FROM workspaces
         WHERE state NOT IN ('failed', 'deleted') GROUP BY issue_number ORDER BY issue_number",
    )
    .fetch_all(&stage.pool)
    .await
    .unwrap();
    let expected: Vec<(i64, i64)> = (1..=COMMENTS as i64)
        .filter(|&i| is_open(i as u64))
        .map(|i| (i, 1))
        .collect();
    assert_eq!(live, expected, "one live workspace per open, seed {seed}");
}
