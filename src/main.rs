//! The `sam` command: serve, check the configuration, or replay a webhook by hand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sam::config::{Config, Source};

#[derive(Parser)]
#[command(
    name = "sam",
    version,
    about = "A GitHub App that opens a browser shell on a branch from a comment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server: webhooks, workers, the terminal pages and the local workspace agent.
    Serve,
    /// Reports every missing or malformed configuration value, then exits.
    CheckConfig,
    /// Signs a payload with the configured webhook secret and delivers it to a running sam.
    Receive {
        /// The event name, as GitHub sends it in X-GitHub-Event (e.g. issue_comment).
        #[arg(long)]
        event: String,
        /// The JSON payload file.
        #[arg(long)]
        payload: PathBuf,
        /// Where sam listens; defaults to SAM_PUBLIC_URL.
        #[arg(long)]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Source::load().and_then(|source| Config::from_source(&source)) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("sam's configuration is not complete:");
            for problem in &problems {
                eprintln!("  - {problem}");
            }
            eprintln!("See the Configuration section of the README for every setting.");
            return ExitCode::from(2);
        }
    };
    // Before anything else, so that what reading the settings and the data directory
    // finds worth a warning is shown.
    let on_stderr = !matches!(cli.command, Command::Serve);
    if let Err(error) = sam::logs::init(&config.log, on_stderr) {
        eprintln!("error: cannot set up the log: {}", describe(&error));
        return ExitCode::FAILURE;
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    match cli.command {
        Command::CheckConfig => run(check_config(config)),
        Command::Serve => run(serve(config)),
        Command::Receive {
            event,
            payload,
            url,
        } => run(receive(config, event, payload, url)),
    }
}

/// What `sam serve` would run with, in words, and whether the database answers.
async fn check_config(config: Config) -> anyhow::Result<()> {
    println!("sam's settings are complete:");
    match &config.settings_file {
        Some(file) => println!("  read from       the environment, then {}", file.display()),
        None => println!("  read from       the environment (no settings file)"),
    }
    println!("  listens on      {}", config.listen);
    println!("  public URL      {}", config.public_url);
    println!("  data directory  {}", config.data_dir.display());
    println!("  workspaces on   {}", config.provider.describe());
    match config.idle_timeout {
        Some(timeout) => println!(
            "  idle stop       after {}",
            humantime::format_duration(timeout)
        ),
        None => println!("  idle stop       never"),
    }
    println!(
        "  GitHub          {} (API {})",
        config.github_url, config.github_api_url
    );
    match &config.app {
        Some(app) => println!(
            "  GitHub App      {} (id {}), from the settings",
            app.slug, app.id
        ),
        None => match sam::setup::stored_app(&config)? {
            Some(app) => println!(
                "  GitHub App      {} (id {}), the App sam registered",
                app.slug, app.id
            ),
            None => println!(
                "  GitHub App      none yet: `sam serve` offers to register one on its front page"
            ),
        },
    }
    if !config.operators.is_empty() {
        println!("  operators       {}", config.operators.join(", "));
    }
    let pool = sam::database::pool(&config.database_url)?;
    let standing = sam::database::standing(&pool).await?;
    let migrations = match standing.applied.cmp(&standing.known) {
        std::cmp::Ordering::Equal => "migrated".to_owned(),
        _ if standing.applied == 0 => {
            "no tables of sam's yet: `sam serve` creates them at start".to_owned()
        }
        std::cmp::Ordering::Less => format!(
            "{} of {} migrations to apply, which `sam serve` does at start",
            standing.known - standing.applied,
            standing.known
        ),
        std::cmp::Ordering::Greater => anyhow::bail!(
            "the database has {} migrations, more than the {} this sam knows: it was used by a newer sam",
            standing.applied,
            standing.known
        ),
    };
    println!(
        "  database        reachable, PostgreSQL {}, {migrations}",
        standing.server_version
    );
    Ok(())
}

fn run(future: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("starting the async runtime");
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line. Some errors (sqlx's among them) repeat their
/// cause in their own message; a cause already said is not said again.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

async fn serve(config: Config) -> anyhow::Result<()> {
    sam::server::metrics::install()?;
    raise_open_files_limit();
    keep_memory_private();
    install_crypto();
    let listener = sam::server::listen(config.listen).await?;
    let app = sam::app::App::start(config).await?;
    sam::server::serve(app, listener).await
}

async fn receive(
    config: Config,
    event: String,
    payload: PathBuf,
    url: Option<String>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use secrecy::ExposeSecret;
    install_crypto();
    let body = std::fs::read(&payload).with_context(|| format!("reading {}", payload.display()))?;
    serde_json::from_slice::<serde::de::IgnoredAny>(&body)
        .with_context(|| format!("{} is not JSON", payload.display()))?;
    let app = sam::setup::app_to_run_as(&config)?.context(
        "no GitHub App is configured or registered, so there is no webhook secret to sign with",
    )?;
    let base = url.unwrap_or_else(|| config.public_url.to_string());
    // sam's base URL, or the webhook's own URL as GitHub's settings show it.
    let base = base.trim_end_matches('/');
    let target = if base.ends_with("/api/github/webhook") {
        base.to_owned()
    } else {
        format!("{base}/api/github/webhook")
    };
    let target = reqwest::Url::parse(&target).map_err(|error| {
        anyhow::anyhow!("--url must be sam's address, like http://127.0.0.1:3000 ({error})")
    })?;
    let signature =
        sam::server::signature::sign(app.webhook_secret.expose_secret().as_bytes(), &body);
    let response = reqwest::Client::new()
        .post(target.clone())
        .header("content-type", "application/json")
        .header("x-github-event", &event)
        .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .with_context(|| format!("delivering to {target}"))?;
    let status = response.status();
    println!("{status} {}", response.text().await.unwrap_or_default());
    anyhow::ensure!(
        status != reqwest::StatusCode::NOT_FOUND
            && status != reqwest::StatusCode::METHOD_NOT_ALLOWED,
        "nothing takes deliveries at {target}: give --url sam's base URL or its webhook URL"
    );
    anyhow::ensure!(status.is_success(), "sam refused the delivery");
    Ok(())
}

/// Every terminal sam relays holds two sockets, the browser's and the agent's, so a thousand
/// open terminals need more descriptors than the soft limit many systems start services with
/// (1024), and new sockets would fail. The hard limit is what the administrator allows: take
/// it all. The agent sam starts inherits the raised limit.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open files limit"),
            Err(error) => tracing::warn!(%error, soft, "cannot raise the open files limit"),
        },
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot read the open files limit"),
    }
}

/// TLS for GitHub's API uses ring, chosen once for the process.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Marks the process as not dumpable: processes of the same user (shells, when they run
/// as sam's own user) can then not read its memory or its environment through `/proc`
/// or a debugger, and no core file spills its keys. Only root can still look.
fn keep_memory_private() {
    if let Err(error) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(%error, "cannot keep this process's memory from other processes of its user");
    }
}
