//! A real `sam-agent` process for tests: temp root, temp key, temp git config whose
//! `insteadOf` sends `https://github.com/` to bare repositories on disk.
#![allow(
    dead_code,
    reason = "each test binary uses its own part of the harness"
)]

pub mod term;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

pub use term::Term;
pub use upstream::Upstream;

/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// Variables the agent's shells must never see.
pub const SECRET_ENV: &[(&str, &str)] = &[
    ("GITHUB_TOKEN", "ghs_must_not_leak"),
    ("DATABASE_URL", "postgres://must-not-leak"),
    ("SAM_SECRET", "must-not-leak"),
];

pub struct Agent {
    child: Child,
    pub address: String,
    pub key: Vec<u8>,
    scratch: TempDir,
    http: reqwest::Client,
}

impl Agent {
    /// Starts an agent with default options.
    pub fn start() -> Agent {
        Agent::start_with(&[])
    }

    /// Starts an agent with extra `serve` arguments and waits for its listen line.
    pub fn start_with(extra_args: &[&str]) -> Agent {
        let scratch = tempfile::tempdir().unwrap();
        for dir in ["root", "home", "cwd", "remote"] {
            std::fs::create_dir(scratch.path().join(dir)).unwrap();
        }
        write_git_config(scratch.path());
        let key: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let (child, address) = spawn(scratch.path(), &key, extra_args);
        Agent {
            child,
            address,
            key,
            scratch,
            http: http_client(),
        }
    }

    /// Stops the agent (SIGTERM) and starts another on the same root, with `extra_args`.
    pub fn restart_with(&mut self, extra_args: &[&str]) {
        self.terminate();
        let (child, address) = spawn(self.scratch.path(), &self.key, extra_args);
        self.child = child;
        self.address = address;
    }

    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    pub fn root(&self) -> PathBuf {
        self.scratch.path().join("root")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// A fresh token for `workspace`, valid for a minute.
    pub fn token(&self, workspace: &str) -> String {
        sam_protocol::token::mint(&self.key, workspace, Duration::from_secs(60))
    }

    /// A bare repository that the agent reaches as `https://github.com/o/<name>.git`.
    pub fn upstream(&self, name: &str) -> Upstream {
        Upstream::create(self.scratch.path(), name)
    }

    /// Sends a request with `token` as the bearer token, if any.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("agent answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, json)
    }

    /// `PUT /workspaces/{id}` with a valid token.
    pub async fn check_out(&self, id: &str, body: &Value) -> (StatusCode, Value) {
        let token = self.token(id);
        let path = format!("/workspaces/{id}");
        self.send(Method::PUT, &path, Some(&token), Some(body))
            .await
    }

    /// `POST /workspaces/{id}/stop` with a valid token.
    pub async fn stop(&self, id: &str) -> StatusCode {
        let token = self.token(id);
        let path = format!("/workspaces/{id}/stop");
        self.send(Method::POST, &path, Some(&token), None).await.0
    }

    /// `DELETE /workspaces/{id}` with a valid token.
    pub async fn delete(&self, id: &str) -> StatusCode {
        let token = self.token(id);
        let path = format!("/workspaces/{id}");
        self.send(Method::DELETE, &path, Some(&token), None).await.0
    }

    pub async fn health(&self) -> Value {
        let (status, body) = self.send(Method::GET, "/healthz", None, None).await;
        assert_eq!(status, StatusCode::OK);
        body
    }

    /// Waits until the agent reports `sessions` running sessions.
    pub async fn wait_for_sessions(&self, sessions: u64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let health = self.health().await;
            if health["sessions"] == sessions {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sessions never reached {sessions}: {health}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM and waits (bounded) for the agent to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "agent ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("SHOW_AGENT_LOG").is_some() {
            let log = self.log();
            let tail = &log[log.len().saturating_sub(8000)..];
            eprintln!("--- agent log (tail) ---\n{tail}");
        }
        if self.child.try_wait().ok().flatten().is_none() {
            signal(self.pid(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `sam-agent serve` on `scratch`'s root and waits for its listen line.
fn spawn(scratch: &Path, key: &[u8], extra_args: &[&str]) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(scratch.join("agent.log"))
        .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sam-agent"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(scratch.join("root"))
        .args(extra_args)
        .current_dir(scratch.join("cwd"))
        .env("SAM_AGENT_KEY", hex::encode(key))
        .env("GIT_CONFIG_GLOBAL", scratch.join("gitconfig"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", scratch.join("home"))
        .env("SHELL", "/bin/bash")
        .env("RUST_LOG", "sam_agent=debug,info")
        .envs(SECRET_ENV.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    let mut child = command.spawn().expect("agent starts");

    let stdout = child.stdout.take().unwrap();
    let (line_tx, line_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = line_tx.send(line);
    });
    let line = line_rx
        .recv_timeout(WAIT)
        .expect("agent prints its listen line");
    let listen: Value = serde_json::from_str(&line).expect("listen line is JSON");
    let address = listen["listen"]
        .as_str()
        .expect("listen address")
        .to_owned();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    (child, address)
}

pub fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) with a pid we own; no memory is involved.
    unsafe { libc::kill(pid, signal) };
}

/// Whether `pid` is gone: no such process, or only a zombie waiting for its reaper.
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Waits (bounded) for `pid` to be gone.
pub async fn wait_gone(pid: i32) {
    let deadline = Instant::now() + WAIT;
    while !process_gone(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still alive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A new workspace id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn write_git_config(scratch: &Path) {
    let remote = scratch.join("remote");
    let config = format!(
        "[user]\n\tname = Test\n\temail = test@example.com\n\
         [init]\n\tdefaultBranch = main\n\
         [advice]\n\tdetachedHead = false\n\
         [url \"{}/\"]\n\tinsteadOf = https://github.com/\n",
        remote.display()
    );
    std::fs::write(scratch.join("gitconfig"), config).unwrap();
}

/// A plain-HTTP client. Under `cargo test --workspace` cargo unifies reqwest's features with
/// the server's `rustls-no-provider`, and reqwest then refuses to build a client until a
/// crypto provider is installed, even for plain HTTP.
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}
