//! Configuration: environment variables, optionally backed by a `sam.toml` with the same keys.
//!
//! Every problem is collected before reporting, so that an operator fixes a configuration
//! in one pass instead of one restart per mistake.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::EncodingKey;
use secrecy::SecretString;
use url::Url;

mod source;
mod values;
pub use source::Source;
pub(crate) use values::is_login;
use values::{
    bare_target, database_scheme, parse_base_url, parse_idle_timeout, parse_logins, parse_or,
    unreachable_from_hosts,
};

/// The names operators set. They are the public contract of sam's configuration.
pub const KEYS: &[&str] = &[
    "DATABASE_URL",
    "SAM_LISTEN",
    "SAM_PUBLIC_URL",
    "SAM_DATA_DIR",
    "SAM_IDLE_TIMEOUT",
    "GITHUB_API_URL",
    "GITHUB_URL",
    "GITHUB_APP_ID",
    "GITHUB_APP_SLUG",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_PATH",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_WEBHOOK_SECRET_PREVIOUS",
    "GITHUB_CLIENT_ID",
    "GITHUB_CLIENT_SECRET",
    "SAM_OPERATORS",
];

/// The keys that together name the GitHub App; all of them or none.
/// `GITHUB_WEBHOOK_SECRET_PREVIOUS` is not one: it only helps rotate the secret of an App
/// these keys name, and alone names nothing.
const APP_KEYS: &[&str] = &[
    "GITHUB_APP_ID",
    "GITHUB_APP_SLUG",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_PRIVATE_KEY_PATH",
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_CLIENT_ID",
    "GITHUB_CLIENT_SECRET",
];

/// Settings read from the environment only: sam.toml cannot hold them.
pub(crate) const ENV_ONLY_KEYS: &[&str] = &["SAM_LOG", "SAM_LOG_FORMAT"];

/// Everything sam needs to run, validated.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub listen: SocketAddr,
    pub public_url: Url,
    pub data_dir: PathBuf,
    /// How long a ready workspace may go without terminal traffic before sam stops it;
    /// `None` when operators turned idle stops off.
    pub idle_timeout: Option<Duration>,
    pub github_api_url: Url,
    pub github_url: Url,
    /// The App as the environment or `sam.toml` name it; `None` when none of its keys is
    /// set, and sam then offers to register one. The App sam runs with is
    /// [`crate::app::App::registered`], which a registration replaces without a restart.
    pub app: Option<AppCredentials>,
    /// GitHub logins allowed to see `/status`, besides the App's owner (`SAM_OPERATORS`).
    pub operators: Vec<String>,
    /// Where workspaces run (`SAM_PROVIDER`), with that provider's settings.
    pub provider: crate::workspaces::settings::ProviderConfig,
    /// How sam logs (`SAM_LOG`, `SAM_LOG_FORMAT`).
    pub log: LogSettings,
    /// What the operator should know about settings sam accepted, to be logged once the
    /// log is set up.
    pub warnings: Vec<String>,
    /// The settings file the values were read from besides the environment, if any.
    pub settings_file: Option<PathBuf>,
}

/// The log's filter and format, validated.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A tracing filter, e.g. `info,sam=debug`.
    pub filter: String,
    pub format: crate::logs::Format,
}

/// The GitHub App's identity: what it signs JWTs with, how it checks deliveries, and its
/// OAuth client.
#[derive(Clone)]
pub struct AppCredentials {
    pub id: u64,
    pub slug: String,
    pub private_key: EncodingKey,
    pub webhook_secret: SecretString,
    /// The secret being replaced while a rotation is under way: deliveries signed with it
    /// are still accepted, so that no delivery is refused while GitHub switches over.
    pub previous_webhook_secret: Option<SecretString>,
    pub oauth: OAuthClient,
    /// The account that owns the App, when sam knows it (a registration from the front
    /// page tells it; otherwise sam asks GitHub).
    pub owner: Option<String>,
}

impl AppCredentials {
    /// Every secret a delivery may be signed with, the current one first.
    pub fn webhook_secrets(&self) -> impl Iterator<Item = &SecretString> {
        std::iter::once(&self.webhook_secret).chain(&self.previous_webhook_secret)
    }
}

/// The App's OAuth client, used to learn who opens a terminal link.
#[derive(Clone)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: SecretString,
}

