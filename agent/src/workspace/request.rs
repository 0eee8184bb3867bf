//! The body of `PUT /workspaces/{id}` and the checks that need no git.
//!
//! Everything here ends up as a git argument, so each field is checked for shape
//! before any process starts; branch and ref names are checked by git itself later
//! (`check-ref-format`), which knows its own rules best.

use std::fmt;

use serde::Deserialize;
use url::Url;

/// What to check out.
#[derive(Debug, Deserialize)]
pub struct CheckoutRequest {
    /// `https://` (or `http://`) URL of the repository, without credentials.
    pub clone_url: String,
    /// The local branch to create.
    pub branch: String,
    /// The commit to check out, as a full hex object name.
    pub commit: String,
    /// The remote ref holding the commit: `refs/heads/<branch>` or `refs/pull/<n>/head`.
    pub fetch_ref: String,
    /// Token for fetching private repositories; used for this fetch only.
    #[serde(default)]
    pub git_token: Option<GitToken>,
    /// Author identity for commits made in the workspace.
    #[serde(default)]
    pub git_user: Option<GitUser>,
}

/// A repository token, kept out of `Debug` output and logs.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct GitToken(String);

impl GitToken {
    /// The token itself, for the one git process that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GitToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GitToken(..)")
    }
}

/// Name and email written to the workspace's git config.
#[derive(Debug, Deserialize)]
pub struct GitUser {
    /// `user.name`.
    pub name: String,
    /// `user.email`.
    pub email: String,
}

/// Longest name or email accepted for the git identity.
const MAX_IDENTITY: usize = 256;

impl CheckoutRequest {
    /// Checks the fields whose shape is known without git. The message is meant for
    /// the person or program that sent the request.
    pub fn validate(&self) -> Result<(), String> {
        check_clone_url(&self.clone_url)?;
        check_commit(&self.commit)?;
        check_fetch_ref(&self.fetch_ref)?;
        if self.branch.is_empty() || self.branch.starts_with('-') {
            return Err(format!("{:?} is not a valid branch name", self.branch));
        }
        if let Some(user) = &self.git_user {
            check_identity("git_user.name", &user.name)?;
            check_identity("git_user.email", &user.email)?;
        }
        Ok(())
    }

    /// The remote-tracking ref to fetch into when the ref is the branch itself, so
    /// the local branch can track it and `git status` compares against it.
    pub fn tracking_ref(&self) -> Option<String> {
        let branch = self.fetch_ref.strip_prefix("refs/heads/")?;
        (branch == self.branch).then(|| format!("refs/remotes/origin/{branch}"))
    }
}

fn check_clone_url(clone_url: &str) -> Result<(), String> {
    let url = Url::parse(clone_url).map_err(|error| format!("clone_url is not a URL: {error}"))?;
    // Plain http is allowed for GitHub Enterprise Server on a private network; sam takes the
    // scheme from its own GITHUB_URL, never from a payload.
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err("clone_url must be an https:// or http:// URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("clone_url must not carry credentials; send git_token instead".into());
    }
    Ok(())
}

fn check_commit(commit: &str) -> Result<(), String> {
    let hex = commit
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex && (commit.len() == 40 || commit.len() == 64) {
        Ok(())
    } else {
        Err(format!(
            "commit {commit:?} is not a full lowercase hex object name"
        ))
    }
}

fn check_fetch_ref(fetch_ref: &str) -> Result<(), String> {
    let pull = fetch_ref
        .strip_prefix("refs/pull/")
        .and_then(|rest| {
            rest.strip_suffix("/head")
                .or_else(|| rest.strip_suffix("/merge"))
        })
        .is_some_and(|number| !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()));
    let branch = fetch_ref
        .strip_prefix("refs/heads/")
        .is_some_and(|name| !name.is_empty());
    if pull || branch {
        Ok(())
    } else {
        Err(format!(
            "fetch_ref {fetch_ref:?} must be refs/heads/<branch> or refs/pull/<number>/head"
        ))
    }
}

fn check_identity(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() || value.len() > MAX_IDENTITY || value.chars().any(char::is_control)
    {
        return Err(format!(
            "{field} must be a single line of at most {MAX_IDENTITY} bytes"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn request(clone_url: &str, branch: &str, commit: &str, fetch_ref: &str) -> CheckoutRequest {
        CheckoutRequest {
            clone_url: clone_url.into(),
            branch: branch.into(),
            commit: commit.into(),
            fetch_ref: fetch_ref.into(),
            git_token: None,
            git_user: None,
        }
    }

    fn valid() -> CheckoutRequest {
        request(
            "https://github.com/o/r.git",
            "feature/x",
            SHA,
            "refs/heads/feature/x",
        )
    }

    #[test]
    fn a_plain_request_is_valid() {
        assert_eq!(valid().validate(), Ok(()));
        let pull = request(
            "https://github.com/o/r.git",
            "pr-3",
            SHA,
            "refs/pull/3/head",
        );
        assert_eq!(pull.validate(), Ok(()));
    }

    #[test]
    fn clone_url_must_be_http_without_credentials() {
        for url in [
            "ssh://git@github.com/o/r.git",
            "file:///etc",
            "ext::sh -c touch% /tmp/pwned",
            "-uhttps://github.com/o/r.git",
            "https://user:pass@github.com/o/r.git",
            "https://x-access-token@github.com/o/r.git",
        ] {
            let mut request = valid();
            request.clone_url = url.into();
            assert!(request.validate().is_err(), "{url} should be refused");
        }
    }

    #[test]
    fn plain_http_is_accepted_for_enterprise_servers() {
        let mut request = valid();
        request.clone_url = "http://ghe.internal/o/r.git".into();
        assert_eq!(request.validate(), Ok(()));
    }

    #[test]
    fn commit_must_be_a_full_hex_name() {
        for commit in [
            "",
            "HEAD",
            "0123456",
            &SHA.to_uppercase(),
            &format!("{SHA}0"),
        ] {
            let mut request = valid();
            request.commit = commit.into();
            assert!(request.validate().is_err(), "{commit} should be refused");
        }
    }

    #[test]
    fn fetch_ref_must_be_a_branch_or_pull_request() {
        for fetch_ref in [
            "",
            "main",
            "refs/heads/",
            "refs/pull/x/head",
            "refs/tags/v1",
            "--upload-pack=x",
        ] {
            let mut request = valid();
            request.fetch_ref = fetch_ref.into();
            assert!(request.validate().is_err(), "{fetch_ref} should be refused");
        }
    }

    #[test]
    fn branch_starting_with_a_dash_is_refused() {
        let mut request = valid();
        request.branch = "-f".into();
        assert!(request.validate().is_err());
    }

    #[test]
    fn identity_must_be_one_line() {
        let mut request = valid();
        request.git_user = Some(GitUser {
            name: "Mallory\n[core]".into(),
            email: "m@example.com".into(),
        });
        assert!(request.validate().is_err());
    }

    #[test]
    fn branch_fetched_by_its_own_ref_is_tracked() {
        assert_eq!(
            valid().tracking_ref().as_deref(),
            Some("refs/remotes/origin/feature/x")
        );
        let pull = request(
            "https://github.com/o/r.git",
            "pr-3",
            SHA,
            "refs/pull/3/head",
        );
        assert_eq!(pull.tracking_ref(), None);
    }

    #[test]
    fn token_is_not_in_debug_output() {
        let mut request = valid();
        request.git_token = Some(GitToken("ghs_secret".into()));
        assert!(!format!("{request:?}").contains("ghs_secret"));
    }
}
