//! Which provider places workspaces, and the Hetzner Cloud provider's settings, read from
//! the same environment and `sam.toml` as the rest of sam's configuration.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::commands::HostSize;
use crate::config::Source;

/// The provider's keys, accepted in `sam.toml` beside [`crate::config::KEYS`].
pub const KEYS: &[&str] = &[
    "SAM_PROVIDER",
    "HETZNER_API_TOKEN",
    "HETZNER_API_URL",
    "HETZNER_LOCATION",
    "HETZNER_IMAGE",
    "HETZNER_SERVER_TYPE_SMALL",
    "HETZNER_SERVER_TYPE_MEDIUM",
    "HETZNER_SERVER_TYPE_LARGE",
    "HETZNER_WORKSPACES_SMALL",
    "HETZNER_WORKSPACES_MEDIUM",
    "HETZNER_WORKSPACES_LARGE",
    "HETZNER_HOST_GRACE",
    "HETZNER_BOOTSTRAP_TTL",
    "HETZNER_AGENT_URL",
    "HETZNER_AGENT_SHA256",
    "HETZNER_AGENT_PORT",
    "HETZNER_INSTANCE",
    "HETZNER_NETWORK",
];

/// Where workspaces run.
#[derive(Clone, Default)]
pub enum ProviderConfig {
    /// On sam's own machine, beside sam.
    #[default]
    Local,
    /// On Hetzner Cloud servers that sam creates and deletes.
    Hetzner(Box<HetznerSettings>),
}

impl fmt::Debug for ProviderConfig {
    // Only the name: the settings hold the API token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderConfig::Local => "local",
            ProviderConfig::Hetzner(_) => "hetzner",
        })
    }
}

/// What one size of host is on Hetzner Cloud.
#[derive(Clone, Debug)]
pub struct SizeSettings {
    /// The server type, like `cx22`.
    pub server_type: String,
    /// How many live workspaces one host of this size takes.
    pub workspaces: u32,
}

/// The Hetzner Cloud provider's settings.
#[derive(Clone)]
pub struct HetznerSettings {
    pub api_url: Url,
    pub api_token: SecretString,
    pub location: String,
    pub image: String,
    pub small: SizeSettings,
    pub medium: SizeSettings,
    pub large: SizeSettings,
    /// How long an empty host is kept before it is deleted.
    pub host_grace: Duration,
    /// How long a host's bootstrap token may wait to be redeemed.
    pub bootstrap_ttl: Duration,
    /// Where a new host downloads `sam-agent` from.
    pub agent_url: Url,
    /// The SHA-256 the downloaded agent must have, hex; unchecked when not set.
    pub agent_sha256: Option<String>,
    /// The port agents listen on; 0 lets each pick one and report it when registering.
    pub agent_port: u16,
    /// The value of the `sam-instance` label on this sam's servers, so that several sams
    /// can share one Hetzner project without calling each other's servers unknown.
    pub instance: String,
    /// A private network (its id) to attach servers to; sam then reaches agents at their
    /// address in it, so that its traffic with them stays off the internet.
    pub network: Option<i64>,
}

impl HetznerSettings {
    /// What `size` means here; no size is the small one.
    pub fn size(&self, size: Option<HostSize>) -> &SizeSettings {
        match size {
            None | Some(HostSize::Small) => &self.small,
            Some(HostSize::Medium) => &self.medium,
            Some(HostSize::Large) => &self.large,
        }
    }
}

impl ProviderConfig {
    /// For the operator's status page: the provider and, for Hetzner, where and on what.
    pub fn describe(&self) -> String {
        match self {
            ProviderConfig::Local => "this machine (local provider)".to_owned(),
            ProviderConfig::Hetzner(settings) => format!(
                "Hetzner Cloud, {} ({}, {}, {}), instance label {:?}",
                settings.location,
                settings.small.server_type,
                settings.medium.server_type,
                settings.large.server_type,
                settings.instance
            ),
        }
    }

