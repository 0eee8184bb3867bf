//! Whole comments through [`parse_commands`], as people write them.

use proptest::prelude::*;

use super::{Command, CommandError, HostSize, OpenArgs, parse_commands};

/// The commands of a comment that should hold exactly one, which must parse.
fn only_command(body: &str) -> Command {
    match parse_commands(body).as_slice() {
        [Ok(command)] => command.clone(),
        other => panic!("expected one command in {body:?}, got {other:?}"),
    }
}

/// The error of a comment that should hold exactly one command, which must not parse.
fn only_error(body: &str) -> CommandError {
    match parse_commands(body).as_slice() {
        [Err(error)] => error.clone(),
        other => panic!("expected one error in {body:?}, got {other:?}"),
    }
}

fn assert_no_commands(body: &str) {
    let found = parse_commands(body);
    assert!(
        found.is_empty(),
        "expected no command in {body:?}, got {found:?}"
    );
}

fn open(branch: Option<&str>, size: Option<HostSize>) -> Command {
    Command::Open(OpenArgs {
        branch: branch.map(str::to_owned),
        size,
    })
}

// What a command looks like.

#[test]
fn open_alone_is_a_command() {
    assert_eq!(only_command("/sam open"), open(None, None));
}

#[test]
fn open_with_branch() {
    assert_eq!(
        only_command("/sam open feature/login"),
        open(Some("feature/login"), None)
    );
}

#[test]
fn open_with_branch_and_size() {
    assert_eq!(
        only_command("/sam open main --size=small"),
        open(Some("main"), Some(HostSize::Small))
    );
}

#[test]
fn size_flag_forms_all_mean_the_same() {
    for body in [
        "/sam open --size large",
        "/sam open --size=large",
        "/sam open --size LARGE",
        "/sam open —size large",
    ] {
        assert_eq!(
            only_command(body),
            open(None, Some(HostSize::Large)),
            "{body}"
        );
    }
}

#[test]
fn flags_and_branch_in_any_order() {
    assert_eq!(
        only_command("/sam open --size medium release/1.0"),
        open(Some("release/1.0"), Some(HostSize::Medium))
    );
}

#[test]
fn each_verb_is_recognised() {
    for (body, command) in [
        ("/sam help", Command::Help),
        ("/sam stop", Command::Stop),
        ("/sam restart", Command::Restart),
        ("/sam delete", Command::Delete),
        ("/sam status", Command::Status),
    ] {
        assert_eq!(only_command(body), command);
    }
}

#[test]
fn verb_names_match_what_people_write() {
    for body in [
        "/sam open",
        "/sam help",
        "/sam stop",
        "/sam restart",
        "/sam delete",
        "/sam status",
    ] {
        let command = only_command(body);
        assert_eq!(format!("/sam {}", command.verb()), body);
    }
}

#[test]
fn uppercase_verb_is_accepted() {
    assert_eq!(only_command("/SAM Open"), open(None, None));
}

#[test]
fn crlf_line_endings_are_accepted() {
    assert_eq!(
        parse_commands("Hi!\r\n/sam open main\r\n/sam status\r\n"),
        [Ok(open(Some("main"), None)), Ok(Command::Status)]
    );
}

#[test]
fn extra_spaces_and_tabs_are_accepted() {
    assert_eq!(
        only_command("  /sam \t open\t\tmain  --size   small \t"),
        open(Some("main"), Some(HostSize::Small))
    );
}

#[test]
fn trailing_whitespace_after_prefix_is_still_missing_verb() {
    assert_eq!(only_error("/sam   \t"), CommandError::MissingVerb);
}

#[test]
fn branch_name_is_kept_exactly() {
    for branch in [
        "Feature/Ünïcødé-分支",
        "fix/$(reboot)",
        "a;b&&c|d",
        "x`id`",
        "'q'",
        "${HOME}",
    ] {
        let body = format!("/sam open {branch}");
        assert_eq!(only_command(&body), open(Some(branch), None), "{body}");
    }
}

