//! Accepting connections without spinning when descriptors run out.
//!
//! When `accept` fails with EMFILE or ENFILE the connection stays in the
//! listen backlog, so a naive loop retries at once, forever, and every
//! waiting application hangs. The classic remedy: keep one descriptor in
//! reserve; when out of descriptors, give it up, accept the waiting
//! connection and close it at once with a reset (the application sees a
//! prompt failure), then take the reserve again. When even that is not
//! possible the loop backs off. Connections already open keep working.

use crate::util::shutdown::Shutdown;
use crate::util::throttle::{DEFAULT_INTERVAL, Throttle};
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Pause after an accept failure that shedding could not resolve.
const BACKOFF: Duration = Duration::from_millis(50);

/// A listening socket with a reserve descriptor.
pub struct Acceptor<'a> {
    listener: &'a TcpListener,
    reserve: Option<File>,
    /// What the listener serves, for log lines ("application", "link").
    what: &'static str,
    /// One line per interval: a storm of refused connections is one event.
    out_of_descriptors: Throttle,
    failed: Throttle,
}

impl<'a> Acceptor<'a> {
    /// Wraps `listener`; `what` names its connections in log lines.
    pub fn new(listener: &'a TcpListener, what: &'static str) -> Self {
        Acceptor {
            listener,
            reserve: open_reserve(),
            what,
            out_of_descriptors: Throttle::new(DEFAULT_INTERVAL, 1),
            failed: Throttle::new(DEFAULT_INTERVAL, 1),
        }
    }

    /// The next connection, or `None` once `shutdown` fired. Failures are
    /// handled here: connections that cannot be served for want of
    /// descriptors are closed with a reset, other failures back off; both
    /// are logged at most once per interval.
    pub fn accept(&mut self, shutdown: &Shutdown) -> Option<(TcpStream, SocketAddr)> {
        loop {
            if shutdown.is_triggered() {
                return None;
            }
            match self.listener.accept() {
                Ok((sock, peer)) => {
                    if shutdown.is_triggered() {
                        return None;
                    }
                    if self.reserve.is_none() {
                        self.reserve = open_reserve();
                    }
                    return Some((sock, peer));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_out_of_descriptors(&e) => self.shed(&e),
                Err(e) => {
                    crate::warn_throttled!(self.failed, "accept failed: {e}");
                    std::thread::sleep(BACKOFF);
                }
            }
        }
    }

    /// Frees the reserve, accepts one waiting connection and resets it.
    fn shed(&mut self, e: &io::Error) {
        crate::warn_throttled!(
            self.out_of_descriptors,
            "out of file descriptors ({e}): new {} connections are closed at once until some are free",
            self.what
        );
        if self.reserve.take().is_none() {
            std::thread::sleep(BACKOFF);
            self.reserve = open_reserve();
            return;
        }
        if let Ok((sock, _)) = self.listener.accept() {
            let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
        }
        self.reserve = open_reserve();
    }
}

fn open_reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

/// True for EMFILE (the process's limit) and ENFILE (the system's).
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}
