//! `sam-agent git-credential`: how git gets a repository token without the token ever
//! being written down.
//!
//! The token is not put in the remote URL (it would land in `.git/config` and in
//! error messages), nor in the repository's config, nor in a shell's environment.
//! Two callers run this very binary as git's credential helper:
//!
//! - the agent's own fetch during a checkout, which hands the token over in
//!   [`TOKEN_VAR`], set on that one git process;
//! - git in the workspace's shells, hours later: the checkout's `.git/config` names the
//!   helper with the workspace and the agent's socket for it (see [`broker`]), and the
//!   helper asks the agent, which asks sam for a fresh token scoped to the repository.

pub mod broker;
pub mod wire;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use wire::{Ask, Reply};

/// The variable that carries the token from the agent to the helper, through git.
pub const TOKEN_VAR: &str = "SAM_AGENT_GIT_TOKEN";

/// The user name GitHub expects with an installation token.
pub const USERNAME: &str = "x-access-token";

/// Longest credential request read from git; real ones are a few short lines.
const MAX_REQUEST_LINES: usize = 64;

/// How long the helper waits for the agent, which may wait on sam and GitHub.
const AGENT_WAIT: Duration = Duration::from_secs(60);

/// git arguments that make `helper_exe` the only credential helper: the empty value
/// first resets any helper from the system or global config.
pub fn helper_config(helper_exe: &Path) -> anyhow::Result<[OsString; 4]> {
    let command = helper_command(helper_exe, None)?;
    Ok([
        "-c".into(),
        "credential.helper=".into(),
        "-c".into(),
        format!("credential.helper={command}").into(),
    ])
}

/// The helper as git runs it: `!` makes it a shell snippet to which git appends the
/// operation. With `via`, the helper asks the agent's socket for that workspace.
pub fn helper_command(helper_exe: &Path, via: Option<&AgentSocket>) -> anyhow::Result<String> {
    let mut command = format!("!{} git-credential", quote(helper_exe)?);
    if let Some(via) = via {
        command.push_str(&format!(
            " --socket {} --workspace {}",
            quote(&via.socket)?,
            quote(Path::new(&via.workspace))?
        ));
    }
    Ok(command)
}

/// Quoting keeps a path with spaces or quotes in one piece for the shell.
fn quote(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .ok_or_else(|| anyhow!("path {} is not UTF-8", path.display()))?;
    Ok(shlex::try_quote(text)
        .context("a path cannot be quoted for the shell")?
        .into_owned())
}

/// Where a workspace's shells ask for credentials.
#[derive(Debug, Clone)]
pub struct AgentSocket {
    /// The agent's socket for the workspace.
    pub socket: std::path::PathBuf,
    /// The workspace id, which the agent checks against the socket's own.
    pub workspace: String,
}

/// What git asks about: the fields of its request that decide whether to answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GitRequest {
    pub protocol: Option<String>,
    pub host: Option<String>,
}

/// Reads git's request (`key=value` lines up to a blank line or the end), keeping the
/// fields the agent needs. git waits for it to be read, so it is always read whole.
pub fn read_request(request: impl BufRead) -> anyhow::Result<GitRequest> {
    let mut parsed = GitRequest::default();
    for line in request.lines().take(MAX_REQUEST_LINES) {
        let line = line.context("cannot read the credential request")?;
        if line.is_empty() {
            break;
        }
        match line.split_once('=') {
            Some(("protocol", value)) => parsed.protocol = Some(value.to_owned()),
            Some(("host", value)) => parsed.host = Some(value.to_owned()),
            _ => {}
        }
    }
    Ok(parsed)
}

/// Answers one git credential request. For `get`: the token from [`TOKEN_VAR`] when it
/// is set; else, with `via`, what the agent grants, or `quit=1` and an error when it
/// refuses (so git stops instead of prompting for a password); else nothing. `store`
/// and `erase` are ignored, since there is nothing to keep.
pub fn answer(
    operation: &str,
    token: Option<&str>,
    via: Option<&AgentSocket>,
    request: impl BufRead,
    mut out: impl Write,
) -> anyhow::Result<()> {
    let request = read_request(request)?;
    if operation != "get" {
        return Ok(());
    }
    if let Some(token) = token.filter(|token| !token.is_empty()) {
        return write_credential(&mut out, USERNAME, token);
    }
    let Some(via) = via else {
        return Ok(());
    };
    match ask_agent(via, &request) {
        Ok(Reply::Granted { username, password }) => {
            write_credential(&mut out, &username, &password)
        }
        Ok(Reply::Refused { reason }) => {
            quit(&mut out)?;
            bail!("no git credentials: {reason}")
        }
        Err(error) => {
            quit(&mut out)?;
            Err(error.context("no git credentials: the workspace agent did not answer"))
        }
    }
}

fn write_credential(out: &mut impl Write, username: &str, password: &str) -> anyhow::Result<()> {
    // A line break would let a value add fields of its own to git's answer.
    if [username, password]
        .iter()
        .any(|value| value.is_empty() || value.contains(['\n', '\r', '\0']))
    {
        return Ok(());
    }
    write!(out, "username={username}\npassword={password}\n")
        .and_then(|()| out.flush())
        .context("cannot answer git")
}

fn quit(out: &mut impl Write) -> anyhow::Result<()> {
    out.write_all(b"quit=1\n")
        .and_then(|()| out.flush())
        .context("cannot answer git")
}

