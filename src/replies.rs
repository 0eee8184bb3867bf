//! Every text sam posts on GitHub, built from typed values and rendered from `templates/replies/`.
//!
//! Values that come from people (branch names, logins) are put in code spans fenced with
//! enough backticks, so that a branch name cannot break out into Markdown or mention anyone.

use askama::Template;

use crate::database::workspaces::WorkspaceModel;

/// `/sam help`.
#[derive(Template)]
#[template(path = "replies/help.md")]
pub struct Help<'a> {
    pub slug: &'a str,
}

/// A command from someone who may not change workspaces on this repository.
#[derive(Template)]
#[template(path = "replies/not_allowed.md")]
pub struct NotAllowed<'a> {
    pub login: &'a str,
    /// The command refused, like `open` or `stop`.
    pub verb: &'a str,
}

/// A command sam could not understand.
#[derive(Template)]
#[template(path = "replies/command_error.md")]
pub struct CommandError<'a> {
    pub login: &'a str,
    pub error: &'a str,
}

/// `/sam open <branch>` for a branch the repository does not have.
#[derive(Template)]
#[template(path = "replies/no_such_branch.md")]
pub struct NoSuchBranch {
    pub branch: String,
}

/// A note under a ready workspace whose `/sam open --size` the provider cannot honour.
#[derive(Template)]
#[template(path = "replies/size_ignored.md")]
pub struct SizeIgnored<'a> {
    pub size: &'a str,
}

impl NoSuchBranch {
    /// The reply for `branch`.
    pub fn new(branch: &str) -> Self {
        Self {
            branch: code_span(branch),
        }
    }
}

/// The summary of sam's check run while it offers its button.
#[derive(Template)]
#[template(path = "replies/check_offer.md")]
pub struct CheckOffer;

/// The summary of sam's check run once the button opened a workspace.
#[derive(Template)]
#[template(path = "replies/check_ready.md")]
pub struct CheckReady<'a> {
    pub login: &'a str,
    pub link: &'a str,
}

/// The one status comment of a workspace, edited in place as it moves.
#[derive(Template)]
#[template(path = "replies/status.md")]
pub struct Status<'a> {
    pub login: &'a str,
    pub branch: String,
    pub commit: String,
    pub phase: Phase<'a>,
}

/// Where a workspace is, as its status comment says.
pub enum Phase<'a> {
    /// Recorded, waiting for a host to take it.
    Queued,
    /// A host is fetching the branch and checking it out.
    Cloning,
    /// A stopped workspace is brought back from the files it kept.
    Starting,
    Ready {
        link: &'a str,
    },
    Failed {
        reason: &'a str,
        log: String,
    },
    /// Stopped, for a reason like "on request".
    Stopped {
        reason: &'a str,
    },
    /// Deleted, for a reason like "when the pull request was closed".
    Deleted {
        reason: &'a str,
    },
}

/// The answer to `/sam stop`, `/sam restart`, `/sam delete` and `/sam status`: one line
/// per workspace of the issue or pull request.
#[derive(Template)]
#[template(path = "replies/workspaces.md")]
pub struct Workspaces<'a> {
    pub login: &'a str,
    pub verb: &'a str,
    /// "issue" or "pull request".
    pub place: &'a str,
    pub rows: Vec<WorkspaceRow>,
}

/// One workspace in a [`Workspaces`] answer.
pub struct WorkspaceRow {
    pub branch: String,
    pub commit: String,
    pub requester: String,
    /// What the command did to it, or where it is.
    pub outcome: String,
}

impl WorkspaceRow {
    /// The row of the workspace on `branch` at `commit`, opened by `requester`.
    pub fn new(branch: &str, commit: &str, requester: &str, outcome: String) -> Self {
        Self {
            branch: code_span(branch),
            commit: code_span(commit.get(..12).unwrap_or(commit)),
            requester: requester.to_owned(),
            outcome,
        }
    }
}

/// GitHub refuses comments over 65,536 characters; logs are cut well before that.
const MAX_LOG: usize = 8_000;

impl<'a> Status<'a> {
    /// A status comment for `login`'s workspace on `branch` at `commit`.
    pub fn new(login: &'a str, branch: &str, commit: &str, phase: Phase<'a>) -> Self {
        let short = commit.get(..12).unwrap_or(commit);
        Self {
            login,
            branch: code_span(branch),
            commit: code_span(short),
            phase,
        }
    }

    /// The status comment of `workspace` in `phase`, addressed to the person who asked.
    pub fn of(workspace: &'a WorkspaceModel, phase: Phase<'a>) -> Self {
        Self::new(
            &workspace.requester_login,
            &workspace.branch,
            &workspace.head_sha,
            phase,
        )
    }

    /// A failure, with the end of the log fenced so nothing in it renders as Markdown.
    pub fn failed_log(log: &str) -> String {
        let tail = tail(log, MAX_LOG);
        fenced(tail)
    }
}

/// The text of a workspace's status comment in `phase`.
pub fn status(workspace: &WorkspaceModel, phase: Phase<'_>) -> String {
    render(&Status::of(workspace, phase))
}

/// Renders a reply; templates are checked at compile time, so this only fails on a bug.
pub fn render(template: &impl Template) -> String {
    template.render().unwrap_or_else(|error| {
        tracing::error!(%error, "rendering a reply");
        "sam could not render its reply; the operator will find the error in the log.".to_owned()
    })
}

/// A Markdown code span that holds `text` literally, whatever backticks it contains.
pub fn code_span(text: &str) -> String {
    let longest = longest_run(text, '`');
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

fn fenced(text: &str) -> String {
    let fence = "`".repeat(longest_run(text, '`').max(2) + 1);
    format!("{fence}text\n{}\n{fence}", text.trim_end())
}

fn longest_run(text: &str, c: char) -> usize {
    let mut longest = 0;
    let mut current = 0;
    for ch in text.chars() {
        current = if ch == c { current + 1 } else { 0 };
        longest = longest.max(current);
    }
    longest
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_span_survives_backticks() {
        assert_eq!(code_span("main"), "`main`");
        assert_eq!(code_span("a`b"), "``a`b``");
        assert_eq!(code_span("`x"), "`` `x ``");
    }

    #[test]
    fn a_command_error_points_to_help_once() {
        use crate::commands::CommandError as Error;
        for error in [Error::MissingVerb, Error::UnknownVerb("launch".into())] {
            let text = render(&CommandError {
                login: "octocat",
                error: &error.to_string(),
            });
            assert_eq!(text.matches("/sam help").count(), 1, "{text}");
        }
    }

    #[test]
    fn long_logs_keep_their_end() {
        let log = format!("{}END", "x".repeat(20_000));
        let fenced = Status::failed_log(&log);
        assert!(fenced.len() < MAX_LOG + 20);
        assert!(fenced.contains("END"));
    }

    #[test]
    fn status_names_branch_as_code() {
        let text = render(&Status::new(
            "octocat",
            "@team/x",
            "0123456789abcdef",
            Phase::Ready {
                link: "https://sam.example/w/1?t=x",
            },
        ));
        assert!(text.contains("`@team/x`"), "{text}");
        assert!(text.contains("https://sam.example/w/1?t=x"), "{text}");
        assert!(text.contains("`0123456789ab`"), "{text}");
    }
}
