//! Terminal sessions over the wire: environment, size, replay, flow control,
//! hang-up and refusals of broken input.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::term::{Event, find};
use common::{Agent, SECRET_ENV, Term, WAIT, new_id, wait_gone};
use reqwest::StatusCode;
use sam_protocol::{Frame, MAX_MESSAGE};
use tokio_tungstenite::tungstenite::Message;

/// Checks out a fresh branch and returns the workspace id.
async fn workspace(agent: &Agent) -> String {
    let upstream = agent.upstream(&format!("r{}", rand_suffix()));
    let commit = upstream.push_branch("topic");
    let id = new_id();
    let (status, answer) = agent
        .check_out(&id, &upstream.request("topic", &commit))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    id
}

/// Opens session `name` with `sleep 1000 &` running in it; returns the job's pid too.
async fn session_with_a_job(agent: &Agent, id: &str, name: &str) -> (Term, i32) {
    let (mut term, _, _) = Term::open(agent, id, name, 0).await;
    term.type_line("sleep 1000 &").await;
    let job = term.run("echo $!").await.parse().unwrap();
    (term, job)
}

fn rand_suffix() -> String {
    new_id()[..8].to_owned()
}

#[tokio::test]
async fn shell_environment_holds_no_agent_secrets() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut term, _, _) = Term::open(&agent, &id, "main", 0).await;

    let env = term.run("env | sort | tr '\\n' ' '").await;
    assert!(!env.contains("SAM_AGENT_KEY"), "{env}");
    for (key, value) in SECRET_ENV {
        assert!(
            !env.contains(key) && !env.contains(value),
            "{key} leaked: {env}"
        );
    }
    assert!(env.contains("TERM=xterm-256color"), "{env}");
    assert!(env.contains("COLORTERM=truecolor"), "{env}");
    assert!(env.contains("LANG="), "{env}");
    assert!(env.contains("HOME="), "{env}");
}

#[tokio::test]
async fn resize_reaches_the_shell_and_is_clamped() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut term, _, _) = Term::open(&agent, &id, "main", 0).await;
    assert_eq!(term.run("stty size").await, "40 120");

    term.send(Frame::Resize {
        cols: 132,
        rows: 43,
    })
    .await;
    assert_eq!(term.run("stty size").await, "43 132");

    term.send(Frame::Resize {
        cols: 5000,
        rows: 0,
    })
    .await;
    assert_eq!(term.run("stty size").await, "1 1000");
}

#[tokio::test]
async fn reconnect_replays_exactly_the_missing_bytes() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut first, _, _) = Term::open(&agent, &id, "main", 0).await;
    first.type_line("seq 1 20000; echo END-$((6*7))").await;
    while first.received.len() < 30_000 {
        assert!(first.next_event(WAIT).await.is_some(), "output stalled");
    }
    let held = first.next_offset;
    drop(first);

    let (mut second, offset, lost) = Term::open(&agent, &id, "main", held).await;
    assert_eq!((offset, lost), (held, 0));
    second.wait_for(b"END-42").await;

    let (mut replay, offset, lost) = Term::open(&agent, &id, "main", 0).await;
    assert_eq!((offset, lost), (0, 0));
    let end = replay.wait_for(b"END-42").await;
    assert_eq!(second.wait_closed().await, (1000, "replaced".to_owned()));

    let mut pieced = Vec::new();
    let first_part = &replay.received[..held as usize];
    pieced.extend_from_slice(first_part);
    pieced.extend_from_slice(&second.received);
    assert_eq!(
        &pieced[..end],
        &replay.received[..end],
        "resumed output differs"
    );

    let seq: String = (1..=20000).map(|n| format!("{n}\r\n")).collect();
    let at = find(&pieced, seq.as_bytes()).expect("the whole sequence arrived");
    assert!(find(&pieced[at + 1..], seq.as_bytes()).is_none());
}

