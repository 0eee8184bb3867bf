//! Starting sam, or checking its settings, with something wrong: each problem is named,
//! all at once, and the warnings worth seeing are shown.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use crate::support::db::TestDatabase;
use crate::support::github::GitHubStandIn;

/// `sam <args>` with exactly these settings.
fn sam(args: &[&str], settings: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_sam"))
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(settings.iter().copied())
        .output()
        .expect("running sam")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn check_config_names_every_malformed_setting_at_once() {
    let output = sam(
        &["check-config"],
        &[
            ("DATABASE_URL", "mysql://sam:hunter2@127.0.0.1/sam"),
            ("SAM_LOG", "info,sam=chatty"),
            ("SAM_LOG_FORMAT", "xml"),
        ],
    );
    let text = text(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    for named in [
        "DATABASE_URL",
        "SAM_LOG is not a log filter",
        "SAM_LOG_FORMAT",
    ] {
        assert!(text.contains(named), "{named} not named in: {text}");
    }
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn an_empty_sam_config_is_refused_with_a_reason() {
    let output = sam(
        &["check-config"],
        &[
            ("DATABASE_URL", "postgres://sam@db/sam"),
            ("SAM_CONFIG", ""),
        ],
    );
    let text = text(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("SAM_CONFIG is set but empty"), "{text}");
}

#[tokio::test]
async fn an_app_file_others_can_read_is_warned_about() {
    let github = GitHubStandIn::start().await;
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("github-app.json");
    let registration = serde_json::json!({
        "id": github.app_id(),
        "slug": github.app_slug(),
        "owner": "Codertocat",
        "pem": github.private_key_pem(),
        "webhook_secret": "a secret",
        "client_id": github.client_id(),
        "client_secret": github.client_secret(),
    });
    std::fs::write(&file, registration.to_string()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let db = TestDatabase::create().await;
    let output = sam(
        &["check-config"],
        &[
            ("DATABASE_URL", db.url()),
            ("SAM_DATA_DIR", data.path().to_str().unwrap()),
            ("NO_COLOR", "1"),
        ],
    );
    let text = text(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("readable by other users"), "{text}");
    assert!(
        text.contains("sam-test (id 4242), the App sam registered"),
        "{text}"
    );
}

#[tokio::test]
async fn check_config_reaches_the_database_and_says_what_sam_would_run_with() {
    let db = TestDatabase::create().await;
    let settings = [
        ("DATABASE_URL", db.url()),
        ("SAM_PUBLIC_URL", "https://sam.example.com"),
        ("SAM_IDLE_TIMEOUT", "45m"),
    ];
    let output = sam(&["check-config"], &settings);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    for expected in [
        "https://sam.example.com",
        "this machine (local provider)",
        "after 45m",
        "GitHub App      none yet",
        "reachable, PostgreSQL",
        "no tables of sam's yet: `sam serve` creates them at start",
    ] {
        assert!(said.contains(expected), "{expected:?} not in:\n{said}");
    }
    // Only looked at: the database is as it was.
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&db.pool().await)
            .await
            .unwrap();
    assert_eq!(tables, 0, "check-config changed the database");

    // A database that does not answer is a failed check that names where it looked.
    let port = free_port();
    let away = format!("postgres://sam:a-password@127.0.0.1:{port}/sam");
    let output = sam(&["check-config"], &[("DATABASE_URL", away.as_str())]);
    let said = text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("cannot reach the database at 127.0.0.1:{port}")),
        "{said}"
    );
    assert!(!said.contains("a-password"), "{said}");
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = sam(
        &["serve"],
        &[
            ("DATABASE_URL", "postgres://sam@127.0.0.1:1/sam"),
            ("SAM_LISTEN", &address),
        ],
    );
    let text = text(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains(&format!("cannot listen on {address}: address in use")),
        "{text}"
    );
}

#[test]
fn an_unreachable_database_is_named_once_without_its_password() {
    let port = free_port();
    let url = format!("postgres://sam:hunter2@127.0.0.1:{port}/sam");
    let output = sam(&["serve"], &[("DATABASE_URL", &url)]);
    let text = text(&output);
    assert!(!output.status.success(), "{text}");
    let error = text
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {text}"));
    assert!(
        error.contains(&format!("cannot reach the database at 127.0.0.1:{port}")),
        "{error}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(error.matches("refused").count(), 1, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sam_on_a_data_directory_in_use_is_refused() {
    let git = crate::support::git::GitServer::new();
    let github = GitHubStandIn::start().await;
    let db = crate::support::db::TestDatabase::create().await;
    let first = crate::server::SamServer::start(&github, &git, &db).await;
    let data_dir = first.data_dir.path().to_str().unwrap().to_owned();
    // Only sam may open the lock: whoever may can also hold it, and keep sam from starting.
    let lock = std::fs::metadata(first.data_dir.path().join("sam.lock")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&lock.permissions()) & 0o777,
        0o600
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let output = sam(
        &["serve"],
        &[
            ("DATABASE_URL", "postgres://sam@127.0.0.1:1/sam"),
            ("SAM_LISTEN", &listen),
            ("SAM_DATA_DIR", &data_dir),
            ("NO_COLOR", "1"),
        ],
    );
    let text = text(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("another sam is running with the data directory"),
        "{text}"
    );
    // The first one is untouched.
    let health = crate::support::http_client()
        .get(format!("{}/healthz", first.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// A port nothing listens on: bound, then let go.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
