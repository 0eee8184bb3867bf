//! Benchmark of the time from a `/sam open` delivery to sam's reply with the link, through
//! a real sam and its own agent (the local provider), as `docs/benchmarks.md` describes.
//! `scripts/bench provisioning` sets up PostgreSQL, builds optimized and runs this; the
//! figures come out as a Markdown table on stdout.
//!
//! Each repository gets the integration tests' own scene (`tests/it/scene.rs`): the GitHub
//! stand-in, a bare git repository, a test database and `sam serve`, whose first `/sam
//! open` (not measured) starts the agent. Then, on pull requests of their own, each on a
//! new branch:
//!
//! - **cold**: the first `/sam open` of the pull request (a fresh clone);
//! - **link again**: `/sam open` once more while the workspace is ready (sam posts the link
//!   again);
//! - **warm**: `/sam stop`, then `/sam open` (the checkout is on disk; sam starts it again).
//!
//! Each is timed from posting the signed `issue_comment` delivery to the moment sam's
//! comment on the stand-in carries the ready link. The large repository holds about
//! `SAM_BENCH_REPO_MB` (default 50) million bytes of random, incompressible files on
//! `main`; `SAM_BENCH_SAMPLES` (default 5) pull requests are opened per repository.

#[allow(
    dead_code,
    unused_imports,
    reason = "the benchmarks use only part of the test harness, built here without its tests"
)]
#[path = "../tests/it"]
mod it {
    pub mod scene;
    pub mod server;
    pub mod support;
}

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, ensure};
use it::scene::{REPO, ReadyWorkspace, ready_workspace_with, workspace_of};
// The harness names its modules from the crate root (`crate::support`), as in the tests.
use it::{server, support};
use tokio::time::Instant;

/// The longest one open (or stop) may take before the benchmark gives up.
const STEP: Duration = Duration::from_secs(300);

/// Each file of the large repository: 200 of them make 50 MB.
const FILE_BYTES: usize = 250_000;

/// The first pull request opened beside the scene's own (#3).
const FIRST_PULL: u64 = 100;

/// sam's settings: no idle stops while the benchmark runs.
const NO_IDLE_STOPS: &[(&str, &str)] = &[("SAM_IDLE_TIMEOUT", "off")];

/// The start of sam's status comment once the workspace is ready (`templates/replies/`).
const READY: &str = ":white_check_mark:";
const STOPPED: &str = ":pause_button:";
const FAILED: &str = ":x:";

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

/// One line of the table.
struct Row {
    repository: String,
    open: &'static str,
    figure: String,
    aim: &'static str,
    met: Option<bool>,
}

/// What one open is timed as, and the aim for the small repository.
#[derive(Clone, Copy)]
enum Kind {
    Cold,
    Again,
    Warm,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Cold => "cold: first open (fresh clone)",
            Kind::Again => "link again: open while ready",
            Kind::Warm => "warm: open after `/sam stop`",
        }
    }

    fn aim(self) -> Option<(Duration, &'static str)> {
        match self {
            Kind::Cold => Some((Duration::from_secs(3), "< 3 s")),
            Kind::Warm => Some((Duration::from_secs(1), "< 1 s")),
            Kind::Again => None,
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let samples = read_env("SAM_BENCH_SAMPLES", 5)?;
    let megabytes = read_env("SAM_BENCH_REPO_MB", 50)?;
    let mut rows = Vec::new();
    for (repository, megabytes, aimed) in [
        ("small (1 file)".to_owned(), 0, true),
        (format!("large ({megabytes} MB random)"), megabytes, false),
    ] {
        match measure(megabytes, samples).await {
            Ok(times) => {
                for (kind, mut times) in times {
                    times.sort();
                    let median = times[times.len() / 2];
                    let max = *times.last().context("no samples")?;
                    let (aim, met) = match kind.aim().filter(|_| aimed) {
                        Some((limit, aim)) => (aim, Some(max < limit)),
                        None => ("", None),
                    };
                    rows.push(Row {
                        repository: repository.clone(),
                        open: kind.label(),
                        figure: format!(
                            "median {}, max {} ({} samples)",
                            seconds(median),
                            seconds(max),
                            times.len()
                        ),
                        aim,
                        met,
                    });
                }
            }
            Err(error) => rows.push(Row {
                repository,
                open: "all",
                figure: format!("failed: {error:#}"),
                aim: "runs",
                met: Some(false),
            }),
        }
    }

    let mut table = String::from(
        "| repository | open | delivery → link | aim | met |\n| --- | --- | --- | --- | --- |\n",
    );
    for row in &rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let aim = if row.aim.is_empty() { "—" } else { row.aim };
        writeln!(
            table,
            "| {} | {} | {} | {aim} | {met} |",
            row.repository, row.open, row.figure
        )?;
    }
    print!("{table}");
    Ok(())
}