#[tokio::test]
async fn reconnect_after_the_window_reports_lost_bytes() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut term, _, _) = Term::open(&agent, &id, "main", 0).await;
    term.type_line("head -c 3000000 /dev/zero | tr '\\0' x; echo; echo DONE-$((1+1))")
        .await;
    term.wait_for(b"DONE-2").await;
    drop(term);

    let (mut again, offset, lost) = Term::open(&agent, &id, "main", 0).await;
    assert!(lost > 0, "3 MB cannot all be kept");
    assert_eq!(offset, lost, "everything before the window is lost");
    again.wait_for(b"DONE-2").await;
    let replayed = again.received.len();
    assert!(
        replayed >= 2 * 1024 * 1024 - 4096,
        "the window keeps 2 MiB, got {replayed}"
    );
    assert!(
        again.received.iter().take(1024).all(|&b| b == b'x'),
        "replay starts in the flood"
    );
}

#[tokio::test]
async fn multibyte_character_split_across_input_frames_arrives_whole() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut term, _, _) = Term::open(&agent, &id, "main", 0).await;
    let line = "printf '\\036%s\\037\\n' ü\r".as_bytes();
    let split = line.iter().position(|&b| b == 0xc3).unwrap() + 1;
    let from = term.received.len();
    term.send(Frame::Input(Bytes::copy_from_slice(&line[..split])))
        .await;
    term.send(Frame::Input(Bytes::copy_from_slice(&line[split..])))
        .await;

    let start = term.wait_for_from(from, b"\x1e", WAIT).await + 1;
    let end = term.wait_for_from(start, b"\x1f", WAIT).await;
    assert_eq!(&term.received[start..end], "ü".as_bytes());
}

#[tokio::test]
async fn unacknowledged_output_pauses_the_program() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut term, _, _) = Term::open(&agent, &id, "main", 0).await;
    term.auto_ack = false;
    term.type_line("yes").await;

    // Output stops once the high-water mark is reached, until acks arrive.
    let deadline = tokio::time::Instant::now() + WAIT;
    while term.next_event(Duration::from_millis(500)).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "output never paused"
        );
    }
    let paused_at = term.received.len();
    assert!(paused_at >= 200 * 1024, "paused too early at {paused_at}");
    assert!(paused_at <= 320 * 1024, "paused too late at {paused_at}");

    term.send(Frame::Ack(term.next_offset)).await;
    assert!(
        term.next_event(WAIT).await.is_some(),
        "acks resume the output"
    );
    assert!(term.received.len() > paused_at);
    term.send(Frame::Input(Bytes::from_static(b"\x03"))).await;
}

#[tokio::test]
async fn ctrl_c_stops_a_flood_at_once() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut term, _, _) = Term::open(&agent, &id, "main", 0).await;
    term.type_line("yes").await;
    while term.received.len() < 1024 * 1024 {
        assert!(term.next_event(WAIT).await.is_some(), "flood stalled");
    }

    term.send(Frame::Input(Bytes::from_static(b"\x03"))).await;
    let started = tokio::time::Instant::now();
    assert_eq!(term.run("echo prompt-is-back").await, "prompt-is-back");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn closing_a_session_kills_its_background_jobs() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut term, pid) = session_with_a_job(&agent, &id, "main").await;
    assert!(!common::process_gone(pid));

    assert_eq!(agent.stop(&id).await, StatusCode::NO_CONTENT);
    wait_gone(pid).await;
    assert_eq!(term.wait_closed().await.0, 1000);
    assert_eq!(term.exit, Some(-1));
    assert!(agent.root().join(&id).exists(), "stop keeps the checkout");
    agent.wait_for_sessions(0).await;
}

#[tokio::test]
async fn shell_exit_sends_its_status_and_ends_the_session() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut term, _, _) = Term::open(&agent, &id, "main", 0).await;
    term.type_line("exit 3").await;
    assert_eq!(term.wait_closed().await, (1000, "shell exited".to_owned()));
    assert_eq!(term.exit, Some(3));
    agent.wait_for_sessions(0).await;

    let (mut fresh, offset, _) = Term::open(&agent, &id, "main", 0).await;
    assert_eq!(offset, 0, "a new session starts");
    assert_eq!(fresh.run("echo again").await, "again");
}