impl fmt::Debug for Config {
    // Hand-written so that secrets can never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url.as_str())
            .field("data_dir", &self.data_dir)
            .field("idle_timeout", &self.idle_timeout)
            .field("github_api_url", &self.github_api_url.as_str())
            .field("github_url", &self.github_url.as_str())
            .field("app_id", &self.app.as_ref().map(|app| app.id))
            .field("app_slug", &self.app.as_ref().map(|app| app.slug.as_str()))
            .field("operators", &self.operators)
            .field("provider", &self.provider)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Validates every key, returning all the problems found in plain words.
    pub fn from_source(source: &Source) -> Result<Self, Vec<String>> {
        let mut problems = source.file_problems().to_vec();
        let mut warnings = Vec::new();
        let database_url = source.get("DATABASE_URL").map(str::to_owned);
        match database_url.as_deref().map(database_scheme) {
            None => {
                problems.push("DATABASE_URL is not set: the PostgreSQL connection URL".to_owned())
            }
            Some(Err(why)) => problems.push(format!("DATABASE_URL {why}")),
            Some(Ok(())) => {}
        }
        let log = log_settings(source, &mut problems);

        let listen = parse_or(source, "SAM_LISTEN", "127.0.0.1:3000", &mut problems, |v| {
            match v.parse::<SocketAddr>() {
                // Any free port would do for sam, but not for its links and GitHub.
                Ok(addr) if addr.port() == 0 => Err("must name a port other than 0".into()),
                Ok(addr) => Ok(addr),
                Err(_) => Err("must be an address and port, like 127.0.0.1:3000".into()),
            }
        });
        // Without SAM_PUBLIC_URL, sam is reached where it listens; a listen address that
        // is not valid, or that is every address (0.0.0.0), says nothing about that.
        let public_url = match (source.get("SAM_PUBLIC_URL"), listen) {
            (Some(_), _) => parse_or(source, "SAM_PUBLIC_URL", "", &mut problems, |raw| {
                // sam's pages, redirects and cookies name paths from the host's root.
                parse_base_url(raw).and_then(|url| match url.path() {
                    "/" => Ok(url),
                    _ => Err("must be the root of a host, like https://sam.example.org: sam's pages link from /, so it cannot live under a path".into()),
                })
            }),
            (None, Some(addr)) if addr.ip().is_unspecified() => {
                problems.push(format!(
                    "SAM_PUBLIC_URL must be set when SAM_LISTEN is every address ({addr}): \
                     links and the App's webhook need the address people and GitHub reach \
                     sam at, like https://sam.example.org"
                ));
                None
            }
            (None, Some(addr)) => parse_base_url(&format!("http://{addr}")).ok(),
            (None, None) => None,
        };
        let github_api_url = parse_or(
            source,
            "GITHUB_API_URL",
            "https://api.github.com",
            &mut problems,
            parse_base_url,
        );
        let github_url = parse_or(
            source,
            "GITHUB_URL",
            "https://github.com",
            &mut problems,
            parse_base_url,
        );
        let data_dir = PathBuf::from(source.get("SAM_DATA_DIR").unwrap_or("data"));
        let idle_timeout = parse_or(
            source,
            "SAM_IDLE_TIMEOUT",
            "30m",
            &mut problems,
            parse_idle_timeout,
        );
        let operators = parse_or(source, "SAM_OPERATORS", "", &mut problems, parse_logins);
        // Without any of the App's keys sam starts and offers to register one; with some of
        // them, the missing ones are a mistake worth stopping for.
        let app = if APP_KEYS.iter().any(|key| source.get(key).is_some()) {
            app_credentials(source, &mut problems)
        } else {
            if source.get("GITHUB_WEBHOOK_SECRET_PREVIOUS").is_some() {
                warnings.push(
                    "GITHUB_WEBHOOK_SECRET_PREVIOUS is set without the App's settings, so it is ignored: it helps rotate the secret of an App set with the GITHUB_* settings".into(),
                );
            }
            None
        };
        for key in source.trimmed_keys() {
            warnings.push(format!(
                "{key} had spaces or line breaks at its start or end; sam removed them"
            ));
        }
        let provider =
            crate::workspaces::settings::ProviderConfig::from_source(source, &mut problems);
        if let (crate::workspaces::settings::ProviderConfig::Hetzner(_), Some(url)) =
            (&provider, &public_url)
            && let Some(why) = unreachable_from_hosts(url)
        {
            warnings.push(format!(
                "SAM_PUBLIC_URL is {url}, {why}: the agents of Hetzner servers register and fetch git credentials there"
            ));
        }

        match (
            database_url,
            listen,
            public_url,
            github_api_url,
            github_url,
            idle_timeout,
            operators,
            log,
        ) {
            (
                Some(database_url),
                Some(listen),
                Some(public_url),
                Some(github_api_url),
                Some(github_url),
                Some(idle_timeout),
                Some(operators),
                Some(log),
            ) if problems.is_empty() => Ok(Config {
                database_url,
                listen,
                public_url,
                data_dir,
                idle_timeout,
                github_api_url,
                github_url,
                app,
                operators,
                provider,
                log,
                warnings,
                settings_file: source.file_read().map(Path::to_path_buf),
            }),
            _ => Err(problems),
        }
    }

