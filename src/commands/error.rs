//! Why a command could not be read, in words meant for the person who wrote it.
//!
//! Each message is a complete markdown sentence that can be posted as the reply. The
//! words a person wrote are always shown through [`Code`], never pasted in as they
//! are: see there for why.

use std::fmt;

/// A command line that starts with `/sam` but could not be read.
///
/// `Display` gives a friendly markdown message for the reply; the variants are for
/// callers and tests that need to tell the cases apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The line was `/sam` with nothing after it.
    #[error("`/sam` needs a command after it, such as `/sam open`.")]
    MissingVerb,

    /// The word after `/sam` is not a verb sam knows; kept as written.
    #[error("I don't know the command {}.", Code(.0))]
    UnknownVerb(String),

    /// A verb that takes nothing after it was given something.
    #[error("`/sam {verb}` takes nothing after it, so I did not understand {}. Write `/sam {verb}` on a line of its own.", Code(.arg))]
    UnexpectedArgument {
        /// The verb, lowercase.
        verb: &'static str,
        /// The first word after the verb, as written.
        arg: String,
    },

    /// `/sam open` was given an option it does not have; kept as written.
    #[error("`/sam open` has no option {}. Its one option is `--size`, as in `/sam open --size large`.", Code(.0))]
    UnknownFlag(String),

    /// `--size` was given without a value.
    #[error(
        "`--size` needs a value: `small`, `medium` or `large`, as in `/sam open --size large`."
    )]
    MissingSize,

    /// The value of `--size` is not a size; kept as written.
    #[error("{} is not a size I know. Use `small`, `medium` or `large`, as in `/sam open --size large`.", Code(.0))]
    InvalidSize(String),

    /// An argument that may be given once was given twice.
    #[error("`/sam open` takes one {argument}, but got both {} and {}.", Code(.first), Code(.second))]
    DuplicateArgument {
        /// Which argument it was.
        argument: RepeatableArgument,
        /// The value given first.
        first: String,
        /// The value given next.
        second: String,
    },
}

/// An argument of `/sam open` that may be given at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatableArgument {
    /// The branch to open.
    Branch,
    /// The `--size` option.
    Size,
}

impl fmt::Display for RepeatableArgument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepeatableArgument::Branch => f.write_str("branch"),
            RepeatableArgument::Size => f.write_str("`--size`"),
        }
    }
}

/// Shows words from a comment as inline code in a reply, whatever they contain.
///
/// Pasted in as they are, a person's words could mention people (`@org/team`), add
/// links or images, or break the markdown of sam's reply. Inside a code span GitHub
/// shows them literally. The span's fence is one backtick longer than any run of
/// backticks in the words, so that none can close it early, and long words are cut so
/// that a pasted log cannot fill the reply.
struct Code<'a>(&'a str);

impl Code<'_> {
    /// How many characters of the words are shown before they are cut.
    const MAX_CHARS: usize = 60;
}

impl fmt::Display for Code<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (text, cut) = match self.0.char_indices().nth(Self::MAX_CHARS) {
            Some((end, _)) => (&self.0[..end], "…"),
            None => (self.0, ""),
        };

        let longest_run = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
        let fence = "`".repeat(longest_run + 1);
        // A span that starts or ends with a backtick needs a space inside the fence;
        // GitHub strips one space from each side again when it renders the span.
        let pad = if longest_run > 0 { " " } else { "" };

        write!(f, "{fence}{pad}{text}{cut}{pad}{fence}")
    }
}

#[cfg(test)]
mod tests {
    use super::{Code, CommandError, RepeatableArgument};

    #[test]
    fn plain_words_are_shown_in_single_backticks() {
        assert_eq!(Code("main").to_string(), "`main`");
    }

    #[test]
    fn backticks_in_words_get_a_longer_fence() {
        assert_eq!(Code("a``b").to_string(), "``` a``b ```");
    }

    #[test]
    fn long_words_are_cut() {
        let shown = Code(&"x".repeat(500)).to_string();
        assert_eq!(shown, format!("`{}…`", "x".repeat(Code::MAX_CHARS)));
    }

    #[test]
    fn mentions_are_shown_as_code() {
        let message = CommandError::UnknownVerb("@everyone".into()).to_string();
        assert!(message.contains("`@everyone`"), "{message}");
    }

    #[test]
    fn every_message_is_one_friendly_line() {
        let errors = [
            CommandError::MissingVerb,
            CommandError::UnknownVerb("launch".into()),
            CommandError::UnexpectedArgument {
                verb: "stop",
                arg: "now".into(),
            },
            CommandError::UnknownFlag("--force".into()),
            CommandError::MissingSize,
            CommandError::InvalidSize("huge".into()),
            CommandError::DuplicateArgument {
                argument: RepeatableArgument::Branch,
                first: "a".into(),
                second: "b".into(),
            },
        ];
        for error in errors {
            let message = error.to_string();
            assert!(!message.contains('\n'), "{message}");
            assert!(message.ends_with('.'), "{message}");
        }
    }

    #[test]
    fn unknown_verb_message_names_the_word() {
        assert_eq!(
            CommandError::UnknownVerb("launch".into()).to_string(),
            "I don't know the command `launch`."
        );
    }

    #[test]
    fn duplicate_size_message_names_both_values() {
        let error = CommandError::DuplicateArgument {
            argument: RepeatableArgument::Size,
            first: "small".into(),
            second: "large".into(),
        };
        assert_eq!(
            error.to_string(),
            "`/sam open` takes one `--size`, but got both `small` and `large`."
        );
    }
}
