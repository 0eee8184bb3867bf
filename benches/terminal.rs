//! Benchmarks of the terminal through a real sam and agent, as `docs/benchmarks.md`
//! describes: output throughput beside the raw PTY rate, the keystroke round trip, memory
//! per idle session, and many sessions at once. `scripts/bench` sets up PostgreSQL, builds
//! optimized and runs this; the figures come out as a Markdown table on stdout.
//!
//! Each scene is the integration tests' own: the GitHub stand-in, a git repository, a test
//! database and `sam serve` with its agent, after a real `/sam open`. The agent holds at
//! most `MAX_SESSIONS_PER_WORKSPACE` sessions in a workspace, so the measurements of many
//! sessions first open more workspaces behind the same sam, each with `/sam open` on a pull
//! request of its own through the webhook. The client speaks the terminal wire to sam's
//! socket with the requester's session cookie of the workspace and sam's own Origin,
//! acknowledging output as `assets/terminal.js` does.
//!
//! Sizes can be made smaller for a quick look: `SAM_BENCH_MB`, `SAM_BENCH_KEYSTROKES`,
//! `SAM_BENCH_IDLE` and `SAM_BENCH_SESSIONS`.

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

use std::fmt::Write as _;
use std::io::{BufWriter, Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt, stream};
use it::scene::{ReadyWorkspace, ready_workspace, ready_workspace_with, workspace_of};
use it::{server, support};
use memchr::memmem::Finder;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use sam_protocol::{Frame, MAX_SESSIONS_PER_WORKSPACE};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The browser acknowledges rendered output at least every this many bytes
/// (`ACK_EVERY_BYTES` in `assets/terminal.js`).
const ACK_EVERY_BYTES: u64 = 32 * 1024;

/// One line of the output file, newline included.
const LINE_BYTES: usize = 100;

/// The agent's read size (`READ_SIZE` in `agent/src/terminal/shell.rs`), used for the raw
/// PTY too so both read alike.
const PTY_READ_BYTES: usize = 16 * 1024;

/// Throughput runs of each kind; the median is reported.
const RUNS: usize = 3;

/// The longest any single message may take to arrive.
const STEP: Duration = Duration::from_secs(30);

/// The longest one `cat` of the file may take, either way.
const FLOOD_LIMIT: Duration = Duration::from_secs(300);

/// The longest the keystroke samples may take together.
const KEYSTROKES_LIMIT: Duration = Duration::from_secs(120);

/// The longest opening the sessions of one measurement may take.
const OPENING_LIMIT: Duration = Duration::from_secs(300);

/// Sessions opened at the same time for the idle-memory measurement.
const IDLE_OPENING_AT_ONCE: usize = 32;

/// Workspaces opened at the same time (`/sam open` delivered, waiting for the link); sam
/// prepares them with a few delivery workers.
const PROVISIONING_AT_ONCE: usize = 8;

/// The longest opening the workspaces of one measurement may take.
const PROVISIONING_LIMIT: Duration = Duration::from_secs(900);

/// The first pull request of the workspaces opened beside the scene's own (#3).
const FIRST_MORE_PULL: u64 = 100;

/// sam's settings in the scenes of many workspaces: no idle stops while the benchmark runs.
const NO_IDLE_STOPS: &[(&str, &str)] = &[("SAM_IDLE_TIMEOUT", "off")];

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

/// What to measure, from the environment or the defaults the docs report.
struct Sizes {
    megabytes: usize,
    keystrokes: usize,
    idle: usize,
    sessions: usize,
}

impl Sizes {
    fn from_env() -> anyhow::Result<Self> {
        let read = |name: &str, default: usize| -> anyhow::Result<usize> {
            match std::env::var(name) {
                Ok(value) => {
                    let value: usize = value.parse().with_context(|| format!("{name}={value}"))?;
                    ensure!(value > 0, "{name} must be positive");
                    Ok(value)
                }
                Err(_) => Ok(default),
            }
        };
        Ok(Self {
            megabytes: read("SAM_BENCH_MB", 100)?,
            keystrokes: read("SAM_BENCH_KEYSTROKES", 2_000)?,
            idle: read("SAM_BENCH_IDLE", 200)?,
            sessions: read("SAM_BENCH_SESSIONS", 1_000)?,
        })
    }
}