#[test]
fn branch_in_inline_code_is_unwrapped() {
    assert_eq!(
        only_command("/sam open `feature/x`"),
        open(Some("feature/x"), None)
    );
}

#[test]
fn command_followed_by_prose_is_found() {
    assert_eq!(only_command("/sam open\nThanks!"), open(None, None));
}

#[test]
fn command_after_prose_is_found() {
    assert_eq!(
        only_command("Could you look at this?\n/sam status"),
        Command::Status
    );
}

#[test]
fn indented_line_inside_a_paragraph_is_a_command() {
    // Four spaces only start a code block after a blank line; here GitHub shows text.
    assert_eq!(only_command("Please:\n    /sam stop"), Command::Stop);
}

// What is not a command.

#[test]
fn empty_body_gives_none() {
    assert_no_commands("");
}

#[test]
fn whitespace_body_gives_none() {
    assert_no_commands(" \n\t\r\n  ");
}

#[test]
fn prose_gives_none() {
    assert_no_commands("LGTM, thanks.\n\nMerging after CI.");
}

#[test]
fn command_not_at_line_start_is_ignored() {
    assert_no_commands("x /sam open");
}

#[test]
fn prefix_glued_to_a_verb_is_not_a_command() {
    assert_no_commands("/samopen");
}

#[test]
fn prefix_inside_a_word_is_not_a_command() {
    assert_no_commands("path/to/sam open\nfoo/sam open");
}

#[test]
fn mention_is_not_a_command() {
    assert_no_commands("@sam open");
}

#[test]
fn list_item_is_not_a_command() {
    assert_no_commands("- /sam open\n1. /sam stop");
}

#[test]
fn heading_is_not_a_command() {
    assert_no_commands("# /sam open");
}

// Quotes.

#[test]
fn quoted_command_is_ignored() {
    assert_no_commands("> /sam open");
}

#[test]
fn nested_quote_hides_command() {
    assert_no_commands("> > /sam open\n>> /sam stop");
}

#[test]
fn quote_continued_without_marker_hides_command() {
    // GitHub renders the second line inside the quote, so it is quoted text.
    assert_no_commands("> Try this:\n/sam open");
}

#[test]
fn alert_block_hides_command() {
    assert_no_commands("> [!NOTE]\n> /sam open");
}

#[test]
fn quoted_reply_followed_by_command_is_found() {
    assert_eq!(
        only_command("> Can you open it?\n\n/sam open --size large"),
        open(None, Some(HostSize::Large))
    );
}

// Code.

#[test]
fn command_in_fenced_block_is_ignored() {
    assert_no_commands("```\n/sam open\n```");
}

#[test]
fn command_in_tilde_fence_is_ignored() {
    assert_no_commands("~~~text\n/sam open\n~~~");
}

#[test]
fn command_in_unclosed_fence_is_ignored() {
    assert_no_commands("```\n/sam open\n\n/sam stop");
}

#[test]
fn command_in_fenced_block_in_a_list_is_ignored() {
    assert_no_commands("- steps:\n  ```\n  /sam open\n  ```");
}

#[test]
fn command_after_code_block_is_found() {
    assert_eq!(
        only_command("```\n/sam stop\n```\n/sam open"),
        open(None, None)
    );
}

#[test]
fn indented_code_block_hides_command() {
    assert_no_commands("Example:\n\n    /sam open\n");
}

#[test]
fn inline_code_hides_command() {
    assert_no_commands("`/sam open`");
}

#[test]
fn inline_code_over_two_lines_hides_command() {
    assert_no_commands("Type `\n/sam open` to start");
}

#[test]
fn command_after_inline_code_on_the_same_line_is_ignored() {
    // Once the code is blanked the line seems to start with `/sam`; it did not.
    assert_no_commands("`x` /sam open");
}

// HTML.

#[test]
fn html_comment_hides_command() {
    assert_no_commands("<!-- /sam open -->");
}

#[test]
fn multi_line_html_comment_hides_command() {
    assert_no_commands("<!--\nTo start a shell, write:\n/sam open\n-->");
}

