//! Which link carries the next DATA frame.
//!
//! Round-robin is the specification's rule: frames go to links in turn, and a
//! sender waits for the next link's queue to have room. Over links of unequal
//! speed the slowest link then sets the pace, so `least_queued` is offered
//! beside it: each frame goes to the link with the fewest bytes waiting to be
//! written, which keeps every link busy in proportion to its speed.

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
        };
        Some(chosen.clone())
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

fn least_queued(links: &[Arc<LinkHandle>], start: usize) -> &Arc<LinkHandle> {
    let n = links.len();
    let mut best = &links[start % n];
    let mut best_load = best.queued_bytes();
    for i in 1..n {
        let link = &links[(start + i) % n];
        let load = link.queued_bytes();
        if load < best_load {
            best = link;
            best_load = load;
        }
    }
    best
}
