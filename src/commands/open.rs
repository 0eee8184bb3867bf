//! The parser of `/sam open`, the one verb that takes arguments.
//!
//! ```text
//! /sam open [BRANCH] [--size SIZE | --size=SIZE]     (in any order)
//! SIZE = small | medium | large                      (in any case)
//! ```
//!
//! A word that starts with `-` is an option; any other word is the branch. Git refuses
//! branch names that start with `-`, so no real branch is mistaken for an option.

use super::{Command, CommandError, HostSize, OpenArgs, RepeatableArgument};

/// The one option `open` has.
const SIZE: &str = "size";

/// Phones and Macs with smart punctuation turn a typed `--` into an em dash, so
/// `—size` is what many people send when they write `--size`.
const EM_DASH: char = '—';

/// Parses the words after `/sam open`.
pub(super) fn parse(args: &[&str]) -> Result<Command, CommandError> {
    let mut open = OpenArgs::default();
    let mut args = args.iter().copied();

    while let Some(arg) = args.next() {
        if is_option(arg) {
            let size = parse_size(size_option(arg, &mut args)?)?;
            if let Some(first) = open.size {
                let (first, second) = (first.as_str(), size.as_str());
                return Err(duplicate(RepeatableArgument::Size, first, second));
            }
            open.size = Some(size);
        } else {
            let branch = unwrap_inline_code(arg);
            if let Some(first) = &open.branch {
                return Err(duplicate(RepeatableArgument::Branch, first, branch));
            }
            open.branch = Some(branch.to_owned());
        }
    }
    Ok(Command::Open(open))
}

fn is_option(arg: &str) -> bool {
    arg.starts_with('-') || arg.starts_with(EM_DASH)
}

/// Reads an option word, which must be `--size`, and its value from the same word
/// (`--size=large`) or the next one.
fn size_option<'a>(
    arg: &'a str,
    rest: &mut impl Iterator<Item = &'a str>,
) -> Result<&'a str, CommandError> {
    let unknown = || CommandError::UnknownFlag(arg.to_owned());
    let name = arg
        .strip_prefix("--")
        .or_else(|| arg.strip_prefix(EM_DASH))
        .ok_or_else(unknown)?;

    let (name, inline_value) = match name.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (name, None),
    };
    if !name.eq_ignore_ascii_case(SIZE) {
        return Err(unknown());
    }

    let value = match inline_value {
        Some(value) => value,
        None => rest.next().ok_or(CommandError::MissingSize)?,
    };
    // `--size --other` is a size left out, not a size called "--other".
    if value.is_empty() || is_option(value) {
        return Err(CommandError::MissingSize);
    }
    Ok(value)
}

fn parse_size(value: &str) -> Result<HostSize, CommandError> {
    [HostSize::Small, HostSize::Medium, HostSize::Large]
        .into_iter()
        .find(|size| value.eq_ignore_ascii_case(size.as_str()))
        .ok_or_else(|| CommandError::InvalidSize(value.to_owned()))
}

/// People often write a branch name as inline code (`` `feature/x` ``), and GitHub
/// shows it without the backticks, so we read it without them too. Anything else
/// about the name is kept exactly.
fn unwrap_inline_code(arg: &str) -> &str {
    let inner = arg.trim_matches('`');
    if arg.starts_with('`') && arg.ends_with('`') && !inner.is_empty() {
        inner
    } else {
        arg
    }
}

