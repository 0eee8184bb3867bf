//! Starting a shell on a PTY and moving its bytes between blocking threads and
//! async channels.
//!
//! PTY file descriptors are blocking, so each session has three small threads: a
//! reader that feeds a bounded channel (when the session stops taking output, the
//! reader blocks and the kernel's PTY buffer fills, which pauses the program that
//! floods the terminal), a writer for input (so keystrokes never wait behind
//! output), and a waiter that reaps the shell so it never lingers as a zombie.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use nix::unistd::Pid;
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use tokio::sync::{mpsc, oneshot};

use crate::accounts::{ShellUser, setpriv};

/// Output chunks buffered between the reader thread and the session; small, so
/// flow control reaches the PTY quickly.
const OUTPUT_CHUNKS: usize = 8;

/// Size of one read from the PTY.
const READ_SIZE: usize = 16 * 1024;

/// Input messages buffered before the socket reader waits for the shell.
const INPUT_MESSAGES: usize = 64;

/// Variables copied from the agent's environment into the shell's. Everything else
/// (the agent key, tokens, database URLs) stays out of the shell.
const INHERITED: &[&str] = &["HOME", "USER", "LOGNAME", "PATH", "LANG"];

/// The exit status reported when a signal killed the shell.
pub const KILLED: i32 = -1;

/// A running shell: what the session keeps to resize it and end it.
pub struct Shell {
    /// The shell's pid, which is also its session id.
    pub leader: Pid,
    master: Mutex<Box<dyn MasterPty + Send>>,
}

/// The channels connected to a shell's threads.
pub struct ShellIo {
    /// PTY output; closes when every process holding the terminal is gone.
    pub output: mpsc::Receiver<Bytes>,
    /// Bytes to write to the PTY.
    pub input: mpsc::Sender<Bytes>,
    /// The shell's exit status, once it has been reaped.
    pub exited: oneshot::Receiver<i32>,
}

impl Shell {
    /// Starts a shell in `cwd` on a new PTY of the given size, as `user` when given.
    pub fn spawn(
        cwd: &Path,
        cols: u16,
        rows: u16,
        user: Option<&ShellUser>,
    ) -> anyhow::Result<(Shell, ShellIo)> {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|error| anyhow!("{error:#}"))
            .context("cannot open a PTY")?;

        let program = shell_program(std::env::var_os("SHELL").as_deref());
        let mut command = match user {
            // setpriv changes user and groups and then execs the shell, so the pid the
            // session holds is the shell's.
            Some(user) => {
                let mut command = CommandBuilder::new(setpriv()?);
                command.args(["--reuid", &user.name, "--regid"]);
                command.arg(user.gid.to_string());
                // No setuid or setgid program gains its owner's rights in the workspace:
                // one left behind by another account must not lend its id.
                command.args(["--init-groups", "--no-new-privs", "--"]);
                command.arg(&program);
                command
            }
            None => CommandBuilder::new(&program),
        };
        command.arg("-i");
        command.cwd(cwd);
        command.env_clear();
        for (key, value) in shell_env(std::env::vars_os(), &program) {
            command.env(key, value);
        }
        if let Some(user) = user {
            command.env("HOME", &user.home);
            command.env("USER", &user.name);
            command.env("LOGNAME", &user.name);
        }

        let mut child = pair
            .slave
            .spawn_command(command)
            .map_err(|error| anyhow!("{error:#}"))
            .with_context(|| format!("cannot start {}", program.display()))?;
        // Only the shell may hold the terminal side open, or the reader never sees EOF.
        drop(pair.slave);

        let pid = child
            .process_id()
            .context("the shell has no pid")?
            .try_into()
            .context("the shell's pid is out of range")?;
        let reader = pair
            .master
            .try_clone_reader()
            .map_err(|error| anyhow!("{error:#}"))
            .context("cannot read the PTY")?;
        let writer = pair
            .master
            .take_writer()
            .map_err(|error| anyhow!("{error:#}"))
            .context("cannot write the PTY")?;

        let (output_tx, output) = mpsc::channel(OUTPUT_CHUNKS);
        let (input, input_rx) = mpsc::channel(INPUT_MESSAGES);
        let (exited_tx, exited) = oneshot::channel();
        spawn_thread("pty-reader", move || read_output(reader, output_tx))?;
        spawn_thread("pty-writer", move || write_input(writer, input_rx))?;
        spawn_thread("pty-waiter", move || {
            let status = match child.wait() {
                Ok(status) if status.signal().is_none() => {
                    i32::try_from(status.exit_code()).unwrap_or(KILLED)
                }
                _ => KILLED,
            };
            let _ = exited_tx.send(status);
        })?;

