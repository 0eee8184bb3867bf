//! The webhook payloads sam reads, narrowed to the fields it needs.
//!
//! Real payloads vary more than any one schema admits: timestamps as numbers or strings,
//! `installation` as a stub, a full object or absent, `null` bodies. These structs name
//! only what sam uses, so everything else may vary freely.

use serde::Deserialize;

/// `installation` in any of its shapes; only the id matters.
#[derive(Debug, Clone, Deserialize)]
pub struct InstallationRef {
    pub id: u64,
}

/// A GitHub account as it appears in `sender`, `user` and `owner`.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    pub login: String,
    pub id: u64,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

impl Account {
    /// Bots never trigger anything, sam's own comments included.
    pub fn is_bot(&self) -> bool {
        super::is_bot(&self.login, self.kind.as_deref())
    }
}

/// The repository an event happened in.
#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub id: u64,
    pub full_name: String,
    pub name: String,
    pub owner: Account,
    #[serde(default)]
    pub default_branch: Option<String>,
}

/// `issue_comment`: a comment on an issue or a pull request.
#[derive(Debug, Clone, Deserialize)]
pub struct IssueCommentEvent {
    pub action: String,
    pub comment: Comment,
    pub issue: Issue,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
}

/// The comment of an `issue_comment` event.
#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    pub user: Account,
}

/// The issue (or pull request: GitHub treats both as issues) a comment belongs to.
#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub number: u64,
    /// Present, with links, only when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde::de::IgnoredAny>,
}

impl Issue {
    /// Whether the comment was made on a pull request.
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.is_some()
    }
}

/// `pull_request`: sam offers its check-run button when one opens or moves, and deletes
/// workspaces when one closes (merged or not).
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestEvent {
    pub action: String,
    pub number: u64,
    pub pull_request: PullRequestRef,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
}

/// The pull request of a `pull_request` event, as far as sam reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestRef {
    pub head: HeadRef,
}

/// A pull request's head commit.
#[derive(Debug, Clone, Deserialize)]
pub struct HeadRef {
    pub sha: String,
}

/// `check_run`: a button of sam's check run clicked, or the run asked for again.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckRunEvent {
    pub action: String,
    pub check_run: CheckRun,
    #[serde(default)]
    pub requested_action: Option<RequestedAction>,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
    pub sender: Account,
}

/// The check run of a `check_run` event.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    /// What its creator stored in it: for sam's runs, the pull request's number.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The pull requests of the same repository whose head this is; empty for forks.
    #[serde(default)]
    pub pull_requests: Vec<NumberRef>,
    #[serde(default)]
    pub app: Option<AppRef>,
}

/// Anything GitHub names by a number, like a pull request in a list.
#[derive(Debug, Clone, Deserialize)]
pub struct NumberRef {
    pub number: u64,
}

/// The App that made a check run.
#[derive(Debug, Clone, Deserialize)]
pub struct AppRef {
    pub id: u64,
}

/// The button of a check run someone clicked.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestedAction {
    pub identifier: String,
}

/// `installation`: sam acts on the App's removal from an account.
#[derive(Debug, Clone, Deserialize)]
pub struct InstallationEvent {
    pub action: String,
    pub installation: InstallationRef,
}

/// `installation_repositories`: sam acts on repositories taken out of an installation.
#[derive(Debug, Clone, Deserialize)]
pub struct InstallationRepositoriesEvent {
    pub action: String,
    pub installation: InstallationRef,
    #[serde(default)]
    pub repositories_removed: Vec<RepositoryRef>,
}

/// A repository as lists of them in installation events name it.
#[derive(Debug, Clone, Deserialize)]
pub struct RepositoryRef {
    pub id: u64,
}