/// One line of the table: what, the figure, the aim, and whether it was met.
struct Row {
    what: String,
    figure: String,
    aim: &'static str,
    met: Option<bool>,
}

impl Row {
    fn info(what: impl Into<String>, figure: String) -> Self {
        Row {
            what: what.into(),
            figure,
            aim: "",
            met: None,
        }
    }

    fn aimed(what: impl Into<String>, figure: String, aim: &'static str, met: bool) -> Self {
        Row {
            what: what.into(),
            figure,
            aim,
            met: Some(met),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let sizes = Sizes::from_env()?;
    // The client holds a socket per session, more than the soft limit many systems start
    // with (1024); sam and the agent raise theirs themselves.
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    let mut rows = Vec::new();
    for (name, result) in [
        (
            "throughput and keystrokes",
            throughput_and_keystrokes(&sizes).await,
        ),
        ("idle sessions", idle_sessions(sizes.idle).await),
        (
            "concurrent sessions",
            concurrent_sessions(sizes.sessions).await,
        ),
    ] {
        match result {
            Ok(more) => rows.extend(more),
            Err(error) => rows.push(Row::aimed(
                name,
                format!("failed: {error:#}"),
                "runs",
                false,
            )),
        }
    }

    let mut table = String::from("| measure | figure | aim | met |\n|---|---|---|---|\n");
    for row in &rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let aim = if row.aim.is_empty() { "—" } else { row.aim };
        writeln!(table, "| {} | {} | {aim} | {met} |", row.what, row.figure)?;
    }
    print!("{table}");
    Ok(())
}

// --- throughput and keystrokes -------------------------------------------------------

async fn throughput_and_keystrokes(sizes: &Sizes) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let file = OutputFile::write(dir.path(), sizes.megabytes)?;
    eprintln!(
        "bench: {} output bytes expected per cat ({} lines)",
        file.expected, file.lines
    );

    let mut raw = Vec::new();
    for _ in 0..RUNS {
        let file = file.clone();
        let rate = tokio::task::spawn_blocking(move || raw_pty(&file)).await??;
        eprintln!("bench: raw PTY {:.0} MiB/s", rate / MIB);
        raw.push(rate);
    }

    let scene = ready_workspace("bench/throughput").await;
    let workspace = Workspace::of_scene(&scene).await;
    let mut terminal = Terminal::open(&scene, &workspace, "throughput").await?;
    terminal.until_prompt().await?;
    let mut relayed = Vec::new();
    for _ in 0..RUNS {
        let rate = through_sam(&mut terminal, &file).await?;
        eprintln!("bench: through sam {:.0} MiB/s", rate / MIB);
        relayed.push(rate);
    }
    let raw = median(&mut raw);
    let relayed = median(&mut relayed);
    let share = relayed / raw;

    let samples = keystrokes(&mut terminal, sizes.keystrokes).await?;
    let quantile = |q: f64| {
        // Nearest rank.
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    let p99 = quantile(0.99);
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);

    let mib = file.expected as f64 / MIB;
    Ok(vec![
        Row::info(
            "output, raw PTY (`cat`, no sam)",
            format!(
                "{:.0} MiB/s (median of {RUNS}, {mib:.1} MiB each)",
                raw / MIB
            ),
        ),
        Row::aimed(
            "output through sam (client ← sam ← agent ← PTY)",
            format!(
                "{:.0} MiB/s = {:.0} % of raw (median of {RUNS}, byte count checked)",
                relayed / MIB,
                share * 100.0
            ),
            "≥ 50 % of raw",
            share >= 0.5,
        ),
        Row::aimed(
            "keystroke round trip through sam",
            format!(
                "p50 {}, p99 {}, max {} ({} samples)",
                ms(quantile(0.5)),
                ms(p99),
                ms(*samples.last().context("no samples")?),
                samples.len()
            ),
            "p99 < 3 ms",
            p99 < Duration::from_millis(3),
        ),
    ])
}

