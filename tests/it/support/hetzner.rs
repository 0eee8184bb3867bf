//! A stand-in for the Hetzner Cloud API's servers (`POST`, `GET` with a label selector
//! and pages, `GET` one, `DELETE`), stateful and strict like the real one: the bearer token,
//! the required fields and their values are checked, and errors come in the API's shape.
//!
//! A created server "boots" as cloud-init would: the stand-in reads the user data it was
//! given, finds the systemd unit's `ExecStart` and the bootstrap token file it names, and
//! runs the real `sam-agent` from `target/debug` with those arguments, listening on the
//! loopback address (`127.0.0.N`) that is the server's public IP here. A server's agent
//! can be killed and started again with the same arguments, as systemd would after a
//! crash or a reboot.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

const SERVER_TYPES: &[&str] = &["cx22", "cx32", "cx42", "cx52", "cpx11", "cpx21", "cpx31"];
const IMAGES: &[&str] = &["ubuntu-24.04", "ubuntu-22.04", "debian-12"];
const LOCATIONS: &[&str] = &["fsn1", "nbg1", "hel1", "ash", "hil", "sin"];
/// The API's limit on user data.
const USER_DATA_MAX: usize = 32 * 1024;

/// Loopback addresses handed out as public IPs, unique within the test binary.
static NEXT_ADDRESS: AtomicU32 = AtomicU32::new(2);

/// One server as the stand-in holds it.
#[derive(Clone, Debug)]
pub struct ServerView {
    pub id: i64,
    pub name: String,
    pub server_type: String,
    pub image: String,
    pub location: String,
    pub labels: BTreeMap<String, String>,
    pub user_data: String,
    pub ip: String,
    /// The private network the server is attached to, and its address there.
    pub network: Option<(i64, String)>,
    /// The agent's root directory, where checkouts land.
    pub root: PathBuf,
    /// The agent's state directory, where it keeps its registration.
    pub state_dir: PathBuf,
}

struct Server {
    view: ServerView,
    /// How its agent starts, for starting it again.
    launch: Option<Launch>,
    /// The agent "booted" on it; dropping it kills the agent, as deleting a server would.
    agent: Option<tokio::process::Child>,
    _dir: Option<tempfile::TempDir>,
}

/// The agent's command line and environment, as the systemd unit gives them.
#[derive(Clone)]
struct Launch {
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    home: PathBuf,
}

struct Model {
    servers: BTreeMap<i64, Server>,
    next_id: i64,
    hold_boots: bool,
    /// How long a `POST /servers` waits, after starting the server, to answer.
    answer_creates_after: Duration,
    failures: VecDeque<(u16, String, String)>,
    networks: Vec<i64>,
}

struct Shared {
    token: String,
    agent_env: Mutex<Vec<(String, String)>>,
    model: Mutex<Model>,
}

/// The running stand-in; dropping it stops the server and every agent it started.
pub struct HetznerStandIn {
    shared: Arc<Shared>,
    url: String,
    _shutdown: oneshot::Sender<()>,
}

