//! Run-time operations of a running daemon: SIGHUP reload, the stats report
//! (periodic and on SIGUSR1) and the systemd status line.
//!
//! All of it runs on one `ops` thread that owns the running configuration,
//! so a reload and a report never race. The signal thread only forwards
//! [`Request`]s to it.
//!
//! What a reload may change at run time is deliberately small: the keys that
//! only this thread uses (`log_level`, `stats_interval_ms`, and
//! `metrics_listen`: the metrics endpoint is this thread's too, closed and
//! bound again at the new address). Every other key
//! is baked into sockets, sessions and threads, so changing it safely means
//! a restart; a reload reports each such change, and the running value stays
//! what the daemon uses (and what the next reload compares against).

use crate::config::{self, Config, OpsConfig, TunnelConfig};
use crate::metrics::exposition::Identity;
use crate::metrics::{MetricsServer, Source};
use crate::rt::monitor::Monitor;
use crate::systemd::{self, Notifier};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Keys a SIGHUP applies without a restart.
pub const RELOADABLE: &[&str] = &["log_level", "stats_interval_ms", "metrics_listen"];

/// How often the `STATUS=` line shown by `systemctl status` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// What the signal thread asks the ops thread to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// SIGHUP: re-read the config file.
    Reload,
    /// SIGUSR1: log the stats report now.
    Stats,
}

/// One key whose value differs between the running config and the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Key name within the table (`mode` when the role itself changed).
    pub key: String,
    /// Running value, as written in a config file.
    pub old: String,
    /// Value in the file.
    pub new: String,
}

impl Change {
    /// True when a reload can apply this change without a restart.
    pub fn is_reloadable(&self) -> bool {
        RELOADABLE.contains(&self.key.as_str())
    }
}

/// Every key whose effective value differs between `old` and `new`, in the
/// order `mtcp check` prints them. Defaults count: removing a key that was
/// set to a non-default value is a change. A change of `mode` is reported
/// alone, because then no other key is comparable.
pub fn changes(old: &Config, new: &Config) -> Vec<Change> {
    if old.role() != new.role() {
        return vec![Change {
            key: "mode".into(),
            old: format!("\"{}\"", old.role()),
            new: format!("\"{}\"", new.role()),
        }];
    }
    let (old_text, new_text) = (old.describe(), new.describe());
    let old_keys = key_values(&old_text);
    let new_keys = key_values(&new_text);
    let mut all: Vec<Change> = new_keys
        .iter()
        .filter_map(|&(key, value)| {
            let before = old_keys.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
            (before != Some(value)).then(|| Change {
                key: key.to_owned(),
                old: before.unwrap_or("(unset)").to_owned(),
                new: value.to_owned(),
            })
        })
        .collect();
    // A key only printed when set (`metrics_listen`) may have been removed.
    all.extend(
        old_keys
            .iter()
            .filter(|(key, _)| !new_keys.iter().any(|(k, _)| k == key))
            .map(|(key, value)| Change {
                key: (*key).to_owned(),
                old: (*value).to_owned(),
                new: "(unset)".to_owned(),
            }),
    );
    // `describe` never prints the secret itself, so compare it directly.
    if tunnel(old).secret != tunnel(new).secret {
        all.push(Change {
            key: "secret".into(),
            old: "(not shown)".into(),
            new: "(a different secret)".into(),
        });
    }
    all
}

fn tunnel(c: &Config) -> &TunnelConfig {
    match c {
        Config::Server(s) => &s.tunnel,
        Config::Client(c) => &c.tunnel,
    }
}

/// The `key = value` lines of a [`Config::describe`] text (comments, which
/// stand in for settings it does not print, are skipped).
fn key_values(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(" = "))
        .filter(|(k, _)| *k != "mode")
        .collect()
}

/// Sets the log level, unless `RUST_LOG` chose the filter at start-up (the
/// environment then wins, as the README documents).
#[derive(Clone, Copy, Debug)]
pub struct LogControl {
    /// True when `RUST_LOG` was set when logging started.
    pub env_override: bool,
}

impl LogControl {
    /// Applies `ops.log_level`; returns false when `RUST_LOG` overrides it.
    pub fn apply(&self, ops: &OpsConfig) -> bool {
        if self.env_override {
            return false;
        }
        log::set_max_level(ops.log_level.filter());
        true
    }
}

/// The ops thread's state.
pub struct Ops {
    /// The config file, re-read on SIGHUP.
    pub path: PathBuf,
    /// The configuration the daemon runs with.
    pub running: Config,
    /// How to change the log level.
    pub logs: LogControl,
    /// The daemon's sessions, for the stats report.
    pub monitor: Monitor,
    /// Where `STATUS=` lines go, if under systemd.
    pub notifier: Option<Arc<Notifier>>,
    /// The metrics endpoint, when `metrics_listen` is set (started before
    /// the daemon runs, so that a port in use stops the start-up).
    pub metrics: Option<MetricsServer>,
}

