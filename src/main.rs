//! The `mtcp` binary: command line, logging, signals, service-manager
//! protocol and exit codes.
//!
//! Deliberately thin: everything that moves bytes lives in the library so
//! that tests can run it in-process. This file only decides what the process
//! does and how it reports to whoever started it (a shell or systemd).

use clap::Parser;
use crossbeam_channel::Sender;
use log::{info, warn};
use mtcp::cli::{CheckArgs, Cli, Command, EXIT_CONFIG, EXIT_OSERR, EXIT_UNAVAILABLE, StatusArgs};
use mtcp::client::Client;
use mtcp::config::{self, Config, ConfigError};
use mtcp::metrics::exposition::Identity;
use mtcp::metrics::{MetricsServer, Source};
use mtcp::ops::{LogControl, Ops, Request};
use mtcp::proto::frame::RstReason;
use mtcp::rt::monitor::Monitor;
use mtcp::server::Server;
use mtcp::status::StatusError;
use mtcp::systemd::{self, Notifier, Readiness};
use mtcp::util::shutdown::Shutdown;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Beyond `drain_timeout_ms`, how long shutdown may take (threads ending,
/// sockets closing) before systemd should consider it hung.
const STOP_MARGIN: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = init_logging();
    match cli.command {
        Command::Server(args) => {
            let loaded = config::load_server(&args.config).map(Config::Server);
            serve(&args.config, loaded, logs)
        }
        Command::Client(args) => {
            let loaded = config::load_client(&args.config).map(Config::Client);
            serve(&args.config, loaded, logs)
        }
        Command::Run(args) => serve(&args.config, config::load(&args.config), logs),
        Command::Check(args) => check(&args),
        Command::Status(args) => status(&args),
    }
}

/// Prints the running daemon's status table (see `mtcp::status`).
fn status(args: &StatusArgs) -> ExitCode {
    let interval = Duration::from_millis(args.interval_ms.min(60_000));
    match mtcp::status::status(&args.config, interval) {
        Ok(table) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(table.as_bytes());
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            fatal(&e);
            ExitCode::from(match e {
                StatusError::Config(_) | StatusError::NotSet(_) | StatusError::PortZero(_) => {
                    EXIT_CONFIG
                }
                StatusError::NotRunning { .. } => EXIT_UNAVAILABLE,
                StatusError::BadAnswer { .. } => 1,
            })
        }
    }
}

fn check(args: &CheckArgs) -> ExitCode {
    match config::load(&args.config) {
        Ok(cfg) => {
            if !args.quiet {
                check_report(&args.config, &cfg);
            }
            ExitCode::SUCCESS
        }
        Err(e) => config_error(&e),
    }
}

