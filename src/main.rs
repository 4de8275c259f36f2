//! The `mtcp` binary: command line, logging, signals and exit codes.
//!
//! Deliberately thin: everything that moves bytes lives in the library so
//! that tests can run it in-process. This file only decides what the process
//! does and how it reports failure to whoever started it.

use clap::Parser;
use log::{info, warn};
use mtcp::cli::{Cli, Command, EXIT_CONFIG, EXIT_OSERR};
use mtcp::client::Client;
use mtcp::config::{self, Config, Role};
use mtcp::server::Server;
use mtcp::shutdown::Shutdown;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Server(args) => match config::load_server(&args.config) {
            Ok(cfg) => {
                let listen = cfg.listen;
                daemon(
                    Role::Server,
                    listen,
                    || Server::bind(cfg),
                    |s, sd| s.run(sd),
                )
            }
            Err(e) => config_error(&e),
        },
        Command::Client(args) => match config::load_client(&args.config) {
            Ok(cfg) => {
                let listen = cfg.listen;
                daemon(
                    Role::Client,
                    listen,
                    || Client::bind(cfg),
                    |c, sd| c.run(sd),
                )
            }
            Err(e) => config_error(&e),
        },
        Command::Check(args) => match config::load(&args.config) {
            Ok(cfg) => {
                check_report(&args.config, &cfg);
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
    }
}

/// Prints the effective settings as a config file (comments first), so the
/// output of `mtcp check` can itself be saved and used.
fn check_report(path: &std::path::Path, cfg: &Config) {
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

fn config_error(e: &config::ConfigError) -> ExitCode {
    eprintln!("mtcp: {e}");
    ExitCode::from(EXIT_CONFIG)
}

/// Installs signal handling, binds and runs one daemon until shutdown.
///
/// Generic over the daemon type because server and client have the same
/// shape (`bind`, `run`) but no shared trait. The daemons log their own
/// "listening on" line with the details; this only adds the version.
fn daemon<D>(
    role: Role,
    listen: SocketAddr,
    bind: impl FnOnce() -> std::io::Result<D>,
    run: impl FnOnce(D, Shutdown) -> std::io::Result<()>,
) -> ExitCode {
    info!("mtcp {} starting as {role}", env!("CARGO_PKG_VERSION"));
    let shutdown = Shutdown::new();
    // Installed before binding so that a signal arriving during start-up
    // still ends in an orderly shutdown (the signal is sticky).
    if let Err(e) = install_signal_handler(shutdown.clone()) {
        eprintln!("mtcp: cannot install signal handlers: {e}");
        return ExitCode::from(EXIT_OSERR);
    }
    let d = match bind() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("mtcp: cannot listen on {listen}: {e}");
            return ExitCode::from(EXIT_OSERR);
        }
    };
    match run(d, shutdown) {
        Ok(()) => {
            info!("mtcp {role} stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mtcp: {role} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT/SIGTERM start a graceful shutdown; a second one exits at once, so
/// an operator is never stuck waiting for a drain.
fn install_signal_handler(shutdown: Shutdown) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = false;
            for sig in signals.forever() {
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                if seen {
                    warn!("{name} received during shutdown, exiting now");
                    std::process::exit(1);
                }
                seen = true;
                info!("{name} received, shutting down (send it again to exit at once)");
                shutdown.trigger();
            }
        })?;
    Ok(())
}

/// Logs to stderr at `info` unless RUST_LOG says otherwise. Under systemd
/// (JOURNAL_STREAM set) timestamps are left out because journald adds its
/// own, and each line starts with a syslog `<N>` priority so journald records
/// the right level.
fn init_logging() {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if std::env::var_os("JOURNAL_STREAM").is_some() {
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
    }
    // Only fails if a logger is already set, which cannot happen here.
    let _ = builder.try_init();
}
