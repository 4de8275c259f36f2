//! The real `mtcp` binary as a child process whose stderr is collected line
//! by line, for tests that need what only a process has: its own descriptor
//! limit, a kill -9, its log.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Longest any single wait on a daemon may take.
pub const LIMIT: Duration = Duration::from_secs(20);

/// A running `mtcp` process.
pub struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Collects stderr; ends when the process's stderr closes.
    reader: Option<thread::JoinHandle<()>>,
    what: String,
}

impl Daemon {
    /// `mtcp ROLE -c CONFIG`, with at most `nofile` descriptors if given.
    pub fn start(role: &str, config: &Path, nofile: Option<u32>) -> Daemon {
        let config = config.to_string_lossy();
        Daemon::spawn(&[role, "-c", &config], &[], nofile)
    }

    /// `mtcp ARGS` with the environment variables `env` set (and none of
    /// the service manager's or `RUST_LOG` inherited from the test), at
    /// most `nofile` descriptors if given.
    pub fn spawn(args: &[&str], env: &[(&str, &OsStr)], nofile: Option<u32>) -> Daemon {
        let bin = env!("CARGO_BIN_EXE_mtcp");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(args)
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn mtcp");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stderr = child.stderr.take();
        let reader = thread::spawn(move || {
            if let Some(s) = stderr {
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
            }
        });
        Daemon {
            child,
            lines,
            reader: Some(reader),
            what: format!("mtcp {}", args.join(" ")),
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }

    /// Waits until a log line contains every one of `parts`; returns it.
    pub fn wait_log(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no log line with {parts:?} within {LIMIT:?}; log:\n{}",
                self.what,
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Log lines containing every one of `parts`.
    pub fn log_lines(&self, parts: &[&str]) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .cloned()
            .collect()
    }

    /// Log lines containing `part`.
    pub fn count_log(&self, part: &str) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| l.contains(part))
            .count()
    }

    /// The address in the daemon's "... listening on ADDR," line.
    pub fn listening_addr(&self) -> SocketAddr {
        let line = self.wait_log(&["listening on "]);
        let rest = &line[line.find("listening on ").expect("found") + 13..];
        let addr = rest.split([',', ' ']).next().unwrap_or(rest);
        addr.parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends signal `sig` (a name such as `TERM` or `HUP`).
    pub fn signal(&self, sig: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "{}: kill -{sig} failed", self.what);
    }

    /// Waits (bounded) for the exit code; kills the process and panics
    /// after [`LIMIT`]. Every thread of the daemon has ended by then, and
    /// its last log lines are collected.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + LIMIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if let Some(r) = self.reader.take() {
                        let _ = r.join();
                    }
                    return status.code();
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    self.kill();
                    panic!(
                        "{}: still running after {LIMIT:?}:\n{}",
                        self.what,
                        self.log()
                    );
                }
            }
        }
    }

    /// SIGTERM, then expects a clean exit (code 0).
    pub fn stop(&mut self) {
        self.signal("TERM");
        let code = self.wait_exit();
        assert_eq!(code, Some(0), "{}:\n{}", self.what, self.log());
    }

    /// SIGKILL: the process dies with no word to its peers.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