    /// The scheme, host and port that browsers must send as `Origin` for sam's own pages.
    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }
}

/// `SAM_LOG` and `SAM_LOG_FORMAT`, refused when malformed rather than silently replaced by
/// the defaults.
fn log_settings(source: &Source, problems: &mut Vec<String>) -> Option<LogSettings> {
    let filter = source.get("SAM_LOG").unwrap_or("info");
    let filter = match tracing_subscriber::EnvFilter::builder().parse(filter) {
        // A bare word is a target to log at every level, to tracing; `inf` for `info`
        // would then silence everything else. A target must name its level here.
        Ok(_) if let Some(word) = bare_target(filter) => {
            problems.push(format!(
                "SAM_LOG: {word:?} is not a level (off, error, warn, info, debug or trace); to log one module at every level, write {word}=trace"
            ));
            None
        }
        Ok(_) => Some(filter.to_owned()),
        Err(error) => {
            problems.push(format!(
                "SAM_LOG is not a log filter like info or info,sam=debug: {error} (got {filter:?})"
            ));
            None
        }
    };
    let format = crate::logs::Format::parse(source.get("SAM_LOG_FORMAT"))
        .map_err(|error| problems.push(error.to_string()))
        .ok();
    Some(LogSettings {
        filter: filter?,
        format: format?,
    })
}

/// The App's keys, when at least one is set: every one of them is then required.
fn app_credentials(source: &Source, problems: &mut Vec<String>) -> Option<AppCredentials> {
    let mut required = |key: &str, what: &str| -> Option<String> {
        let value = source.get(key).map(str::to_owned);
        if value.is_none() {
            problems.push(format!("{key} is not set: {what}"));
        }
        value
    };
    let id = required(
        "GITHUB_APP_ID",
        "the numeric id shown on the App's settings page",
    );
    let slug = required(
        "GITHUB_APP_SLUG",
        "the App's URL name, as in github.com/apps/<slug>",
    );
    let webhook_secret = required(
        "GITHUB_WEBHOOK_SECRET",
        "the secret GitHub signs deliveries with",
    );
    let client_id = required("GITHUB_CLIENT_ID", "the App's OAuth client id");
    let client_secret = required("GITHUB_CLIENT_SECRET", "the App's OAuth client secret");
    let previous_webhook_secret = source
        .get("GITHUB_WEBHOOK_SECRET_PREVIOUS")
        .map(|secret| SecretString::from(secret.to_owned()));
    let id = id.and_then(|v| match v.parse::<u64>() {
        Ok(id) if id > 0 => Some(id),
        _ => {
            problems.push(format!(
                "GITHUB_APP_ID must be a positive number, not {v:?}"
            ));
            None
        }
    });
    let private_key = private_key(source, problems);
    Some(AppCredentials {
        id: id?,
        slug: slug?,
        private_key: private_key?,
        webhook_secret: webhook_secret?.into(),
        previous_webhook_secret,
        oauth: OAuthClient {
            client_id: client_id?,
            client_secret: client_secret?.into(),
        },
        owner: None,
    })
}

