//! The server's side of streams: where their backend connections go, and
//! how many streams all sessions may have open together.

use crate::config::Endpoint;
use crate::util::net::connect_first;
use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Where the server connects the streams of a session.
#[derive(Clone)]
pub struct Backend {
    pub endpoint: Endpoint,
    pub timeout: Duration,
    /// Streams of all sessions together, against `max_total_streams`.
    pub budget: Arc<StreamBudget>,
}

impl Backend {
    /// Connects the backend, trying each resolved address within the
    /// configured timeout (a host name is resolved at each connect).
    pub fn connect(&self) -> io::Result<TcpStream> {
        let addrs = self.endpoint.resolve()?;
        connect_first(&addrs, self.timeout, "backend")
    }
}

/// A count of streams shared by all sessions of a server, so that many
/// sessions together stay within one limit.
pub struct StreamBudget {
    used: AtomicUsize,
    pub(crate) limit: usize,
}

impl StreamBudget {
    /// A budget of `limit` streams.
    pub fn new(limit: usize) -> Self {
        StreamBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    pub(crate) fn try_take(&self) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    pub(crate) fn give_back(&self) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Streams counted now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
}
