//! The command line, as clap structs.
//!
//! Kept in the library (not in `main.rs`) so that a man page or shell
//! completions can be generated from the same definition with
//! `clap::CommandFactory::command()`, and so that tests can parse argument
//! lists without spawning the binary.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Default config file of `mtcp server`, looked up in the working directory
/// (the specification's name).
pub const DEFAULT_SERVER_CONFIG: &str = "config.server.toml";
/// Default config file of `mtcp client`, looked up in the working directory
/// (the specification's name).
pub const DEFAULT_CLIENT_CONFIG: &str = "config.client.toml";

/// Exit status for an invalid or unreadable config file (sysexits EX_CONFIG),
/// so service managers and scripts can tell "fix the file" from a crash.
pub const EXIT_CONFIG: u8 = 78;
/// Exit status when the listening socket cannot be opened (sysexits EX_OSERR).
pub const EXIT_OSERR: u8 = 71;
/// Exit status of `mtcp status` when no daemon answers on the endpoint
/// (sysexits EX_UNAVAILABLE), so scripts can tell "not running" apart.
pub const EXIT_UNAVAILABLE: u8 = 69;

/// The whole command line of `mtcp`.
#[derive(Debug, Parser)]
#[command(
    name = "mtcp",
    version,
    about = "Speed up a TCP connection by striping it over a pool of pre-connected TCP links",
    long_about = "Speed up a TCP connection by striping it over a pool of pre-connected TCP links.\n\n\
        Run `mtcp client` near the application and `mtcp server` near the backend:\n\n  \
        app --TCP--> mtcp client ==N links==> mtcp server --TCP--> backend\n\n\
        Each application connection is cut into frames that travel over all links at once and \
        are put back in order on the far side, which helps where every single TCP flow is \
        rate-limited or loss-limited. With enable_zero_rtt the links are connected before any \
        application arrives, so a new connection costs no handshake across the long path.\n\n\
        Logging goes to stderr at the config file's log_level (default: info); RUST_LOG \
        (e.g. RUST_LOG=debug), when set, overrides it. Under systemd (JOURNAL_STREAM set) \
        lines carry a syslog priority and no timestamp.\n\n\
        Signals: SIGINT or SIGTERM stops gracefully (new connections are refused, open ones \
        may finish for up to drain_timeout_ms); a second one resets the open streams and \
        exits at once. SIGHUP re-reads \
        the config file: log_level, stats_interval_ms and metrics_listen are applied, every other changed key \
        is logged as waiting for a restart, and an invalid file is logged and ignored. \
        SIGUSR1 logs per-session and per-link statistics.\n\n\
        Under systemd (NOTIFY_SOCKET set) the daemon reports READY=1 once it listens (a \
        client with enable_zero_rtt once its first link is up, or after connect_timeout_ms), \
        STOPPING=1 on shutdown, and WATCHDOG=1 at half of WatchdogSec.\n\n\
        Exit status: 0 after a clean shutdown (SIGINT/SIGTERM), 78 for an invalid config \
        file, 71 when the listening socket cannot be opened, 1 for other failures or a second \
        SIGINT/SIGTERM during shutdown, 2 for a bad command line."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `mtcp`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server daemon: accept links from clients, forward to the backend.
    Server(ServerArgs),
    /// Run the client daemon: accept application connections, stripe them to a server.
    Client(ClientArgs),
    /// Run the daemon the config file's `mode` names (server or client).
    ///
    /// For service managers: one unit template runs either role, chosen by
    /// the file, e.g. mtcp@server.service runs `mtcp run -c /etc/mtcp/server.toml`.
    Run(RunArgs),
    /// Check a config file (either mode) and print its effective settings.
    ///
    /// Prints every key with the value that will be used, defaults included,
    /// as a config file. Exits 0 when the file is valid, 78 when it is not.
    Check(CheckArgs),
    /// Show a running daemon's sessions and links, read from its metrics endpoint.
    ///
    /// Reads metrics_listen from the config file, asks the daemon twice
    /// (--interval-ms apart) and prints its sessions and, per link, state,
    /// slot, peer, round-trip time, rate each way, bytes re-sent, TCP
    /// retransmissions and reconnects. Exits 78 when the file is invalid or
    /// has no metrics_listen, 69 when no daemon answers there.
    Status(StatusArgs),
}

/// Options of `mtcp server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Config file with mode = "server" and a `[server]` table.
    ///
    /// Without this option, config.server.toml in the current working directory is read.
    #[arg(short, long, value_name = "FILE", default_value = DEFAULT_SERVER_CONFIG)]
    pub config: PathBuf,
}

/// Options of `mtcp client`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Config file with mode = "client" and a `[client]` table.
    ///
    /// Without this option, config.client.toml in the current working directory is read.
    #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CLIENT_CONFIG)]
    pub config: PathBuf,
}

/// Options of `mtcp run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file; its `mode` ("server" or "client") picks the daemon.
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Options of `mtcp check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file to check (server or client).
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// Print nothing when the file is valid; errors still go to stderr.
    ///
    /// For ExecReload= in a service unit, where the effective settings
    /// would only fill the journal.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Options of `mtcp status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Config file of the running daemon (server or client); its metrics_listen is asked.
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// Time between the two readings the rates come from; 0 reads once, without rates.
    #[arg(short, long, value_name = "MS", default_value_t = 1000)]
    pub interval_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_options() {
        let cli = Cli::try_parse_from(["mtcp", "server"]).unwrap();
        match cli.command {
            Command::Server(a) => assert_eq!(a.config, PathBuf::from("config.server.toml")),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["mtcp", "client"]).unwrap();
        match cli.command {
            Command::Client(a) => assert_eq!(a.config, PathBuf::from("config.client.toml")),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["mtcp", "client", "-c", "/x/y.toml"]).unwrap();
        match cli.command {
            Command::Client(a) => assert_eq!(a.config, PathBuf::from("/x/y.toml")),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["mtcp", "check", "--config", "a.toml"]).unwrap();
        match cli.command {
            Command::Check(a) => assert_eq!(a.config, PathBuf::from("a.toml")),
            other => panic!("{other:?}"),
        }
        // `check` has no default: checking a file one did not name is a trap.
        assert!(Cli::try_parse_from(["mtcp", "check"]).is_err());
        let cli = Cli::try_parse_from(["mtcp", "check", "-q", "-c", "a.toml"]).unwrap();
        match cli.command {
            Command::Check(a) => assert!(a.quiet),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["mtcp", "run", "-c", "/etc/mtcp/server.toml"]).unwrap();
        match cli.command {
            Command::Run(a) => assert_eq!(a.config, PathBuf::from("/etc/mtcp/server.toml")),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["mtcp", "status", "-c", "c.toml", "-i", "0"]).unwrap();
        match cli.command {
            Command::Status(a) => assert_eq!((a.config, a.interval_ms), ("c.toml".into(), 0)),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["mtcp", "status"]).is_err());
        // Neither has `run`: its role comes from the file, which must be named.
        assert!(Cli::try_parse_from(["mtcp", "run"]).is_err());
        assert!(Cli::try_parse_from(["mtcp"]).is_err());
    }

    #[test]
    fn help_names_the_default_files() {
        let help = Cli::command()
            .find_subcommand_mut("server")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("config.server.toml"), "{help}");
        assert!(help.contains("working directory"), "{help}");
        let help = Cli::command()
            .find_subcommand_mut("client")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("config.client.toml"), "{help}");
    }
}