/// Milliseconds below a second, seconds above.
fn seconds(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.2} s", duration.as_secs_f64())
    }
}

/// A scene whose `main` carries `megabytes` million random bytes (none when 0), and
/// `samples` pull requests opened cold, again while ready, and warm after a stop.
async fn measure(megabytes: usize, samples: usize) -> anyhow::Result<Vec<(Kind, Vec<Duration>)>> {
    let scene = ready_workspace_with(&format!("bench/base-{megabytes}"), NO_IDLE_STOPS).await;
    if megabytes > 0 {
        let started = Instant::now();
        let mut random = Random::new();
        let count = (megabytes * 1_000_000).div_ceil(FILE_BYTES);
        let contents: Vec<(String, Vec<u8>)> = (0..count)
            .map(|n| (format!("data/{n:04}.bin"), random.bytes(FILE_BYTES)))
            .collect();
        let files: Vec<(&str, &[u8])> = contents
            .iter()
            .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
            .collect();
        scene.commit_on_main(&files);
        eprintln!(
            "bench: {count} files of {FILE_BYTES} random bytes committed on main and packed in {:?}",
            started.elapsed()
        );
    }
    let pulls: Vec<u64> = (0..samples as u64).map(|n| FIRST_PULL + n).collect();
    for &pull in &pulls {
        scene.add_pull_request(&format!("bench/{megabytes}-{pull}"), pull);
    }

    let mut cold = Vec::new();
    let mut status_comments = Vec::new();
    for &pull in &pulls {
        let (took, status) = open(&scene, pull, &format!("cold-{pull}")).await?;
        eprintln!("bench: {megabytes} MB cold #{pull}: {took:?}");
        cold.push(took);
        status_comments.push(status);
        if megabytes > 0 {
            let link = scene
                .github
                .comment(status)
                .context("the status comment")?
                .body;
            let checkout = scene.sam.workspaces_dir().join(workspace_of(&link));
            let bytes = bytes_under(&checkout.join("data"))?;
            ensure!(
                bytes >= (megabytes * 1_000_000) as u64,
                "the checkout {} holds {bytes} bytes of data",
                checkout.display()
            );
        }
    }

    let mut again = Vec::new();
    for &pull in &pulls {
        let (took, _) = open(&scene, pull, &format!("again-{pull}")).await?;
        eprintln!("bench: {megabytes} MB link again #{pull}: {took:?}");
        again.push(took);
    }

    let mut warm = Vec::new();
    for (&pull, &status) in pulls.iter().zip(&status_comments) {
        scene
            .write_on_pull_request(pull, "/sam stop", &format!("stop-{pull}"))
            .await;
        let stopped = scene
            .github
            .wait_for_comment_where(REPO, pull, STEP, |c| {
                c.id == status && (c.body.starts_with(STOPPED) || c.body.starts_with(FAILED))
            })
            .await;
        ensure!(stopped.body.starts_with(STOPPED), "{}", stopped.body);
        let (took, _) = open(&scene, pull, &format!("warm-{pull}")).await?;
        eprintln!("bench: {megabytes} MB warm #{pull}: {took:?}");
        warm.push(took);
    }
    Ok(vec![
        (Kind::Cold, cold),
        (Kind::Again, again),
        (Kind::Warm, warm),
    ])
}

/// `/sam open` on pull request `pull`, delivered as `delivery`: the time from posting the
/// delivery to sam's comment (new, or edited since) carrying the link, and that comment's id.
async fn open(
    scene: &ReadyWorkspace,
    pull: u64,
    delivery: &str,
) -> anyhow::Result<(Duration, u64)> {
    let seen: HashSet<(u64, u32)> = scene
        .github
        .comments(REPO, pull)
        .iter()
        .map(|c| (c.id, c.edits))
        .collect();
    let started = Instant::now();
    scene
        .write_on_pull_request(pull, "/sam open", delivery)
        .await;
    let answer = scene
        .github
        .wait_for_comment_where(REPO, pull, STEP, |c| {
            c.via_api
                && !seen.contains(&(c.id, c.edits))
                && ((c.body.starts_with(READY) && c.body.contains("/w/"))
                    || c.body.starts_with(FAILED))
        })
        .await;
    let took = started.elapsed();
    ensure!(answer.body.starts_with(READY), "{}", answer.body);
    Ok((took, answer.id))
}

/// The bytes of the files right under `dir`.
fn bytes_under(dir: &std::path::Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// splitmix64, seeded at random: bytes no compressor shrinks, made fast.
struct Random(u64);

impl Random {
    fn new() -> Self {
        Random(uuid::Uuid::new_v4().as_u64_pair().0)
    }

    fn bytes(&mut self, count: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(count + 8);
        while out.len() < count {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        out.truncate(count);
        out
    }
}
