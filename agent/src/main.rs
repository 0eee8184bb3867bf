//! `sam-agent`: checks out branches into workspaces and serves shells on PTYs
//! over WebSocket to sam, which relays them to the browser.

mod accounts;
mod control;
mod credential;
mod register;
mod server;
mod terminal;
mod tls;
mod workspace;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use register::Start;
use server::{AppState, StopSignals};
use terminal::Sessions;
use workspace::Workspaces;

/// The variable holding the hex token key. It is read once and removed from the
/// agent's environment, so no child process (git, shells) ever inherits it.
const KEY_VAR: &str = "SAM_AGENT_KEY";

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the workspace and terminal API (token key in the SAM_AGENT_KEY env var, hex).
    Serve(Box<ServeArgs>),
    /// git credential helper used by the agent's own fetches and by git in the
    /// workspaces' shells; not for people.
    GitCredential {
        /// get, store or erase, as git passes it.
        operation: String,
        /// The agent's credential socket of the workspace, to ask for a token.
        #[arg(long, requires = "workspace")]
        socket: Option<PathBuf>,
        /// The workspace whose token to ask for.
        #[arg(long, requires = "socket")]
        workspace: Option<String>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port, reported on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory holding one checkout per workspace.
    #[arg(long)]
    root: PathBuf,
    /// How long a session lives with no socket attached.
    #[arg(long, default_value_t = 600)]
    session_grace_secs: u64,
    /// How long a whole checkout (fetch included) may take.
    #[arg(long, default_value_t = 600)]
    git_timeout_secs: u64,
    /// Give each workspace an account of its own, which its shells run as and which owns
    /// its checkout; needs the agent to run as root. Without it, shells run as the agent's
    /// own user.
    #[arg(long)]
    account_per_workspace: bool,
    /// sam's URL, asked for fresh repository tokens when git in a shell needs them;
    /// `--register` sets it too. Without either, shells get no git credentials.
    #[arg(long)]
    control_url: Option<url::Url>,
    /// On a host sam created: the sam to register with (its public URL); the key then
    /// comes from sam in exchange for a one-time bootstrap token, not from SAM_AGENT_KEY,
    /// and the API is served over TLS with a certificate the agent makes, which sam pins.
    #[arg(long, requires = "state_dir")]
    register: Option<url::Url>,
    /// With --register: where the agent keeps what registration gave it (its key, port
    /// and TLS identity, in a file only root may read), so that after a restart it serves
    /// again as before; the bootstrap token works only once.
    #[arg(long, requires = "register")]
    state_dir: Option<PathBuf>,
    /// The file holding the bootstrap token, deleted once read; without it the token is
    /// read from SAM_AGENT_BOOTSTRAP_TOKEN.
    #[arg(long, requires = "register")]
    bootstrap_token_file: Option<PathBuf>,
    /// How log lines on stderr are written; the local agent inherits sam's
    /// SAM_LOG_FORMAT, so that sam's log, which passes them through, keeps one format.
    #[arg(long, env = "SAM_LOG_FORMAT", value_enum, ignore_case = true, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

/// The formats sam's own log has.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, with the spans the event happened in.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::GitCredential {
            operation,
            socket,
            workspace,
        } => credential::answer(
            &operation,
            std::env::var(credential::TOKEN_VAR).ok().as_deref(),
            socket
                .zip(workspace)
                .map(|(socket, workspace)| credential::AgentSocket { socket, workspace })
                .as_ref(),
            std::io::stdin().lock(),
            std::io::stdout().lock(),
        ),
        Command::Serve(args) => serve(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("sam-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    die_with_parent()?;
    let registering = match (&args.register, &args.state_dir) {
        (Some(url), Some(state_dir)) => Some((
            url.clone(),
            state_dir.clone(),
            register::prepare(state_dir, args.bootstrap_token_file.as_deref())?,
        )),
        _ => None,
    };
    let key = match registering {
        Some(_) => Vec::new(),
        None => take_key()?,
    };
    init_logging(args.log_format);
    raise_open_files_limit();
    keep_memory_private();

    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async move {
            let signals = StopSignals::catch()?;
            let helper_exe = std::env::current_exe().context("cannot find the agent binary")?;
            let accounts = args
                .account_per_workspace
                .then(|| accounts::Accounts::open(&args.root))
                .transpose()?;
            // Registering first: on a host sam created, the key that signs token requests
            // is the one registration returns.
            let (listener, key, tls, control_url) = match registering {
                Some((url, state_dir, start)) => {
                    let (listener, registration) =
                        registered(args.listen, &url, &state_dir, start).await?;
                    let tls = registration.identity.server_config()?;
                    let control_url = args.control_url.or(Some(url));
                    (listener, registration.key, Some(tls), control_url)
                }
                None => (bind(args.listen).await?, key, None, args.control_url),
            };
            let address = listener.local_addr().context("no local address")?;
            let control = control_url
                .map(|url| credential::broker::ControlPlane::new(url, &key))
                .transpose()?;
            let workspaces = Workspaces::open(
                &args.root,
                &helper_exe,
                Duration::from_secs(args.git_timeout_secs),
                accounts.clone(),
                control,
            )?;
            let sessions = Sessions::new(Duration::from_secs(args.session_grace_secs), accounts);
            let state = Arc::new(AppState {
                key,
                workspaces,
                sessions,
            });

            announce(address)?;
            let root = args.root.display();
            tracing::info!(%address, %root, tls = tls.is_some(), "agent listening");
            match tls {
                Some(config) => {
                    server::serve(tls::TlsListener::new(listener, config)?, state, signals).await
                }
                None => server::serve(listener, state, signals).await,
            }
        })
}

