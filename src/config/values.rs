//! How each setting's value is read: URLs, durations, logins, the log filter. Each
//! parser says what is wrong in words that follow the setting's name.

use std::time::Duration;

use url::Url;

use super::Source;

/// sqlx reads PostgreSQL URLs only; anything else would fail later, at connection time.
/// The value is not echoed: it may hold a password.
pub(super) fn database_scheme(raw: &str) -> Result<(), String> {
    let url = Url::parse(raw).map_err(|e| format!("is not a URL ({e})"))?;
    match url.scheme() {
        "postgres" | "postgresql" => Ok(()),
        other => Err(format!(
            "must be a postgres:// or postgresql:// URL, not {other}://"
        )),
    }
}

/// The first directive of a log filter that is a word alone but not a level.
pub(super) fn bare_target(filter: &str) -> Option<&str> {
    const LEVELS: [&str; 12] = [
        "off", "error", "warn", "info", "debug", "trace", "0", "1", "2", "3", "4", "5",
    ];
    filter.split(',').map(str::trim).find(|directive| {
        !directive.is_empty()
            && !directive.contains(['=', '['])
            && !LEVELS
                .iter()
                .any(|level| directive.eq_ignore_ascii_case(level))
    })
}

/// Whether `value` could be a GitHub login: up to 39 letters, digits and dashes, not
/// starting with a dash.
pub(crate) fn is_login(value: &str) -> bool {
    value.len() <= 39
        && !value.starts_with('-')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A comma- or space-separated list of GitHub logins, kept in lower case: logins are
/// case-insensitive.
pub(super) fn parse_logins(raw: &str) -> Result<Vec<String>, String> {
    let mut logins = Vec::new();
    for login in raw.split([',', ' ']).filter(|l| !l.is_empty()) {
        if !is_login(login) {
            return Err(format!(
                "must be GitHub logins separated by commas; {login:?} is not one"
            ));
        }
        logins.push(login.to_ascii_lowercase());
    }
    Ok(logins)
}

/// `key`'s value (or `default` when it is unset) read by `parse`; a refusal goes to
/// `problems`, after the setting's name.
pub(super) fn parse_or<T>(
    source: &Source,
    key: &str,
    default: &str,
    problems: &mut Vec<String>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let raw = source.get(key).unwrap_or(default);
    match parse(raw) {
        Ok(value) => Some(value),
        Err(why) => {
            // The value is shown to help spot the slip, except a password in it.
            let shown = match Url::parse(raw) {
                Ok(mut url) if url.password().is_some() => {
                    let _ = url.set_password(Some("***"));
                    url.to_string()
                }
                _ => raw.to_owned(),
            };
            problems.push(format!("{key} {why} (got {shown:?})"));
            None
        }
    }
}

/// An http or https URL to append paths to: it ends in `/`.
pub(super) fn parse_base_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("must be an http or https URL".into());
    }
    // sam appends paths to it and says it in links: nothing may come after the path.
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(
            "must be a plain base URL, without a user, a query (?) or a fragment (#)".into(),
        );
    }
    // A trailing slash makes `Url::join` append instead of replacing the last segment.
    let mut url = url;
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

/// Why servers elsewhere would have trouble reaching sam at `url`, if they would.
pub(super) fn unreachable_from_hosts(url: &Url) -> Option<&'static str> {
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if loopback {
        Some("which only this machine reaches")
    } else if url.scheme() == "http" {
        Some("plain http, which anyone on the way can read and change")
    } else {
        None
    }
}

/// A duration like `30m`, `2h` or `90s`, or `off`.
pub(super) fn parse_idle_timeout(raw: &str) -> Result<Option<Duration>, String> {
    if raw.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match humantime::parse_duration(raw) {
        Ok(duration) if !duration.is_zero() => Ok(Some(duration)),
        _ => Err("must be a duration like 30m, 2h or 90s, or off".into()),
    }
}