#[test]
fn html_comment_inside_a_paragraph_hides_command() {
    assert_no_commands("Done <!-- later:\n/sam delete\n-->");
}

#[test]
fn command_after_html_comment_is_found() {
    assert_eq!(
        only_command("<!-- template -->\n/sam status"),
        Command::Status
    );
}

#[test]
fn html_block_hides_command() {
    assert_no_commands("<div>\n/sam open\n</div>");
}

#[test]
fn command_wrapped_in_inline_html_is_ignored() {
    assert_no_commands("<b>/sam open</b>");
}

#[test]
fn command_in_details_after_a_blank_line_is_found() {
    // After a blank line the inside of <details> is markdown again, and GitHub
    // shows the line as text.
    let body = "<details>\n<summary>Shell</summary>\n\n/sam open\n\n</details>";
    assert_eq!(only_command(body), open(None, None));
}

// Several commands.

#[test]
fn two_commands_in_one_comment() {
    assert_eq!(
        parse_commands("/sam stop\n/sam open dev"),
        [Ok(Command::Stop), Ok(open(Some("dev"), None))]
    );
}

#[test]
fn errors_keep_their_place_among_commands() {
    assert_eq!(
        parse_commands("/sam status\n/sam launch\n> /sam stop\n\n/sam help"),
        [
            Ok(Command::Status),
            Err(CommandError::UnknownVerb("launch".into())),
            Ok(Command::Help),
        ]
    );
}

// Errors.

#[test]
fn bare_prefix_is_missing_verb() {
    assert_eq!(only_error("/sam"), CommandError::MissingVerb);
}

#[test]
fn unknown_verb_is_reported_as_written() {
    assert_eq!(
        only_error("/sam Launch"),
        CommandError::UnknownVerb("Launch".into())
    );
}

#[test]
fn verb_with_trailing_punctuation_is_unknown() {
    assert_eq!(
        only_error("/sam stop."),
        CommandError::UnknownVerb("stop.".into())
    );
}

#[test]
fn argument_to_stop_is_unexpected() {
    assert_eq!(
        only_error("/sam stop now"),
        CommandError::UnexpectedArgument {
            verb: "stop",
            arg: "now".into()
        }
    );
}

#[test]
fn argument_to_help_is_unexpected() {
    assert!(matches!(
        only_error("/sam help open"),
        CommandError::UnexpectedArgument { verb: "help", .. }
    ));
}

#[test]
fn unknown_flag_is_reported() {
    assert_eq!(
        only_error("/sam open --force"),
        CommandError::UnknownFlag("--force".into())
    );
}

#[test]
fn invalid_size_is_reported() {
    assert_eq!(
        only_error("/sam open --size=xl"),
        CommandError::InvalidSize("xl".into())
    );
}

#[test]
fn missing_size_is_reported() {
    assert_eq!(
        only_error("/sam open main --size"),
        CommandError::MissingSize
    );
}

#[test]
fn second_branch_is_a_duplicate() {
    assert!(matches!(
        only_error("/sam open main dev"),
        CommandError::DuplicateArgument { .. }
    ));
}

#[test]
fn error_message_can_be_posted_as_a_reply() {
    assert_eq!(
        only_error("/sam open --size huge").to_string(),
        "`huge` is not a size I know. Use `small`, `medium` or `large`, as in `/sam open --size large`."
    );
}

// Properties over any input.