/// A file of known size and content between two markers found nowhere else.
#[derive(Clone)]
struct OutputFile {
    path: PathBuf,
    begin: Vec<u8>,
    /// As the PTY shows it: the terminal turns each `\n` into `\r\n`.
    end: Vec<u8>,
    lines: usize,
    /// Bytes a PTY shows for the file: its size plus one `\r` per line.
    expected: u64,
}

impl OutputFile {
    /// About `megabytes` million bytes: a marker line, lines of `LINE_BYTES`, a marker line.
    fn write(dir: &Path, megabytes: usize) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let begin = format!("#begin-{id}\n");
        let end = format!("#end-{id}\n");
        let path = dir.join("output.txt");
        let mut out = BufWriter::new(std::fs::File::create(&path)?);
        out.write_all(begin.as_bytes())?;
        let body_lines = megabytes * 1_000_000 / LINE_BYTES;
        let filler: String = ('a'..='z').cycle().take(LINE_BYTES + 26).collect();
        for n in 0..body_lines {
            // Nine digits, a space, letters, a newline: LINE_BYTES in all.
            let skip = n % 26;
            writeln!(out, "{n:09} {}", &filler[skip..skip + LINE_BYTES - 11])?;
        }
        out.write_all(end.as_bytes())?;
        out.flush()?;
        let size = std::fs::metadata(&path)?.len();
        let lines = body_lines + 2;
        Ok(Self {
            path,
            begin: begin.trim_end().as_bytes().to_vec(),
            end: end.replace('\n', "\r\n").into_bytes(),
            lines,
            expected: size + lines as u64,
        })
    }

    fn counter(&self) -> ByteCount {
        ByteCount {
            begin: Marker::new(&self.begin),
            end: Marker::new(&self.end),
            begin_at: None,
            done: None,
        }
    }
}

/// Counts the bytes of a stream from the start of the begin marker to the end of the end
/// marker.
struct ByteCount {
    begin: Marker,
    end: Marker,
    begin_at: Option<u64>,
    done: Option<u64>,
}

impl ByteCount {
    /// Feeds the next bytes of the stream; the count once the end marker has gone by.
    fn feed(&mut self, chunk: &[u8]) -> Option<u64> {
        let begin = self.begin.feed(chunk);
        let end = self.end.feed(chunk);
        if self.begin_at.is_none() {
            self.begin_at = begin;
        }
        if let (Some(begin), Some(end), None) = (self.begin_at, end, self.done)
            && end > begin
        {
            self.done = Some(end + self.end.len() - begin);
        }
        self.done
    }

    fn checked(&self, expected: u64) -> anyhow::Result<()> {
        match self.done {
            Some(count) if count == expected => Ok(()),
            Some(count) => bail!("{count} bytes between the markers, expected {expected}"),
            None => bail!("the end marker never came"),
        }
    }
}

/// Finds a needle in a stream fed chunk by chunk, across chunk boundaries.
struct Marker {
    finder: Finder<'static>,
    carry: Vec<u8>,
    seen: u64,
}

impl Marker {
    fn new(needle: &[u8]) -> Self {
        Self {
            finder: Finder::new(needle).into_owned(),
            carry: Vec::new(),
            seen: 0,
        }
    }

    fn len(&self) -> u64 {
        self.finder.needle().len() as u64
    }