fn init_logging(format: LogFormat) {
    let lines = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        );
    match format {
        LogFormat::Human => lines.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => lines
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

/// Listens and registers with the sam at `url`, or, when the agent registered before,
/// listens where sam knows it: on the port it registered, whatever `listen` says.
async fn registered(
    listen: SocketAddr,
    url: &url::Url,
    state_dir: &std::path::Path,
    start: Start,
) -> anyhow::Result<(TcpListener, register::Registration)> {
    match start {
        Start::Registered(registration) => {
            if listen.port() != 0 && listen.port() != registration.port {
                tracing::warn!(
                    asked = listen.port(),
                    registered = registration.port,
                    "listening on the port sam knows, not the one asked for"
                );
            }
            let listener = bind(SocketAddr::new(listen.ip(), registration.port)).await?;
            tracing::info!(host = %registration.host, state_dir = %state_dir.display(), "serving as registered before");
            Ok((listener, registration))
        }
        Start::New(token) => {
            let listener = bind(listen).await?;
            let port = listener.local_addr().context("no local address")?.port();
            let identity = tls::Identity::generate()?;
            let registration = register::register(url, &token, port, identity).await?;
            // Serving now is still worth it: only a restart would find nothing saved.
            if let Err(error) = registration.save(state_dir) {
                tracing::error!(
                    error = format!("{error:#}"),
                    "cannot save the registration; after a restart this agent cannot serve"
                );
            }
            Ok((listener, registration))
        }
    }
}

/// sam starts the agent and may die without stopping it (a crash, SIGKILL). The
/// kernel then sends SIGTERM to the agent, which hangs up its shells and exits
/// instead of lingering with sessions nobody can reach. Note that the signal is
/// tied to the parent *thread*: sam must spawn the agent from a thread that lives
/// as long as sam does (not a short-lived blocking-pool thread).
fn die_with_parent() -> anyhow::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let parent = nix::unistd::getppid();
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
            .context("cannot ask to be signalled when the parent exits")?;
        // The parent may have died before the request above took effect.
        if nix::unistd::getppid() != parent {
            bail!("the parent process exited during startup");
        }
    }
    Ok(())
}

/// Each session holds its socket and its PTY three times over (the master, and the copies
/// its reader and writer threads own), so a thousand sessions need more descriptors than the
/// soft limit many systems start processes with (1024), and shells would fail to start. The
/// hard limit is what the administrator allows: take it all.
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

fn take_key() -> anyhow::Result<Vec<u8>> {
    let hex_key = std::env::var(KEY_VAR).with_context(|| format!("{KEY_VAR} is not set"))?;
    // SAFETY: no other thread exists yet: the runtime and tracing start after this.
    unsafe { std::env::remove_var(KEY_VAR) };
    control::parse_key(&hex_key).with_context(|| format!("{KEY_VAR} is unusable"))
}

/// Tells the process that started the agent where it listens: one JSON line on
/// stdout, the only thing the agent ever prints there.
fn announce(address: SocketAddr) -> anyhow::Result<()> {
    let line = serde_json::json!({ "listen": address.to_string() });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot report the listen address")
}

/// Marks the process as not dumpable: processes of the same user (shells, when they run
/// as sam's own user) can then not read its memory or its environment through `/proc`
/// or a debugger, and no core file spills its keys. Only root can still look.
fn keep_memory_private() {
    if let Err(error) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(%error, "cannot keep this process's memory from other processes of its user");
    }
}
