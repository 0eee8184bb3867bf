//! Benchmark of webhook intake: how many deliveries a release `sam serve` stores per second
//! at most, and how long it takes to answer each at a fixed rate, against a real PostgreSQL
//! (`DATABASE_URL`), as `docs/benchmarks.md` describes. `scripts/bench intake` builds
//! optimized and runs this; the figures come out as a Markdown table on stdout.
//!
//! sam runs as the integration tests start it (`tests/it/server.rs`), with its own test
//! database and the GitHub stand-in. The deliveries are signed `star` events, which sam
//! stores, answers 202, and then hands to its workers, which find nothing to do: the
//! workers' claims and updates load the database as they would, but no GitHub call or
//! checkout competes with the intake.
//!
//! - **Most deliveries per second**: `SAM_BENCH_DELIVERIES` (default 20,000) deliveries
//!   posted by 64 connections at once, as fast as sam answers; deliveries per second over
//!   the whole run, and the rows found stored afterwards.
//! - **Answer latency at a fixed rate**: 1,000 deliveries per second for
//!   `SAM_BENCH_SECONDS` (default 10), each sent at its planned moment whatever the others
//!   do, and timed from that moment (not from when it left), so that a stall of sam's
//!   counts for every delivery it delayed; p50, p99 and the largest.

#[allow(
    dead_code,
    unused_imports,
    reason = "the benchmarks use only part of the test harness, built here without its tests"
)]
#[path = "../tests/it"]
mod it {
    pub mod server;
    pub mod support;
}

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use it::server::{SamServer, WEBHOOK_SECRET};
// The harness names its modules from the crate root (`crate::support`), as in the tests.
use it::support;
use support::db::TestDatabase;
use support::fixtures;
use support::git::GitServer;
use support::github::GitHubStandIn;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Connections posting at once in the throughput run.
const CONNECTIONS: usize = 64;
/// The fixed rate of the latency run, per second.
const RATE: u64 = 1_000;

fn read_env(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(value) => {
            let value: usize = value.parse().with_context(|| format!("{name}={value}"))?;
            ensure!(value > 0, "{name} must be positive");
            Ok(value)
        }
        Err(_) => Ok(default),
    }
}

/// One signed delivery, ready to post.
struct Delivery {
    id: String,
    signature: String,
    body: bytes::Bytes,
}

fn deliveries(prefix: &str, count: usize) -> Vec<Delivery> {
    (0..count)
        .map(|n| {
            let body = format!(
                r#"{{"action":"created","starred_at":null,"sender":{{"login":"octocat","id":1}},"n":{n}}}"#
            );
            Delivery {
                id: format!("{prefix}-{n}"),
                signature: fixtures::sign(WEBHOOK_SECRET, body.as_bytes()),
                body: body.into(),
            }
        })
        .collect()
}

async fn post(client: &reqwest::Client, url: &str, delivery: &Delivery) -> anyhow::Result<()> {
    let answer = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", "star")
        .header("x-github-delivery", &delivery.id)
        .header("x-hub-signature-256", &delivery.signature)
        .body(delivery.body.clone())
        .send()
        .await
        .context("posting a delivery")?;
    ensure!(
        answer.status() == reqwest::StatusCode::ACCEPTED,
        "sam answered {}",
        answer.status()
    );
    Ok(())
}

async fn stored(db: &TestDatabase, prefix: &str) -> anyhow::Result<i64> {
    let pool = db.pool().await;
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE github_delivery LIKE $1")
            .bind(format!("{prefix}-%"))
            .fetch_one(&pool)
            .await?,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let count = read_env("SAM_BENCH_DELIVERIES", 20_000)?;
    let seconds = read_env("SAM_BENCH_SECONDS", 10)?;

    let git = GitServer::new();
    let github = GitHubStandIn::start().await;
    let db = TestDatabase::create().await;
    // sam's default log level: one line per stored delivery, as in production.
    let sam = SamServer::start_with(&github, &git, &db, &[("SAM_LOG", "info")]).await;
    let url = format!("{}/api/github/webhook", sam.url);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;

    // Warm up: connections open, sam's pool full, PostgreSQL's caches warm.
    for delivery in deliveries("warm", 500) {
        post(&client, &url, &delivery).await?;
    }

    // Throughput: CONNECTIONS posts in flight at all times.
    let all = Arc::new(deliveries("max", count));
    let permits = Arc::new(Semaphore::new(CONNECTIONS));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for n in 0..count {
        let permit = permits.clone().acquire_owned().await?;
        let (client, url, all) = (client.clone(), url.clone(), all.clone());
        tasks.push(tokio::spawn(async move {
            let result = post(&client, &url, &all[n]).await;
            drop(permit);
            result
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let per_second = count as f64 / elapsed.as_secs_f64();
    let kept = stored(&db, "max").await?;
    ensure!(kept == count as i64, "{kept} of {count} deliveries stored");

    // Latency at a fixed rate, each timed from its planned moment.
    let planned = (RATE as usize) * seconds;
    let all = Arc::new(deliveries("rate", planned));
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(planned);
    for n in 0..planned {
        let at = start + Duration::from_micros(n as u64 * 1_000_000 / RATE);
        let (client, url, all) = (client.clone(), url.clone(), all.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            post(&client, &url, &all[n]).await?;
            anyhow::Ok(at.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(planned);
    for task in tasks {
        latencies.push(task.await??);
    }
    latencies.sort();
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let (p50, p99, max) = (quantile(0.50), quantile(0.99), quantile(1.0));
    let kept_rate = stored(&db, "rate").await?;
    ensure!(
        kept_rate == planned as i64,
        "{kept_rate} of {planned} deliveries stored"
    );

    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    let mut table = String::from("| measure | figure | aim | met |\n| --- | --- | --- | --- |\n");
    writeln!(
        table,
        "| deliveries stored per second, {CONNECTIONS} connections | {per_second:.0}/s ({count} in {:.2} s, all stored) | ≥ 5,000/s | {} |",
        elapsed.as_secs_f64(),
        met(per_second >= 5_000.0)
    )?;
    writeln!(
        table,
        "| answer latency at {RATE}/s for {seconds} s | p50 {}, p99 {}, max {} ({planned} deliveries, all stored) | p99 < 5 ms | {} |",
        millis(p50),
        millis(p99),
        millis(max),
        met(p99 < Duration::from_millis(5))
    )?;
    print!("{table}");
    drop(sam);
    Ok(())
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}