        let shell = Shell {
            leader: Pid::from_raw(pid),
            master: Mutex::new(pair.master),
        };
        Ok((
            shell,
            ShellIo {
                output,
                input,
                exited,
            },
        ))
    }

    /// Tells the PTY (and so the shell, through SIGWINCH) about a new size.
    pub fn resize(&self, cols: u16, rows: u16) -> anyhow::Result<()> {
        let master = self
            .master
            .lock()
            .map_err(|_| anyhow!("PTY lock poisoned"))?;
        master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|error| anyhow!("{error:#}"))
            .context("cannot resize the PTY")
    }
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map(drop)
        .with_context(|| format!("cannot start the {name} thread"))
}

fn read_output(mut reader: Box<dyn Read + Send>, output: mpsc::Sender<Bytes>) {
    let mut buffer = vec![0; READ_SIZE];
    loop {
        match reader.read(&mut buffer) {
            // EIO (reported as 0 by portable-pty) means the terminal side is closed.
            Ok(0) => break,
            Ok(read) => {
                if output
                    .blocking_send(Bytes::copy_from_slice(&buffer[..read]))
                    .is_err()
                {
                    break;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                tracing::debug!(%error, "PTY read ended");
                break;
            }
        }
    }
}

fn write_input(mut writer: Box<dyn Write + Send>, mut input: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = input.blocking_recv() {
        if let Err(error) = writer.write_all(&bytes).and_then(|()| writer.flush()) {
            tracing::debug!(%error, "PTY write failed");
            break;
        }
    }
}

/// `$SHELL` when it names an existing file, else bash, else sh.
fn shell_program(from_env: Option<&OsStr>) -> PathBuf {
    from_env
        .map(PathBuf::from)
        .filter(|path| path.is_absolute() && path.is_file())
        .or_else(|| {
            ["/bin/bash", "/bin/sh"]
                .into_iter()
                .map(PathBuf::from)
                .find(|path| path.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

/// The shell's whole environment: a few inherited variables and the terminal's.
fn shell_env(
    agent_env: impl Iterator<Item = (OsString, OsString)>,
    program: &Path,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = agent_env
        .filter(|(key, _)| {
            let key = key.to_string_lossy();
            INHERITED.contains(&key.as_ref()) || key.starts_with("LC_")
        })
        .collect();
    if !env.iter().any(|(key, _)| key == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    if !env.iter().any(|(key, _)| key == "LANG") {
        env.push(("LANG".into(), "C.UTF-8".into()));
    }
    env.push(("SHELL".into(), program.into()));
    env.push(("TERM".into(), "xterm-256color".into()));
    env.push(("COLORTERM".into(), "truecolor".into()));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let agent_env = pairs
            .iter()
            .map(|(key, value)| (OsString::from(key), OsString::from(value)));
        shell_env(agent_env, Path::new("/bin/bash"))
            .into_iter()
            .map(|(key, value)| (key.into_string().unwrap(), value.into_string().unwrap()))
            .collect()
    }

    #[test]
    fn shell_env_keeps_only_the_allowed_variables() {
        let env = env_of(&[
            ("HOME", "/home/dev"),
            ("PATH", "/usr/bin"),
            ("LC_ALL", "de_DE.UTF-8"),
            ("SAM_AGENT_KEY", "secret"),
            ("GITHUB_TOKEN", "ghs_x"),
            ("DATABASE_URL", "postgres://x"),
            ("TERM", "dumb"),
        ]);
        let keys: Vec<&str> = env.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "HOME",
                "PATH",
                "LC_ALL",
                "LANG",
                "SHELL",
                "TERM",
                "COLORTERM"
            ]
        );
        assert!(env.contains(&("TERM".into(), "xterm-256color".into())));
        assert!(env.contains(&("LANG".into(), "C.UTF-8".into())));
    }

    #[test]
    fn shell_env_keeps_the_agents_lang() {
        let env = env_of(&[("LANG", "fr_FR.UTF-8")]);
        assert!(env.contains(&("LANG".into(), "fr_FR.UTF-8".into())));
        assert!(env.iter().any(|(key, _)| key == "PATH"));
    }

    #[test]
    fn missing_shell_falls_back_to_bash_or_sh() {
        let program = shell_program(Some(OsStr::new("/no/such/shell")));
        assert!(program == Path::new("/bin/bash") || program == Path::new("/bin/sh"));
        assert_eq!(
            shell_program(Some(OsStr::new("/bin/sh"))),
            Path::new("/bin/sh")
        );
    }
}