#[tokio::test]
async fn detached_session_ends_after_the_grace_period() {
    let agent = Agent::start_with(&["--session-grace-secs", "1"]);
    let id = workspace(&agent).await;
    let (term, pid) = session_with_a_job(&agent, &id, "main").await;
    drop(term);

    agent.wait_for_sessions(0).await;
    wait_gone(pid).await;
}

#[tokio::test]
async fn sigterm_hangs_up_sessions_and_exits_cleanly() {
    let mut agent = Agent::start();
    let id = workspace(&agent).await;
    let (_term, pid) = session_with_a_job(&agent, &id, "main").await;

    let status = agent.terminate();
    assert!(status.success(), "{status}");
    wait_gone(pid).await;
}

#[tokio::test]
async fn agent_exits_when_its_parent_dies() {
    let scratch = tempfile::tempdir().unwrap();
    let script = format!(
        "'{}' serve --root '{}' & echo $!; wait",
        env!("CARGO_BIN_EXE_sam-agent"),
        scratch.path().join("root").display()
    );
    let mut parent = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("SAM_AGENT_KEY", "00112233445566778899aabbccddeeff")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(scratch.path().join("agent.log")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(parent.stdout.take().unwrap()));
    // The shell's `echo $!` and the agent's listen line race to the shared stdout.
    let (first, second) = (
        lines.next().unwrap().unwrap(),
        lines.next().unwrap().unwrap(),
    );
    let (pid, listen) = if first.contains("\"listen\"") {
        (second, first)
    } else {
        (first, second)
    };
    let agent: i32 = pid.parse().unwrap();
    assert!(listen.contains("\"listen\""), "{listen}");

    parent.kill().unwrap();
    parent.wait().unwrap();
    wait_gone(agent).await;
    let log = std::fs::read_to_string(scratch.path().join("agent.log")).unwrap();
    assert!(
        log.contains("SIGTERM"),
        "the kernel's SIGTERM stopped the agent: {log}"
    );
}

#[tokio::test]
async fn broken_frames_close_the_socket_with_protocol_error() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let cases: [(&str, Message); 4] = [
        (
            "unknown type",
            Message::Binary(Bytes::from_static(&[0x7f, 1, 2])),
        ),
        (
            "truncated resize",
            Message::Binary(Bytes::from_static(&[0x03, 0])),
        ),
        ("text message", Message::Text("hello".into())),
        (
            "agent-bound frame type",
            Message::Binary(Frame::Exit(0).encode().into()),
        ),
    ];

    for (case, message) in cases {
        let (mut term, _, _) = Term::open(&agent, &id, "main", 0).await;
        term.send_raw(message).await;
        assert_eq!(term.wait_closed().await.0, 1002, "{case}");
    }

    let mut socket = common::term::connect(&agent, &id, "main").await.unwrap();
    futures_util::SinkExt::send(&mut socket, Message::Binary(Frame::Ack(0).encode().into()))
        .await
        .unwrap();
    let mut term = Term {
        socket,
        received: Vec::new(),
        next_offset: 0,
        auto_ack: false,
        exit: None,
    };
    assert_eq!(
        term.wait_closed().await.0,
        1002,
        "first frame must be hello"
    );

    let (mut survivor, _, _) = Term::open(&agent, &id, "main", 0).await;
    assert_eq!(survivor.run("echo still-here").await, "still-here");
}

#[tokio::test]
async fn oversize_message_closes_with_message_too_big() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut term, _, _) = Term::open(&agent, &id, "main", 0).await;
    let mut message = vec![b'a'; MAX_MESSAGE + 1];
    message[0] = 0x01;
    term.send_raw(Message::Binary(message.into())).await;
    assert_eq!(term.wait_closed().await.0, 1009);
}

