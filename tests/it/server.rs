//! `sam serve` as a child process, configured only through its documented environment.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::db::TestDatabase;
use crate::support::git::GitServer;
use crate::support::github::GitHubStandIn;
use crate::support::http_client;

/// The webhook secret every test server is configured with.
pub const WEBHOOK_SECRET: &str = "a webhook secret for tests";

/// A running `sam serve`; killed (with its agent) on drop.
pub struct SamServer {
    child: Child,
    pub url: String,
    pub data_dir: tempfile::TempDir,
    /// What sam (and the agent it started) printed, unless the test asked for it elsewhere:
    /// shown when the test fails, rather than mixed into every other test's output.
    output: Option<tempfile::NamedTempFile>,
}

impl SamServer {
    /// Starts sam against the stand-in, the database and the git server, and waits until
    /// `/healthz` answers 200.
    pub async fn start(github: &GitHubStandIn, git: &GitServer, db: &TestDatabase) -> Self {
        Self::start_with(github, git, db, &[]).await
    }

    /// [`SamServer::start`], with more of sam's settings in its environment.
    pub async fn start_with(
        github: &GitHubStandIn,
        git: &GitServer,
        db: &TestDatabase,
        settings: &[(&str, &str)],
    ) -> Self {
        Self::launch(github, git, db, settings, Launch::default()).await
    }

    /// [`SamServer::start_with`], with the choices of [`Launch`].
    pub async fn launch(
        github: &GitHubStandIn,
        git: &GitServer,
        db: &TestDatabase,
        settings: &[(&str, &str)],
        launch: Launch,
    ) -> Self {
        ensure_agent_is_built();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let data_dir = match launch.data_dir {
            Some(dir) => dir,
            None => tempfile::tempdir().unwrap(),
        };
        let home = data_dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_sam"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("SHELL", "/bin/bash")
            .env("SAM_LOG", "info,sam=debug")
            .env("GIT_CONFIG_GLOBAL", git.gitconfig_path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("DATABASE_URL", db.url())
            .env("SAM_LISTEN", format!("127.0.0.1:{port}"))
            .env("SAM_PUBLIC_URL", &url)
            .env("SAM_DATA_DIR", data_dir.path())
            .env("GITHUB_API_URL", github.url())
            .env("GITHUB_URL", github.url())
            .stdin(Stdio::null());
        if !launch.without_app {
            command
                .env("GITHUB_APP_ID", github.app_id().to_string())
                .env("GITHUB_APP_SLUG", github.app_slug())
                .env("GITHUB_APP_PRIVATE_KEY", github.private_key_pem())
                .env("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
                .env("GITHUB_CLIENT_ID", github.client_id())
                .env("GITHUB_CLIENT_SECRET", github.client_secret());
        }
        command.envs(settings.iter().copied());
        let output = tempfile::NamedTempFile::new().expect("creating sam's output file");
        let file = output.as_file();
        command
            .stdout(file.try_clone().unwrap())
            .stderr(file.try_clone().unwrap());
        if let Some(log) = &launch.log_to {
            let file = std::fs::File::create(log).expect("creating the log file");
            command.stdout(file);
        }
        if let Some(errors) = &launch.errors_to {
            let file = std::fs::File::create(errors).expect("creating the error log file");
            command.stderr(file);
        }
        let child = command.spawn().expect("starting sam serve");
        let output = (launch.log_to.is_none() || launch.errors_to.is_none()).then_some(output);
        let mut server = Self {
            child,
            url,
            data_dir,
            output,
        };
        server.wait_until_healthy(Duration::from_secs(60)).await;
        server
    }

    async fn wait_until_healthy(&mut self, timeout: Duration) {
        let client = http_client();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sam serve exited before it was healthy: {status}");
            }
            let health = client.get(format!("{}/healthz", self.url)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sam serve was not healthy within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A sam started with none of the App's settings, as on a fresh machine, and the
    /// stand-ins it works with, to keep alive beside it.
    pub async fn without_app() -> (Self, (GitHubStandIn, GitServer, TestDatabase)) {
        let git = GitServer::new();
        let github = GitHubStandIn::start().await;
        let db = TestDatabase::create().await;
        let launch = Launch {
            without_app: true,
            ..Launch::default()
        };
        let sam = Self::launch(&github, &git, &db, &[], launch).await;
        (sam, (github, git, db))
    }

    /// Posts a webhook delivery signed with the server's secret.
    pub async fn deliver(&self, event: &str, delivery: &str, body: &[u8]) -> reqwest::Response {
        http_client()
            .post(format!("{}/api/github/webhook", self.url))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header(
                "x-hub-signature-256",
                crate::support::fixtures::sign(WEBHOOK_SECRET, body),
            )
            .body(body.to_vec())
            .send()
            .await
            .expect("posting a delivery")
    }

    /// The process id of `sam serve`.
    #[allow(
        dead_code,
        reason = "not every binary that includes this harness looks at sam's process"
    )]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks sam to stop as a service manager would (SIGTERM) and waits, up to `timeout`,
    /// for it to exit; returns how it exited.
    pub async fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "sending SIGTERM to sam failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for sam") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sam did not stop within {timeout:?} of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends `sam serve` with SIGKILL, as a crash or the OOM killer would: no shutdown, no
    /// cleanup. Its agent follows it (it asks for SIGTERM when its parent dies).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Where the agent keeps workspaces.
    pub fn workspaces_dir(&self) -> PathBuf {
        self.data_dir.path().join("workspaces")
    }
}