/// Prints the effective settings as a config file (comments first), so the
/// output of `mtcp check` can itself be saved and used.
fn check_report(path: &Path, cfg: &Config) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head -0`) must not turn a valid file into a
    // failure, so write errors are ignored.
    let _ = writeln!(
        out,
        "# {}: valid {} config\n# Effective settings, defaults included:\n",
        path.display(),
        cfg.role()
    );
    let _ = out.write_all(cfg.describe().as_bytes());
    let _ = out.flush();
}

fn config_error(e: &ConfigError) -> ExitCode {
    fatal(e);
    ExitCode::from(EXIT_CONFIG)
}

/// Prints a one-line reason for exiting to stderr. Under journald it gets
/// the `err` priority, so `journalctl -p err` finds why a service stopped.
fn fatal(msg: impl std::fmt::Display) {
    let priority = if under_journald() { "<3>" } else { "" };
    eprintln!("{priority}mtcp: {msg}");
}

fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// What the two daemons have in common, so one start-up path serves both.
trait Daemon: Sized {
    fn local_addr(&self) -> std::io::Result<SocketAddr>;
    fn monitor(&self) -> Monitor;
    fn run(self, shutdown: Shutdown) -> std::io::Result<()>;
}

impl Daemon for Server {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Server::local_addr(self)
    }
    fn monitor(&self) -> Monitor {
        Server::monitor(self)
    }
    fn run(self, shutdown: Shutdown) -> std::io::Result<()> {
        Server::run(self, shutdown)
    }
}

impl Daemon for Client {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Client::local_addr(self)
    }
    fn monitor(&self) -> Monitor {
        Client::monitor(self)
    }
    fn run(self, shutdown: Shutdown) -> std::io::Result<()> {
        Client::run(self, shutdown)
    }
}

/// Everything the start-up path carries besides the daemon itself.
struct Context {
    path: PathBuf,
    config: Config,
    logs: LogControl,
    notifier: Option<Arc<Notifier>>,
}

/// Starts whichever daemon the loaded config is for.
fn serve(path: &Path, loaded: Result<Config, ConfigError>, logs: LogControl) -> ExitCode {
    let config = match loaded {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    logs.apply(config.ops());
    let ctx = Context {
        path: path.to_owned(),
        config: config.clone(),
        logs,
        notifier: Notifier::from_env(),
    };
    match config {
        Config::Server(c) => {
            let listen = c.listen;
            daemon(ctx, listen, Readiness::Listening, || Server::bind(c))
        }
        Config::Client(c) => {
            let readiness = if c.zero_rtt {
                Readiness::FirstLink {
                    within: c.connect_timeout,
                }
            } else {
                Readiness::Listening
            };
            let listen = c.listen;
            daemon(ctx, listen, readiness, || Client::bind(c))
        }
    }
}

/// Installs signal handling, binds, tells systemd, and runs one daemon until
/// shutdown.
fn daemon<D: Daemon>(
    ctx: Context,
    listen: SocketAddr,
    readiness: Readiness,
    bind: impl FnOnce() -> std::io::Result<D>,
) -> ExitCode {
    let role = ctx.config.role();
    info!(
        "mtcp {} starting as {role} with {}",
        env!("CARGO_PKG_VERSION"),
        ctx.path.display()
    );
    let shutdown = Shutdown::new();
    let (requests, pending) = crossbeam_channel::bounded(16);
    let stop_within = drain_timeout(&ctx.config) + STOP_MARGIN;
    // Installed before binding so that a signal arriving during start-up
    // still ends in an orderly shutdown (the signal is sticky), and a SIGHUP
    // waits in the queue instead of killing the process.
    let running = Arc::new(OnceLock::new());
    let signals = SignalContext {
        shutdown: shutdown.clone(),
        requests,
        notifier: ctx.notifier.clone(),
        stop_within,
        running: running.clone(),
    };
    if let Err(e) = install_signal_handler(signals) {
        fatal(format_args!("cannot install signal handlers: {e}"));
        return ExitCode::from(EXIT_OSERR);
    }
    let d = match bind() {
        Ok(d) => d,
        Err(e) => {
            fatal(format_args!("cannot listen on {listen}: {e}"));
            return ExitCode::from(EXIT_OSERR);
        }
    };
    let _ = running.set(d.monitor());
    let metrics = match start_metrics(&ctx.config, d.monitor()) {
        Ok(m) => m,
        Err((addr, e)) => {
            fatal(format_args!("cannot listen on metrics_listen {addr}: {e}"));
            return ExitCode::from(EXIT_OSERR);
        }
    };
    let addr = d.local_addr().unwrap_or(listen);
    start_operations(ctx, &d, addr, readiness, &shutdown, pending, metrics);
    match d.run(shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fatal(format_args!("{role} failed: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Starts the metrics endpoint when the config asks for one. A port that
/// cannot be bound stops the start-up like the daemon's own: an operator who
/// set the key expects the endpoint, and a silent gap in the graphs is
/// worse than a failed start.
fn start_metrics(
    config: &Config,
    monitor: Monitor,
) -> Result<Option<MetricsServer>, (SocketAddr, std::io::Error)> {
    let Some(addr) = config.ops().metrics_listen else {
        return Ok(None);
    };
    let source = Source {
        monitor,
        identity: Identity::of(config),
    };
    MetricsServer::start(addr, source)
        .map(Some)
        .map_err(|e| (addr, e))
}

fn drain_timeout(cfg: &Config) -> Duration {
    match cfg {
        Config::Server(c) => c.tunnel.drain_timeout,
        Config::Client(c) => c.tunnel.drain_timeout,
    }
}

/// Starts the helpers that run beside the daemon: the ops thread (reload,
/// stats), the readiness notification and the watchdog. A failure to start
/// one is logged and the daemon runs without it: they serve the operator,
/// not the traffic.
fn start_operations<D: Daemon>(
    ctx: Context,
    d: &D,
    addr: SocketAddr,
    readiness: Readiness,
    shutdown: &Shutdown,
    pending: crossbeam_channel::Receiver<Request>,
    metrics: Option<MetricsServer>,
) {
    let monitor = d.monitor();
    let notifier = ctx.notifier.clone();
    let ops = Ops {
        path: ctx.path,
        running: ctx.config,
        logs: ctx.logs,
        monitor: monitor.clone(),
        notifier: notifier.clone(),
        metrics,
    };
    if let Err(e) = ops.spawn(pending) {
        warn!("cannot start the ops thread (no reload, no stats): {e}");
    }
    let status = format!("listening on {addr}");
    let ready = systemd::announce_ready(
        notifier.clone(),
        readiness,
        status,
        monitor.clone(),
        shutdown.clone(),
    );
    if let Err(e) = ready {
        warn!("cannot start the readiness thread: {e}");
    }
    if let (Some(n), Some(every)) = (notifier, systemd::watchdog_interval_from_env())
        && let Err(e) = systemd::start_watchdog(n, every, monitor)
    {
        warn!("cannot start the watchdog thread: {e}");
    }
}

/// What the signal thread needs.
struct SignalContext {
    shutdown: Shutdown,
    requests: Sender<Request>,
    notifier: Option<Arc<Notifier>>,
    /// How long a graceful stop may take; told to systemd so it does not
    /// kill a long drain.
    stop_within: Duration,
    /// The running daemon's sessions, once it runs: an exit at once resets
    /// their streams rather than closing them cleanly.
    running: Arc<OnceLock<Monitor>>,
}

/// SIGINT/SIGTERM start a graceful shutdown; a second one exits at once, so
/// an operator is never stuck waiting for a drain. SIGHUP and SIGUSR1 become
/// requests to the ops thread (reload, stats report); neither can stop the
/// daemon.
fn install_signal_handler(ctx: SignalContext) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stopping = false;
            for sig in signals.forever() {
                match sig {
                    SIGHUP => {
                        info!("SIGHUP received, reloading the config file");
                        let _ = ctx.requests.try_send(Request::Reload);
                    }
                    SIGUSR1 => {
                        let _ = ctx.requests.try_send(Request::Stats);
                    }
                    _ => {
                        on_stop_signal(sig, stopping, &ctx);
                        stopping = true;
                    }
                }
            }
        })?;
    Ok(())
}

fn on_stop_signal(sig: i32, stopping: bool, ctx: &SignalContext) {
    let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
    if stopping {
        warn!("{name} received during shutdown, exiting now; open streams are reset");
        reset_open_streams(ctx);
        std::process::exit(1);
    }
    info!("{name} received, shutting down (send it again to exit at once)");
    systemd::notify(
        ctx.notifier.as_ref(),
        &format!(
            "STOPPING=1\nSTATUS=draining open streams\n{}",
            systemd::extend_timeout(ctx.stop_within)
        ),
    );
    ctx.shutdown.trigger();
}

/// Resets every open stream (RST to the peer, a TCP reset to the local
/// socket) before an exit at once: a stream the exit merely closed would
/// reach its application as a clean end, so a cut-short transfer would
/// look complete.
fn reset_open_streams(ctx: &SignalContext) {
    if let Some(monitor) = ctx.running.get() {
        for session in monitor.sessions() {
            session.reset_all(RstReason::Shutdown, true);
        }
    }
}

/// Logs to stderr. Without `RUST_LOG` the level is the config file's
/// `log_level` (info until the file is read), changeable by SIGHUP; with
/// `RUST_LOG` the environment decides, module filters included, and the key
/// is ignored. Under systemd (JOURNAL_STREAM set) timestamps are left out
/// because journald adds its own, and each line starts with a syslog `<N>`
/// priority so journald records the right level.
fn init_logging() -> LogControl {
    let env_override = std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty());
    let mut builder = if env_override {
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
    } else {
        // Everything passes the logger; `log::set_max_level` is the one knob,
        // which is what lets a reload change the level.
        let mut b = env_logger::Builder::new();
        b.filter_level(log::LevelFilter::Trace);
        b
    };
    if under_journald() {
        builder.format(|buf, record| {
            let priority = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(
                buf,
                "<{priority}>{} {}: {}",
                record.level(),
                record.target(),
                record.args()
            )
        });
    } else {
        // Milliseconds: a failover, a reconnect and a keepalive timeout
        // happen within one second, and their order is what a reader of
        // the log looks for.
        builder.format_timestamp_millis();
    }
    // Only fails if a logger is already set, which cannot happen here.
    let _ = builder.try_init();
    if !env_override {
        log::set_max_level(log::LevelFilter::Info);
    }
    LogControl { env_override }
}
