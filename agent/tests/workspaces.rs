//! The agent's HTTP API: tokens, checkouts, removal and the git credential helper.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::term::refused_status;
use common::upstream::git_in;
use common::{Agent, Term, new_id};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn expired_token(key: &[u8], workspace: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({ "aud": "sam-agent", "sub": workspace, "iat": now - 120, "exp": now - 60 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

#[tokio::test]
async fn health_needs_no_token_and_counts_workspaces_and_sessions() {
    let agent = Agent::start();
    assert_eq!(
        agent.health().await,
        json!({ "workspaces": 0, "sessions": 0 })
    );

    let upstream = agent.upstream("r");
    let commit = upstream.push_branch("topic");
    let id = new_id();
    let (status, _) = agent
        .check_out(&id, &upstream.request("topic", &commit))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_term, _, _) = Term::open(&agent, &id, "main", 0).await;
    assert_eq!(
        agent.health().await,
        json!({ "workspaces": 1, "sessions": 1 })
    );
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let agent = Agent::start();
    let id = new_id();
    let path = format!("/workspaces/{id}");
    let body = json!({});
    let other = agent.token(&new_id());
    let expired = expired_token(&agent.key, &id);
    let forged = sam_protocol::token::mint(
        b"not the agent's key at all!!",
        &id,
        std::time::Duration::from_secs(60),
    );

    for token in [
        None,
        Some(other.as_str()),
        Some(expired.as_str()),
        Some(forged.as_str()),
        Some("garbage"),
    ] {
        for method in [Method::PUT, Method::DELETE] {
            let (status, answer) = agent.send(method.clone(), &path, token, Some(&body)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} with {token:?}");
            assert!(answer["error"].is_string(), "{answer}");
        }
        let stop = format!("{path}/stop");
        let (status, _) = agent.send(Method::POST, &stop, token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(refused_status(&agent, &id, "main", token).await, 401);
    }
}

#[tokio::test]
async fn expired_token_error_says_so() {
    let agent = Agent::start();
    let id = new_id();
    let token = expired_token(&agent.key, &id);
    let (status, answer) = agent
        .send(
            Method::DELETE,
            &format!("/workspaces/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        answer["error"].as_str().unwrap().contains("expired"),
        "{answer}"
    );
}

#[tokio::test]
async fn sessions_start_on_the_branch_even_with_hostile_names() {
    let agent = Agent::start();
    let upstream = agent.upstream("hostile");
    let branches = [
        "feature/a/b",
        "ünï-cödé",
        "$(id)",
        "x;echo-pwned",
        "$(touch-pwned)",
        "$(touch${IFS}pwned)",
        "`touch${IFS}pwned`",
        "x&&touch${IFS}pwned",
        "a'b\"c",
    ];

    for branch in branches {
        let commit = upstream.push_branch(branch);
        let id = new_id();
        let (status, answer) = agent
            .check_out(&id, &upstream.request(branch, &commit))
            .await;
        assert_eq!(status, StatusCode::OK, "{branch}: {answer}");
        assert_eq!(answer["branch"], branch);
        assert_eq!(answer["head"], commit.as_str());
        let path = agent.root().join(&id);
        assert_eq!(
            answer["path"],
            path.to_str().unwrap(),
            "directory is named for the id"
        );

        let (mut term, _, _) = Term::open(&agent, &id, "main", 0).await;
        assert_eq!(term.run("git rev-parse --abbrev-ref HEAD").await, branch);
        assert_eq!(term.run("pwd").await, path.to_str().unwrap());
    }

    let pwned: Vec<_> = walkdir::WalkDir::new(agent.scratch())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name() == "pwned")
        .map(walkdir::DirEntry::into_path)
        .collect();
    assert!(pwned.is_empty(), "a branch name was executed: {pwned:?}");
}

#[tokio::test]
async fn checkout_tracks_the_branch_sets_identity_and_stores_no_token() {
    let agent = Agent::start();
    let upstream = agent.upstream("r");
    let commit = upstream.push_branch("feature/x");
    let id = new_id();
    let mut request = upstream.request("feature/x", &commit);
    request["git_token"] = json!("ghs_secret_token_value");
    request["git_user"] = json!({ "name": "Ada Lovelace", "email": "ada@example.com" });

    let (status, answer) = agent.check_out(&id, &request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let dir = agent.root().join(&id);
    let gitconfig = agent.scratch().join("gitconfig");
    let git = |args: &[&str]| git_in(&dir, &gitconfig, args);
    assert_eq!(
        git(&["status", "--short", "--branch"]),
        "## feature/x...origin/feature/x"
    );
    assert_eq!(git(&["config", "--local", "user.name"]), "Ada Lovelace");
    assert_eq!(git(&["config", "--local", "user.email"]), "ada@example.com");
    assert_eq!(
        git(&["config", "--local", "remote.origin.url"]),
        upstream.url
    );

    let config = std::fs::read_to_string(dir.join(".git/config")).unwrap();
    assert!(
        !config.contains("ghs_secret"),
        "token stored in .git/config:\n{config}"
    );
    assert!(!agent.log().contains("ghs_secret"), "token logged");
}

#[tokio::test]
async fn pull_request_ref_is_checked_out_under_the_given_branch() {
    let agent = Agent::start();
    let upstream = agent.upstream("r");
    let commit = upstream.push_ref("refs/pull/3/head");
    let id = new_id();
    let request = json!({
        "clone_url": upstream.url,
        "branch": "pr-3",
        "commit": commit,
        "fetch_ref": "refs/pull/3/head",
    });

    let (status, answer) = agent.check_out(&id, &request).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["branch"], "pr-3");
    assert_eq!(answer["head"], commit.as_str());
}

#[tokio::test]
async fn older_commit_of_the_branch_is_checked_out() {
    let agent = Agent::start();
    let upstream = agent.upstream("r");
    let older = upstream.push_branch("topic");
    upstream.push_branch("topic");
    let id = new_id();

    let (status, answer) = agent
        .check_out(&id, &upstream.request("topic", &older))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["head"], older.as_str());
}

#[tokio::test]
async fn repeated_checkout_answers_again_without_fetching() {
    let agent = Agent::start();
    let upstream = agent.upstream("r");
    let commit = upstream.push_branch("topic");
    let id = new_id();
    let request = upstream.request("topic", &commit);
    let (status, first) = agent.check_out(&id, &request).await;
    assert_eq!(status, StatusCode::OK);

    std::fs::remove_dir_all(&upstream.bare).unwrap();
    let (status, second) = agent.check_out(&id, &request).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(first, second);
}

#[tokio::test]
async fn invalid_branch_name_is_unprocessable() {
    let agent = Agent::start();
    let upstream = agent.upstream("r");
    let commit = upstream.push_branch("topic");

    for branch in ["a..b", "-x", "@{-1}", "a b", "HEAD", "x.lock", "", "a~1"] {
        let id = new_id();
        let mut request = upstream.request("topic", &commit);
        request["branch"] = json!(branch);
        let (status, answer) = agent.check_out(&id, &request).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{branch:?}: {answer}"
        );
        assert!(
            answer["error"].as_str().unwrap().contains("branch"),
            "{answer}"
        );
        assert!(!agent.root().join(&id).exists());
    }
}

#[tokio::test]
async fn malformed_request_is_unprocessable() {
    let agent = Agent::start();
    let id = new_id();
    let (status, answer) = agent.check_out(&id, &json!({ "branch": "x" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer["error"].is_string());

    let request = json!({
        "clone_url": "file:///etc",
        "branch": "x",
        "commit": "0".repeat(40),
        "fetch_ref": "refs/heads/x",
    });
    let (status, answer) = agent.check_out(&id, &request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer["error"].as_str().unwrap().contains("https"),
        "{answer}"
    );
}

#[tokio::test]
async fn workspace_id_must_be_a_uuid() {
    let agent = Agent::start();
    let token = agent.token("../etc");
    let (status, _) = agent
        .send(Method::DELETE, "/workspaces/..%2Fetc", Some(&token), None)
        .await;
    assert_ne!(status, StatusCode::NO_CONTENT);
    let token = agent.token("not-a-uuid");
    let (status, _) = agent
        .send(Method::DELETE, "/workspaces/not-a-uuid", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn failed_fetch_leaves_no_directory_and_reports_git() {
    let agent = Agent::start();
    let id = new_id();
    let request = json!({
        "clone_url": "https://github.com/o/missing.git",
        "branch": "topic",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "fetch_ref": "refs/heads/topic",
    });

    let (status, answer) = agent.check_out(&id, &request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("cannot fetch"),
        "{answer}"
    );
    assert!(
        answer["log"].as_str().unwrap().contains("$ git fetch"),
        "{answer}"
    );
    assert!(!agent.root().join(&id).exists());
    assert!(!agent.root().join(".partial").join(&id).exists());
    assert_eq!(agent.health().await["workspaces"], 0);
}

#[tokio::test]
async fn commit_missing_from_the_repository_is_unprocessable() {
    let agent = Agent::start();
    let upstream = agent.upstream("r");
    upstream.push_branch("topic");
    let id = new_id();
    let missing = "0123456789abcdef0123456789abcdef01234567";

    let (status, answer) = agent
        .check_out(&id, &upstream.request("topic", missing))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains(missing),
        "{answer}"
    );
    assert!(!agent.root().join(&id).exists());
}

#[tokio::test]
async fn delete_removes_the_workspace_and_forgets_unknown_ones() {
    let agent = Agent::start();
    let upstream = agent.upstream("r");
    let commit = upstream.push_branch("topic");
    let id = new_id();
    agent
        .check_out(&id, &upstream.request("topic", &commit))
        .await;
    let (mut term, _, _) = Term::open(&agent, &id, "main", 0).await;

    assert_eq!(agent.delete(&id).await, StatusCode::NO_CONTENT);
    assert_eq!(term.wait_closed().await.0, 1000);
    assert!(!agent.root().join(&id).exists());
    assert_eq!(
        agent.health().await,
        json!({ "workspaces": 0, "sessions": 0 })
    );
    assert_eq!(agent.delete(&id).await, StatusCode::NO_CONTENT);
    assert_eq!(
        refused_status(&agent, &id, "main", Some(&agent.token(&id))).await,
        404
    );
}

#[tokio::test]
async fn each_workspace_gets_an_account_and_one_made_before_gets_one_on_restart() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: accounts per workspace need the agent to run as root");
        return;
    }
    let mut agent = Agent::start();
    // Accounts cross the scratch folder to their workspaces.
    std::fs::set_permissions(
        agent.scratch(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    let upstream = agent.upstream("accounts");
    let commit = upstream.push_branch("topic");
    let older = new_id();
    let (status, _) = agent
        .check_out(&older, &upstream.request("topic", &commit))
        .await;
    assert_eq!(status, StatusCode::OK);

    agent.restart_with(&["--account-per-workspace"]);
    let newer = new_id();
    let (status, _) = agent
        .check_out(&newer, &upstream.request("topic", &commit))
        .await;
    assert_eq!(status, StatusCode::OK);

    let account = |id: &str| format!("sam-{}", &id.replace('-', "")[..24]);
    let uid = |id: &str| {
        nix::unistd::User::from_name(&account(id))
            .unwrap()
            .map(|user| user.uid.as_raw())
    };
    for id in [&older, &newer] {
        let (mut term, _, _) = Term::open(&agent, id, "main", 0).await;
        assert_eq!(term.run("id -un").await, account(id));
        assert_eq!(
            term.run("stat -c '%U %a' .").await,
            format!("{} 700", account(id))
        );
        assert_eq!(term.run("git status --short | wc -l").await, "0");
        assert_eq!(
            term.run("grep NoNewPrivs /proc/self/status | tr -d ' \\t'")
                .await,
            "NoNewPrivs:1"
        );
    }
    assert_ne!(account(&older), account(&newer));

    // A removed account's id is never given again: what it left in /tmp stays its own.
    let removed = uid(&newer).unwrap();
    assert!(removed >= 1_000_000_000, "{removed}");
    assert_eq!(agent.delete(&newer).await, StatusCode::NO_CONTENT);
    assert_eq!(uid(&newer), None, "the deleted workspace's account is left");
    let next = new_id();
    let (status, _) = agent
        .check_out(&next, &upstream.request("topic", &commit))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        uid(&next).unwrap() > removed,
        "a removed account's id was given again"
    );

    for id in [&older, &next] {
        assert_eq!(agent.delete(id).await, StatusCode::NO_CONTENT);
        assert_eq!(uid(id), None, "the deleted workspace's account is left");
    }
}

#[tokio::test]
async fn session_name_must_be_plain() {
    let agent = Agent::start();
    let upstream = agent.upstream("r");
    let commit = upstream.push_branch("topic");
    let id = new_id();
    agent
        .check_out(&id, &upstream.request("topic", &commit))
        .await;
    let token = agent.token(&id);
    assert_eq!(
        refused_status(&agent, &id, "bad.name", Some(&token)).await,
        400
    );
    assert_eq!(
        refused_status(&agent, &id, &"a".repeat(65), Some(&token)).await,
        400
    );
}

fn credential_helper(operation: &str, token: Option<&str>) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sam-agent"));
    command
        .args(["git-credential", operation])
        .env_remove("SAM_AGENT_GIT_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(token) = token {
        command.env("SAM_AGENT_GIT_TOKEN", token);
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"protocol=https\nhost=github.com\npath=o/r.git\n\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn credential_helper_answers_with_the_token_from_its_environment() {
    assert_eq!(
        credential_helper("get", Some("ghs_abc")),
        "username=x-access-token\npassword=ghs_abc\n"
    );
}

#[test]
fn credential_helper_is_silent_without_a_token() {
    assert_eq!(credential_helper("get", None), "");
    assert_eq!(credential_helper("store", Some("ghs_abc")), "");
}

#[test]
fn git_runs_the_credential_helper_the_agent_configures() {
    let exe = env!("CARGO_BIN_EXE_sam-agent");
    // The same form as the agent's `credential::helper_config`.
    let helper = format!("credential.helper=!'{exe}' git-credential");
    let mut child = Command::new("git")
        .args([
            "-c",
            "credential.helper=",
            "-c",
            &helper,
            "credential",
            "fill",
        ])
        .env("SAM_AGENT_GIT_TOKEN", "ghs_through_git")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"protocol=https\nhost=github.com\n\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("username=x-access-token\n"), "{stdout}");
    assert!(stdout.contains("password=ghs_through_git\n"), "{stdout}");
}
