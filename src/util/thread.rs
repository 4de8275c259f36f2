//! One way to start a thread: named, small stack, counted, failures logged.
//!
//! Every socket in MTCP is owned by a named thread (`link-3-rx`,
//! `stream-17-tx`) so that a log line, `top -H` or a debugger shows who is
//! doing what. The live-thread counter lets a daemon wait, on shutdown, until
//! every thread it started has really ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Starts `body`, which cannot fail, on a thread called `name` (see [`spawn`]).
pub fn spawn_task<F>(
    count: &ThreadCount,
    name: String,
    body: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    spawn(count, name, move || {
        body();
        Ok::<(), std::convert::Infallible>(())
    })
}

/// Starts `body` on a thread called `name`. An `Err` it returns is logged at
/// `debug` with the thread name (callers log life-cycle events themselves at
/// the right level); a panic is caught by the runtime and logged as an error.
pub fn spawn<F, E>(
    count: &ThreadCount,
    name: String,
    body: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Result<(), E> + Send + 'static,
    E: std::fmt::Display,
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