/// One question to the agent over its socket: a JSON line each way.
fn ask_agent(via: &AgentSocket, request: &GitRequest) -> anyhow::Result<Reply> {
    let ask = Ask {
        workspace: via.workspace.clone(),
        protocol: request.protocol.clone().unwrap_or_default(),
        host: request.host.clone().unwrap_or_default(),
    };
    let mut stream = UnixStream::connect(&via.socket)
        .with_context(|| format!("cannot reach {}", via.socket.display()))?;
    stream.set_read_timeout(Some(AGENT_WAIT))?;
    stream.set_write_timeout(Some(AGENT_WAIT))?;
    wire::write_line(&mut stream, &ask)?;
    let mut reader = BufReader::new(stream);
    wire::read_line(&mut reader)?.ok_or_else(|| anyhow!("the agent hung up without answering"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn answered(operation: &str, token: Option<&str>) -> String {
        let request = b"protocol=https\nhost=github.com\n\n".as_slice();
        let mut out = Vec::new();
        answer(operation, token, None, request, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn get_answers_with_the_token() {
        assert_eq!(
            answered("get", Some("ghs_abc")),
            "username=x-access-token\npassword=ghs_abc\n"
        );
    }

    #[test]
    fn get_without_a_token_answers_nothing() {
        assert_eq!(answered("get", None), "");
        assert_eq!(answered("get", Some("")), "");
    }

    #[test]
    fn token_with_a_newline_is_never_printed() {
        assert_eq!(answered("get", Some("a\nusername=evil")), "");
    }

    #[test]
    fn store_and_erase_do_nothing() {
        assert_eq!(answered("store", Some("ghs_abc")), "");
        assert_eq!(answered("erase", Some("ghs_abc")), "");
    }

    #[test]
    fn helper_path_is_quoted_for_the_shell() {
        let config = helper_config(Path::new("/opt/my agent/sam-agent")).unwrap();
        assert_eq!(config[1], "credential.helper=");
        assert_eq!(
            config[3],
            "credential.helper=!'/opt/my agent/sam-agent' git-credential"
        );
    }

    #[test]
    fn helper_for_a_workspace_names_its_socket_and_id() {
        let via = AgentSocket {
            socket: "/data/work spaces/.git-credentials/w.sock".into(),
            workspace: "6f1c1c52-8a8e-4a53-9c1b-6e0f2a8f0b11".into(),
        };
        assert_eq!(
            helper_command(Path::new("/usr/bin/sam-agent"), Some(&via)).unwrap(),
            "!/usr/bin/sam-agent git-credential --socket '/data/work spaces/.git-credentials/w.sock' \
             --workspace 6f1c1c52-8a8e-4a53-9c1b-6e0f2a8f0b11"
        );
    }

    #[test]
    fn request_keeps_protocol_and_host_and_stops_at_the_blank_line() {
        let text = b"protocol=http\nhost=127.0.0.1:8080\npath=o/r.git\nwwwauth[]=Basic realm=x\n\nhost=late\n";
        let request = read_request(text.as_slice()).unwrap();
        assert_eq!(
            request,
            GitRequest {
                protocol: Some("http".into()),
                host: Some("127.0.0.1:8080".into()),
            }
        );
    }

    /// A one-shot agent on a socket in a temporary folder: records what it was asked and
    /// answers `reply`.
    fn fake_agent(reply: Reply) -> (tempfile::TempDir, AgentSocket, std::thread::JoinHandle<Ask>) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let served = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let ask: Ask = wire::read_line(&mut reader).unwrap().unwrap();
            let mut stream = stream;
            wire::write_line(&mut stream, &reply).unwrap();
            ask
        });
        let via = AgentSocket {
            socket,
            workspace: "w-1".into(),
        };
        (dir, via, served)
    }

    #[test]
    fn get_asks_the_agent_and_passes_its_credential_on() {
        let (_dir, via, served) = fake_agent(Reply::Granted {
            username: USERNAME.into(),
            password: "ghs_fresh".into(),
        });
        let mut out = Vec::new();
        let request = b"protocol=https\nhost=github.com\n\n".as_slice();
        answer("get", None, Some(&via), request, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "username=x-access-token\npassword=ghs_fresh\n"
        );
        let ask = served.join().unwrap();
        assert_eq!(ask.workspace, "w-1");
        assert_eq!(ask.protocol, "https");
        assert_eq!(ask.host, "github.com");
    }

    #[test]
    fn a_refusal_tells_git_to_quit_and_says_why() {
        let (_dir, via, served) = fake_agent(Reply::Refused {
            reason: "the workspace was deleted".into(),
        });
        let mut out = Vec::new();
        let request = b"protocol=https\nhost=github.com\n\n".as_slice();
        let error = answer("get", None, Some(&via), request, &mut out).unwrap_err();
        assert_eq!(String::from_utf8(out).unwrap(), "quit=1\n");
        assert!(format!("{error:#}").contains("the workspace was deleted"));
        served.join().unwrap();
    }

    #[test]
    fn an_unreachable_agent_tells_git_to_quit() {
        let dir = tempfile::tempdir().unwrap();
        let via = AgentSocket {
            socket: dir.path().join("missing.sock"),
            workspace: "w-1".into(),
        };
        let mut out = Vec::new();
        let request = b"protocol=https\nhost=github.com\n\n".as_slice();
        assert!(answer("get", None, Some(&via), request, &mut out).is_err());
        assert_eq!(String::from_utf8(out).unwrap(), "quit=1\n");
    }

    #[test]
    fn the_agent_is_not_asked_to_store_or_erase() {
        let dir = tempfile::tempdir().unwrap();
        let via = AgentSocket {
            socket: dir.path().join("missing.sock"),
            workspace: "w-1".into(),
        };
        let mut out = Vec::new();
        let request = b"protocol=https\nhost=github.com\n\n".as_slice();
        answer("erase", None, Some(&via), request, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
