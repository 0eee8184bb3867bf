//! Stage 2: find the lines that are commands and split them into words.
//!
//! A command line starts with `/sam` (in any case, after optional whitespace) followed
//! by whitespace or the end of the line. Requiring the start of a line keeps prose such
//! as "you can type /sam open later" from acting, and the whitespace after the prefix
//! keeps `/samantha` and `/sam-open` out.

/// What every command starts with.
const PREFIX: &str = "/sam";

/// A command line split into words, borrowed from the comment as written.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CommandLine<'a> {
    /// The first word after `/sam`; `None` when the line is `/sam` alone.
    pub(super) verb: Option<&'a str>,
    /// The words after the verb.
    pub(super) args: Vec<&'a str>,
}

/// The command lines of `body`, in order.
///
/// `visible` is `body` after [`super::ignore::blank_ignored`]: a line counts only if
/// its `/sam` survived blanking. The words are then read from `body`, because people
/// write branch names as inline code (`` /sam open `main` ``), and reading the blanked
/// line would quietly open the default branch instead. The price is that an HTML
/// comment after a command is read as words, which gives an error the person sees.
pub(super) fn command_lines<'a>(
    body: &'a str,
    visible: &'a str,
) -> impl Iterator<Item = CommandLine<'a>> {
    lines(body)
        .zip(lines(visible))
        .filter_map(|(line, visible)| command_line(line, visible))
}

/// Splits on every line ending that markdown knows, `\n`, `\r\n` and a lone `\r`, so
/// that comments sent from any platform split the same way pulldown-cmark saw them.
/// The empty piece between `\r` and `\n` is never a command, so it does no harm.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\r', '\n'])
}

/// Reads one line as a command, if it is one.
fn command_line<'a>(line: &'a str, visible: &str) -> Option<CommandLine<'a>> {
    // Measured on the line as written, not on the blanked one: in "`x` /sam open" the
    // code span turns into spaces, and the command would seem to start the line.
    let start = line.len() - line.trim_start().len();
    let prefix = start..start + PREFIX.len();

    let rest = strip_prefix(&line[start..])?;
    if visible.get(prefix.clone()) != line.get(prefix) {
        return None;
    }

    let mut words = rest.split_whitespace();
    Some(CommandLine {
        verb: words.next(),
        args: words.collect(),
    })
}

/// What follows `/sam` on a line that starts with it, or `None` if it doesn't.
fn strip_prefix(text: &str) -> Option<&str> {
    let prefix = text.get(..PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(PREFIX) {
        return None;
    }

    let rest = &text[PREFIX.len()..];
    match rest.chars().next() {
        None => Some(rest),
        Some(c) if c.is_whitespace() => Some(rest),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{CommandLine, command_lines};

    /// The command lines of a body in which nothing is blanked.
    fn plain(body: &str) -> Vec<CommandLine<'_>> {
        command_lines(body, body).collect()
    }

    fn line<'a>(verb: &'a str, args: &[&'a str]) -> CommandLine<'a> {
        CommandLine {
            verb: Some(verb),
            args: args.to_vec(),
        }
    }

    #[test]
    fn words_are_split_on_any_run_of_whitespace() {
        assert_eq!(
            plain("/sam  open \t feature/x   --size\tlarge  "),
            [line("open", &["feature/x", "--size", "large"])]
        );
    }

    #[test]
    fn leading_whitespace_is_allowed() {
        assert_eq!(plain(" \t /sam status"), [line("status", &[])]);
    }

    #[test]
    fn prefix_alone_has_no_verb() {
        assert_eq!(
            plain("/sam"),
            [CommandLine {
                verb: None,
                args: vec![]
            }]
        );
    }

    #[test]
    fn prefix_matches_in_any_case() {
        assert_eq!(plain("/SaM help"), [line("help", &[])]);
    }

    #[test]
    fn verb_keeps_its_case_for_the_next_stage() {
        assert_eq!(plain("/sam OPEN Main"), [line("OPEN", &["Main"])]);
    }

    #[test]
    fn prefix_glued_to_a_word_is_not_a_command() {
        assert!(plain("/samopen\n/sam-open\n/sam.open").is_empty());
    }

    #[test]
    fn prefix_after_other_text_is_not_a_command() {
        assert!(plain("x /sam open\nplease/sam open").is_empty());
    }

    #[test]
    fn lone_carriage_returns_end_lines() {
        assert_eq!(plain("hi\r/sam stop"), [line("stop", &[])]);
    }

    #[test]
    fn blanked_prefix_is_not_a_command() {
        let body = "`x` /sam open";
        let visible = "    /sam open";
        assert!(command_lines(body, visible).next().is_none());
    }

    #[test]
    fn words_are_read_from_the_original_text() {
        let body = "/sam open `main`";
        let visible = "/sam open       ";
        assert_eq!(
            command_lines(body, visible).collect::<Vec<_>>(),
            [line("open", &["`main`"])]
        );
    }

    #[test]
    fn multibyte_text_before_the_prefix_does_not_panic() {
        assert!(plain("é/sam open\n日本/sam").is_empty());
    }
}
