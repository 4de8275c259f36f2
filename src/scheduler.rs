//! Which link carries the next DATA frame.
//!
//! Round-robin is the specification's rule: frames go to links in turn, and a
//! sender waits for the next link's queue to have room. Over links of unequal
//! speed the slowest link then sets the pace, so two more are offered:
//!
//! - `least_queued`: each frame goes to the link with the fewest bytes waiting
//!   to be written, which keeps every link busy in proportion to its speed.
//!   But bytes already in a slow link's socket and on its path are not seen,
//!   and the receiver's window fills with bytes waiting behind them.
//! - `adaptive`: each frame goes to the link where it is expected to arrive
//!   first: measured round trip (in-band PINGs, so it includes the socket's
//!   and the path's queues) plus our queue over the link's measured rate. A
//!   slow link then carries only what it can deliver as soon as the others.

use crate::config::SchedulerKind;
use crate::link::LinkHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Picks links for DATA frames; one per session, shared by its streams.
pub struct Scheduler {
    kind: SchedulerKind,
    next: AtomicUsize,
}

impl Scheduler {
    /// A scheduler of the configured kind.
    pub fn new(kind: SchedulerKind) -> Self {
        Scheduler {
            kind,
            next: AtomicUsize::new(0),
        }
    }

    /// The link for the next DATA frame among `links` (all alive), or `None`
    /// when there is none.
    pub fn pick(&self, links: &[Arc<LinkHandle>]) -> Option<Arc<LinkHandle>> {
        if links.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let chosen = match self.kind {
            SchedulerKind::RoundRobin => &links[start % links.len()],
            SchedulerKind::LeastQueued => least_queued(links, start),
            SchedulerKind::Adaptive => earliest_delivery(links, start),
        };
        Some(chosen.clone())
    }

    /// True when this scheduler needs links measured as data flows.
    pub fn measures_links(&self) -> bool {
        self.kind == SchedulerKind::Adaptive
    }

    /// The link for a control frame: always the least loaded, because control
    /// frames must not wait behind data (DESIGN rule 6).
    pub fn pick_control(&self, links: &[Arc<LinkHandle>]) -> Option<Arc<LinkHandle>> {
        if links.is_empty() {
            return None;
        }
        let start = self.next.load(Ordering::Relaxed);
        Some(least_queued(links, start).clone())
    }
}

/// The link with the fewest bytes waiting in its queue.
fn least_queued(links: &[Arc<LinkHandle>], start: usize) -> &Arc<LinkHandle> {
    lowest(links, start, |l| l.queued_bytes() as u64)
}

/// The link where a frame sent now should arrive first.
fn earliest_delivery(links: &[Arc<LinkHandle>], start: usize) -> &Arc<LinkHandle> {
    lowest(links, start, LinkHandle::expected_delay_us)
}

/// The link with the lowest `cost`; ties go to the first from `start` on,
/// so equal links still take turns.
fn lowest(
    links: &[Arc<LinkHandle>],
    start: usize,
    cost: impl Fn(&LinkHandle) -> u64,
) -> &Arc<LinkHandle> {
    let n = links.len();
    let mut best = &links[start % n];
    let mut best_cost = cost(best);
    for i in 1..n {
        let link = &links[(start + i) % n];
        let c = cost(link);
        if c < best_cost {
            best = link;
            best_cost = c;
        }
    }
    best
}
