//! The systemd service protocol (`sd_notify`), spoken without libsystemd.
//!
//! A `Type=notify` unit hands the daemon a datagram socket in
//! `NOTIFY_SOCKET`; the daemon writes `KEY=VALUE` lines to it: `READY=1`
//! once it serves, `STOPPING=1` when it starts to shut down, `STATUS=` for
//! `systemctl status`, `WATCHDOG=1` as a keep-alive when the unit sets
//! `WatchdogSec=`. A plain `UnixDatagram` is all this needs, which keeps the
//! crate free of `unsafe` and of a C library. Without `NOTIFY_SOCKET` (not
//! under systemd, or `Type=simple`) every call here is a no-op.
//!
//! Readiness policy: the server is ready as soon as its listening socket is
//! bound (connections are queued by the kernel from then on). The client with
//! `enable_zero_rtt = true` promised pre-connected links, so it is ready once
//! at least one link is up: one link serves every stream, and waiting for all
//! would keep a client whose server allows fewer links than it asks for
//! "starting" forever. If no link comes up within `connect_timeout_ms` it
//! reports ready anyway with a status saying so, because it still serves
//! (applications get a prompt reset and links keep retrying) and units
//! ordered after it must not hang on a server that is down.

use crate::rt::monitor::Monitor;
use crate::util::shutdown::Shutdown;
use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the client's readiness wait looks at the pool.
const READY_POLL: Duration = Duration::from_millis(20);

/// The service manager's notification socket, opened once.
pub struct Notifier {
    socket: UnixDatagram,
    addr: UnixAddr,
}

impl Notifier {
    /// The socket named by `NOTIFY_SOCKET`, or `None` when the variable is
    /// unset (not started by systemd, or not as `Type=notify`). A value that
    /// cannot be used is logged and treated as unset: a daemon must not fail
    /// to start over an optional status channel.
    pub fn from_env() -> Option<Arc<Notifier>> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        match Notifier::connect(&value) {
            Ok(n) => Some(Arc::new(n)),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET={value:?} unusable, not notifying systemd: {e}");
                None
            }
        }
    }

    /// Opens a notifier for a `NOTIFY_SOCKET` value: a path, or `@name` for an
    /// abstract socket (how systemd passes it to services).
    pub fn connect(value: &OsStr) -> io::Result<Notifier> {
        let bytes = value.as_bytes();
        let addr = match bytes.first() {
            Some(b'/') => UnixAddr::from_pathname(value)?,
            Some(b'@') => UnixAddr::from_abstract_name(&bytes[1..])?,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an absolute path or an @abstract name",
                ));
            }
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
        })
    }

    /// Sends one notification (newline-separated `KEY=VALUE` lines). Failure
    /// is logged at debug only: systemd may have gone away (shutdown of the
    /// machine) and that must not disturb the daemon.
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            log::debug!("sd_notify {state:?}: {e}");
        }
    }
}

/// Sends `state` when a notifier exists; lets callers skip the `if let`.
pub fn notify(notifier: Option<&Arc<Notifier>>, state: &str) {
    if let Some(n) = notifier {
        n.notify(state);
    }
}

/// `EXTEND_TIMEOUT_USEC=` for `d`: asks systemd to wait longer than the
/// unit's start or stop timeout, so a long `drain_timeout_ms` or
/// `connect_timeout_ms` is not cut short by SIGKILL.
pub fn extend_timeout(d: Duration) -> String {
    format!("EXTEND_TIMEOUT_USEC={}", d.as_micros())
}

/// The interval at which to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as
/// systemd recommends, when the watchdog is on and meant for this process
/// (`WATCHDOG_PID`, when set, must be ours). Pure, for tests.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(my_pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// [`watchdog_interval`] from this process's environment.
pub fn watchdog_interval_from_env() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// Starts the watchdog thread: every `interval` it takes a stats snapshot,
/// which locks the session table and every session's link and stream
/// tables, and only then sends `WATCHDOG=1`. A deadlocked or wedged daemon
/// therefore stops pinging and systemd restarts it; a merely idle one keeps
/// pinging. The thread is not counted among the daemon's threads, so it
/// never delays shutdown.
pub fn start_watchdog(
    notifier: Arc<Notifier>,
    interval: Duration,
    monitor: Monitor,
) -> io::Result<()> {
    log::info!(
        "systemd watchdog on: pinging every {} ms",
        interval.as_millis()
    );
    std::thread::Builder::new()
        .name("sd-watchdog".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let _proof_of_life = monitor.snapshot();
                notifier.notify("WATCHDOG=1");
            }
        })?;
    Ok(())
}

/// When the daemon may tell systemd it is ready (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Ready now: the listening socket is bound.
    Listening,
    /// Ready when the first link is up, or after `within` in any case.
    FirstLink {
        /// How long to wait for a link (the client's `connect_timeout_ms`).
        within: Duration,
    },
}

/// Sends `READY=1` (with a `STATUS=` line built from `status`) as
/// `readiness` allows: at once, or from a thread that waits for the first
/// link. Nothing is sent if shutdown starts first.
pub fn announce_ready(
    notifier: Option<Arc<Notifier>>,
    readiness: Readiness,
    status: String,
    monitor: Monitor,
    shutdown: Shutdown,
) -> io::Result<()> {
    let Some(notifier) = notifier else {
        return Ok(());
    };
    let Readiness::FirstLink { within } = readiness else {
        notifier.notify(&format!("READY=1\nSTATUS={status}"));
        return Ok(());
    };
    notifier.notify(&format!(
        "STATUS={status}; connecting the pool\n{}",
        extend_timeout(within + Duration::from_secs(5))
    ));
    std::thread::Builder::new()
        .name("sd-ready".into())
        .spawn(move || {
            let up = wait_first_link(&monitor, &shutdown, within);
            if shutdown.is_triggered() {
                return;
            }
            let note = if up {
                "pool up".to_owned()
            } else {
                log::warn!(
                    "no link to the server within {} ms; reporting ready anyway, links keep retrying",
                    within.as_millis()
                );
                "no link to the server yet, retrying".to_owned()
            };
            notifier.notify(&format!("READY=1\nSTATUS={status}; {note}"));
        })?;
    Ok(())
}

fn wait_first_link(monitor: &Monitor, shutdown: &Shutdown, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if monitor.any_link_up() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline || shutdown.is_triggered() {
            return false;
        }
        let _ = shutdown
            .receiver()
            .recv_timeout(READY_POLL.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_rules() {
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(
            watchdog_interval(Some("1"), None, 7),
            Some(Duration::from_millis(1))
        );
    }

    #[test]
    fn notify_reaches_path_and_abstract_sockets() {
        let dir = std::env::temp_dir().join(format!("mtcp-sd-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).expect("bind");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = Notifier::connect(path.as_os_str()).expect("connect");
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);

        let name = format!("mtcp-sd-unit-{}", std::process::id());
        let addr = UnixAddr::from_abstract_name(name.as_bytes()).expect("abstract");
        let server = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = Notifier::connect(OsStr::new(&format!("@{name}"))).expect("connect");
        n.notify("WATCHDOG=1");
        let len = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"WATCHDOG=1");

        assert!(Notifier::connect(OsStr::new("relative")).is_err());
        assert!(Notifier::connect(OsStr::new("")).is_err());
    }

    #[test]
    fn extend_timeout_is_in_microseconds() {
        assert_eq!(
            extend_timeout(Duration::from_millis(1500)),
            "EXTEND_TIMEOUT_USEC=1500000"
        );
    }
}