    /// The stream position where the needle starts, if it starts in or just before `chunk`.
    fn feed(&mut self, chunk: &[u8]) -> Option<u64> {
        let keep = self.finder.needle().len() - 1;
        let mut joint = self.carry.clone();
        joint.extend_from_slice(&chunk[..keep.min(chunk.len())]);
        let carried = self.carry.len() as u64;
        let found = self
            .finder
            .find(&joint)
            .map(|at| self.seen - carried + at as u64)
            .or_else(|| self.finder.find(chunk).map(|at| self.seen + at as u64));
        joint.extend_from_slice(&chunk[keep.min(chunk.len())..]);
        self.carry = joint[joint.len().saturating_sub(keep)..].to_vec();
        self.seen += chunk.len() as u64;
        found
    }
}

/// `cat` of the file on a PTY of the agent's PTY crate, read to the end: bytes per second.
fn raw_pty(file: &OutputFile) -> anyhow::Result<f64> {
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .map_err(|error| anyhow::anyhow!("{error:#}"))?;
    let mut reader = pair
        .master
        .try_clone_reader()
        .map_err(|error| anyhow::anyhow!("{error:#}"))?;
    let mut command = CommandBuilder::new("cat");
    command.arg(&file.path);
    let started = std::time::Instant::now();
    let mut child = pair
        .slave
        .spawn_command(command)
        .map_err(|error| anyhow::anyhow!("{error:#}"))?;
    drop(pair.slave);

    let mut count = file.counter();
    let mut total = 0u64;
    let mut buffer = vec![0; PTY_READ_BYTES];
    // Bounded: cat writes a finite file, then the PTY reports the end.
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                total += read as u64;
                count.feed(&buffer[..read]);
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            // EIO: the terminal side is closed.
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed();
    child.wait()?;
    count.checked(file.expected)?;
    ensure!(
        total == file.expected,
        "{total} bytes read, expected {}",
        file.expected
    );
    Ok(file.expected as f64 / elapsed.as_secs_f64())
}

/// `cat` of the file in the workspace's shell, read through sam: bytes per second.
async fn through_sam(terminal: &mut Terminal, file: &OutputFile) -> anyhow::Result<f64> {
    let command = format!("cat {}\r", file.path.display());
    let started = Instant::now();
    terminal.send(Frame::Input(command.into())).await?;
    let mut count = file.counter();
    let elapsed = loop {
        ensure!(
            started.elapsed() < FLOOD_LIMIT,
            "cat took over {FLOOD_LIMIT:?}"
        );
        let data = terminal.output().await?;
        if count.feed(&data).is_some() {
            break started.elapsed();
        }
    };
    count.checked(file.expected)?;
    terminal.settle().await?;
    Ok(file.expected as f64 / elapsed.as_secs_f64())
}

/// Round trips of one typed byte to its echo by readline, sorted.
async fn keystrokes(terminal: &mut Terminal, count: usize) -> anyhow::Result<Vec<Duration>> {
    let started = Instant::now();
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        ensure!(
            started.elapsed() < KEYSTROKES_LIMIT,
            "{} keystrokes took over {KEYSTROKES_LIMIT:?}",
            samples.len()
        );
        let typed = Instant::now();
        terminal
            .type_until(b"x", |output| output.contains(&b'x'))
            .await?;
        samples.push(typed.elapsed());
        // Backspace, so the line stays short; readline echoes it as `\b \b`.
        terminal
            .type_until(b"\x7f", |output| output.contains(&b'\x08'))
            .await?;
    }
    samples.sort();
    Ok(samples)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// --- memory ----------------------------------------------------------------------------