/// The error for an argument given twice.
///
/// Two values are an error rather than "last one wins", because a person who wrote
/// both meant one of them and we can't tell which.
fn duplicate(argument: RepeatableArgument, first: &str, second: &str) -> CommandError {
    CommandError::DuplicateArgument {
        argument,
        first: first.to_owned(),
        second: second.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::commands::{Command, CommandError, HostSize, OpenArgs, RepeatableArgument};

    fn open(branch: Option<&str>, size: Option<HostSize>) -> Result<Command, CommandError> {
        Ok(Command::Open(OpenArgs {
            branch: branch.map(str::to_owned),
            size,
        }))
    }

    #[test]
    fn no_arguments_leave_everything_to_the_handler() {
        assert_eq!(parse(&[]), open(None, None));
    }

    #[test]
    fn a_word_is_the_branch() {
        assert_eq!(parse(&["feature/login"]), open(Some("feature/login"), None));
    }

    #[test]
    fn size_as_separate_word() {
        assert_eq!(
            parse(&["--size", "large"]),
            open(None, Some(HostSize::Large))
        );
    }

    #[test]
    fn size_with_equals_sign() {
        assert_eq!(parse(&["--size=small"]), open(None, Some(HostSize::Small)));
    }

    #[test]
    fn size_before_branch() {
        assert_eq!(
            parse(&["--size", "medium", "main"]),
            open(Some("main"), Some(HostSize::Medium))
        );
    }

    #[test]
    fn size_after_branch() {
        assert_eq!(
            parse(&["main", "--size=medium"]),
            open(Some("main"), Some(HostSize::Medium))
        );
    }

    #[test]
    fn size_and_option_name_in_any_case() {
        assert_eq!(
            parse(&["--SIZE", "Large"]),
            open(None, Some(HostSize::Large))
        );
    }

    #[test]
    fn em_dash_is_read_as_double_hyphen() {
        assert_eq!(
            parse(&["—size", "small"]),
            open(None, Some(HostSize::Small))
        );
    }

    #[test]
    fn branch_in_backticks_is_unwrapped() {
        assert_eq!(parse(&["`feature/x`"]), open(Some("feature/x"), None));
    }

    #[test]
    fn branch_with_a_backtick_inside_is_kept() {
        assert_eq!(parse(&["a`b"]), open(Some("a`b"), None));
    }

    #[test]
    fn branch_case_is_preserved() {
        assert_eq!(parse(&["Feature/Login"]), open(Some("Feature/Login"), None));
    }

    #[test]
    fn unknown_option_is_an_error() {
        assert_eq!(
            parse(&["--force"]),
            Err(CommandError::UnknownFlag("--force".into()))
        );
    }

    #[test]
    fn single_dash_option_is_unknown() {
        assert_eq!(
            parse(&["-s", "large"]),
            Err(CommandError::UnknownFlag("-s".into()))
        );
    }

    #[test]
    fn unknown_option_with_a_value_is_reported_whole() {
        assert_eq!(
            parse(&["--cpu=4"]),
            Err(CommandError::UnknownFlag("--cpu=4".into()))
        );
    }

    #[test]
    fn size_at_the_end_without_value_is_missing() {
        assert_eq!(parse(&["main", "--size"]), Err(CommandError::MissingSize));
    }

    #[test]
    fn size_with_empty_value_is_missing() {
        assert_eq!(parse(&["--size="]), Err(CommandError::MissingSize));
    }

    #[test]
    fn size_followed_by_an_option_is_missing() {
        assert_eq!(
            parse(&["--size", "--size", "large"]),
            Err(CommandError::MissingSize)
        );
    }

    #[test]
    fn unknown_size_is_an_error() {
        assert_eq!(
            parse(&["--size", "huge"]),
            Err(CommandError::InvalidSize("huge".into()))
        );
    }

    #[test]
    fn two_branches_are_an_error() {
        assert_eq!(
            parse(&["main", "develop"]),
            Err(CommandError::DuplicateArgument {
                argument: RepeatableArgument::Branch,
                first: "main".into(),
                second: "develop".into(),
            })
        );
    }

    #[test]
    fn two_sizes_are_an_error() {
        assert_eq!(
            parse(&["--size=small", "--size", "large"]),
            Err(CommandError::DuplicateArgument {
                argument: RepeatableArgument::Size,
                first: "small".into(),
                second: "large".into(),
            })
        );
    }
}