impl Ops {
    /// Starts the `ops` thread serving `requests` until the sender is gone.
    /// Not counted among the daemon's threads: it holds no socket and must
    /// not delay shutdown.
    pub fn spawn(self, requests: Receiver<Request>) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("ops".into())
            .spawn(move || self.serve(&requests))?;
        Ok(())
    }

    fn serve(mut self, requests: &Receiver<Request>) {
        let mut next_stats = self.next_stats(Instant::now());
        let mut next_status = Instant::now() + STATUS_EVERY;
        loop {
            let wake = next_stats.map_or(next_status, |t| t.min(next_status));
            let timeout = wake.saturating_duration_since(Instant::now());
            match requests.recv_timeout(timeout) {
                Ok(Request::Reload) => {
                    if self.reload() {
                        next_stats = self.next_stats(Instant::now());
                    }
                }
                Ok(Request::Stats) => self.report(),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if next_stats.is_some_and(|t| now >= t) {
                self.report();
                next_stats = self.next_stats(now);
            }
            if now >= next_status {
                self.status();
                next_status = now + STATUS_EVERY;
            }
        }
    }

    fn next_stats(&self, from: Instant) -> Option<Instant> {
        self.running.ops().stats_interval.map(|d| from + d)
    }

    /// Logs the stats report and refreshes the status line.
    fn report(&self) {
        let snap = self.monitor.snapshot();
        snap.log();
        systemd::notify(
            self.notifier.as_ref(),
            &format!("STATUS={}", snap.summary()),
        );
    }

    fn status(&self) {
        if self.notifier.is_some() {
            let snap = self.monitor.snapshot();
            systemd::notify(
                self.notifier.as_ref(),
                &format!("STATUS={}", snap.summary()),
            );
        }
    }

    /// Re-reads the file and applies what can be applied; returns true when
    /// the stats interval may have changed. Never fails the daemon: a bad
    /// file is reported and the running configuration kept.
    pub fn reload(&mut self) -> bool {
        let path = self.path.display().to_string();
        let new = match config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                log::error!("reload: {e}; keeping the running configuration");
                return false;
            }
        };
        let all = changes(&self.running, &new);
        if all.is_empty() {
            log::info!("reload: {path} read, no setting changed");
            return false;
        }
        let role_changed = all.iter().any(|c| c.key == "mode");
        for c in &all {
            if c.is_reloadable() && !role_changed {
                log::info!(
                    "reload: {} changed from {} to {}: applied",
                    c.key,
                    c.old,
                    c.new
                );
            } else {
                log::warn!(
                    "reload: {} changed from {} to {}: not applied, takes effect after a restart",
                    c.key,
                    c.old,
                    c.new
                );
            }
        }
        if role_changed {
            return false;
        }
        let mut ops = new.ops().clone();
        if all.iter().any(|c| c.key == "metrics_listen") {
            ops.metrics_listen = self.move_metrics(ops.metrics_listen);
        }
        self.running = self.running.with_ops(ops);
        if !self.logs.apply(self.running.ops()) && all.iter().any(|c| c.key == "log_level") {
            log::warn!("reload: log_level not applied: RUST_LOG is set and takes precedence");
        }
        let pending = all.iter().filter(|c| !c.is_reloadable()).count();
        log::info!(
            "reload: {path} applied ({} changed, {pending} waiting for a restart)",
            all.len() - pending
        );
        true
    }
}

