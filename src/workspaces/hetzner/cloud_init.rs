//! The user data a new host boots with: cloud-init installs `sam-agent` and starts it
//! under systemd, pointed at sam to register with a one-time bootstrap token. systemd
//! starts it again whenever it stops and at each boot; the agent then serves with what
//! its first registration saved in [`STATE_DIR`].
//!
//! The document is JSON after the `#cloud-config` header: JSON is YAML, so cloud-init
//! reads it as it is, and sam needs no YAML writer to get the quoting right.

use serde_json::json;
use url::Url;

/// Where the token is written on the host; the agent deletes the file once read.
pub const TOKEN_PATH: &str = "/etc/sam-agent/bootstrap-token";
/// The systemd unit that runs the agent.
pub const UNIT_PATH: &str = "/etc/systemd/system/sam-agent.service";
const AGENT_PATH: &str = "/usr/local/bin/sam-agent";
const ROOT: &str = "/var/lib/sam-agent/workspaces";
/// Where the agent keeps its registration and TLS identity, readable by root alone.
pub const STATE_DIR: &str = "/var/lib/sam-agent/state";

/// What goes into one host's user data.
pub struct Boot<'a> {
    pub agent_url: &'a Url,
    pub agent_sha256: Option<&'a str>,
    pub agent_port: u16,
    pub register_url: &'a Url,
    pub bootstrap_token: &'a str,
}

/// The `#cloud-config` document for a host.
pub fn user_data(boot: &Boot<'_>) -> String {
    let exec = [
        AGENT_PATH.to_owned(),
        "serve".into(),
        "--listen".into(),
        format!("0.0.0.0:{}", boot.agent_port),
        "--root".into(),
        ROOT.into(),
        "--account-per-workspace".into(),
        "--register".into(),
        boot.register_url.to_string(),
        "--bootstrap-token-file".into(),
        TOKEN_PATH.into(),
        "--state-dir".into(),
        STATE_DIR.into(),
    ];
    // Restart=always: a crash, the OOM killer or a stray SIGTERM must not leave the host's
    // workspaces without their agent; RestartSec keeps a failing start from spinning.
    let unit = format!(
        "[Unit]\nDescription=sam workspace agent\nWants=network-online.target\nAfter=network-online.target\n\
         StartLimitIntervalSec=0\n\n\
         [Service]\nExecStart={}\nRestart=always\nRestartSec=2\n\n[Install]\nWantedBy=multi-user.target\n",
        shlex::try_join(exec.iter().map(String::as_str)).expect("no NUL in the agent's arguments")
    );
    let mut runcmd = vec![
        json!(["mkdir", "-p", ROOT]),
        json!([
            "curl",
            "-fsSL",
            "--retry",
            "5",
            "-o",
            AGENT_PATH,
            boot.agent_url.as_str()
        ]),
    ];
    if let Some(sha) = boot.agent_sha256 {
        // A download that is not the expected binary must never run.
        let check = format!("echo '{sha}  {AGENT_PATH}' | sha256sum -c - || rm -f {AGENT_PATH}");
        runcmd.push(json!(["sh", "-c", check]));
    }
    runcmd.push(json!(["chmod", "0755", AGENT_PATH]));
    runcmd.push(json!(["systemctl", "daemon-reload"]));
    runcmd.push(json!(["systemctl", "enable", "--now", "sam-agent.service"]));
    let document = json!({
        "packages": ["git", "curl"],
        "write_files": [
            {
                "path": TOKEN_PATH,
                "permissions": "0600",
                "owner": "root:root",
                "content": boot.bootstrap_token,
            },
            {
                "path": UNIT_PATH,
                "permissions": "0644",
                "content": unit,
            },
        ],
        "runcmd": runcmd,
    });
    format!(
        "#cloud-config\n{}\n",
        serde_json::to_string_pretty(&document).expect("JSON values serialize")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_starts_the_agent_with_the_token_file() {
        let agent_url = Url::parse("https://downloads.example/sam-agent").unwrap();
        let register_url = Url::parse("https://sam.example/").unwrap();
        let text = user_data(&Boot {
            agent_url: &agent_url,
            agent_sha256: Some("ab"),
            agent_port: 4100,
            register_url: &register_url,
            bootstrap_token: "secret-token",
        });
        let body = text.strip_prefix("#cloud-config\n").expect("header");
        let doc: serde_json::Value = serde_json::from_str(body).unwrap();
        let files = doc["write_files"].as_array().unwrap();
        assert_eq!(files[0]["content"], "secret-token");
        let unit = files[1]["content"].as_str().unwrap();
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap();
        let args = shlex::split(exec).unwrap();
        assert!(
            args.windows(2)
                .any(|w| w == ["--register", "https://sam.example/"])
        );
        assert!(
            args.windows(2)
                .any(|w| w == ["--bootstrap-token-file", TOKEN_PATH])
        );
        assert!(args.windows(2).any(|w| w == ["--listen", "0.0.0.0:4100"]));
        assert!(args.windows(2).any(|w| w == ["--state-dir", STATE_DIR]));
        assert!(args.iter().any(|a| a == "--account-per-workspace"));
        assert!(unit.lines().any(|l| l == "Restart=always"), "{unit}");
        assert!(text.contains("sha256sum -c"));
    }
}
