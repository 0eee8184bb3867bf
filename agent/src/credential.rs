//! `sam-agent git-credential`: how a fetch gets the repository token without the
//! token ever being written down.
//!
//! The token is not put in the remote URL (it would land in `.git/config` and in
//! error messages), nor in the repository's config, nor in the shell's environment.
//! Instead the agent runs each fetch with this very binary as git's only credential
//! helper and the token in [`TOKEN_VAR`], set on that one git process. git asks the
//! helper, the helper prints the token, and nothing is stored.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, anyhow};

/// The variable that carries the token from the agent to the helper, through git.
pub const TOKEN_VAR: &str = "SAM_AGENT_GIT_TOKEN";

/// The user name GitHub expects with an installation token.
const USERNAME: &str = "x-access-token";

/// Longest credential request read from git; real ones are a few short lines.
const MAX_REQUEST_LINES: usize = 64;

/// git arguments that make `helper_exe` the only credential helper: the empty value
/// first resets any helper from the system or global config.
pub fn helper_config(helper_exe: &Path) -> anyhow::Result<[OsString; 4]> {
    let exe = helper_exe
        .to_str()
        .ok_or_else(|| anyhow!("agent path {} is not UTF-8", helper_exe.display()))?;
    // A helper starting with `!` is a shell snippet to which git appends the
    // operation; quoting keeps a path with spaces or quotes in one piece.
    let quoted = shlex::try_quote(exe).context("agent path cannot be quoted for the shell")?;
    Ok([
        "-c".into(),
        "credential.helper=".into(),
        "-c".into(),
        format!("credential.helper=!{quoted} git-credential").into(),
    ])
}

/// Answers one git credential request: for `get`, the token from [`TOKEN_VAR`] when
/// it is set, nothing otherwise; `store` and `erase` are ignored, since there is
/// nothing to keep.
pub fn answer(
    operation: &str,
    token: Option<&str>,
    request: impl BufRead,
    mut out: impl Write,
) -> anyhow::Result<()> {
    // git writes the request and waits for it to be read, so always consume it.
    for line in request.lines().take(MAX_REQUEST_LINES) {
        if line
            .context("cannot read the credential request")?
            .is_empty()
        {
            break;
        }
    }
    if operation != "get" {
        return Ok(());
    }
    let Some(token) = token.filter(|token| !token.is_empty() && !token.contains('\n')) else {
        return Ok(());
    };
    write!(out, "username={USERNAME}\npassword={token}\n")
        .and_then(|()| out.flush())
        .context("cannot answer git")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(operation: &str, token: Option<&str>) -> String {
        let request = b"protocol=https\nhost=github.com\n\n".as_slice();
        let mut out = Vec::new();
        answer(operation, token, request, &mut out).unwrap();
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
}
