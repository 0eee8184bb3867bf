//! Where sam's settings come from: the environment first, then the settings file
//! (`SAM_CONFIG`, or `./sam.toml`), which may hold the same keys except the log's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{ENV_ONLY_KEYS, KEYS};

/// Where the raw values come from: the environment first, then `sam.toml`.
pub struct Source {
    env: HashMap<String, String>,
    file: HashMap<String, String>,
    /// What was wrong in the file, reported with every other problem of the settings.
    file_problems: Vec<String>,
    /// The settings file, when there was one.
    file_read: Option<PathBuf>,
}

impl Source {
    /// Reads the process environment and, when present, the TOML file named by `SAM_CONFIG`
    /// or `./sam.toml`.
    pub fn load() -> Result<Self, Vec<String>> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let explicit = match env.get("SAM_CONFIG").map(String::as_str) {
            Some("") => {
                return Err(vec![
                    "SAM_CONFIG is set but empty: name the settings file, or unset it to read ./sam.toml when there is one".into(),
                ]);
            }
            Some(path) => Some(PathBuf::from(path)),
            None => None,
        };
        let path = explicit
            .clone()
            .unwrap_or_else(|| PathBuf::from("sam.toml"));
        let (file, file_problems, file_read) = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (file, problems) = parse_toml(&path, &text)?;
                (file, problems, Some(path))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                (HashMap::new(), Vec::new(), None)
            }
            Err(e) => return Err(vec![format!("cannot read {}: {e}", path.display())]),
        };
        Ok(Self {
            env,
            file,
            file_problems,
            file_read,
        })
    }

    /// A source made of explicit values, for tests and tools.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            env: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            file: HashMap::new(),
            file_problems: Vec::new(),
            file_read: None,
        }
    }

    /// The settings file read, if any.
    pub(crate) fn file_read(&self) -> Option<&Path> {
        self.file_read.as_deref()
    }

    /// What was wrong in the file, to be reported with the other settings' problems.
    pub(super) fn file_problems(&self) -> &[String] {
        &self.file_problems
    }

    /// The value of `key`, trimmed; `None` when unset or blank.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.raw(key).map(str::trim).filter(|v| !v.is_empty())
    }

    fn raw(&self, key: &str) -> Option<&str> {
        self.env
            .get(key)
            .or_else(|| self.file.get(key))
            .map(String::as_str)
    }

    /// The settings whose value had spaces or line breaks around it, which [`Source::get`]
    /// removes: a secret pasted with a trailing newline is a copy slip, not part of it. The
    /// operator is told, by name only, in case the spaces were meant.
    pub(super) fn trimmed_keys(&self) -> Vec<&'static str> {
        let provider_keys = crate::workspaces::settings::KEYS;
        KEYS.iter()
            .chain(provider_keys)
            .chain(ENV_ONLY_KEYS)
            .copied()
            // PEM text ends with a line break by nature.
            .filter(|key| *key != "GITHUB_APP_PRIVATE_KEY")
            .filter(|key| {
                self.raw(key)
                    .is_some_and(|v| !v.trim().is_empty() && v.trim() != v)
            })
            .collect()
    }
}

/// Values by key.
type Settings = HashMap<String, String>;

/// The settings in a `sam.toml` that can be read, and every problem in it, so that they are
/// reported together with the other settings' problems. A file that is not TOML is the
/// one problem: which settings it meant to hold cannot be told.
fn parse_toml(path: &Path, text: &str) -> Result<(Settings, Vec<String>), Vec<String>> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        vec![format!(
            "{} is not valid TOML, so no other setting was checked: {e}",
            path.display()
        )]
    })?;
    let mut values = HashMap::new();
    let mut problems = Vec::new();
    for (key, value) in table {
        let provider_keys = crate::workspaces::settings::KEYS;
        if !KEYS.contains(&key.as_str()) && !provider_keys.contains(&key.as_str()) {
            let why = if ENV_ONLY_KEYS.contains(&key.as_str()) {
                "is read from the environment only"
            } else {
                "is not a setting of sam's"
            };
            problems.push(format!("{}: {key} {why}", path.display()));
            continue;
        }
        match value {
            toml::Value::String(s) => {
                values.insert(key, s);
            }
            toml::Value::Integer(i) => {
                values.insert(key, i.to_string());
            }
            other => problems.push(format!(
                "{}: {key} must be a string, not {}",
                path.display(),
                other.type_str()
            )),
        }
    }
    Ok((values, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn environment_wins_over_the_file() {
        let mut source = Source::from_pairs([("SAM_LISTEN", "127.0.0.1:4000")]);
        source
            .file
            .insert("SAM_LISTEN".into(), "127.0.0.1:5000".into());
        source.file.insert("SAM_DATA_DIR".into(), "/srv/sam".into());
        assert_eq!(source.get("SAM_LISTEN"), Some("127.0.0.1:4000"));
        assert_eq!(source.get("SAM_DATA_DIR"), Some("/srv/sam"));
    }

    #[test]
    fn a_problem_in_the_file_hides_no_other() {
        let mut source = Source::from_pairs([("SAM_LISTEN", "nowhere")]);
        let (file, file_problems) = parse_toml(
            Path::new("sam.toml"),
            "SAM_IDLE = \"5m\"\nDATABASE_URL = \"postgres://db/sam\"\n",
        )
        .unwrap();
        source.file = file;
        source.file_problems = file_problems;
        let problems = Config::from_source(&source).unwrap_err().join("\n");
        assert!(problems.contains("SAM_IDLE is not a setting"), "{problems}");
        assert!(problems.contains("SAM_LISTEN must be"), "{problems}");
    }

    #[test]
    fn a_file_that_is_not_toml_is_the_one_problem_named() {
        let text = "DATABASE_URL = \"postgres://db/sam\"\nSAM_LISTEN = 127.0.0.1:3000\n";
        let problems = parse_toml(Path::new("sam.toml"), text).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("line 2"), "{problems:?}");
    }

    #[test]
    fn every_problem_of_the_file_is_reported() {
        let text = "GITHUB_APP_IDD = 3\nSAM_LISTEN = true\nSAM_LOG = \"debug\"\n";
        let problems = parse_toml(Path::new("sam.toml"), text)
            .unwrap()
            .1
            .join("\n");
        assert!(
            problems.contains("GITHUB_APP_IDD is not a setting"),
            "{problems}"
        );
        assert!(
            problems.contains("SAM_LISTEN must be a string"),
            "{problems}"
        );
        assert!(
            problems.contains("SAM_LOG is read from the environment only"),
            "{problems}"
        );
    }
}
