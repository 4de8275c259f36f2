//! One way to start a thread: named, small stack, counted, failures logged.
//!
//! Every socket in MTCP is owned by a named thread (`link-3-rx`,
//! `stream-17-tx`) so that a log line, `top -H` or a debugger shows who is
//! doing what. The live-thread counter lets a daemon wait, on shutdown, until
//! every thread it started has really ended.

use crossbeam_channel::{Receiver, Sender, bounded};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Stack size for every MTCP thread: buffers live on the heap, so a small
/// stack keeps thousands of stream threads cheap.
const STACK_SIZE: usize = 256 * 1024;

/// Counts the threads a daemon has running, so shutdown can wait for them.
#[derive(Clone, Default)]
pub struct ThreadCount(Arc<AtomicUsize>);

impl ThreadCount {
    /// Threads started through [`spawn`] with this counter and not yet ended.
    pub fn live(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Waits up to `limit` for every counted thread to end; true if they did.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while self.live() > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts `body` on a thread called `name`. An `Err` it returns is logged at
/// `debug` with the thread name (callers log life-cycle events themselves at
/// the right level); a panic is caught by the runtime and logged as an error.
pub fn spawn<F>(
    count: &ThreadCount,
    name: String,
    body: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Result<(), String> + Send + 'static,
{
    count.0.fetch_add(1, Ordering::SeqCst);
    let guard = Guard(count.0.clone());
    let result = std::thread::Builder::new()
        .name(name.clone())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let _guard = guard;
            if let Err(e) = body() {
                log::debug!("{name}: {e}");
            }
        });
    // On failure the closure (and its guard) was dropped: the count is right.
    result
}

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
