//! The daemon-wide send budget: how many bytes all streams together may have
//! sent and not yet seen acknowledged.
//!
//! Every such byte costs memory twice: the sender keeps it for re-sending
//! after a link failure, and the receiver holds it in a reorder buffer until
//! its application reads it. Per-stream windows alone bound one stream, not a
//! thousand: with a 4 MiB window each, a thousand busy streams could hold
//! gigabytes when one stage of their path lags. The budget bounds the sum.
//!
//! A shared budget alone would let streams whose application stopped reading
//! (and which therefore never return what they hold) starve the rest. So each
//! stream keeps a floor, [`STREAM_FLOOR`] bytes it may always have in flight
//! whatever the budget says: one stalled stream costs the others nothing, and
//! a stalled thousand cost at most a thousand floors.
//!
//! Streams that wait for budget queue here in order and are woken as
//! acknowledgements return it, so a busy daemon wakes a few waiters per ACK,
//! not all of them.

use crate::proto::send;
pub use crate::proto::send::STREAM_FLOOR;
use crate::util::sync::{Bell, lock};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The budget one daemon's streams share, in every session.
pub struct SendBudget {
    limit: u64,
    used: AtomicU64,
    waiters: Mutex<VecDeque<Arc<BudgetWaiter>>>,
    /// Length of `waiters`, read without the lock on every release.
    waiting: AtomicUsize,
}

/// A stream's place in the queue for budget: the bell it sleeps on.
pub struct BudgetWaiter {
    bell: Bell,
    queued: AtomicBool,
    /// The stream will never send again (reset or dropped): a wake-up given
    /// to it would be lost, so the queue passes it over.
    gone: AtomicBool,
}

impl BudgetWaiter {
    /// A waiter that rings `bell` (the stream's send bell, which its own ACKs
    /// ring too, so one sleep waits for either).
    pub fn new(bell: Bell) -> Arc<Self> {
        Arc::new(BudgetWaiter {
            bell,
            queued: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        })
    }

    /// Marks the stream as never sending again; call it before giving its
    /// budget back, so that the wake-up that release makes reaches a stream
    /// that can use it (else, with every other sender queued, the budget sat
    /// free until the queued streams' 10 s safety re-check).
    pub fn leave(&self) {
        self.gone.store(true, Ordering::SeqCst);
    }
}

impl SendBudget {
    /// A budget of `limit` unacknowledged bytes beyond the streams' floors.
    pub fn new(limit: u64) -> Self {
        SendBudget {
            limit,
            used: AtomicU64::new(0),
            waiters: Mutex::new(VecDeque::new()),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes charged and not yet released, floors included (so it may exceed
    /// the limit).
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// How many more bytes a stream with `own` bytes unacknowledged may send
    /// now under a peer `window`: at least up to its floor, beyond that what
    /// both the window and the budget allow.
    pub fn credit(&self, own: u64, window: u64) -> u64 {
        send::credit(own, window, self.limit, self.used())
    }

    /// Counts `n` bytes just sent (read from the local socket).
    pub fn charge(&self, n: u64) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    /// Returns `n` acknowledged (or abandoned) bytes and wakes waiters that
    /// may now send.
    pub fn release(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.used.fetch_sub(n, Ordering::Relaxed);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.wake();
        }
    }

    /// Queues `waiter` to be rung when budget comes back. The caller checks
    /// its credit again after this and before sleeping: a release between
    /// its first check and this call found nobody to wake.
    pub fn wait_turn(&self, waiter: &Arc<BudgetWaiter>) {
        if waiter.queued.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut q = lock(&self.waiters);
        q.push_back(waiter.clone());
        self.waiting.store(q.len(), Ordering::SeqCst);
    }

    /// Rings waiters in order, about one per floor's worth of free budget
    /// and at least one; those that find no credit when they look queue
    /// again at the back.
    fn wake(&self) {
        let free = self.limit.saturating_sub(self.used());
        let mut budget_for = free.div_ceil(STREAM_FLOOR).max(1);
        let mut q = lock(&self.waiters);
        while budget_for > 0 {
            let Some(w) = q.pop_front() else { break };
            w.queued.store(false, Ordering::SeqCst);
            if w.gone.load(Ordering::SeqCst) {
                continue;
            }
            w.bell.ring();
            budget_for -= 1;
        }
        self.waiting.store(q.len(), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn credit_counts_what_the_daemon_uses() {
        let b = SendBudget::new(MIB);
        assert_eq!(b.credit(0, 4 * MIB), MIB);
        b.charge(MIB - 100);
        assert_eq!(b.credit(3 * STREAM_FLOOR, 4 * MIB), 100);
        b.release(MIB - 100);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn release_wakes_waiters_in_order_and_each_once() {
        let b = SendBudget::new(2 * STREAM_FLOOR);
        b.charge(2 * STREAM_FLOOR);
        let bells: Vec<Bell> = (0..4).map(|_| Bell::new()).collect();
        let waiters: Vec<_> = bells
            .iter()
            .map(|bl| BudgetWaiter::new(bl.clone()))
            .collect();
        for w in &waiters {
            b.wait_turn(w);
            b.wait_turn(w);
        }
        assert_eq!(b.waiting.load(Ordering::SeqCst), 4, "queued twice");
        let rung = || -> Vec<bool> {
            bells
                .iter()
                .map(|bl| bl.receiver().try_recv().is_ok())
                .collect()
        };
        b.release(STREAM_FLOOR);
        assert_eq!(rung(), [true, false, false, false]);
        b.release(STREAM_FLOOR);
        assert_eq!(rung(), [false, true, true, false], "two floors free");
        b.wait_turn(&waiters[0]);
        b.charge(STREAM_FLOOR);
        b.release(STREAM_FLOOR);
        assert_eq!(rung(), [true, false, false, true], "re-queued at the back");
    }

    #[test]
    fn streams_that_left_do_not_take_a_wake_up() {
        let b = SendBudget::new(STREAM_FLOOR);
        b.charge(STREAM_FLOOR);
        let (gone_bell, live_bell) = (Bell::new(), Bell::new());
        let gone = BudgetWaiter::new(gone_bell.clone());
        let live = BudgetWaiter::new(live_bell.clone());
        b.wait_turn(&gone);
        b.wait_turn(&live);
        // The front stream is reset: it leaves, then gives its bytes back.
        gone.leave();
        b.release(STREAM_FLOOR);
        assert!(
            live_bell.receiver().try_recv().is_ok(),
            "the budget went to a stream that will never send"
        );
        assert!(gone_bell.receiver().try_recv().is_err());
        assert_eq!(b.waiting.load(Ordering::SeqCst), 0);
    }
}