impl HetznerStandIn {
    /// Starts the API on a free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            token: format!("hcloud-{}", uuid::Uuid::new_v4().simple()),
            agent_env: Mutex::default(),
            model: Mutex::new(Model {
                servers: BTreeMap::new(),
                next_id: 40_000_000,
                hold_boots: false,
                answer_creates_after: Duration::ZERO,
                failures: VecDeque::new(),
                networks: Vec::new(),
            }),
        });
        let router = Router::new()
            .route("/v1/servers", post(create).get(list))
            .route("/v1/servers/{id}", get(show).delete(remove))
            .with_state(shared.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            shared,
            url,
            _shutdown: shutdown,
        }
    }

    /// Agents booted from now on clone from `git`'s repositories, as agents sam starts do.
    pub fn agents_use_git(&self, git: &crate::support::git::GitServer) {
        *self.shared.agent_env.lock().unwrap() = vec![
            (
                "GIT_CONFIG_GLOBAL".to_owned(),
                git.gitconfig_path().display().to_string(),
            ),
            ("GIT_CONFIG_NOSYSTEM".to_owned(), "1".to_owned()),
        ];
    }

    /// The API's base URL, for `HETZNER_API_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The project's API token, for `HETZNER_API_TOKEN`.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Every server, oldest first.
    pub fn servers(&self) -> Vec<ServerView> {
        let model = self.shared.model.lock().unwrap();
        model.servers.values().map(|s| s.view.clone()).collect()
    }

    /// Kills the agent of server `id` with SIGKILL, as a crash would, and starts it again
    /// with the same arguments, as systemd would; cloud-init writes no files again, so
    /// there is no bootstrap token this time. Returns the new agent's process id.
    pub async fn restart_agent(&self, id: i64) -> u32 {
        let (old, launch) = {
            let mut model = self.shared.model.lock().unwrap();
            let server = model.servers.get_mut(&id).expect("no such server");
            (server.agent.take(), server.launch.clone())
        };
        let mut old = old.expect("the server's agent is not running");
        let old_pid = old.id();
        old.kill().await.expect("the agent is killed");
        let launch = launch.expect("the server was booted");
        let agent = start_agent(&launch).expect("the agent starts again");
        let pid = agent.id().expect("a running agent has a process id");
        assert_ne!(Some(pid), old_pid);
        let mut model = self.shared.model.lock().unwrap();
        if let Some(server) = model.servers.get_mut(&id) {
            server.agent = Some(agent);
        }
        pid
    }

    /// Whether the agent of server `id` is still running.
    pub fn agent_running(&self, id: i64) -> bool {
        let mut model = self.shared.model.lock().unwrap();
        model
            .servers
            .get_mut(&id)
            .and_then(|s| s.agent.as_mut())
            .is_some_and(|agent| matches!(agent.try_wait(), Ok(None)))
    }

    /// Whether servers created from now on stay down (their agent never starts).
    pub fn hold_boots(&self, hold: bool) {
        self.shared.model.lock().unwrap().hold_boots = hold;
    }

    /// What the agent of server `id` printed.
    pub fn agent_log(&self, id: i64) -> String {
        let model = self.shared.model.lock().unwrap();
        let launch = model.servers[&id]
            .launch
            .as_ref()
            .expect("the server booted");
        std::fs::read_to_string(launch.home.join(AGENT_LOG)).unwrap_or_default()
    }

    /// Answers `POST /servers` from now on `delay` after the server started, as a slow
    /// API might: its agent may register before sam has heard of the server.
    pub fn answer_creates_after(&self, delay: Duration) {
        self.shared.model.lock().unwrap().answer_creates_after = delay;
    }

    /// Answers the next `POST /servers` with this error instead of a server.
    pub fn fail_next_create(&self, status: u16, code: &str, message: &str) {
        self.shared.model.lock().unwrap().failures.push_back((
            status,
            code.to_owned(),
            message.to_owned(),
        ));
    }

    /// A private network servers may be attached to; its id.
    pub fn add_network(&self) -> i64 {
        let mut model = self.shared.model.lock().unwrap();
        let id = 7_000 + model.networks.len() as i64;
        model.networks.push(id);
        id
    }

    /// A server created by someone else than sam, with these labels; it never boots.
    pub fn add_foreign_server(&self, name: &str, labels: &[(&str, &str)]) -> i64 {
        let mut model = self.shared.model.lock().unwrap();
        model.next_id += 1;
        let id = model.next_id;
        let view = ServerView {
            id,
            name: name.to_owned(),
            server_type: "cx22".into(),
            image: "debian-12".into(),
            location: "nbg1".into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            user_data: String::new(),
            ip: next_ip(),
            network: None,
            root: PathBuf::new(),
            state_dir: PathBuf::new(),
        };
        model.servers.insert(
            id,
            Server {
                view,
                launch: None,
                agent: None,
                _dir: None,
            },
        );
        id
    }
}

fn next_ip() -> String {
    let n = NEXT_ADDRESS.fetch_add(1, Ordering::Relaxed);
    format!("127.0.{}.{}", (n / 250) % 250, n % 250 + 2)
}