fn private_key(source: &Source, problems: &mut Vec<String>) -> Option<EncodingKey> {
    let pem = match (
        source.get("GITHUB_APP_PRIVATE_KEY"),
        source.get("GITHUB_APP_PRIVATE_KEY_PATH"),
    ) {
        (Some(_), Some(_)) => {
            problems
                .push("set GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_PATH, not both".into());
            return None;
        }
        (Some(text), None) => text.replace("\\n", "\n"),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!(
                    "GITHUB_APP_PRIVATE_KEY_PATH: cannot read {path}: {e}"
                ));
                return None;
            }
        },
        (None, None) => {
            problems.push(
                "GITHUB_APP_PRIVATE_KEY (PEM text) or GITHUB_APP_PRIVATE_KEY_PATH (a file) is not set: the App's private key".into(),
            );
            return None;
        }
    };
    match EncodingKey::from_rsa_pem(pem.as_bytes()) {
        Ok(key) => Some(key),
        Err(_) => {
            problems.push("the GitHub App private key is not an RSA key in PEM format".into());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_any_app_key_sam_runs_unregistered() {
        let config =
            Config::from_source(&Source::from_pairs([("DATABASE_URL", "postgres://db/sam")]))
                .expect("only the database is required");
        assert!(config.app.is_none());
        assert!(config.operators.is_empty());
    }

    #[test]
    fn operators_are_a_list_of_logins() {
        assert_eq!(
            parse_logins("Alice, bob carol-d"),
            Ok(vec!["alice".into(), "bob".into(), "carol-d".into()])
        );
        assert!(parse_logins("alice;bob").is_err());
        assert!(parse_logins("-x").is_err());
    }

    #[test]
    fn every_missing_value_is_reported_at_once() {
        let problems =
            Config::from_source(&Source::from_pairs([("GITHUB_APP_ID", "7")])).unwrap_err();
        for key in [
            "DATABASE_URL",
            "GITHUB_APP_SLUG",
            "GITHUB_WEBHOOK_SECRET",
            "GITHUB_CLIENT_ID",
            "GITHUB_CLIENT_SECRET",
            "GITHUB_APP_PRIVATE_KEY",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(key)),
                "{key} missing from {problems:?}"
            );
        }
    }

    #[test]
    fn malformed_values_are_named() {
        let problems = Config::from_source(&Source::from_pairs([
            ("SAM_LISTEN", "localhost"),
            ("GITHUB_API_URL", "ftp://example.com"),
            ("GITHUB_APP_ID", "abc"),
            ("GITHUB_APP_PRIVATE_KEY", "not a key"),
        ]))
        .unwrap_err();
        let text = problems.join("\n");
        assert!(text.contains("SAM_LISTEN"), "{text}");
        assert!(text.contains("GITHUB_API_URL"), "{text}");
        assert!(
            text.contains("GITHUB_APP_ID must be a positive number"),
            "{text}"
        );
        assert!(text.contains("not an RSA key"), "{text}");
    }

    #[test]
    fn the_public_url_is_asked_for_when_sam_listens_on_every_address() {
        let problems = Config::from_source(&Source::from_pairs([
            ("DATABASE_URL", "postgres://db/sam"),
            ("SAM_LISTEN", "0.0.0.0:3000"),
        ]))
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("SAM_PUBLIC_URL must be set"),
            "{problems:?}"
        );

        let config = Config::from_source(&Source::from_pairs([
            ("DATABASE_URL", "postgres://db/sam"),
            ("SAM_LISTEN", "0.0.0.0:3000"),
            ("SAM_PUBLIC_URL", "https://sam.example.org"),
        ]))
        .unwrap();
        assert_eq!(config.public_url.as_str(), "https://sam.example.org/");

        // A listen address that cannot be read is one problem, not a second one about a
        // public URL nobody set.
        let problems = Config::from_source(&Source::from_pairs([
            ("DATABASE_URL", "postgres://db/sam"),
            ("SAM_LISTEN", "localhost:3000"),
        ]))
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("SAM_LISTEN"), "{problems:?}");
    }

    #[test]
    fn the_log_settings_and_the_database_scheme_are_checked() {
        let problems = Config::from_source(&Source::from_pairs([
            ("DATABASE_URL", "mysql://sam:hunter2@db/sam"),
            ("SAM_LOG", "info,sam=loud"),
            ("SAM_LOG_FORMAT", "yaml"),
        ]))
        .unwrap_err()
        .join("\n");
        assert!(
            problems.contains("DATABASE_URL must be a postgres://"),
            "{problems}"
        );
        assert!(!problems.contains("hunter2"), "{problems}");
        assert!(
            problems.contains("SAM_LOG is not a log filter"),
            "{problems}"
        );
        assert!(problems.contains("SAM_LOG_FORMAT"), "{problems}");
        for scheme in ["postgres", "postgresql"] {
            let url = format!("{scheme}://sam@db/sam");
            let config = Config::from_source(&Source::from_pairs([
                ("DATABASE_URL", url.as_str()),
                ("SAM_LOG", "warn,sam=debug"),
            ]))
            .expect("a PostgreSQL URL and a filter");
            assert_eq!(config.log.filter, "warn,sam=debug");
        }
    }

    #[test]
    fn urls_and_ports_that_links_cannot_use_are_refused() {
        for (key, value) in [
            ("SAM_PUBLIC_URL", "https://sam.example.org/?x=1"),
            ("SAM_PUBLIC_URL", "https://sam.example.org/#top"),
            ("SAM_PUBLIC_URL", "https://me:secret@sam.example.org/"),
            ("SAM_LISTEN", "127.0.0.1:0"),
            ("SAM_PUBLIC_URL", "https://sam.example.org/sam"),
        ] {
            let problems = Config::from_source(&Source::from_pairs([
                ("DATABASE_URL", "postgres://db/sam"),
                (key, value),
            ]))
            .unwrap_err();
            assert_eq!(problems.len(), 1, "{value}: {problems:?}");
            assert!(problems[0].starts_with(key), "{value}: {problems:?}");
            assert!(!problems[0].contains("secret"), "{problems:?}");
        }
    }

    #[test]
    fn hetzner_hosts_that_could_not_reach_sam_are_warned_about() {
        let hetzner = |public_url: &'static str| {
            Config::from_source(&Source::from_pairs([
                ("DATABASE_URL", "postgres://db/sam"),
                ("SAM_PROVIDER", "hetzner"),
                ("HETZNER_API_TOKEN", "t"),
                ("HETZNER_AGENT_URL", "https://example.com/sam-agent"),
                ("SAM_PUBLIC_URL", public_url),
            ]))
            .unwrap()
            .warnings
            .join("\n")
        };
        let local = hetzner("http://localhost:3000");
        assert!(local.contains("only this machine reaches"), "{local}");
        let plain = hetzner("http://sam.example.org");
        assert!(plain.contains("plain http"), "{plain}");
        assert_eq!(hetzner("https://sam.example.org"), "");
    }

    #[test]
    fn a_mistyped_log_level_is_refused_not_taken_for_a_module() {
        for typo in ["inf", "warn,sam=debug,nonsense"] {
            let problems = Config::from_source(&Source::from_pairs([
                ("DATABASE_URL", "postgres://db/sam"),
                ("SAM_LOG", typo),
            ]))
            .unwrap_err()
            .join("\n");
            assert!(problems.contains("is not a level"), "{typo}: {problems}");
        }
        for filter in [
            "INFO",
            "debug",
            "off",
            "sam=trace,tower_http[request]=debug",
        ] {
            Config::from_source(&Source::from_pairs([
                ("DATABASE_URL", "postgres://db/sam"),
                ("SAM_LOG", filter),
            ]))
            .unwrap_or_else(|problems| panic!("{filter}: {problems:?}"));
        }
    }

    #[test]
    fn the_previous_webhook_secret_alone_is_no_app() {
        let config = Config::from_source(&Source::from_pairs([
            ("DATABASE_URL", "postgres://db/sam"),
            ("GITHUB_WEBHOOK_SECRET_PREVIOUS", "old"),
        ]))
        .expect("only a rotation aid is set");
        assert!(config.app.is_none());
        assert!(
            config.warnings[0].contains("GITHUB_WEBHOOK_SECRET_PREVIOUS"),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn trimmed_settings_are_named_not_shown() {
        let config = Config::from_source(&Source::from_pairs([
            ("DATABASE_URL", "postgres://db/sam"),
            ("GITHUB_WEBHOOK_SECRET_PREVIOUS", "a secret \n"),
            ("SAM_DATA_DIR", "/srv/sam"),
        ]))
        .unwrap();
        let warnings = config.warnings.join("\n");
        assert!(
            warnings.contains("GITHUB_WEBHOOK_SECRET_PREVIOUS had spaces"),
            "{warnings}"
        );
        assert!(!warnings.contains("a secret"), "{warnings}");
        assert!(!warnings.contains("SAM_DATA_DIR"), "{warnings}");
    }

    #[test]
    fn idle_timeouts_read_as_durations_or_off() {
        assert_eq!(
            parse_idle_timeout("30m"),
            Ok(Some(Duration::from_secs(1800)))
        );
        assert_eq!(
            parse_idle_timeout("1h 30m"),
            Ok(Some(Duration::from_secs(5400)))
        );
        assert_eq!(parse_idle_timeout("OFF"), Ok(None));
        for bad in ["0s", "soon", "30", ""] {
            assert!(parse_idle_timeout(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn base_urls_gain_a_trailing_slash() {
        let url = parse_base_url("http://127.0.0.1:9000/api/v3").unwrap();
        assert_eq!(
            url.join("repos/a/b").unwrap().as_str(),
            "http://127.0.0.1:9000/api/v3/repos/a/b"
        );
    }
}