/// How to start sam beyond its settings.
#[derive(Default)]
pub struct Launch {
    /// Start with none of the App's settings, as on a fresh machine.
    pub without_app: bool,
    /// Write sam's standard output (its log) to this file.
    pub log_to: Option<PathBuf>,
    /// Write sam's standard error (the local agent's log, which sam passes through) to
    /// this file.
    pub errors_to: Option<PathBuf>,
    /// Start on this data directory, as a restarted sam does, instead of a new one.
    pub data_dir: Option<tempfile::TempDir>,
}

impl Drop for SamServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.remove_workspace_accounts();
        if std::thread::panicking() {
            self.show_output();
        }
    }
}

impl SamServer {
    /// Removes the accounts the agent made, as root, for the workspaces under this sam's
    /// data directory, which the test is done with: tests leave no accounts behind.
    fn remove_workspace_accounts(&self) {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let Ok(passwd) = std::fs::read_to_string("/etc/passwd") else {
            return;
        };
        for entry in passwd.lines() {
            let fields: Vec<&str> = entry.split(':').collect();
            let (Some(name), Some(home)) = (fields.first(), fields.get(5)) else {
                continue;
            };
            if !Path::new(home).starts_with(self.data_dir.path()) {
                continue;
            }
            // userdel refuses at once while another holds the password file's lock.
            for _ in 0..40 {
                let removed = Command::new("userdel")
                    .args(["--force", name])
                    .stderr(Stdio::null())
                    .status();
                if removed.is_ok_and(|status| status.success() || status.code() == Some(6)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The end of what sam printed, straight to the test binary's standard error (not
    /// through the test's captured output), so that it sits just above the failure.
    fn show_output(&self) {
        const LINES: usize = 60;
        let Some(output) = &self.output else { return };
        let Ok(text) = std::fs::read_to_string(output.path()) else {
            return;
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LINES)..];
        let mut shown = format!(
            "---- the last {} of {} lines sam at {} printed ----\n",
            tail.len(),
            lines.len(),
            self.url
        );
        for line in tail {
            shown.push_str(line);
            shown.push('\n');
        }
        let _ = std::io::Write::write_all(&mut std::io::stderr(), shown.as_bytes());
    }
}

/// sam finds `sam-agent` beside its own binary; `cargo test --workspace` builds it, and a
/// narrower `cargo test --test it` gets it built here, optimized when this harness is (the
/// benchmarks), so it lands beside the optimized `sam`.
fn ensure_agent_is_built() {
    let sam = Path::new(env!("CARGO_BIN_EXE_sam"));
    if sam.with_file_name("sam-agent").is_file() {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-p", "sam-agent", "--bin", "sam-agent"]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    let status = build.status().expect("running cargo build -p sam-agent");
    assert!(status.success(), "building sam-agent failed");
}
