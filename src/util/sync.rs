//! Small synchronisation helpers shared by every thread: a doorbell and a
//! poison-tolerant lock.

use crossbeam_channel::{Receiver, Sender, bounded};
use std::sync::{Mutex, MutexGuard};

/// A doorbell: any number of rings collapse into one wake-up, and ringing
/// never blocks. Used where one thread must tell another "look again" without
/// holding a lock (a link reader telling a stream writer that bytes arrived).
#[derive(Clone)]
pub struct Bell {
    tx: Sender<()>,
    rx: Receiver<()>,
}

impl Bell {
    /// A bell nobody has rung yet.
    pub fn new() -> Self {
        let (tx, rx) = bounded(1);
        Bell { tx, rx }
    }

    /// Wakes the waiter, or makes its next wait return at once.
    pub fn ring(&self) {
        let _ = self.tx.try_send(());
    }

    /// The receiving side, for `select!` next to a shutdown signal.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.rx
    }
}

impl Default for Bell {
    fn default() -> Self {
        Self::new()
    }
}

/// Locks a mutex even if a thread panicked while holding it: MTCP's locks
/// guard plain tables and counters, and carrying on with them is safer than
/// taking the whole daemon down with one failed thread.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