async fn idle_sessions(count: usize) -> anyhow::Result<Vec<Row>> {
    let scene = ready_workspace_with("bench/idle", NO_IDLE_STOPS).await;
    let processes = Processes::of(&scene)?;
    let bare = processes.memory()?;
    // The sessions measured go into workspaces of their own, at most the agent's limit in
    // each; the scene's workspace holds only the first session.
    let needed = count.div_ceil(MAX_SESSIONS_PER_WORKSPACE);
    let provisioning = Instant::now();
    let workspaces = more_workspaces(&scene, "bench/idle", needed).await?;
    let provisioned_in = provisioning.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let provisioned = processes.memory()?;

    // One session first, so what every session shares (the first shell's start, thread
    // pools) is in the baseline.
    let own = Workspace::of_scene(&scene).await;
    let mut first = Terminal::open(&scene, &own, "warm-up").await?;
    first.until_prompt().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = processes.memory()?;

    let started = Instant::now();
    let opened: Vec<anyhow::Result<Terminal>> = timeout(
        OPENING_LIMIT,
        stream::iter(0..count)
            .map(|n| {
                let (scene, workspace) = (&scene, &workspaces[n / MAX_SESSIONS_PER_WORKSPACE]);
                async move {
                    let mut terminal =
                        Terminal::open(scene, workspace, &format!("idle-{n}")).await?;
                    terminal.until_prompt().await?;
                    Ok(terminal)
                }
            })
            .buffer_unordered(IDLE_OPENING_AT_ONCE)
            .collect(),
    )
    .await
    .context("opening the idle sessions took too long")?;
    let terminals = opened.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!(
        "bench: {count} idle sessions over {needed} workspaces open in {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = processes.memory()?;
    let shells = after.shells;
    ensure!(
        shells.count >= count,
        "{} shells for {count} sessions",
        shells.count
    );

    // An idle session's replay window holds exactly what it has shown: its prompt.
    let held = terminals.iter().map(|t| t.received).max().unwrap_or(0);
    let per = |before: u64, after: u64| after.saturating_sub(before) as f64 / count as f64;
    let agent = per(before.agent_rss, after.agent_rss) - held as f64;
    let sam = per(before.sam_rss, after.sam_rss);
    let shell_rss = shells.rss as f64 / shells.count as f64;
    let shell_pss = shells.pss as f64 / shells.count as f64;
    drop(terminals);
    Ok(vec![
        Row::info(
            format!("opening {needed} more workspaces behind one sam (no sessions in them)"),
            format!(
                "{:.1} s, {PROVISIONING_AT_ONCE} at a time, each a `/sam open` on a pull \
                 request through the webhook; agent {:.1} → {:.1} MiB RSS, sam {:.1} → \
                 {:.1} MiB RSS",
                provisioned_in.as_secs_f64(),
                bare.agent_rss as f64 / MIB,
                provisioned.agent_rss as f64 / MIB,
                bare.sam_rss as f64 / MIB,
                provisioned.sam_rss as f64 / MIB,
            ),
        ),
        Row::aimed(
            format!(
                "agent memory per idle session ({count} sessions, {needed} workspaces of \
                 {MAX_SESSIONS_PER_WORKSPACE})"
            ),
            format!(
                "{:.0} KiB RSS beyond its replay window (agent {:.1} → {:.1} MiB); the window \
                 holds at most {held} bytes (the prompt) of its 2 MiB",
                agent / KIB,
                before.agent_rss as f64 / MIB,
                after.agent_rss as f64 / MIB,
            ),
            "< 512 KiB",
            agent < 512.0 * KIB,
        ),
        Row::info(
            "sam memory per relayed connection",
            format!(
                "{:.0} KiB RSS (sam {:.1} → {:.1} MiB)",
                sam / KIB,
                before.sam_rss as f64 / MIB,
                after.sam_rss as f64 / MIB
            ),
        ),
        Row::info(
            "a shell's own memory (bash, its own process)",
            format!(
                "{:.0} KiB PSS, {:.0} KiB RSS",
                shell_pss / KIB,
                shell_rss / KIB
            ),
        ),
    ])
}

async fn concurrent_sessions(count: usize) -> anyhow::Result<Vec<Row>> {
    let scene = ready_workspace_with("bench/concurrent", NO_IDLE_STOPS).await;
    let processes = Processes::of(&scene)?;
    // At most the agent's limit of sessions in each workspace: the scene's and more.
    let needed = count.div_ceil(MAX_SESSIONS_PER_WORKSPACE);
    let mut workspaces = vec![Workspace::of_scene(&scene).await];
    let provisioning = Instant::now();
    workspaces.extend(more_workspaces(&scene, "bench/concurrent", needed - 1).await?);
    let provisioned_in = provisioning.elapsed();

    let started = Instant::now();
    let attempts = (0..count).map(|n| {
        let (scene, workspace) = (&scene, &workspaces[n / MAX_SESSIONS_PER_WORKSPACE]);
        async move {
            timeout(OPENING_LIMIT, async {
                let mut terminal = Terminal::open(scene, workspace, &format!("many-{n}")).await?;
                terminal
                    .until_prompt()
                    .await
                    .context("waiting for the prompt")?;
                terminal
                    .type_until(b"x", |output| output.contains(&b'x'))
                    .await
                    .context("waiting for the echo")?;
                anyhow::Ok(terminal)
            })
            .await
            .context("no echo in time")?
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let opening = started.elapsed();

    let mut live = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for result in results {
        match result {
            Ok(terminal) => live.push(terminal),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    failures.sort();
    failures.dedup();
    for failure in failures.iter().take(5) {
        eprintln!("bench: a session failed: {failure}");
    }
    eprintln!("bench: {}/{count} sessions live in {opening:?}", live.len());
    let memory = processes.memory()?;
    let fds = (fd_count(processes.sam)?, fd_count(processes.agent)?);
    let total = memory.sam_rss + memory.agent_rss + memory.shells.pss;
    let working = live.len();
    drop(live);
    Ok(vec![
        Row::info(
            format!(
                "opening {} more workspaces behind one sam ({needed} in all)",
                needed - 1
            ),
            format!(
                "{:.1} s, {PROVISIONING_AT_ONCE} at a time, each a `/sam open` on a pull \
                 request through the webhook",
                provisioned_in.as_secs_f64()
            ),
        ),
        Row::aimed(
            "sessions open at once through sam, each echoing a keystroke",
            format!(
                "{working}/{count} live over {needed} workspaces \
                 (≤ {MAX_SESSIONS_PER_WORKSPACE} each), opened in {:.1} s{}",
                opening.as_secs_f64(),
                match failures.first() {
                    Some(failure) => format!("; first failure: {failure}"),
                    None => String::new(),
                }
            ),
            "1,000",
            working >= 1_000,
        ),
        Row::info(
            format!("memory with {count} sessions"),
            format!(
                "{:.0} MiB: sam {:.0} MiB RSS, agent {:.0} MiB RSS, {} shells {:.0} MiB PSS \
                 ({:.0} MiB RSS)",
                total as f64 / MIB,
                memory.sam_rss as f64 / MIB,
                memory.agent_rss as f64 / MIB,
                memory.shells.count,
                memory.shells.pss as f64 / MIB,
                memory.shells.rss as f64 / MIB
            ),
        ),
        Row::info(
            format!("open files with {count} sessions"),
            format!("sam {}, agent {}", fds.0, fds.1),
        ),
    ])
}

// --- workspaces ------------------------------------------------------------------------

/// A workspace behind the scene's sam, and the requester's session cookie for it (scoped
/// to that workspace).
struct Workspace {
    link: String,
    cookie: String,
}

impl Workspace {
    /// The scene's own workspace.
    async fn of_scene(scene: &ReadyWorkspace) -> Self {
        Self {
            link: scene.link.clone(),
            cookie: scene.session_cookie().await,
        }
    }
}

/// `count` more workspaces behind the scene's sam, each on a new branch `<prefix>-<pull>`
/// that is the head of a pull request of its own, opened by the requester with `/sam open`
/// through the webhook, `PROVISIONING_AT_ONCE` at a time, each waited for until sam posts
/// its link; then the link is followed through sign-in for the workspace's cookie.
async fn more_workspaces(
    scene: &ReadyWorkspace,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<Workspace>> {
    let pulls: Vec<u64> = (FIRST_MORE_PULL..).take(count).collect();
    // Commits in the bare repository, one after another: git processes, not async work.
    for &pull in &pulls {
        scene.add_pull_request(&format!("{prefix}-{pull}"), pull);
    }
    let opening = stream::iter(pulls)
        .map(|pull| async move {
            let link = scene.open_pull_request(pull).await;
            let cookie = scene.session_cookie_of(&link).await;
            Workspace { link, cookie }
        })
        .buffer_unordered(PROVISIONING_AT_ONCE)
        .collect::<Vec<_>>();
    // The harness asserts (a workspace not ready in time, a failed one): a panic here is
    // that measurement's failure, not the whole run's.
    let opened = timeout(PROVISIONING_LIMIT, AssertUnwindSafe(opening).catch_unwind())
        .await
        .with_context(|| format!("opening {count} workspaces took over {PROVISIONING_LIMIT:?}"))?;
    let workspaces = opened.map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        anyhow::anyhow!("opening the workspaces failed: {message}")
    })?;
    let distinct: std::collections::HashSet<String> =
        workspaces.iter().map(|w| workspace_of(&w.link)).collect();
    ensure!(
        distinct.len() == count && !distinct.contains(&workspace_of(&scene.link)),
        "{} distinct workspaces for {count} new ones",
        distinct.len()
    );
    Ok(workspaces)
}

/// sam and its agent, whose memory is measured.
struct Processes {
    sam: u32,
    agent: u32,
}

/// Memory in bytes.
struct Memory {
    sam_rss: u64,
    agent_rss: u64,
    shells: Shells,
}

/// The agent's child processes: the shells.
#[derive(Clone, Copy)]
struct Shells {
    count: usize,
    rss: u64,
    pss: u64,
}

impl Processes {
    fn of(scene: &ReadyWorkspace) -> anyhow::Result<Self> {
        let sam = scene.sam.pid();
        let agent = children(sam)?
            .into_iter()
            .find(|&pid| comm(pid).is_ok_and(|name| name == "sam-agent"))
            .context("sam has no sam-agent child")?;
        Ok(Self { sam, agent })
    }

    fn memory(&self) -> anyhow::Result<Memory> {
        let mut shells = Shells {
            count: 0,
            rss: 0,
            pss: 0,
        };
        for pid in children(self.agent)? {
            // A shell may be gone by now; it then counts for nothing.
            if let (Ok(rss), Ok(pss)) = (
                proc_kib(pid, "status", "VmRSS:"),
                proc_kib(pid, "smaps_rollup", "Pss:"),
            ) {
                shells.count += 1;
                shells.rss += rss;
                shells.pss += pss;
            }
        }
        Ok(Memory {
            sam_rss: proc_kib(self.sam, "status", "VmRSS:")?,
            agent_rss: proc_kib(self.agent, "status", "VmRSS:")?,
            shells,
        })
    }
}

/// A `kB` field of a `/proc/<pid>/` file, in bytes.
fn proc_kib(pid: u32, file: &str, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}"))?;
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .with_context(|| format!("no {field} in /proc/{pid}/{file}"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib * 1024)
}

/// The command name of a process.
fn comm(pid: u32) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(format!("/proc/{pid}/comm"))?
        .trim_end()
        .to_owned())
}

/// The processes whose parent is `parent`.
fn children(parent: u32) -> anyhow::Result<Vec<u32>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid == Some(parent) {
            found.push(pid);
        }
    }
    Ok(found)
}

fn fd_count(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

// --- the client ------------------------------------------------------------------------

/// A terminal socket to sam, as the browser's page holds it.
struct Terminal {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The offset just past the last output received.
    received: u64,
    /// The last offset acknowledged.
    acked: u64,
}

impl Terminal {
    /// Opens session `name` of `workspace` through the scene's sam, as the requester's page
    /// would: sam's origin, the workspace's session cookie, `hello`, then `ready`.
    async fn open(
        scene: &ReadyWorkspace,
        workspace: &Workspace,
        name: &str,
    ) -> anyhow::Result<Self> {
        let request =
            scene.terminal_request_of(&workspace.link, name, &workspace.cookie, &scene.sam.url);
        // Without Nagle's algorithm, as browsers open their sockets.
        let connect = tokio_tungstenite::connect_async_with_config(request, None, true);
        let (socket, _) = timeout(STEP, connect)
            .await
            .context("no handshake in time")?
            .context("the handshake failed")?;
        let mut terminal = Terminal {
            socket,
            received: 0,
            acked: 0,
        };
        terminal
            .send(Frame::Hello {
                offset: 0,
                cols: 80,
                rows: 24,
            })
            .await?;
        match terminal.frame().await.context("waiting for ready")? {
            Frame::Ready { offset, .. } => {
                terminal.received = offset;
                terminal.acked = offset;
                Ok(terminal)
            }
            other => bail!("expected ready, got {other:?}"),
        }
    }

    async fn send(&mut self, frame: Frame) -> anyhow::Result<()> {
        self.socket
            .send(Message::Binary(frame.encode().into()))
            .await
            .context("sending a frame")
    }

    async fn frame(&mut self) -> anyhow::Result<Frame> {
        loop {
            let message = timeout(STEP, self.socket.next())
                .await
                .context("no message in time")?
                .context("the socket closed")?
                .context("reading the socket")?;
            match message {
                Message::Binary(bytes) => return Ok(Frame::decode(&bytes)?),
                Message::Close(close) => bail!("the socket closed: {close:?}"),
                _ => {}
            }
        }
    }

    /// The next output, acknowledged every `ACK_EVERY_BYTES` as the page does.
    async fn output(&mut self) -> anyhow::Result<Bytes> {
        loop {
            match self.frame().await? {
                Frame::Output { offset, data } => {
                    self.received = offset + data.len() as u64;
                    if self.received - self.acked >= ACK_EVERY_BYTES {
                        self.ack().await?;
                    }
                    return Ok(data);
                }
                Frame::Exit(status) => bail!("the shell exited with {status}"),
                Frame::Error(text) => bail!("the agent said: {text}"),
                _ => {}
            }
        }
    }

    async fn ack(&mut self) -> anyhow::Result<()> {
        if self.received > self.acked {
            self.send(Frame::Ack(self.received)).await?;
            self.acked = self.received;
        }
        Ok(())
    }

    /// Reads output until `done` holds for all of it since the call, then acknowledges it
    /// (the page does so shortly after output stops).
    async fn read_until(&mut self, done: impl Fn(&[u8]) -> bool) -> anyhow::Result<Vec<u8>> {
        let mut seen = Vec::new();
        while !done(&seen) {
            seen.extend_from_slice(&self.output().await?);
        }
        self.ack().await?;
        Ok(seen)
    }

    async fn type_until(
        &mut self,
        input: &'static [u8],
        done: impl Fn(&[u8]) -> bool,
    ) -> anyhow::Result<Vec<u8>> {
        self.send(Frame::Input(Bytes::from_static(input))).await?;
        self.read_until(done).await
    }

    /// Waits for the shell's prompt.
    async fn until_prompt(&mut self) -> anyhow::Result<()> {
        self.read_until(ends_with_prompt).await.map(drop)
    }

    /// Runs a command and waits for its output and the prompt after it, so that nothing
    /// earlier is still on its way.
    async fn settle(&mut self) -> anyhow::Result<()> {
        self.type_until(b"echo settled-$((40+2))\r", |seen| {
            memchr::memmem::find(seen, b"settled-42").is_some() && ends_with_prompt(seen)
        })
        .await
        .map(drop)
    }
}

/// Whether output ends with bash's prompt (`$ `, or `# ` for root).
fn ends_with_prompt(seen: &[u8]) -> bool {
    seen.ends_with(b"$ ") || seen.ends_with(b"# ")
}
