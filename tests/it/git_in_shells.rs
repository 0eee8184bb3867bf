//! git in a workspace's shell, long after the checkout: `git push` and `git fetch` get a
//! token from sam on demand, through the agent, scoped to the workspace's repository and
//! read-only for a fork's code; the token is never written down, and a deleted workspace
//! gets none.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sam_protocol::Frame;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::scene::{REPO, REQUESTER, ReadyWorkspace, ready_workspace_over_http};
use crate::support::http_client;

/// How long one command in the shell (a push, a fetch) may take.
const STEP: Duration = Duration::from_secs(60);

/// The fork a pull request comes from in the fork's scene.
const FORK: &str = "contributor/knative-route-demo";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_from_the_shell_reaches_the_repository_with_a_token_for_it_alone() {
    let scene = ready_workspace_over_http("shell-push", None).await;
    let mut shell = Shell::open(&scene).await;

    let (status, output) = shell
        .run(
            "printf 'from the shell\\n' > pushed.txt && git add pushed.txt \
             && git commit -q -m 'Pushed from a shell' && git push -q origin HEAD",
        )
        .await;
    assert_eq!(status, 0, "the push failed:\n{output}");

    // The commit is in the repository, by the person who asked for the workspace.
    let id = scene.github.add_user(REQUESTER);
    assert_eq!(
        scene
            .git
            .show(REPO, "%an <%ae>|%s", "refs/heads/shell-push"),
        format!("{REQUESTER} <{id}+{REQUESTER}@users.noreply.github.com>|Pushed from a shell")
    );

    // The server took the push with a token the stand-in issued for this repository alone,
    // with write access to its contents and nothing else.
    let tokens = scene.github.issued_tokens();
    let pushes: Vec<_> = scene
        .github
        .git_accesses()
        .into_iter()
        .filter(|access| access.push && access.status == 200)
        .collect();
    assert!(!pushes.is_empty(), "no push was accepted");
    for push in &pushes {
        let token = push.token.as_deref().expect("a push with a token");
        let issued = tokens
            .iter()
            .find(|t| t.token == token)
            .expect("the token was issued by the stand-in");
        assert_eq!(issued.repos, Some(vec![REPO.to_lowercase()]));
        assert_eq!(issued.permissions, json!({ "contents": "write" }));
    }

    let (status, output) = shell.run("git fetch -q origin").await;
    assert_eq!(status, 0, "the fetch failed:\n{output}");

    assert_no_token_is_written_down(&scene, &mut shell).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forks_workspace_fetches_but_cannot_push_to_the_repository() {
    let scene = ready_workspace_over_http("fork-topic", Some(FORK)).await;
    let mut shell = Shell::open(&scene).await;

    let (status, output) = shell.run("git fetch -q origin").await;
    assert_eq!(status, 0, "the fetch failed:\n{output}");

    let (status, output) = shell
        .run(
            "git commit -q --allow-empty -m 'From a fork' \
             && git push origin HEAD:refs/heads/fork-wants-in 2>&1",
        )
        .await;
    assert_ne!(status, 0, "the push went through:\n{output}");
    assert!(output.contains("403"), "{output}");
    assert!(!scene.git.has_ref(REPO, "refs/heads/fork-wants-in"));

    // Refused by the git server because the token can only read, not for want of one.
    let tokens = scene.github.issued_tokens();
    let refused: Vec<_> = scene
        .github
        .git_accesses()
        .into_iter()
        .filter(|access| access.push && access.status == 403)
        .collect();
    assert!(
        !refused.is_empty(),
        "the server was not asked to take the push"
    );
    for push in &refused {
        let token = push.token.as_deref().expect("a push with a token");
        let issued = tokens.iter().find(|t| t.token == token).unwrap();
        assert_eq!(issued.repos, Some(vec![REPO.to_lowercase()]));
        assert_eq!(issued.permissions, json!({ "contents": "read" }));
    }
    assert!(
        !tokens
            .iter()
            .any(|t| t.repos.is_some() && t.permissions["contents"] == "write"),
        "a fork's workspace got a token that can write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_whose_write_access_was_taken_away_can_fetch_but_no_longer_push() {
    let scene = ready_workspace_over_http("access-taken", None).await;
    scene.github.set_permission(REPO, REQUESTER, "read");
    let mut shell = Shell::open(&scene).await;

    let (status, output) = shell
        .run(
            "git commit -q --allow-empty -m 'After the access went' \
             && git push origin HEAD:refs/heads/after-access 2>&1",
        )
        .await;
    assert_ne!(status, 0, "the push went through:\n{output}");
    assert!(!scene.git.has_ref(REPO, "refs/heads/after-access"));
    let (status, output) = shell.run("git fetch -q origin").await;
    assert_eq!(status, 0, "the fetch failed:\n{output}");
    assert!(
        !scene
            .github
            .issued_tokens()
            .iter()
            .any(|t| t.repos.is_some() && t.permissions["contents"] == "write"),
        "a token that can write was issued after the write access went"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_refused_to_forged_agent_tokens_and_deleted_workspaces() {
    let scene = ready_workspace_over_http("deleted-later", None).await;
    let workspace = scene.workspace_id();
    let url = format!(
        "{}/api/agents/workspaces/{workspace}/git-credentials",
        scene.sam.url
    );
    let forged = sam_protocol::token::mint_for(
        b"a key that is not the agent's key",
        sam_protocol::token::CONTROL_PLANE_AUDIENCE,
        &workspace.to_string(),
        Duration::from_secs(60),
    );
    for bearer in [None, Some(forged.as_str()), Some("not a token")] {
        let mut request = http_client().post(&url);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{bearer:?}");
        assert!(!response.text().await.unwrap().contains("ghs_"));
    }

    let mut shell = Shell::open(&scene).await;
    scene.set_state("deleted").await;
    let issued_before = scene.github.issued_tokens().len();
    let (status, output) = shell.run("git fetch origin 2>&1").await;
    assert_ne!(status, 0, "the fetch went through:\n{output}");
    assert!(output.contains("the workspace is deleted"), "{output}");
    assert_eq!(
        scene.github.issued_tokens().len(),
        issued_before,
        "a token was issued for a deleted workspace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_in_the_shell_keeps_working_after_the_agent_restarts() {
    let scene = ready_workspace_over_http("after-restart", None).await;
    let socket = scene
        .sam
        .workspaces_dir()
        .join(".git-credentials")
        .join(format!("{}.sock", scene.workspace_id()));
    let first = agent_of(&scene).expect("sam runs an agent");
    assert!(socket.exists());

    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // sam starts another agent, which opens the sockets of the checkouts it finds again.
    let deadline = Instant::now() + STEP;
    loop {
        let restarted = agent_of(&scene).is_some_and(|pid| pid != first);
        if restarted && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new agent answers on {}",
            socket.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut shell = Shell::open(&scene).await;
    let (status, output) = shell
        .run("git commit -q --allow-empty -m 'After a restart' && git push -q origin HEAD")
        .await;
    assert_eq!(status, 0, "the push failed:\n{output}");
    assert_eq!(
        scene.git.show(REPO, "%s", "refs/heads/after-restart"),
        "After a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspaces_shell_cannot_reach_another_workspace_on_the_machine() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: sam gives workspaces accounts of their own only when run as root");
        return;
    }
    let scene = ready_workspace_over_http("neighbour-a", None).await;
    scene.add_pull_request("neighbour-b", 4);
    let other_link = scene.open_pull_request(4).await;
    let mut mine = Shell::open(&scene).await;
    let mut other = Shell::open_on(&scene, &other_link).await;

    let (_, me) = mine.run("echo \"account=$(id -un)\"").await;
    let (_, them) = other.run("echo \"account=$(id -un)\"").await;
    let account = |text: &str| printed(text, "account=");
    let (me, them) = (account(&me), account(&them));
    assert!(
        me.starts_with("sam-") && them.starts_with("sam-"),
        "{me} {them}"
    );
    assert_ne!(me, them, "two workspaces' shells share an account");

    // What the other workspace's shell would go for: this checkout, and its credential
    // helper as git calls it, socket and all.
    let (_, found) = mine
        .run("echo \"dir=$PWD\"; echo \"helper=$(git config --get-regexp 'credential\\..*\\.helper' | grep -e --socket | cut -d' ' -f2-)\"")
        .await;
    let (dir, helper) = (printed(&found, "dir="), printed(&found, "helper="));
    assert!(helper.contains("--socket"), "{helper}");

    let (status, output) = other.run(&format!("ls {dir} 2>&1")).await;
    assert_ne!(
        status, 0,
        "another workspace's checkout is readable:\n{output}"
    );
    let url = scene.github.url().to_owned();
    let (status, output) = other
        .run(&format!(
            "printf 'protocol=http\\nhost={}\\n\\n' | {} get 2>&1",
            url.trim_start_matches("http://").trim_end_matches('/'),
            helper.trim_start_matches('!')
        ))
        .await;
    assert!(
        status != 0 && !output.contains("password="),
        "another workspace's socket gave a token:\n{output}"
    );
    let (status, output) = mine.run("git fetch -q origin 2>&1").await;
    assert_eq!(
        status, 0,
        "the workspace's own helper is refused:\n{output}"
    );

    // Deleting the workspace ends what its shells left running, and its account.
    let (status, _) = other.run("(setsid sleep 600 >/dev/null 2>&1 &)").await;
    assert_eq!(status, 0);
    let left_running = || {
        std::process::Command::new("pgrep")
            .args(["-u", &them, "sleep"])
            .status()
            .is_ok_and(|s| s.success())
    };
    let deadline = Instant::now() + STEP;
    while !left_running() {
        assert!(
            Instant::now() < deadline,
            "the background sleep did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    scene
        .write_on_pull_request(4, "/sam delete", "delete-the-neighbour")
        .await;
    let deadline = Instant::now() + STEP;
    while nix::unistd::User::from_name(&them).unwrap().is_some() || left_running() {
        assert!(
            Instant::now() < deadline,
            "the deleted workspace's account or its sleep is still there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(nix::unistd::User::from_name(&me).unwrap().is_some());
}

/// The pid of the `sam-agent` that sam started, if one runs.
fn agent_of(scene: &ReadyWorkspace) -> Option<u32> {
    let sam = scene.sam.pid();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`; the name may hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(')')?;
            let parent: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (parent == sam && head.ends_with("(sam-agent")).then_some(pid)
        })
}

/// Neither the checkout's config, nor its remotes, nor the shell's environment hold any
/// token the stand-in issued; the config names the agent's helper instead.
async fn assert_no_token_is_written_down(scene: &ReadyWorkspace, shell: &mut Shell) {
    let checkout = scene
        .sam
        .workspaces_dir()
        .join(scene.workspace_id().to_string());
    let config = std::fs::read_to_string(checkout.join(".git/config")).unwrap();
    assert!(
        config.contains(&format!(
            "git-credential --socket {}",
            scene
                .sam
                .workspaces_dir()
                .join(".git-credentials")
                .join(format!("{}.sock", scene.workspace_id()))
                .display()
        )),
        "the checkout does not name the agent's helper:\n{config}"
    );
    let (status, seen) = shell
        .run("env; git remote -v; git config --list --show-origin")
        .await;
    assert_eq!(status, 0, "{seen}");
    assert!(seen.contains("credential."), "{seen}");
    let tokens = scene.github.issued_tokens();
    assert!(!tokens.is_empty());
    for token in tokens {
        assert!(
            !config.contains(&token.token),
            "a token in .git/config:\n{config}"
        );
        assert!(
            !seen.contains(&token.token),
            "a token in the shell's environment or git's config:\n{seen}"
        );
    }
    assert!(!seen.contains("SAM_AGENT"), "{seen}");
}

/// What the shell printed after `key` on the last line that has it, the typed command's
/// echo (where a `$` follows the key) aside.
fn printed(text: &str, key: &str) -> String {
    text.lines()
        .rev()
        .find_map(|line| {
            let value = &line[line.find(key)? + key.len()..];
            (!value.starts_with('$')).then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

/// A shell of the workspace's terminal, through sam's socket as the page opens it.
struct Shell {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    received: u64,
    commands: u32,
}

impl Shell {
    async fn open(scene: &ReadyWorkspace) -> Self {
        Self::open_on(scene, &scene.link).await
    }

    /// A shell of the workspace behind `link`, one of the scene's sam.
    async fn open_on(scene: &ReadyWorkspace, link: &str) -> Self {
        let cookie = scene.session_cookie_of(link).await;
        let request = scene.terminal_request_of(link, "git", &cookie, &scene.sam.url);
        let (socket, _) = timeout(STEP, tokio_tungstenite::connect_async(request))
            .await
            .expect("a handshake in time")
            .expect("the terminal socket opens");
        let mut shell = Shell {
            socket,
            received: 0,
            commands: 0,
        };
        shell
            .send(Frame::Hello {
                offset: 0,
                cols: 200,
                rows: 50,
            })
            .await;
        let deadline = Instant::now() + STEP;
        loop {
            if let Frame::Ready { offset, .. } = shell.frame(deadline).await {
                shell.received = offset;
                return shell;
            }
        }
    }

    async fn send(&mut self, frame: Frame) {
        self.socket
            .send(Message::Binary(frame.encode().into()))
            .await
            .expect("sending a frame");
    }

    async fn frame(&mut self, deadline: Instant) -> Frame {
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("the shell answered in time")
                .expect("the socket is open")
                .expect("the socket reads");
            match message {
                Message::Binary(bytes) => return Frame::decode(&bytes).expect("a valid frame"),
                Message::Close(close) => panic!("the socket closed: {close:?}"),
                _ => {}
            }
        }
    }

    /// Runs `command` and returns its exit status and everything the terminal showed
    /// meanwhile. The end marker is computed by the shell, so the echo of the typed line
    /// never matches it.
    async fn run(&mut self, command: &str) -> (i32, String) {
        self.commands += 1;
        let n = self.commands;
        let typed = format!("{command}; echo \"end-$((1000+{n}))-status:$?:\"\r");
        self.send(Frame::Input(Bytes::from(typed))).await;
        let marker = format!("end-{}-status:", 1000 + n);
        let deadline = Instant::now() + STEP;
        let mut text = String::new();
        loop {
            if let Frame::Output { offset, data } = self.frame(deadline).await {
                self.received = offset + data.len() as u64;
                text.push_str(&String::from_utf8_lossy(&data));
                self.send(Frame::Ack(self.received)).await;
            }
            if let Some(at) = text.find(&marker) {
                let rest = &text[at + marker.len()..];
                if let Some(end) = rest.find(':') {
                    let status = rest[..end].parse().expect("a status");
                    return (status, text);
                }
            }
        }
    }
}