/// Only the action, to route an event before reading the rest of it.
#[derive(Debug, Clone, Deserialize)]
pub struct ActionOnly {
    #[serde(default)]
    pub action: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_with_null_body_is_read() {
        let event: IssueCommentEvent = serde_json::from_str(
            r#"{"action":"created","comment":{"id":1,"body":null,"user":{"login":"a","id":2}},
                "issue":{"number":3,"pull_request":null},
                "repository":{"id":4,"full_name":"o/r","name":"r","owner":{"login":"o","id":5}}}"#,
        )
        .unwrap();
        assert_eq!(event.comment.body, None);
        assert!(!event.issue.is_pull_request());
        assert!(event.installation.is_none());
    }

    #[test]
    fn app_comments_count_as_bots() {
        let bot = Account {
            login: "sam-app[bot]".into(),
            id: 1,
            kind: Some("Bot".into()),
        };
        let person = Account {
            login: "octocat".into(),
            id: 2,
            kind: Some("User".into()),
        };
        assert!(bot.is_bot());
        assert!(!person.is_bot());
    }

    mod properties {
        //! Reading payloads never panics, whatever arrives: an unreadable payload is an
        //! error the worker records, never a crash of the worker.

        use std::path::PathBuf;

        use proptest::prelude::*;
        use serde::de::DeserializeOwned;
        use serde_json::Value;

        use super::super::*;

        /// Reads `bytes` as every event sam handles; a `Debug` of each result, so that
        /// two readings can be compared.
        fn read_all(bytes: &[u8]) -> Vec<String> {
            fn one<T: DeserializeOwned + std::fmt::Debug>(bytes: &[u8]) -> String {
                format!("{:?}", serde_json::from_slice::<T>(bytes).ok())
            }
            vec![
                one::<IssueCommentEvent>(bytes),
                one::<PullRequestEvent>(bytes),
                one::<CheckRunEvent>(bytes),
                one::<InstallationEvent>(bytes),
                one::<InstallationRepositoriesEvent>(bytes),
                one::<ActionOnly>(bytes),
            ]
        }

        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("JSON has no NaN", |f| f.is_finite())
                    .prop_map(Value::from),
                ".{0,12}".prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop::sample::select(vec![
                            "action",
                            "id",
                            "number",
                            "login",
                            "body",
                            "comment",
                            "issue",
                            "repository",
                            "installation",
                            "sender",
                            "user",
                            "owner",
                            "check_run",
                            "pull_request",
                            "head",
                            "sha",
                            "name",
                            "full_name",
                        ])
                        .prop_map(str::to_owned),
                        inner,
                        0..6,
                    )
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
                ]
            })
        }

        /// The real payloads of the events sam reads, from the shared fixtures; none when
        /// they are not beside the repository (the integration tests insist on them).
        fn fixtures() -> Vec<Value> {
            let dir = std::env::var_os("SAM_FIXTURES_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github")
                })
                .join("webhooks");
            let mut all = Vec::new();
            for event in ["issue_comment", "pull_request", "check_run", "installation"] {
                let Ok(entries) = std::fs::read_dir(dir.join(event)) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let bytes = std::fs::read(entry.path()).expect("reading a fixture");
                    all.push(serde_json::from_slice(&bytes).expect("fixtures are JSON"));
                }
            }
            all
        }

        /// The value at a path of indices into `value`, wherever it leads.
        fn pick<'a>(value: &'a mut Value, path: &[usize]) -> &'a mut Value {
            let Some((&first, rest)) = path.split_first() else {
                return value;
            };
            let len = match &*value {
                Value::Object(map) => map.len(),
                Value::Array(items) => items.len(),
                _ => 0,
            };
            if len == 0 {
                return value;
            }
            let next = match value {
                Value::Object(map) => map.values_mut().nth(first % len),
                Value::Array(items) => items.get_mut(first % len),
                _ => None,
            };
            pick(next.expect("in range"), rest)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]

            #[test]
            fn any_bytes_are_read_or_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                read_all(&bytes);
            }

            #[test]
            fn any_json_is_read_or_refused_without_panic(value in any_json()) {
                read_all(&serde_json::to_vec(&value).unwrap());
            }

            #[test]
            fn a_real_payload_with_any_part_replaced_is_read_or_refused_without_panic(
                which in any::<usize>(),
                path in prop::collection::vec(any::<usize>(), 0..6),
                replacement in any_json(),
            ) {
                let all = fixtures();
                prop_assume!(!all.is_empty());
                let mut payload = all[which % all.len()].clone();
                *pick(&mut payload, &path) = replacement;
                read_all(&serde_json::to_vec(&payload).unwrap());
            }

            #[test]
            fn fields_github_adds_later_change_nothing_sam_reads(
                which in any::<usize>(),
                path in prop::collection::vec(any::<usize>(), 0..6),
                extra in any_json(),
            ) {
                let all = fixtures();
                prop_assume!(!all.is_empty());
                let original = all[which % all.len()].clone();
                let mut grown = original.clone();
                if let Value::Object(map) = pick(&mut grown, &path) {
                    map.insert("field_github_added_later".to_owned(), extra);
                }
                let before = read_all(&serde_json::to_vec(&original).unwrap());
                let after = read_all(&serde_json::to_vec(&grown).unwrap());
                prop_assert_eq!(before, after);
            }
        }
    }
}
