//! Stage 1: blank out the parts of a comment that are never commands.
//!
//! People quote commands to talk about them: in code (`` `/sam open` ``), in a fenced
//! block of instructions, in a quoted reply (`> /sam open`) or in an HTML comment that
//! a template left behind. None of those should act. Rather than guess at markdown
//! with hand-written rules, we ask pulldown-cmark where those elements are and replace
//! their bytes with spaces.
//!
//! Blanking keeps every byte offset and every line break, so the next stage can still
//! read the original text at the same positions.

use std::ops::Range;

use pulldown_cmark::{Event, Options, Parser, Tag};

/// Returns `body` with code, quotes and HTML replaced by spaces.
///
/// The result has the same length as `body` and its `\r` and `\n` at the same offsets.
/// What counts as ignored follows how GitHub renders the comment: a line that
/// continues a quote without its own `>` is part of the quote there, so it is ignored
/// here too.
pub(super) fn blank_ignored(body: &str) -> String {
    let ranges = ignored_ranges(body);
    let mut ranges = ranges.iter().peekable();
    let mut visible = String::with_capacity(body.len());

    for (offset, c) in body.char_indices() {
        while ranges.next_if(|range| range.end <= offset).is_some() {}
        let hidden = ranges.peek().is_some_and(|range| range.start <= offset);

        if hidden && c != '\r' && c != '\n' {
            // One space per byte, so that every later offset stays where it was.
            visible.extend(std::iter::repeat_n(' ', c.len_utf8()));
        } else {
            visible.push(c);
        }
    }
    visible
}

/// The byte ranges of `body` that are never commands, in order and not overlapping.
fn ignored_ranges(body: &str) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();

    for (event, range) in Parser::new_ext(body, github_options()).into_offset_iter() {
        if !is_ignored(&event) {
            continue;
        }
        // A start event's range covers the whole element, so anything nested inside
        // one we already have (a code block in a quote) adds nothing.
        match ranges.last_mut() {
            Some(last) if range.start < last.end => last.end = last.end.max(range.end),
            _ => ranges.push(range),
        }
    }
    ranges
}

/// The markdown extensions GitHub turns on for comments, so that we see the same
/// blocks that the person saw in the preview.
fn github_options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_GFM
}

/// Whether an event starts (or is) an element whose text is never a command.
fn is_ignored(event: &Event<'_>) -> bool {
    matches!(
        event,
        Event::Start(Tag::CodeBlock(_) | Tag::BlockQuote(_) | Tag::HtmlBlock)
            | Event::Code(_)
            | Event::InlineHtml(_)
            | Event::Html(_)
    )
}

#[cfg(test)]
mod tests {
    use super::blank_ignored;

    /// Which lines of `body` keep any visible text after blanking.
    fn visible_lines(body: &str) -> Vec<String> {
        blank_ignored(body)
            .lines()
            .map(|line| line.trim().to_owned())
            .filter(|line| !line.is_empty())
            .collect()
    }

    #[test]
    fn plain_text_is_unchanged() {
        let body = "Please\n/sam open main\nthanks";
        assert_eq!(blank_ignored(body), body);
    }

    #[test]
    fn blanking_keeps_length_and_line_breaks() {
        let body = "a\r\n```\r\n/sam open ünïcødé\r\n```\r\nb";
        let visible = blank_ignored(body);

        assert_eq!(visible.len(), body.len());
        let breaks = |s: &str| {
            s.char_indices()
                .filter(|(_, c)| *c == '\r' || *c == '\n')
                .collect::<Vec<_>>()
        };
        assert_eq!(breaks(&visible), breaks(body));
    }

    #[test]
    fn fenced_block_is_blanked_with_its_fences() {
        assert_eq!(visible_lines("```sh\n/sam open\n```\nafter"), ["after"]);
    }

    #[test]
    fn tilde_fenced_block_is_blanked() {
        assert_eq!(visible_lines("~~~\n/sam open\n~~~\nafter"), ["after"]);
    }

    #[test]
    fn unclosed_fence_blanks_to_the_end() {
        assert!(visible_lines("```\n/sam open\n\n/sam stop").is_empty());
    }

    #[test]
    fn indented_code_block_is_blanked() {
        assert_eq!(visible_lines("before\n\n    /sam open\n"), ["before"]);
    }

    #[test]
    fn inline_code_is_blanked_but_not_the_text_around_it() {
        let blanked = " ".repeat("`/sam open`".len());
        assert_eq!(
            blank_ignored("run `/sam open` now"),
            format!("run {blanked} now")
        );
    }

    #[test]
    fn block_quote_is_blanked() {
        assert_eq!(visible_lines("> /sam open\n\nreply"), ["reply"]);
    }

    #[test]
    fn lazy_quote_continuation_is_blanked() {
        // GitHub renders the second line inside the quote, so we treat it as quoted.
        assert_eq!(visible_lines("> quoted\n/sam open\n\nreply"), ["reply"]);
    }

    #[test]
    fn html_comment_is_blanked() {
        assert_eq!(visible_lines("<!--\n/sam open\n-->\nafter"), ["after"]);
    }

    #[test]
    fn inline_html_comment_over_lines_is_blanked() {
        assert_eq!(visible_lines("text <!-- a\n/sam open\n-->"), ["text"]);
    }

    #[test]
    fn html_block_is_blanked() {
        assert_eq!(
            visible_lines("<div>\n/sam open\n</div>\n\nafter"),
            ["after"]
        );
    }

    #[test]
    fn multibyte_text_inside_a_range_becomes_spaces_of_the_same_length() {
        let body = "`é`x";
        assert_eq!(blank_ignored(body), "    x");
    }

    #[test]
    fn empty_body_stays_empty() {
        assert_eq!(blank_ignored(""), "");
    }
}