    /// Reads `SAM_PROVIDER` and, for `hetzner`, its settings; every problem goes to
    /// `problems`, and the local provider stands in for a provider that could not be read.
    pub fn from_source(source: &Source, problems: &mut Vec<String>) -> Self {
        // Either case, as the other settings' words.
        match source
            .get("SAM_PROVIDER")
            .unwrap_or("local")
            .to_ascii_lowercase()
            .as_str()
        {
            "local" => ProviderConfig::Local,
            "hetzner" => hetzner(source, problems)
                .map(|settings| ProviderConfig::Hetzner(Box::new(settings)))
                .unwrap_or_default(),
            other => {
                problems.push(format!(
                    "SAM_PROVIDER must be local or hetzner (got {other:?})"
                ));
                ProviderConfig::Local
            }
        }
    }
}

fn hetzner(source: &Source, problems: &mut Vec<String>) -> Option<HetznerSettings> {
    let before = problems.len();
    let text = |key: &str, default: &str| source.get(key).unwrap_or(default).to_owned();
    let api_token = source.get("HETZNER_API_TOKEN").map(str::to_owned);
    if api_token.is_none() {
        problems.push(
            "HETZNER_API_TOKEN is not set: a Hetzner Cloud API token (read & write) of the project sam creates servers in".into(),
        );
    }
    let api_url = url(
        source,
        "HETZNER_API_URL",
        Some("https://api.hetzner.cloud/v1"),
        problems,
    );
    let agent_url = url(source, "HETZNER_AGENT_URL", None, problems);
    let agent_sha256 = source
        .get("HETZNER_AGENT_SHA256")
        .map(str::to_ascii_lowercase);
    if let Some(sha) = &agent_sha256
        && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        problems.push(format!(
            "HETZNER_AGENT_SHA256 must be 64 hex digits (got {sha:?})"
        ));
    }
    let mut size = |name: &str, server_type: &str, workspaces: u32| SizeSettings {
        server_type: text(&format!("HETZNER_SERVER_TYPE_{name}"), server_type),
        workspaces: number(
            source,
            &format!("HETZNER_WORKSPACES_{name}"),
            workspaces,
            problems,
        ),
    };
    let small = size("SMALL", "cx22", 2);
    let medium = size("MEDIUM", "cx32", 4);
    let large = size("LARGE", "cx42", 8);
    let host_grace = duration(source, "HETZNER_HOST_GRACE", "10m", problems);
    let bootstrap_ttl = duration(source, "HETZNER_BOOTSTRAP_TTL", "15m", problems);
    let agent_port = match source.get("HETZNER_AGENT_PORT").unwrap_or("4100").parse() {
        Ok(port) => port,
        Err(_) => {
            problems.push("HETZNER_AGENT_PORT must be a port number, 0 to 65535".into());
            0
        }
    };
    let network = match source.get("HETZNER_NETWORK").map(str::parse::<i64>) {
        None => None,
        Some(Ok(id)) if id > 0 => Some(id),
        Some(_) => {
            problems.push("HETZNER_NETWORK must be the numeric id of a Hetzner network".into());
            None
        }
    };
    let instance = text("HETZNER_INSTANCE", "sam");
    if !label_value(&instance) {
        problems.push(format!(
            "HETZNER_INSTANCE must be a label value: up to 63 letters, digits, - _ or ., starting and ending with a letter or digit (got {instance:?})"
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(HetznerSettings {
        api_url: api_url?,
        api_token: api_token?.into(),
        location: text("HETZNER_LOCATION", "fsn1"),
        image: text("HETZNER_IMAGE", "ubuntu-24.04"),
        small,
        medium,
        large,
        host_grace,
        bootstrap_ttl,
        agent_url: agent_url?,
        agent_sha256,
        agent_port,
        instance,
        network,
    })
}

fn url(
    source: &Source,
    key: &str,
    default: Option<&str>,
    problems: &mut Vec<String>,
) -> Option<Url> {
    let Some(raw) = source.get(key).or(default) else {
        problems.push(format!(
            "{key} is not set: the http or https URL new hosts download sam-agent from"
        ));
        return None;
    };
    match Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        _ => {
            problems.push(format!("{key} must be an http or https URL (got {raw:?})"));
            None
        }
    }
}

fn number(source: &Source, key: &str, default: u32, problems: &mut Vec<String>) -> u32 {
    match source.get(key).map(str::parse::<u32>) {
        None => default,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            problems.push(format!(
                "{key} must be a whole number of workspaces, 1 or more"
            ));
            default
        }
    }
}

