//! The agent keeps its memory and environment (its token key among them) from other
//! processes of its own user, such as shells started without an account of their own.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `program args` as the `nobody` account.
fn as_nobody(program: &str) -> Command {
    let mut command = Command::new("setpriv");
    command.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--",
        program,
    ]);
    command
}

/// Whether `nobody` can read `/proc/<pid>/environ`.
fn nobody_reads_environ_of(pid: u32) -> bool {
    as_nobody("cat")
        .arg(format!("/proc/{pid}/environ"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running cat as nobody")
        .success()
}

#[test]
fn another_process_of_the_agents_user_cannot_read_its_environment() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: switching to another user to run the agent needs root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let workspaces = root.path().join("workspaces");
    std::fs::create_dir(&workspaces).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    std::os::unix::fs::chown(&workspaces, Some(nobody.uid.as_raw()), None).unwrap();
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();

    let mut agent = as_nobody(env!("CARGO_BIN_EXE_sam-agent"))
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(&workspaces)
        .env("SAM_AGENT_KEY", "00".repeat(32))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the agent as nobody");
    // Once it announces its address, it has made itself private.
    let mut line = String::new();
    BufReader::new(agent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listen"), "the agent did not start: {line:?}");

    // A plain process of the same user is readable, so a refusal below is the agent's doing.
    let mut sleeper = as_nobody("sleep").arg("30").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nobody_reads_environ_of(sleeper.id()) {
        assert!(
            Instant::now() < deadline,
            "nobody cannot read its own sleep's environment"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let readable = nobody_reads_environ_of(agent.id());

    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        !readable,
        "a process of the agent's user read its environment"
    );
}
