//! Commands that people write to sam in issue and pull-request comments.
//!
//! A command is a line of a comment that starts with `/sam` and a verb, such as
//! `/sam open feature/login --size large`. Reading one takes three stages, each in its
//! own file so that it can be read and tested apart:
//!
//! 1. `ignore.rs` blanks out the parts of the comment that are never commands: code,
//!    quoted replies and HTML. Someone quoting `/sam open` to ask about it must not
//!    open a workspace.
//! 2. `line.rs` finds the lines that start with `/sam` and splits them into words.
//! 3. `verbs.rs` and `open.rs` turn the words into a [`Command`], or into a
//!    [`CommandError`] whose text can be posted back as the reply.
//!
//! Everything here is pure: no I/O, no async, nothing that reaches a shell. A branch
//! name is data and is kept exactly as written.

mod error;
mod ignore;
mod line;
mod open;
mod verbs;

#[cfg(test)]
mod tests;

pub use error::{CommandError, RepeatableArgument};

/// A command read from a comment, ready for the handler that carries it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Open a workspace on a branch and reply with a link to its shell.
    Open(OpenArgs),
    /// Reply with the commands sam understands.
    Help,
    /// Stop the workspace of this issue or pull request.
    Stop,
    /// Restart the workspace of this issue or pull request.
    Restart,
    /// Delete the workspace of this issue or pull request.
    Delete,
    /// Reply with the state of the workspace of this issue or pull request.
    Status,
}

impl Command {
    /// The verb as written in a comment, lowercase; used in replies and logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Open(_) => "open",
            Command::Help => "help",
            Command::Stop => "stop",
            Command::Restart => "restart",
            Command::Delete => "delete",
            Command::Status => "status",
        }
    }
}

/// What `/sam open` was asked for; `None` where the comment left it to the handler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenArgs {
    /// The branch to open, exactly as written: it may hold `/`, unicode or shell
    /// syntax, and must only ever be passed on as data.
    pub branch: Option<String>,
    /// The size of the machine, from `--size`.
    pub size: Option<HostSize>,
}

/// How big a machine `/sam open --size` asks for; what each size means in CPUs and
/// memory is the provider's configuration, not the parser's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostSize {
    /// `--size small`
    Small,
    /// `--size medium`
    Medium,
    /// `--size large`
    Large,
}

impl HostSize {
    /// The size named `name`, as [`HostSize::as_str`] writes it.
    pub fn parse(name: &str) -> Option<Self> {
        [HostSize::Small, HostSize::Medium, HostSize::Large]
            .into_iter()
            .find(|size| size.as_str() == name)
    }

    /// The size as written after `--size`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HostSize::Small => "small",
            HostSize::Medium => "medium",
            HostSize::Large => "large",
        }
    }
}

/// Reads every command in a comment body, in the order written.
///
/// Each command line gives one entry, whether it parsed or not, so that the caller can
/// answer each one (or act on the first and explain the rest). A body with no command
/// gives an empty vector.
pub fn parse_commands(body: &str) -> Vec<Result<Command, CommandError>> {
    let visible = ignore::blank_ignored(body);

    line::command_lines(body, &visible)
        .map(|line| verbs::parse(&line))
        .collect()
}