fn error(status: StatusCode, code: &str, message: &str, details: Value) -> Response {
    let body = json!({ "error": { "code": code, "message": message, "details": details } });
    (status, Json(body)).into_response()
}

fn invalid(field: &str, message: &str) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
        &format!("invalid input in field '{field}'"),
        json!({ "fields": [{ "name": field, "messages": [message] }] }),
    )
}

/// Whether the request carries the project's token.
fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", shared.token);
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|value| value == expected)
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "unable to authenticate",
        json!({}),
    )
}

/// A server as the API shows it; `attached` is false in the answer to its creation, where
/// the network attachment has not run yet.
fn server_json(view: &ServerView, attached: bool) -> Value {
    let private_net: Vec<Value> = view
        .network
        .iter()
        .filter(|_| attached)
        .map(|(network, ip)| {
            json!({ "network": network, "ip": ip, "alias_ips": [], "mac_address": "86:00:00:00:00:01" })
        })
        .collect();
    json!({
        "id": view.id,
        "name": view.name,
        "status": "running",
        "created": "2026-01-01T00:00:00+00:00",
        "labels": view.labels,
        "server_type": { "name": view.server_type },
        "image": { "name": view.image },
        "datacenter": { "location": { "name": view.location } },
        "public_net": {
            "ipv4": { "ip": view.ip, "blocked": false, "dns_ptr": "static.example" },
            "ipv6": { "ip": "2001:db8::/64", "blocked": false },
            "floating_ips": [],
        },
        "private_net": private_net,
    })
}

fn action(command: &str, server: i64) -> Value {
    json!({
        "id": server * 10 + 1,
        "command": command,
        "status": "running",
        "progress": 0,
        "resources": [{ "id": server, "type": "server" }],
        "error": null,
    })
}

async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let answer_after = shared.model.lock().unwrap().answer_creates_after;
    let response = create_now(shared, headers, body);
    if response.status() == StatusCode::CREATED {
        tokio::time::sleep(answer_after).await;
    }
    response
}

/// `POST /servers`: the server is created, and booted, before the answer leaves.
fn create_now(shared: Arc<Shared>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    if let Some((status, code, message)) = shared.model.lock().unwrap().failures.pop_front() {
        return error(
            StatusCode::from_u16(status).unwrap(),
            &code,
            &message,
            json!({}),
        );
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "json_error",
            "request body is not a JSON object",
            json!({}),
        );
    };
    let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_owned);
    let Some(name) = text("name") else {
        return invalid("name", "is required");
    };
    let hostname = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !hostname {
        return invalid("name", "must be a valid hostname");
    }
    let Some(server_type) = text("server_type").filter(|t| SERVER_TYPES.contains(&t.as_str()))
    else {
        return invalid("server_type", "server type not found");
    };
    let Some(image) = text("image").filter(|i| IMAGES.contains(&i.as_str())) else {
        return invalid("image", "image not found");
    };
    if body.contains_key("location") && body.contains_key("datacenter") {
        return invalid("location", "location and datacenter are mutually exclusive");
    }
    let Some(location) = text("location").filter(|l| LOCATIONS.contains(&l.as_str())) else {
        return invalid("location", "location not found");
    };
    let user_data = match body.get("user_data") {
        None => String::new(),
        Some(Value::String(data)) if data.len() <= USER_DATA_MAX => data.clone(),
        Some(_) => return invalid("user_data", "must be a string of at most 32 KiB"),
    };
    let mut labels = BTreeMap::new();
    match body.get("labels") {
        None => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                let Some(value) = value.as_str() else {
                    return invalid("labels", "label values must be strings");
                };
                labels.insert(key.clone(), value.to_owned());
            }
        }
        Some(_) => return invalid("labels", "must be an object"),
    }
    let networks: Vec<i64> = match body.get("networks") {
        None => Vec::new(),
        Some(Value::Array(ids)) => match ids.iter().map(Value::as_i64).collect() {
            Some(ids) => ids,
            None => return invalid("networks", "must be network ids"),
        },
        Some(_) => return invalid("networks", "must be a list"),
    };
    let mut model = shared.model.lock().unwrap();
    if let Some(unknown) = networks.iter().find(|n| !model.networks.contains(n)) {
        return invalid("networks", &format!("network {unknown} not found"));
    }
    if model.servers.values().any(|s| s.view.name == name) {
        return error(
            StatusCode::CONFLICT,
            "uniqueness_error",
            "server name is already used",
            json!({ "fields": [{ "name": "name" }] }),
        );
    }
    model.next_id += 1;
    let id = model.next_id;
    let dir = tempfile::tempdir().unwrap();
    let view = ServerView {
        id,
        name,
        server_type,
        image,
        location,
        labels,
        user_data,
        // In a network, only the private address reaches the agent here: the public one
        // is a documentation address that leads nowhere.
        ip: match networks.first() {
            Some(_) => format!("203.0.113.{}", id % 250 + 1),
            None => next_ip(),
        },
        network: networks.first().map(|n| (*n, next_ip())),
        root: dir.path().join("workspaces"),
        state_dir: dir.path().join("state"),
    };
    let hold = model.hold_boots;
    let (launch, agent) = if hold {
        (None, None)
    } else {
        match boot(&shared, &view, dir.path()).and_then(|l| Ok((start_agent(&l)?, l))) {
            Ok((child, launch)) => (Some(launch), Some(child)),
            Err(why) => panic!("server {id} could not boot from its user data: {why}"),
        }
    };
    let json = server_json(&view, false);
    model.servers.insert(
        id,
        Server {
            view,
            launch,
            agent,
            _dir: Some(dir),
        },
    );
    (
        StatusCode::CREATED,
        Json(json!({
            "server": json,
            "action": action("create_server", id),
            "next_actions": [action("start_server", id)],
            "root_password": null,
        })),
    )
        .into_response()
}

