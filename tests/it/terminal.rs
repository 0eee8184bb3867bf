//! The terminal as people use it, in headless Chromium against a running sam and agent:
//! resizing the window, reloading the tab, pasting a lot, stopping a flood of output, a
//! character whose bytes arrive in two writes, and tabs of several shells. Typing a command
//! and reading its output is the main path's test.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::browser::Browser;
use crate::scene::{ReadyWorkspace, SET_UP, ready_workspace};

/// How long one command may take to show its output.
const STEP: Duration = Duration::from_secs(20);

/// How soon the prompt must be back after Ctrl-C stops a flood.
const PROMPT_BACK: Duration = Duration::from_secs(10);

/// How soon the shell of a closed tab must be gone: far under the agent's grace period for
/// shells without a socket (ten minutes), so only the tab's `close` can end it in time.
const SHELL_ENDS: Duration = Duration::from_secs(10);

/// How long a tab that stopped connecting is watched for a reconnect: several times the
/// page's first retry delays (half a second to one).
const QUIET: Duration = Duration::from_secs(4);

/// The agent's high-water mark of unacknowledged output, past which it pauses a shell.
const HIGH_WATER: u64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_follows_the_browser_window_size() {
    let (_workspace, browser) = open_terminal().await;

    for (width, height) in [(760, 480), (1280, 860)] {
        let (cols, rows) = browser.terminal_size().await;
        browser
            .client
            .set_window_size(width, height)
            .await
            .expect("resizing the window");
        browser
            .wait_for_js(
                &format!(
                    "const t = window.samTerminal.term; return t.cols !== {cols} || t.rows !== {rows};"
                ),
                STEP,
                &format!("the terminal to fit a {width}x{height} window"),
            )
            .await;
        let (cols, rows) = browser.terminal_size().await;

        run(&browser, r#"echo "size: $(stty size)""#).await;
        wait_for_line(&browser, &format!("size: {rows} {cols}")).await;
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_the_tab_resumes_the_same_shell_with_its_history() {
    let (_workspace, browser) = open_terminal().await;
    let session = browser.eval("return window.samTerminal.session").await;
    let mark = format!("mark-{}", uuid::Uuid::new_v4().simple());
    let before = format!("before-{mark}");

    run(
        &browser,
        &format!(r#"export MARK={mark}; echo "before-$MARK"; echo "pid-$$""#),
    )
    .await;
    let text = browser
        .wait_for_terminal(STEP, "the mark and the shell's pid", |text| {
            count_lines(text, &before) == 1 && text.lines().any(|line| pid_in(line).is_some())
        })
        .await;
    let pid = text.lines().find_map(pid_in).unwrap().to_owned();

    browser.client.refresh().await.expect("reloading the tab");
    browser.wait_for_terminal_connected(STEP).await;
    assert_eq!(
        browser.eval("return window.samTerminal.session").await,
        session,
        "the reloaded tab asked for another shell"
    );

    run(&browser, r#"echo "after-$MARK-pid-$$""#).await;
    let text = wait_for_line(&browser, &format!("after-{mark}-pid-{pid}")).await;
    for earlier in [before, format!("pid-{pid}")] {
        assert_eq!(
            count_lines(&text, &earlier),
            1,
            "{earlier:?} should be on screen exactly once:\n{text}"
        );
    }
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pasting_three_thousand_lines_delivers_every_line_intact() {
    let (_workspace, browser) = open_terminal().await;
    let pasted: String = (1..=3000)
        .map(|n| format!("{n:04} the quick brown fox jumps over the lazy dog\n"))
        .collect();
    let expected = hex::encode(Sha256::digest(pasted.as_bytes()));

    // By the time the echo's output shows, readline has handed the terminal back (bracketed
    // paste off), so the paste reaches `cat` as plain lines.
    run(&browser, "echo reading-$((1+1)); cat > pasted.txt").await;
    wait_for_line(&browser, "reading-2").await;
    browser.paste(&pasted).await;
    browser.press_ctrl('d').await;

    run(
        &browser,
        r#"echo "lines: $(wc -l < pasted.txt)"; echo "sha256: $(sha256sum < pasted.txt)""#,
    )
    .await;
    let text = browser
        .wait_for_terminal(STEP, "the pasted file's line count and hash", |text| {
            text.lines().any(|line| line.starts_with("sha256: "))
        })
        .await;
    assert_eq!(count_lines(&text, "lines: 3000"), 1, "{text}");
    assert_eq!(
        count_lines(&text, &format!("sha256: {expected}  -")),
        1,
        "{text}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_a_flood_of_output_and_the_prompt_comes_back() {
    let (_workspace, browser) = open_terminal().await;
    let prompt = prompt(&browser).await;
    let start = browser.eval("return window.samTerminal.offset()").await;
    let start = start.as_u64().expect("an offset");

    run(&browser, "yes").await;
    // Four times the agent's high-water mark: flow control has paused and resumed the
    // flood many times over.
    let flooded = start + 1024 * 1024;
    browser
        .wait_for_js(
            &format!("return window.samTerminal.offset() > {flooded}"),
            STEP,
            "a megabyte of output from yes",
        )
        .await;
    browser.press_ctrl('c').await;
    let pressed = Instant::now();
    browser
        .wait_for_terminal(PROMPT_BACK, "the prompt after Ctrl-C", |text| {
            last_non_empty_line(text) == prompt
        })
        .await;
    eprintln!("the prompt came back {:?} after Ctrl-C", pressed.elapsed());

    run(&browser, "echo done-$((6*7))").await;
    wait_for_line(&browser, "done-42").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_character_split_across_two_writes_shows_whole() {
    let (_workspace, browser) = open_terminal().await;

    // The PTY is read between the two printfs, so the bytes of € reach the page in two
    // output frames.
    run(
        &browser,
        r"printf 'euro:\xe2\x82'; sleep 0.2; printf '\xac:end\n'",
    )
    .await;
    let text = wait_for_line(&browser, "euro:€:end").await;
    assert!(
        !text.contains('\u{fffd}'),
        "a replacement character:\n{text}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_are_separate_shells_that_survive_a_reload_and_end_when_closed() {
    let (_workspace, browser) = open_terminal().await;

    run(&browser, "echo one-$$").await;
    let one = wait_for_pid(&browser, "one-").await;

    browser.click("#sam-new-tab").await;
    wait_for_tabs(&browser, 2, 1).await;
    let text = browser.terminal_text().await;
    assert!(
        !text.contains("one-"),
        "the new tab shows the first one's output:\n{text}"
    );
    run(&browser, "cd / && echo two-$$").await;
    let two = wait_for_pid(&browser, "two-").await;
    assert_ne!(one, two, "the new tab runs the same shell as the first");

    browser.click(&tab(1)).await;
    wait_for_tabs(&browser, 2, 0).await;
    let text = browser.terminal_text().await;
    assert_eq!(count_lines(&text, &format!("one-{one}")), 1, "{text}");
    assert_eq!(count_lines(&text, &format!("two-{two}")), 0, "{text}");
    let cwd = cwd_of(&browser, "first", &one).await;
    assert_ne!(cwd, "/", "the first tab's shell followed the second's cd");

    browser.client.refresh().await.expect("reloading the page");
    wait_for_tabs(&browser, 2, 0).await;
    let text = wait_for_line(&browser, &format!("one-{one}")).await;
    assert_eq!(count_lines(&text, &format!("one-{one}")), 1, "{text}");
    browser.click(&tab(2)).await;
    wait_for_tabs(&browser, 2, 1).await;
    let text = wait_for_line(&browser, &format!("two-{two}")).await;
    assert_eq!(count_lines(&text, &format!("two-{two}")), 1, "{text}");
    assert_eq!(cwd_of(&browser, "second", &two).await, "/");

    browser
        .click("#sam-tabs > .tab:nth-child(2) .tab-close")
        .await;
    wait_for_tabs(&browser, 1, 0).await;
    let closed = Instant::now();
    while !process_gone(&two) {
        assert!(
            closed.elapsed() < SHELL_ENDS,
            "the closed tab's shell {two} still runs"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cwd_of(&browser, "still", &one).await,
        cwd,
        "the first tab's shell still answers"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_tab_keeps_taking_output_past_flow_control() {
    let (_workspace, browser) = open_terminal().await;
    browser.click("#sam-new-tab").await;
    wait_for_tabs(&browser, 2, 1).await;
    // The flood starts only once this tab is hidden: when the first tab creates the file.
    run(
        &browser,
        r"while [ ! -e go ]; do sleep 0.1; done; head -c 2000000 /dev/zero | tr '\0' x; echo; echo flood-$((1+1))",
    )
    .await;
    browser.click(&tab(1)).await;
    wait_for_tabs(&browser, 2, 0).await;
    run(&browser, "touch go").await;

    // Had the hidden tab stopped acknowledging, its shell would stay paused near the
    // agent's high-water mark.
    let flooded = 4 * HIGH_WATER;
    browser
        .wait_for_js(
            &format!("return window.samTerminal.tabs()[1].offset > {flooded}"),
            STEP,
            "a megabyte of output in the hidden tab",
        )
        .await;
    browser.click(&tab(2)).await;
    wait_for_tabs(&browser, 2, 1).await;
    wait_for_line(&browser, "flood-2").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_so_when_no_more_tabs_may_open() {
    let (_workspace, browser) = open_terminal().await;
    let max = sam_protocol::MAX_SESSIONS_PER_WORKSPACE;
    for open in 2..=max {
        browser.click("#sam-new-tab").await;
        wait_for_tabs(&browser, open, open - 1).await;
    }
    browser.click("#sam-new-tab").await;
    let note = browser
        .wait_for_js(
            "return document.getElementById('sam-tab-note').textContent",
            STEP,
            "a note that no more tabs may open",
        )
        .await;
    assert!(note.as_str().unwrap().contains("close one"), "{note}");
    assert_eq!(
        browser
            .eval("return window.samTerminal.tabs().length")
            .await,
        max
    );

    // The keyboard closes a tab too, which makes room again.
    let focused = browser
        .client
        .find(fantoccini::Locator::Css(&tab(max)))
        .await
        .unwrap();
    focused
        .send_keys(&fantoccini::key::Key::Delete.to_string())
        .await
        .unwrap();
    wait_for_tabs(&browser, max - 1, max - 2).await;
    assert_eq!(
        browser
            .eval("return document.getElementById('sam-tab-note').textContent")
            .await,
        ""
    );
    browser.click("#sam-new-tab").await;
    wait_for_tabs(&browser, max, max - 1).await;

    // Another window starts shells of its own, past the agent's limit now. Retrying cannot
    // help until a tab closes, so the page stops and says why.
    let page = browser.eval("return location.href").await;
    let other = browser.client.new_window(false).await.unwrap().handle;
    browser.switch_to(&other).await;
    browser.client.goto(page.as_str().unwrap()).await.unwrap();
    stays_halted(&browser, "failed", "close one").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_opened_in_another_window_stays_there_until_taken_back() {
    let (_workspace, browser) = open_terminal().await;
    run(&browser, "echo one-$$").await;
    let pid = wait_for_pid(&browser, "one-").await;
    let first = browser.client.window().await.unwrap();

    // What "duplicate tab" does: another window of the page with this one's sessionStorage,
    // so the same session names.
    let storage = browser
        .eval("return JSON.stringify(Object.entries(sessionStorage))")
        .await;
    let page = browser.eval("return location.href").await;
    let page = page.as_str().unwrap();
    let second = browser.client.new_window(false).await.unwrap().handle;
    browser
        .client
        .switch_to_window(second.clone())
        .await
        .unwrap();
    // Any page of sam's origin will do to write its storage before the terminal loads.
    let origin = &page[..page.find("/w/").unwrap()];
    browser
        .client
        .goto(&format!("{origin}/healthz"))
        .await
        .unwrap();
    browser
        .client
        .execute(
            "for (const [k, v] of JSON.parse(arguments[0])) sessionStorage.setItem(k, v);",
            vec![storage],
        )
        .await
        .unwrap();
    browser.open_terminal(page, STEP).await;
    wait_for_line(&browser, &format!("one-{pid}")).await;

    browser.switch_to(&first).await;
    // Before, each window took the shell back within a second of losing it.
    stays_halted(&browser, "replaced", "another window").await;
    browser.switch_to(&second).await;
    browser.wait_for_terminal_connected(STEP).await;
    run(&browser, "echo two-$$").await;
    wait_for_line(&browser, &format!("two-{pid}")).await;

    browser.switch_to(&first).await;
    browser
        .click("#sam-screen > .panel:not([hidden]) .panel-action")
        .await;
    browser.wait_for_terminal_connected(STEP).await;
    run(&browser, "echo back-$$").await;
    wait_for_line(&browser, &format!("back-{pid}")).await;
    browser.switch_to(&second).await;
    browser
        .wait_for_js(
            "return window.samTerminal.state() === 'replaced'",
            STEP,
            "the second window to give the shell up",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_workspace_is_waited_for_and_the_shell_resumed_once_ready() {
    let (workspace, browser) = open_terminal().await;
    run(&browser, "echo one-$$").await;
    let pid = wait_for_pid(&browser, "one-").await;

    workspace.set_state("stopped").await;
    // A reload reconnects at once, and sam now refuses the socket before its upgrade.
    browser.client.refresh().await.expect("reloading the page");
    stays_halted(&browser, "unavailable", "/sam restart").await;
    assert_eq!(
        browser
            .eval("return document.getElementById('sam-state').textContent")
            .await,
        "stopped"
    );

    workspace.set_state("ready").await;
    // The page asks for the workspace's state every 15 seconds.
    browser
        .wait_for_terminal_connected(Duration::from_secs(30))
        .await;
    run(&browser, "echo again-$$").await;
    wait_for_line(&browser, &format!("again-{pid}")).await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alt_shift_arrows_switch_tabs_from_inside_the_terminal() {
    use fantoccini::key::Key;

    let (_workspace, browser) = open_terminal().await;
    browser.click("#sam-new-tab").await;
    wait_for_tabs(&browser, 2, 1).await;
    let left = Key::Alt + &Key::Shift + &Key::Left;
    let right = Key::Alt + &Key::Shift + &Key::Right;

    browser.type_text(&left).await;
    wait_for_tabs(&browser, 2, 0).await;
    // The terminal on show has the keys now, and the shell saw none of the shortcut.
    run(&browser, "echo first-$((1+1))").await;
    let text = wait_for_line(&browser, "first-2").await;
    assert!(
        !text.contains("[1;4"),
        "the shell got the shortcut:\n{text}"
    );
    browser.type_text(&right).await;
    wait_for_tabs(&browser, 2, 1).await;
    // Past the last tab, the first.
    browser.type_text(&right).await;
    wait_for_tabs(&browser, 2, 0).await;
    browser.close().await;
}

/// A ready workspace and a browser showing its terminal, connected. The browser starts
/// while sam checks the workspace out.
async fn open_terminal() -> (ReadyWorkspace, Browser) {
    let (workspace, browser) = tokio::join!(ready_workspace("feature/terminal"), Browser::start());
    browser.open_terminal(&workspace.link, SET_UP).await;
    (workspace, browser)
}

/// Waits until the first tab has stopped connecting in `state` with a notice saying
/// `words`, then watches it for [`QUIET`]: it must neither leave that state nor open another
/// socket meanwhile.
async fn stays_halted(browser: &Browser, state: &str, words: &str) {
    let notice = browser
        .wait_for_js(
            &format!(
                "const [tab] = window.samTerminal ? window.samTerminal.tabs() : [];
                 return tab && tab.state === '{state}' && tab.notice;"
            ),
            STEP,
            &format!("the first tab to stop connecting ({state})"),
        )
        .await;
    assert!(notice.as_str().unwrap().contains(words), "{notice}");
    let connections = browser
        .eval("return window.samTerminal.tabs()[0].connections")
        .await;
    let start = Instant::now();
    while start.elapsed() < QUIET {
        let now = browser
            .eval("const [tab] = window.samTerminal.tabs(); return [tab.state, tab.connections];")
            .await;
        assert_eq!(
            now,
            serde_json::json!([state, connections]),
            "the tab went on connecting"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Types `command` and Enter.
async fn run(browser: &Browser, command: &str) {
    browser.type_text(&format!("{command}\n")).await;
}

/// Waits until some line of the terminal reads exactly `line`; returns the whole text.
async fn wait_for_line(browser: &Browser, line: &str) -> String {
    browser
        .wait_for_terminal(STEP, &format!("the line {line:?}"), |text| {
            count_lines(text, line) > 0
        })
        .await
}

/// The shell's prompt as the terminal shows it: the line after a command's output.
async fn prompt(browser: &Browser) -> String {
    const MARKER: &str = "prompt-follows-5";
    run(browser, "echo prompt-follows-$((2+3))").await;
    let text = browser
        .wait_for_terminal(STEP, "a prompt after a command", |text| {
            line_after(text, MARKER).is_some()
        })
        .await;
    line_after(&text, MARKER).unwrap().to_owned()
}

/// How many lines of `text` read exactly `line`, trailing blanks aside.
fn count_lines(text: &str, line: &str) -> usize {
    text.lines().filter(|l| l.trim_end() == line).count()
}

/// The non-empty line right after the first line reading `marker`.
fn line_after<'t>(text: &'t str, marker: &str) -> Option<&'t str> {
    let mut lines = text.lines().map(str::trim_end);
    lines.find(|line| *line == marker)?;
    lines.next().filter(|line| !line.is_empty())
}

fn last_non_empty_line(text: &str) -> &str {
    text.lines()
        .rev()
        .map(str::trim_end)
        .find(|line| !line.is_empty())
        .unwrap_or_default()
}

/// The CSS selector of the `n`th tab (from 1).
fn tab(n: usize) -> String {
    format!("#sam-tabs > .tab:nth-child({n}) [role=tab]")
}

/// Waits until the page has `count` tabs, all connected, with the one at `active` (from 0)
/// on show.
async fn wait_for_tabs(browser: &Browser, count: usize, active: usize) {
    browser
        .wait_for_js(
            &format!(
                "const tabs = window.samTerminal ? window.samTerminal.tabs() : [];
                 return tabs.length === {count} && tabs[{active}].active
                     && tabs.every((tab) => tab.state === 'connected')
                     && document.querySelectorAll('[role=tab][aria-selected=true]').length === 1;"
            ),
            STEP,
            &format!("{count} connected tabs, the one at {active} on show"),
        )
        .await;
}

/// Waits for a line `<prefix><pid>` from the shell of the tab on show; returns the pid.
async fn wait_for_pid(browser: &Browser, prefix: &str) -> String {
    let text = browser
        .wait_for_terminal(STEP, &format!("a line {prefix}<pid>"), |text| {
            text.lines().any(|line| pid_after(line, prefix).is_some())
        })
        .await;
    text.lines()
        .find_map(|line| pid_after(line, prefix))
        .unwrap()
        .to_owned()
}

/// The working directory of the shell of the tab on show, which must be `pid`'s; `label`
/// tells this question's answer from earlier ones still on screen.
async fn cwd_of(browser: &Browser, label: &str, pid: &str) -> String {
    let mark = format!("{label}-{pid}-");
    run(browser, &format!(r#"echo "{label}-$$-$PWD""#)).await;
    let text = browser
        .wait_for_terminal(STEP, &format!("a line {mark}<dir>"), |text| {
            text.lines().any(|line| line.starts_with(&mark))
        })
        .await;
    let line = text.lines().find(|line| line.starts_with(&mark)).unwrap();
    line[mark.len()..].trim_end().to_owned()
}

/// Whether the process `pid` has ended (gone, or a zombie waiting to be reaped).
fn process_gone(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X")
    })
}

/// The pid in a line reading `pid-<digits>`.
fn pid_in(line: &str) -> Option<&str> {
    pid_after(line, "pid-")
}

/// The pid in a line reading `<prefix><digits>`.
fn pid_after<'l>(line: &'l str, prefix: &str) -> Option<&'l str> {
    line.trim_end()
        .strip_prefix(prefix)
        .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_cannot_read_sams_keys() {
    let (workspace, browser) = open_terminal().await;
    let key = workspace.sam.data_dir.path().join("link-signing.key");
    assert!(
        key.is_file(),
        "sam keeps its link-signing key at {}",
        key.display()
    );

    run(&browser, "echo \"user: $(id -un)\"").await;
    // Run as root, sam gives each workspace's shells an account of their own; otherwise
    // they are sam's.
    let expected = if nix::unistd::geteuid().is_root() {
        let id = crate::scene::workspace_of(&workspace.link).replace('-', "");
        format!("sam-{}", &id[..24])
    } else {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap()
            .name
    };
    wait_for_line(&browser, &format!("user: {expected}")).await;
    if !nix::unistd::geteuid().is_root() {
        browser.close().await;
        return;
    }

    run(
        &browser,
        &format!(
            "cat {} >/dev/null 2>&1; echo \"read: $?\"; git status --short >/dev/null && echo git-works",
            key.display()
        ),
    )
    .await;
    wait_for_line(&browser, "read: 1").await;
    wait_for_line(&browser, "git-works").await;
    browser.close().await;
}
