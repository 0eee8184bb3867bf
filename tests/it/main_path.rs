//! The main path end to end: a real `issue_comment` delivery saying `/sam open` on a pull
//! request, a running `sam serve`, real PostgreSQL and git, and a real browser typing into
//! the shell behind the link sam posts.

use std::time::Duration;

use crate::browser::Browser;
use crate::scene::{REPO, ready_workspace};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sam_open_on_a_pull_request_gives_a_shell_on_its_branch() {
    let branch = "feature/terminal-check";
    let workspace = ready_workspace(branch).await;
    let ready = &workspace.ready;
    assert!(
        ready.body.contains(&format!("`{branch}`")),
        "{}",
        ready.body
    );
    let link = &workspace.link;
    assert!(
        link.starts_with(&format!("{}/w/", workspace.sam.url)),
        "{link}"
    );

    let browser = Browser::start().await;
    browser.open_terminal(link, WAIT).await;
    // The token is traded for a cookie and a clean URL.
    let current = browser.client.current_url().await.unwrap();
    assert!(
        current.query().is_none(),
        "the link's token stayed in the address bar: {current}"
    );
    let page = browser.client.source().await.unwrap();
    assert!(
        page.contains(REPO) && page.contains(branch),
        "the page names the repository and branch"
    );

    browser
        .type_text("git rev-parse --abbrev-ref HEAD; git rev-parse HEAD\n")
        .await;
    let text = browser
        .wait_for_terminal(WAIT, "the branch name and head commit", |text| {
            text.lines().any(|line| line.trim() == branch) && text.contains(&workspace.head)
        })
        .await;
    assert!(!text.contains("fatal:"), "git complained: {text}");
    browser.close().await;
}