/// What cloud-init would do with sam's user data: write the files, then read how the unit
/// starts the agent.
fn boot(shared: &Shared, view: &ServerView, dir: &std::path::Path) -> Result<Launch, String> {
    let document = view
        .user_data
        .strip_prefix("#cloud-config\n")
        .ok_or("the user data is not a #cloud-config document")?;
    let document: Value =
        serde_json::from_str(document).map_err(|e| format!("unreadable cloud-config: {e}"))?;
    let files = document["write_files"].as_array().ok_or("no write_files")?;
    let file = |path: &str| {
        files
            .iter()
            .find(|f| f["path"] == path)
            .and_then(|f| f["content"].as_str())
    };
    let unit = files
        .iter()
        .filter_map(|f| Some((f["path"].as_str()?, f["content"].as_str()?)))
        .find(|(path, _)| path.starts_with("/etc/systemd/system/"))
        .map(|(_, content)| content)
        .ok_or("no systemd unit in write_files")?;
    let enabled = document["runcmd"].as_array().is_some_and(|cmds| {
        cmds.iter().any(|c| {
            c[0] == "systemctl" && c.as_array().is_some_and(|a| a.contains(&json!("--now")))
        })
    });
    if !enabled {
        return Err("runcmd never starts the unit".into());
    }
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .ok_or("the unit has no ExecStart")?;
    let words = shlex::split(exec).ok_or("ExecStart is not well quoted")?;
    let (program, args) = words.split_first().ok_or("ExecStart is empty")?;
    if !program.ends_with("/sam-agent") {
        return Err(format!("ExecStart runs {program}, not sam-agent"));
    }
    let root = dir.join("workspaces");
    std::fs::create_dir_all(&root).unwrap();
    let mut command: Vec<OsString> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().cloned().ok_or(format!("{arg} has no value"));
        match arg.as_str() {
            "--listen" => {
                let listen = value()?;
                let port = listen.rsplit_once(':').ok_or("--listen has no port")?.1;
                let host = view.network.as_ref().map_or(&view.ip, |(_, ip)| ip);
                command.extend([arg.into(), format!("{host}:{port}").into()]);
            }
            "--root" => {
                value()?;
                command.extend([arg.into(), root.clone().into()]);
            }
            "--state-dir" => {
                value()?;
                command.extend([arg.into(), view.state_dir.clone().into()]);
            }
            // Accounts per workspace are the local provider's tests' business (they need
            // root); here the agent runs shells as the test's own user.
            "--account-per-workspace" => {}
            "--bootstrap-token-file" => {
                let path = value()?;
                let token = file(&path).ok_or(format!("no file {path} in write_files"))?;
                let local = dir.join("bootstrap-token");
                std::fs::write(&local, token).unwrap();
                command.extend([arg.into(), local.into()]);
            }
            _ => command.push(arg.into()),
        }
    }
    Ok(Launch {
        args: command,
        env: shared.agent_env.lock().unwrap().clone(),
        home: dir.to_owned(),
    })
}

