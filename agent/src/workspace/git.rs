//! Running git: argv only, never a shell, and a log of what it said.
//!
//! The agent's environment is inherited on purpose (the host's git configuration,
//! proxies and `GIT_CONFIG_GLOBAL` apply), except that git may never prompt: a
//! fetch that needs credentials it was not given fails instead of hanging.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use tokio::process::Command;

/// How much of git's stderr an error response carries.
const LOG_TAIL: usize = 2 * 1024;

/// The outcome of a git command that ran.
pub struct Output {
    /// Whether git exited with status 0.
    pub success: bool,
    /// Standard output, trimmed.
    pub stdout: String,
}

/// Runs git in one directory, collecting its stderr for error reports.
pub struct Git<'a> {
    dir: &'a Path,
    log: String,
    /// A secret that must never appear in the log.
    redact: Option<String>,
}

impl<'a> Git<'a> {
    /// A runner for the repository (or plain directory) at `dir`.
    pub fn new(dir: &'a Path) -> Self {
        Git {
            dir,
            log: String::new(),
            redact: None,
        }
    }

    /// Keeps `secret` out of the log, in case git ever echoes it.
    pub fn redacting(mut self, secret: Option<&str>) -> Self {
        self.redact = secret.filter(|s| !s.is_empty()).map(str::to_owned);
        self
    }

    /// Runs `git <args>`; an error means git could not be run at all.
    pub async fn run<I, S>(&mut self, args: I) -> anyhow::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with_env(args, None).await
    }

    /// Runs `git <args>` with one extra variable set on that git process only.
    pub async fn run_with_env<I, S>(
        &mut self,
        args: I,
        env: Option<(&str, &str)>,
    ) -> anyhow::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut command = Command::new("git");
        command
            // Checkouts belong to the shells' user when there is one; git refuses to work
            // in another user's repository unless told that it is safe.
            .args(["-c", "safe.directory=*"])
            .args(&args)
            .current_dir(self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some((key, value)) = env {
            command.env(key, value);
        }

        let output = command
            .output()
            .await
            .context("cannot run git; is it installed?")?;
        self.note(&args, &output.stderr);
        Ok(Output {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        })
    }

    /// The last part of what git printed on stderr, for an error response.
    pub fn into_log(self) -> String {
        tail(&self.log).to_owned()
    }

    fn note(&mut self, args: &[OsString], stderr: &[u8]) {
        // Name the subcommand, skipping `-c key=value` pairs, so the log reads well.
        let mut words = args.iter().map(|a| a.to_string_lossy());
        let subcommand = loop {
            match words.next() {
                Some(word) if word == "-c" => {
                    words.next();
                }
                Some(word) => break word.into_owned(),
                None => break String::new(),
            }
        };
        let mut text = String::from_utf8_lossy(stderr).into_owned();
        if let Some(secret) = &self.redact {
            text = text.replace(secret.as_str(), "***");
        }
        self.log.push_str(&format!("$ git {subcommand}\n{text}"));
        if !text.is_empty() && !text.ends_with('\n') {
            self.log.push('\n');
        }
        // Keep the buffer from growing without bound over many commands.
        if self.log.len() > 4 * LOG_TAIL {
            self.log = tail(&self.log).to_owned();
        }
    }
}

/// The last [`LOG_TAIL`] bytes of `text` or a little less, starting on a character.
fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(LOG_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keeps_the_tail_on_a_char_boundary() {
        let mut git = Git::new(Path::new("."));
        git.note(&["fetch".into()], "é".repeat(3000).as_bytes());
        let log = git.into_log();
        assert!(log.len() <= LOG_TAIL);
        assert!(log.ends_with("é\n"));
    }

    #[test]
    fn log_names_the_subcommand_and_hides_the_secret() {
        let mut git = Git::new(Path::new(".")).redacting(Some("ghs_secret"));
        let args: Vec<OsString> = ["-c", "credential.helper=", "fetch", "origin"]
            .map(OsString::from)
            .into();
        git.note(&args, b"fatal: token ghs_secret refused");
        assert_eq!(git.into_log(), "$ git fetch\nfatal: token *** refused\n");
    }

    #[tokio::test]
    async fn failing_command_reports_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let mut git = Git::new(dir.path());
        let output = git.run(["rev-parse", "--verify", "HEAD"]).await.unwrap();
        assert!(!output.success);
        assert!(git.into_log().starts_with("$ git rev-parse\n"));
    }
}