#[tokio::test]
async fn new_socket_replaces_the_old_one() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut old, _, _) = Term::open(&agent, &id, "main", 0).await;
    assert_eq!(old.run("echo one").await, "one");

    let (mut new, _, _) = Term::open(&agent, &id, "main", old.next_offset).await;
    assert_eq!(old.wait_closed().await, (1000, "replaced".to_owned()));
    assert_eq!(new.run("echo two").await, "two");
}

#[tokio::test]
async fn ping_frames_are_answered_with_pong() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut term, _, _) = Term::open(&agent, &id, "main", 0).await;
    term.send(Frame::Ping(77)).await;
    loop {
        match term.next_event(WAIT).await {
            Some(Event::Frame(Frame::Pong(nonce))) => {
                assert_eq!(nonce, 77);
                break;
            }
            Some(Event::Output) => {}
            other => panic!("expected pong, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sessions_of_one_workspace_are_separate_shells() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut one, _, _) = Term::open(&agent, &id, "one", 0).await;
    let (mut two, _, _) = Term::open(&agent, &id, "two", 0).await;
    one.type_line("export MARK=first").await;
    assert_eq!(one.run("echo $MARK").await, "first");
    assert_eq!(two.run("echo ${MARK:-unset}").await, "unset");
    agent.wait_for_sessions(2).await;
}

#[tokio::test]
async fn close_ends_the_session_at_once() {
    // The default grace period (600 s) is far longer than any wait below, so only the
    // close message can end the session in time.
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let (mut term, job) = session_with_a_job(&agent, &id, "tab").await;
    let shell: i32 = term.run("echo $$").await.parse().unwrap();

    let closed = tokio::time::Instant::now();
    term.send(Frame::Close).await;
    assert_eq!(term.wait_closed().await, (1000, "shell exited".to_owned()));
    assert!(term.exit.is_some(), "exit comes before the close");
    wait_gone(shell).await;
    wait_gone(job).await;
    agent.wait_for_sessions(0).await;
    assert!(
        closed.elapsed() < Duration::from_secs(10),
        "closing took {:?}",
        closed.elapsed()
    );

    let (mut fresh, offset, _) = Term::open(&agent, &id, "tab", 0).await;
    assert_eq!(offset, 0, "a new session starts under the same name");
    assert_ne!(fresh.run("echo $$").await, shell.to_string());
}

#[tokio::test]
async fn a_workspace_runs_at_most_its_limit_of_sessions() {
    let agent = Agent::start();
    let id = workspace(&agent).await;
    let mut open = Vec::new();
    for n in 0..sam_protocol::MAX_SESSIONS_PER_WORKSPACE {
        open.push(Term::open(&agent, &id, &format!("s{n}"), 0).await.0);
    }

    let mut refused = Term {
        socket: common::term::connect(&agent, &id, "one-more")
            .await
            .unwrap(),
        received: Vec::new(),
        next_offset: 0,
        auto_ack: false,
        exit: None,
    };
    refused
        .send(Frame::Hello {
            offset: 0,
            cols: 80,
            rows: 24,
        })
        .await;
    match refused.next_event(WAIT).await {
        Some(Event::Frame(Frame::Error(text))) => assert!(text.contains("close one"), "{text}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(refused.wait_closed().await.0, 1011);

    let (mut again, _, _) = Term::open(&agent, &id, "s0", open[0].next_offset).await;
    assert_eq!(
        again.run("echo joined").await,
        "joined",
        "running sessions are joined"
    );
    again.send(Frame::Close).await;
    again.wait_closed().await;
    let left = sam_protocol::MAX_SESSIONS_PER_WORKSPACE as u64 - 1;
    agent.wait_for_sessions(left).await;
    let (mut fits, _, _) = Term::open(&agent, &id, "one-more", 0).await;
    assert_eq!(fits.run("echo room").await, "room");
}