fn start_agent(launch: &Launch) -> Result<tokio::process::Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(launch.home.join(AGENT_LOG))
        .map_err(|e| format!("cannot open the agent's log: {e}"))?;
    tokio::process::Command::new(agent_binary())
        .args(&launch.args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &launch.home)
        .envs(launch.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start sam-agent: {e}"))
}

/// Where, in a server's directory, its agent's log goes: shown when a test fails.
const AGENT_LOG: &str = "agent.log";

impl Drop for HetznerStandIn {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(model) = self.shared.model.lock() else {
            return;
        };
        let mut shown = String::new();
        for server in model.servers.values() {
            let Some(launch) = &server.launch else {
                continue;
            };
            let log = std::fs::read_to_string(launch.home.join(AGENT_LOG)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            shown += &format!(
                "---- the last {} lines the agent of server {} printed ----\n",
                tail.len(),
                server.view.id
            );
            for line in tail {
                shown += line;
                shown.push('\n');
            }
        }
        // Straight to standard error, beside sam's own output (see `SamServer`).
        let _ = std::io::Write::write_all(&mut std::io::stderr(), shown.as_bytes());
    }
}

fn agent_binary() -> PathBuf {
    std::path::Path::new(env!("CARGO_BIN_EXE_sam")).with_file_name("sam-agent")
}

#[derive(Deserialize)]
struct ListQuery {
    label_selector: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let mut wanted = Vec::new();
    for term in query
        .label_selector
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|t| !t.is_empty())
    {
        // The stand-in knows equality terms only, which is all sam sends.
        let Some((key, value)) = term.split_once('=') else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "unsupported label selector",
                json!({}),
            );
        };
        wanted.push((key.to_owned(), value.to_owned()));
    }
    let per_page = query.per_page.unwrap_or(25);
    if per_page == 0 || per_page > 50 {
        return invalid("per_page", "must be between 1 and 50");
    }
    let page = query.page.unwrap_or(1).max(1);
    let model = shared.model.lock().unwrap();
    let matching: Vec<Value> = model
        .servers
        .values()
        .filter(|s| wanted.iter().all(|(k, v)| s.view.labels.get(k) == Some(v)))
        .map(|s| server_json(&s.view, true))
        .collect();
    let total = matching.len();
    let last_page = total.div_ceil(per_page).max(1);
    let servers: Vec<Value> = matching
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    Json(json!({
        "servers": servers,
        "meta": { "pagination": {
            "page": page,
            "per_page": per_page,
            "previous_page": if page > 1 { json!(page - 1) } else { Value::Null },
            "next_page": if page < last_page { json!(page + 1) } else { Value::Null },
            "last_page": last_page,
            "total_entries": total,
        }},
    }))
    .into_response()
}

async fn show(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let model = shared.model.lock().unwrap();
    match model.servers.get(&id) {
        Some(server) => Json(json!({ "server": server_json(&server.view, true) })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "server not found",
            json!({}),
        ),
    }
}

async fn remove(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let removed = shared.model.lock().unwrap().servers.remove(&id);
    match removed {
        // Dropping the server kills its agent, as powering it off would.
        Some(_) => Json(json!({ "action": action("delete_server", id) })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "server not found",
            json!({}),
        ),
    }
}
