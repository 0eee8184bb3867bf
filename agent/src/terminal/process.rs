//! Ending every process a shell started, not just the shell.
//!
//! The shell is a session leader (portable-pty calls `setsid` before exec), so the
//! POSIX session id of everything it starts is the shell's pid. Interactive shells
//! put background jobs in process groups of their own, so signalling the shell's
//! group would miss `sleep 1000 &`; signalling every process of the session does not.
//! A process that calls `setsid` itself (a daemon) escapes, as it would from a
//! terminal emulator.

use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::time::{Instant, sleep};

/// How long processes get to exit on SIGHUP before they are killed.
pub const HANGUP_GRACE: Duration = Duration::from_secs(2);

/// How often a waiting hang-up looks again for survivors.
const POLL: Duration = Duration::from_millis(50);

/// Sends `signal` to every live process of the session led by `leader`.
pub fn signal_session(leader: Pid, signal: Signal) {
    // The group first: it covers the shell even where /proc is unavailable.
    let _ = killpg(leader, signal);
    for pid in session_members(leader) {
        let _ = kill(pid, signal);
    }
}

/// Hangs up the session led by `leader` and kills whatever is left after
/// [`HANGUP_GRACE`]. Returns once no live process of the session remains or the
/// kill was sent.
pub async fn terminate_session(leader: Pid) {
    if session_members(leader).is_empty() {
        return;
    }
    signal_session(leader, Signal::SIGHUP);
    signal_session(leader, Signal::SIGCONT);

    let deadline = Instant::now() + HANGUP_GRACE;
    while Instant::now() < deadline {
        if session_members(leader).is_empty() {
            return;
        }
        sleep(POLL).await;
    }
    signal_session(leader, Signal::SIGKILL);
}

/// Live (not zombie) processes whose session id is `leader`'s pid.
pub fn session_members(leader: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|stat| stat.session == leader.as_raw() && stat.state != 'Z')
        })
        .map(Pid::from_raw)
        .collect()
}

/// The fields of `/proc/<pid>/stat` this module needs.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    state: char,
    session: i32,
}

/// Parses `pid (comm) state ppid pgrp session ...`. The command name may contain
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let session = fields.nth(2)?.parse().ok()?;
    Some(Stat { state, session })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (we ird) (name)) S 1 4242 4240 34816 4242 4194560 110 0";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                state: 'S',
                session: 4240
            })
        );
    }

    #[test]
    fn malformed_stat_is_ignored() {
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn own_session_is_found() {
        let me = nix::unistd::getpid();
        let session = nix::unistd::getsid(None).unwrap();
        assert!(session_members(session).contains(&me));
    }
}