/// Text built from the characters that matter to markdown and to the prefix, so that
/// random bodies reach code, quotes, HTML and command lines far more often than
/// arbitrary unicode would.
fn markdownish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "/sam", "/SAM", " open", " stop", " --size", "=", " large", " main", " ", "\t", "\n",
        "\r\n", "\r", "`", "```", "~~~", "    ", "> ", ">", "<!--", "-->", "<div>", "</div>",
        "<b>", "- ", "é", "日", "[!NOTE]", "\\", "*", "|", "$(x)",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn any_string_parses_without_panic(body in any::<String>()) {
        let _ = parse_commands(&body);
    }

    #[test]
    fn any_markdownish_body_parses_without_panic(body in markdownish()) {
        let _ = parse_commands(&body);
    }

    #[test]
    fn body_without_prefix_gives_none(body in any::<String>()) {
        prop_assume!(!body.to_ascii_lowercase().contains("/sam"));
        prop_assert!(parse_commands(&body).is_empty());
    }

    #[test]
    fn markdownish_body_without_prefix_gives_none(body in markdownish()) {
        prop_assume!(!body.to_ascii_lowercase().contains("/sam"));
        prop_assert!(parse_commands(&body).is_empty());
    }

    #[test]
    fn fully_quoted_body_gives_none(body in markdownish()) {
        // Split on every line ending markdown knows, so that no line escapes its `>`.
        let quoted: String = body.split(['\r', '\n']).map(|line| format!("> {line}\n")).collect();
        prop_assert!(parse_commands(&quoted).is_empty(), "{:?}", quoted);
    }

    #[test]
    fn any_branch_word_is_kept_exactly(branch in "[^\\s`—-][^\\s]{0,40}") {
        let body = format!("/sam open {branch}");
        prop_assert_eq!(parse_commands(&body), vec![Ok(open(Some(&branch), None))]);
    }
}

/// A line that is a command: a verb sam knows, or one it does not, with words after it.
fn command_line() -> impl Strategy<Value = String> {
    let verb = prop::sample::select(vec![
        "open", "help", "stop", "restart", "delete", "status", "OPEN", "launch", "",
    ]);
    let word = "[a-zA-Z0-9/_.=-]{1,12}";
    (verb, prop::collection::vec(word, 0..3))
        .prop_map(|(verb, words)| format!("/sam {verb} {}", words.join(" ")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_command_inside_a_fenced_block_is_never_a_command(
        before in markdownish(),
        line in command_line(),
        fence in prop::sample::select(vec!["```", "~~~", "````", "```text"]),
    ) {
        // The fence opens on a line of its own, after a blank line, so nothing before it
        // (an open quote or HTML block) swallows it.
        prop_assume!(!before.contains("```") && !before.contains("~~~"));
        let body = format!("{before}\n\n{fence}\n{line}\n{}\n", &fence[..fence.find('t').unwrap_or(fence.len())]);
        let found = parse_commands(&body);
        let outside = parse_commands(&before);
        prop_assert_eq!(found, outside, "{:?}", body);
    }

    #[test]
    fn a_quoted_command_is_never_a_command(line in command_line(), depth in 1usize..4) {
        let body = format!("{} {line}", ">".repeat(depth));
        prop_assert!(parse_commands(&body).is_empty(), "{:?}", body);
    }

    #[test]
    fn a_command_in_inline_code_is_never_a_command(line in command_line(), ticks in 1usize..4) {
        let fence = "`".repeat(ticks);
        let body = format!("{fence}{line}{fence}");
        prop_assert!(parse_commands(&body).is_empty(), "{:?}", body);
    }

    #[test]
    fn surrounding_whitespace_does_not_change_what_is_read(
        line in command_line(),
        before in prop::sample::select(vec!["", "\n", "\n\n", "\r\n", " \n\t\n"]),
        indent in prop::sample::select(vec!["", " ", "  ", "   "]),
        after in prop::sample::select(vec!["", " ", "\t", "\n", "\r\n", "  \n\n"]),
    ) {
        // Up to three spaces of indent keep a line out of an indented code block (a tab
        // counts as four, and makes one).
        let plain = parse_commands(&line);
        let padded = parse_commands(&format!("{before}{indent}{line}{after}"));
        prop_assert_eq!(plain.len(), 1);
        prop_assert_eq!(padded, plain);
    }

    #[test]
    fn each_command_line_gives_exactly_one_entry(lines in prop::collection::vec(command_line(), 1..6)) {
        let body = lines.join("\n");
        prop_assert_eq!(parse_commands(&body).len(), lines.len(), "{:?}", body);
    }
}