fn duration(source: &Source, key: &str, default: &str, problems: &mut Vec<String>) -> Duration {
    let raw = source.get(key).unwrap_or(default);
    match humantime::parse_duration(raw) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            problems.push(format!(
                "{key} must be a duration like 10m, 2h or 90s (got {raw:?})"
            ));
            Duration::from_secs(60)
        }
    }
}

/// Hetzner's rule for label values (as for Kubernetes labels).
fn label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> (ProviderConfig, Vec<String>) {
        let mut problems = Vec::new();
        let config =
            ProviderConfig::from_source(&Source::from_pairs(pairs.iter().copied()), &mut problems);
        (config, problems)
    }

    #[test]
    fn the_local_provider_is_the_default() {
        let (config, problems) = read(&[]);
        assert!(matches!(config, ProviderConfig::Local));
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn hetzner_needs_a_token_and_an_agent_url() {
        let (_, problems) = read(&[("SAM_PROVIDER", "hetzner")]);
        let text = problems.join("\n");
        assert!(text.contains("HETZNER_API_TOKEN"), "{text}");
        assert!(text.contains("HETZNER_AGENT_URL"), "{text}");
    }

    #[test]
    fn hetzner_defaults_and_overrides() {
        let (config, problems) = read(&[
            ("SAM_PROVIDER", "hetzner"),
            ("HETZNER_API_TOKEN", "t"),
            ("HETZNER_AGENT_URL", "https://example.com/sam-agent"),
            ("HETZNER_SERVER_TYPE_LARGE", "ccx33"),
            ("HETZNER_WORKSPACES_MEDIUM", "3"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        let ProviderConfig::Hetzner(settings) = config else {
            panic!("not hetzner");
        };
        assert_eq!(settings.api_url.as_str(), "https://api.hetzner.cloud/v1");
        assert_eq!(settings.size(None).server_type, "cx22");
        assert_eq!(settings.size(Some(HostSize::Large)).server_type, "ccx33");
        assert_eq!(settings.size(Some(HostSize::Medium)).workspaces, 3);
        assert_eq!(settings.host_grace, Duration::from_secs(600));
    }

    #[test]
    fn malformed_values_are_named() {
        let (_, problems) = read(&[
            ("SAM_PROVIDER", "hetzner"),
            ("HETZNER_API_TOKEN", "t"),
            ("HETZNER_AGENT_URL", "ftp://example.com/a"),
            ("HETZNER_WORKSPACES_SMALL", "0"),
            ("HETZNER_HOST_GRACE", "soon"),
            ("HETZNER_INSTANCE", "-bad-"),
        ]);
        let text = problems.join("\n");
        for key in [
            "HETZNER_AGENT_URL",
            "HETZNER_WORKSPACES_SMALL",
            "HETZNER_HOST_GRACE",
            "HETZNER_INSTANCE",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        let (config, problems) = read(&[
            ("SAM_PROVIDER", "Hetzner"),
            ("HETZNER_API_TOKEN", "t"),
            ("HETZNER_AGENT_URL", "https://example.com/sam-agent"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(matches!(config, ProviderConfig::Hetzner(_)));
        let (_, problems) = read(&[("SAM_PROVIDER", "aws")]);
        assert!(problems.join("").contains("SAM_PROVIDER"));
    }
}