impl Ops {
    /// Moves the metrics endpoint to `want` (or closes it); returns where it
    /// listens afterwards, which becomes the running value. If the new
    /// address cannot be bound, the endpoint goes back to the old one, so a
    /// typo in a reload does not take the metrics away; the next reload
    /// tries the file's address again.
    fn move_metrics(&mut self, want: Option<SocketAddr>) -> Option<SocketAddr> {
        let old = self.running.ops().metrics_listen;
        // Closed first: the new address may be the same port on another IP.
        if let Some(server) = self.metrics.take() {
            server.stop();
        }
        let Some(addr) = want else {
            log::info!("reload: metrics endpoint closed");
            return None;
        };
        let source = Source {
            monitor: self.monitor.clone(),
            identity: Identity::of(&self.running),
        };
        match MetricsServer::start(addr, source.clone()) {
            Ok(server) => {
                self.metrics = Some(server);
                return Some(addr);
            }
            Err(e) => log::error!("reload: cannot listen on metrics_listen {addr}: {e}"),
        }
        let back = old.and_then(|a| MetricsServer::start(a, source).ok().map(|m| (a, m)));
        match back {
            Some((a, server)) => {
                log::warn!("reload: metrics endpoint kept on {a}");
                self.metrics = Some(server);
                Some(a)
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SERVER: &str = "mode = \"server\"\n[server]\nlisten_ip = \"0.0.0.0\"\nlisten_port = 8000\nbackend_ip = \"127.0.0.1\"\nbackend_port = 9000\nconnection_pool_size = 4\nbuffer_size = 65536\n";
    const CLIENT: &str = "mode = \"client\"\n[client]\nlocal_listen_ip = \"127.0.0.1\"\nlocal_listen_port = 7000\nserver_ip = \"127.0.0.1\"\nserver_port = 8000\nconnection_pool_size = 4\nbuffer_size = 65536\nenable_zero_rtt = true\n";

    fn parse(text: &str) -> Config {
        config::parse(text, Path::new("x.toml")).expect("valid")
    }

    #[test]
    fn no_change_no_changes() {
        assert!(changes(&parse(SERVER), &parse(SERVER)).is_empty());
        // Spelling out a default is no change.
        let explicit = format!("{SERVER}stats_interval_ms = 60000\n");
        assert!(changes(&parse(SERVER), &parse(&explicit)).is_empty());
    }

    #[test]
    fn changed_keys_are_listed_and_classified() {
        let new = SERVER.replace("backend_port = 9000", "backend_port = 9001")
            + "log_level = \"debug\"\nstats_interval_ms = 0\n";
        let all = changes(&parse(SERVER), &parse(&new));
        let keys: Vec<&str> = all.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["backend_port", "log_level", "stats_interval_ms"]);
        assert_eq!(all[0].old, "9000");
        assert_eq!(all[0].new, "9001");
        assert!(!all[0].is_reloadable());
        assert_eq!(all[1].new, "\"debug\"");
        assert!(all[1].is_reloadable() && all[2].is_reloadable());
    }

    #[test]
    fn secret_change_is_reported_without_the_secret() {
        let a = format!("{SERVER}secret = \"0123456789abcdef0123\"\n");
        let b = format!("{SERVER}secret = \"0123456789abcdef9999\"\n");
        assert!(changes(&parse(&a), &parse(&a)).is_empty());
        let all = changes(&parse(&a), &parse(&b));
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].key, "secret");
        assert!(!all[0].is_reloadable());
        assert!(!format!("{all:?}").contains("0123"));
    }

    #[test]
    fn mode_change_is_reported_alone() {
        let all = changes(&parse(SERVER), &parse(CLIENT));
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].key, "mode");
        assert_eq!(all[0].old, "\"server\"");
        assert!(!all[0].is_reloadable());
    }

    #[test]
    fn reload_keeps_running_config_on_error_and_applies_ops() {
        let dir = std::env::temp_dir().join(format!("mtcp-ops-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.toml");
        let mut ops = Ops {
            path: path.clone(),
            running: parse(CLIENT),
            logs: LogControl { env_override: true },
            monitor: Monitor::new(),
            notifier: None,
            metrics: None,
        };
        std::fs::write(&path, "mode = \"client\"\n[client]\n").expect("write");
        assert!(!ops.reload());
        assert_eq!(ops.running, parse(CLIENT));
        let text = CLIENT.replace("7000", "7001") + "stats_interval_ms = 500\n";
        std::fs::write(&path, &text).expect("write");
        assert!(ops.reload());
        // The reloadable key is applied, the other one waits for a restart.
        assert_eq!(
            ops.running.ops().stats_interval,
            Some(Duration::from_millis(500))
        );
        assert!(ops.running.describe().contains("local_listen_port = 7000"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_removed_key_is_a_change() {
        let on = format!("{SERVER}metrics_listen = \"127.0.0.1:9464\"\n");
        let all = changes(&parse(&on), &parse(SERVER));
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].key, "metrics_listen");
        assert_eq!(all[0].new, "(unset)");
        assert!(all[0].is_reloadable());
        let all = changes(&parse(SERVER), &parse(&on));
        assert_eq!((all[0].old.as_str(), all.len()), ("(unset)", 1));
    }

    #[test]
    fn reload_opens_moves_and_closes_the_metrics_endpoint() {
        let dir = std::env::temp_dir().join(format!("mtcp-ops-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.toml");
        let mut ops = Ops {
            path: path.clone(),
            running: parse(CLIENT),
            logs: LogControl { env_override: true },
            monitor: Monitor::new(),
            notifier: None,
            metrics: None,
        };
        let with = |addr: &str| format!("{CLIENT}metrics_listen = \"{addr}\"\n");
        std::fs::write(&path, with("127.0.0.1:0")).expect("write");
        assert!(ops.reload());
        let first = ops.metrics.as_ref().expect("endpoint").local_addr();
        assert!(std::net::TcpStream::connect(first).is_ok());
        // An address in use: the endpoint comes back where it was.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = taken.local_addr().expect("addr");
        std::fs::write(&path, with(&taken.to_string())).expect("write");
        assert!(ops.reload());
        assert!(ops.metrics.is_some());
        assert_eq!(
            ops.running.ops().metrics_listen,
            Some("127.0.0.1:0".parse().expect("addr"))
        );
        std::fs::write(&path, CLIENT).expect("write");
        assert!(ops.reload());
        assert!(ops.metrics.is_none());
        assert_eq!(ops.running.ops().metrics_listen, None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
