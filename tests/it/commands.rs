//! Commands written in comments, end to end: a fixture delivery, a running sam, the GitHub
//! stand-in, and for `/sam open` a real checkout by the agent. Each test names what a
//! person writing comments relies on.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::stage::{Fixture, Stage, WAIT, entries_named};
use crate::support::github::{Comment, PullRequestSpec};

/// sam's bot account on the stand-in.
const SAM_BOT: &str = "sam-test[bot]";

/// The status comment sam posts for `/sam open` on issue `number`, once it says the
/// workspace is ready or failed.
pub async fn settled_status(stage: &Stage, number: u64) -> Comment {
    stage
        .github
        .wait_for_comment_where(stage.repo, number, WAIT, |c| {
            c.via_api && (c.body.starts_with(":white_check_mark:") || c.body.starts_with(":x:"))
        })
        .await
}

/// The workspace id in the link of a "ready" status comment.
pub fn workspace_in(status: &str, sam_url: &str) -> String {
    let prefix = format!("]({sam_url}/w/");
    let start = status.find(&prefix).expect("a link to sam's /w/ page") + prefix.len();
    let id = &status[start..];
    id[..id.find('?').expect("a token after the id")].to_owned()
}

/// What git says about the checkout in `dir`: `rev-parse <args>`.
pub fn rev_parse(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        // The checkout belongs to the shells' account when sam runs as root.
        .args(["-c", "safe.directory=*"])
        .arg("rev-parse")
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("running git");
    assert!(
        output.status.success(),
        "git rev-parse {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("git printed UTF-8")
        .trim_end_matches('\n')
        .to_owned()
}

/// Whether git accepts `name` as a branch name, exactly as written.
fn git_accepts_branch(name: &str) -> bool {
    let output = Command::new("git")
        .args(["check-ref-format", "--branch", name])
        .output()
        .expect("running git");
    output.status.success() && String::from_utf8_lossy(&output.stdout).trim_end() == name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_on_an_issue_gets_eyes_then_one_reply_with_the_help_table() {
    let stage = Stage::start(Fixture::Issues).await;

    let (comment, payload) = stage.write(1, "Codertocat", "/sam help");
    stage.deliver(&payload).await;

    let reaction = stage.github.wait_for_reaction(comment.id, WAIT).await;
    assert_eq!(
        (reaction.content.as_str(), reaction.user.as_str()),
        ("eyes", SAM_BOT)
    );
    stage.wait_until_handled(1).await;
    let replies = stage.replies(1);
    assert_eq!(replies.len(), 1, "{replies:#?}");
    let help = &replies[0].body;
    for row in [
        "| command | what it does |",
        "| `/sam open` |",
        "| `/sam open <branch>` |",
        "| `/sam help` |",
    ] {
        assert!(help.contains(row), "the help has no {row:?}: {help}");
    }

    let posts: Vec<String> = stage
        .github
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/repos/"))
        .map(|r| r.path)
        .collect();
    assert_eq!(
        posts,
        [
            format!(
                "/repos/{}/issues/comments/{}/reactions",
                stage.repo, comment.id
            ),
            format!("/repos/{}/issues/1/comments", stage.repo),
        ],
        "the reaction comes first, then the reply"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_without_write_access_get_one_polite_reply_and_no_workspace() {
    let stage = Stage::start(Fixture::Issues).await;
    stage
        .git
        .push_branch(stage.repo, "feature", &[("a.txt", "a\n")]);

    stage.github.set_permission(stage.repo, "reader", "read");
    let (_, payload) = stage.write(1, "reader", "/sam open feature");
    stage.deliver(&payload).await;
    stage.wait_until_handled(1).await;

    stage.github.set_permission(stage.repo, "stranger", "none");
    let (_, payload) = stage.write(2, "stranger", "/sam open feature");
    stage.deliver(&payload).await;
    stage.wait_until_handled(2).await;

    for (issue, login) in [(1, "reader"), (2, "stranger")] {
        let replies = stage.replies(issue);
        assert_eq!(replies.len(), 1, "{login}: {replies:#?}");
        let reply = &replies[0].body;
        assert!(reply.starts_with(&format!("Sorry @{login},")), "{reply}");
        assert!(reply.contains("needs write access"), "{reply}");
    }
    assert_eq!(stage.workspace_count().await, 0);
    let checkouts: Vec<_> = std::fs::read_dir(stage.sam.workspaces_dir())
        .map(|dir| {
            dir.flatten()
                // The agent's own folders (credential sockets) are hidden.
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    assert!(checkouts.is_empty(), "{checkouts:?}");

    let requests = stage.github.requests();
    let tokens = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/access_tokens"))
        .count();
    assert_eq!(
        tokens, 1,
        "one installation token serves the reactions, checks and replies"
    );
    let looked_further = requests
        .iter()
        .filter(|r| r.path.contains("/branches/") || r.path.contains("/pulls/"))
        .map(|r| &r.path)
        .collect::<Vec<_>>();
    assert!(
        looked_further.is_empty(),
        "sam went past the permission check: {looked_further:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_bots_and_quoted_commands_trigger_nothing() {
    let stage = Stage::start(Fixture::Issues).await;
    let repo = stage.repo;
    let mut ignored: Vec<(&str, Comment, Value)> = Vec::new();

    let edited = stage.github.add_comment(repo, 1, "Codertocat", "/sam help");
    let payload = stage.announce("edited", &edited);
    assert_eq!(payload["action"], "edited");
    ignored.push(("an edited comment", edited, payload));

    let bot = "deploy-helper[bot]";
    let by_bot = stage.github.add_comment(repo, 1, bot, "/sam help");
    let mut payload = stage.announce("created", &by_bot);
    payload["comment"]["user"]["type"] = Value::from("Bot");
    payload["sender"]["login"] = Value::from(bot);
    payload["sender"]["type"] = Value::from("Bot");
    ignored.push(("a bot's comment", by_bot, payload));

    for (case, body) in [
        ("a fenced code block", "Try this:\n\n```\n/sam help\n```\n"),
        ("an indented code block", "Try this:\n\n    /sam help\n"),
        (
            "a quote",
            "> /sam help\n\nI wrote that and nothing happened?",
        ),
        (
            "an HTML comment",
            "<!--\n/sam help\n-->\nThanks for the review!",
        ),
        ("inline code", "`/sam help` lists the commands."),
        (
            "inline code over lines",
            "Type `\n/sam help\n` for the list.",
        ),
    ] {
        let comment = stage.github.add_comment(repo, 1, "Codertocat", body);
        let payload = stage.announce("created", &comment);
        ignored.push((case, comment, payload));
    }
    for (_, _, payload) in &ignored {
        stage.deliver(&serde_json::to_vec(payload).unwrap()).await;
    }

    let (real, payload) = stage.write(1, "Codertocat", "/sam help");
    stage.deliver(&payload).await;
    stage.wait_until_handled(ignored.len() + 1).await;

    let replies = stage.replies(1);
    assert_eq!(
        replies.len(),
        1,
        "only the real command is answered: {replies:#?}"
    );
    assert!(
        replies[0].body.contains("| `/sam help` |"),
        "{}",
        replies[0].body
    );
    assert_eq!(stage.github.reactions(real.id).len(), 1);
    for (case, comment, _) in &ignored {
        let reactions = stage.github.reactions(comment.id);
        assert!(reactions.is_empty(), "sam reacted to {case}: {reactions:?}");
    }
}

/// Codertocat, who may write, writes `command` on issue 1 of a repository where `branch`
/// has a commit of its own; the workspace must be ready on that branch and commit.
async fn opens_on_an_issue(command: &str, branch: &str) {
    let stage = Stage::start(Fixture::Issues).await;
    let head = stage
        .git
        .push_branch(stage.repo, branch, &[("notes.txt", "hello\n")]);
    stage
        .github
        .set_permission(stage.repo, "Codertocat", "write");

    let (_, payload) = stage.write(1, "Codertocat", command);
    stage.deliver(&payload).await;
    let status = settled_status(&stage, 1).await;

    let body = &status.body;
    assert!(
        body.starts_with(":white_check_mark: @Codertocat,"),
        "{body}"
    );
    assert!(
        body.contains(&format!("on `{branch}` at `{}`", &head[..12])),
        "{body}"
    );
    assert!(
        status.edits >= 1,
        "the status comment is edited in place, not reposted"
    );
    let checkout = stage.checkout_dir(&workspace_in(body, &stage.sam.url));
    assert_eq!(rev_parse(&checkout, &["--abbrev-ref", "HEAD"]), branch);
    assert_eq!(rev_parse(&checkout, &["HEAD"]), head);

    stage.wait_until_handled(1).await;
    assert_eq!(stage.replies(1).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_with_a_branch_on_an_issue_gives_a_ready_workspace_on_that_branch() {
    opens_on_an_issue("/sam open some-branch", "some-branch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_without_a_branch_on_an_issue_gives_the_default_branch() {
    // The payload names `master` as the repository's default branch.
    opens_on_an_issue("/sam open", "master").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_with_a_branch_the_repository_lacks_says_so_and_opens_nothing() {
    let stage = Stage::start(Fixture::Issues).await;
    stage
        .github
        .set_permission(stage.repo, "Codertocat", "write");

    let (_, payload) = stage.write(1, "Codertocat", "/sam open no-such-branch");
    stage.deliver(&payload).await;
    stage.wait_until_handled(1).await;

    let replies = stage.replies(1);
    assert_eq!(replies.len(), 1, "{replies:#?}");
    assert_eq!(
        crate::stage::shown(&replies[0].body),
        "This repository has no branch `no-such-branch`, so there is nothing to open."
    );
    assert_eq!(stage.workspace_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_branch_names_on_pull_requests_are_checked_out_as_plain_data() {
    let stage = Stage::start(Fixture::PullRequests).await;
    let repo = stage.repo;
    stage.github.set_permission(repo, "chhsia0", "write");
    // Each name as git accepts it, and as the status comment must show it: in a code span
    // whose fence no backtick in the name can close.
    let names = [
        ("x;touch${IFS}pwned", "`x;touch${IFS}pwned`"),
        ("$(touch${IFS}pwned)", "`$(touch${IFS}pwned)`"),
        ("`touch${IFS}pwned`", "`` `touch${IFS}pwned` ``"),
        ("feature/ünï/cödé", "`feature/ünï/cödé`"),
    ];

    let mut pulls = Vec::new();
    for (number, (name, shown)) in (10..).zip(names) {
        assert!(
            git_accepts_branch(name),
            "git refuses the branch name {name:?}"
        );
        let head = stage.git.push_branch(repo, name, &[("f.txt", name)]);
        let spec = PullRequestSpec {
            head_ref: name.to_owned(),
            head_sha: head.clone(),
            author: "chhsia0".to_owned(),
            ..Default::default()
        };
        stage.github.add_pull_request(repo, number, spec);
        let (_, payload) = stage.write(number, "chhsia0", "/sam open");
        stage.deliver(&payload).await;
        pulls.push((number, name, shown, head));
    }

    for (number, name, shown, head) in pulls {
        let status = settled_status(&stage, number).await;
        let body = &status.body;
        assert!(body.starts_with(":white_check_mark:"), "{name}: {body}");
        assert!(body.contains(&format!("on {shown} at")), "{name}: {body}");
        let checkout = stage.checkout_dir(&workspace_in(body, &stage.sam.url));
        assert_eq!(rev_parse(&checkout, &["--abbrev-ref", "HEAD"]), name);
        assert_eq!(rev_parse(&checkout, &["HEAD"]), head);
    }

    let mut pwned = entries_named(stage.sam.data_dir.path(), "pwned");
    pwned.extend(entries_named(stage.git.dir(), "pwned"));
    let cwd = std::env::current_dir().expect("the current directory");
    pwned.extend(Some(cwd.join("pwned")).filter(|p| p.exists()));
    assert!(
        pwned.is_empty(),
        "a branch name ran as a command: {pwned:?}"
    );
}
