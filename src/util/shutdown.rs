//! A shutdown signal that every blocking loop can wait on.
//!
//! Dropping the only sender of a channel wakes every receiver at once, which
//! lets threads `select!` on shutdown next to their real work.

use crossbeam_channel::{Receiver, Sender, bounded};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Cloneable handle: any clone can trigger, every clone observes.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
    rx: Receiver<()>,
}

struct Inner {
    fired: AtomicBool,
    tx: Mutex<Option<Sender<()>>>,
}

impl Shutdown {
    /// A fresh, untriggered signal.
    pub fn new() -> Self {
        let (tx, rx) = bounded(1);
        Shutdown {
            inner: Arc::new(Inner {
                fired: AtomicBool::new(false),
                tx: Mutex::new(Some(tx)),
            }),
            rx,
        }
    }

    /// Fires the signal; idempotent.
    pub fn trigger(&self) {
        self.inner.fired.store(true, Ordering::SeqCst);
        if let Ok(mut tx) = self.inner.tx.lock() {
            tx.take();
        }
    }

    /// True once any clone has triggered.
    pub fn is_triggered(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    /// A receiver that becomes disconnected (ready) when the signal fires, for
    /// use in `select!` and `recv_timeout`.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.rx
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}
