//! Stage 3: turn a command line into a [`Command`], one small parser per verb.
//!
//! Verbs are matched in any case: `/sam Open` from a phone that capitalises words for
//! you means the same as `/sam open`. Only `open` takes arguments; its grammar lives
//! in [`super::open`].

use super::line::CommandLine;
use super::{Command, CommandError, open};

/// Parses one command line.
pub(super) fn parse(line: &CommandLine<'_>) -> Result<Command, CommandError> {
    let Some(verb) = line.verb else {
        return Err(CommandError::MissingVerb);
    };
    let args = line.args.as_slice();

    match verb.to_ascii_lowercase().as_str() {
        "open" => open::parse(args),
        "help" => without_arguments(Command::Help, args),
        "stop" => without_arguments(Command::Stop, args),
        "restart" => without_arguments(Command::Restart, args),
        "delete" => without_arguments(Command::Delete, args),
        "status" => without_arguments(Command::Status, args),
        _ => Err(CommandError::UnknownVerb(verb.to_owned())),
    }
}

/// The parser of every verb that takes nothing after it.
///
/// Extra words are an error rather than ignored: `/sam delete other-branch` must not
/// quietly delete this workspace when the person meant another.
fn without_arguments(command: Command, args: &[&str]) -> Result<Command, CommandError> {
    match args.first() {
        None => Ok(command),
        Some(arg) => Err(CommandError::UnexpectedArgument {
            verb: command.verb(),
            arg: (*arg).to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::commands::line::CommandLine;
    use crate::commands::{Command, CommandError};

    fn parse_words(verb: &str, args: &[&str]) -> Result<Command, CommandError> {
        parse(&CommandLine {
            verb: Some(verb),
            args: args.to_vec(),
        })
    }

    #[test]
    fn each_verb_without_arguments_parses() {
        for (verb, command) in [
            ("help", Command::Help),
            ("stop", Command::Stop),
            ("restart", Command::Restart),
            ("delete", Command::Delete),
            ("status", Command::Status),
        ] {
            assert_eq!(parse_words(verb, &[]), Ok(command));
        }
    }

    #[test]
    fn verb_in_any_case_parses() {
        assert_eq!(parse_words("ReStArT", &[]), Ok(Command::Restart));
    }

    #[test]
    fn each_verb_without_arguments_rejects_one() {
        for verb in ["help", "stop", "restart", "delete", "status"] {
            let error = parse_words(verb, &["now"]).unwrap_err();
            assert_eq!(
                error,
                CommandError::UnexpectedArgument {
                    verb,
                    arg: "now".into()
                }
            );
        }
    }

    #[test]
    fn first_extra_argument_is_the_one_reported() {
        assert_eq!(
            parse_words("stop", &["--force", "now"]),
            Err(CommandError::UnexpectedArgument {
                verb: "stop",
                arg: "--force".into()
            })
        );
    }

    #[test]
    fn unknown_verb_is_reported_as_written() {
        assert_eq!(
            parse_words("Launch", &[]),
            Err(CommandError::UnknownVerb("Launch".into()))
        );
    }

    #[test]
    fn missing_verb_is_an_error() {
        let line = CommandLine {
            verb: None,
            args: vec![],
        };
        assert_eq!(parse(&line), Err(CommandError::MissingVerb));
    }

    #[test]
    fn open_is_handed_to_its_own_parser() {
        assert!(matches!(
            parse_words("open", &["main"]),
            Ok(Command::Open(_))
        ));
    }
}
