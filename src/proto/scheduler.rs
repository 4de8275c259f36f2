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
//!
//! The weighing kinds wait for the link they picked only a short grace
//! ([`stall_grace_us`]); a link that took no frame in that time counts as
//! stalled and is picked last until it writes again, so a path gone silent
//! holds nothing back while its keepalive runs out.
//!
//! The scheduler sees links only as [`LinkLoad`] snapshots, read by the I/O
//! layer from each link's counters when it asks; it returns an index.

use serde::Deserialize;
use std::fmt;

/// How DATA frames are spread over the links of a pool.
///
/// Round-robin is the specification's rule; the other two exist because over
/// links of unequal speed round-robin lets the slowest link set the pace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// Links take frames in turn (`"round_robin"`, the default).
    RoundRobin,
    /// Each frame goes to the link with the fewest bytes waiting (`"least_queued"`).
    LeastQueued,
    /// Each frame goes to the link where it is expected to arrive first,
    /// from measured round-trip time and rate (`"adaptive"`).
    Adaptive,
}

impl SchedulerKind {
    /// True when a frame waits for room on the link picked for it even if
    /// another has room: round-robin's rule (links strictly in turn). The
    /// schedulers that weigh links hand it to another link instead, so that
    /// a link gone silent, whose queue fills long before its keepalive
    /// declares it dead, holds nothing back.
    pub fn waits_for_its_pick(self) -> bool {
        self == SchedulerKind::RoundRobin
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchedulerKind::RoundRobin => "round_robin",
            SchedulerKind::LeastQueued => "least_queued",
            SchedulerKind::Adaptive => "adaptive",
        })
    }
}

/// What the scheduler knows of one link when it chooses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkLoad {
    /// Bytes handed to the link and not yet written to its socket.
    pub queued_bytes: u64,
    /// Smoothed round-trip time in µs, including what waits in the link's
    /// socket and on its path (0 = not measured yet).
    pub srtt_us: u64,
    /// Bytes per second the link's socket took over the last round trip
    /// (0 = not measured yet).
    pub rate: u64,
    /// A frame waited [`stall_grace_us`] for room in the link's queue and
    /// the link has written nothing since: its path may have gone silent,
    /// so every scheduler picks it last.
    pub stalled: bool,
}

/// Shortest wait for room on a picked link before it counts as stalled, µs.
pub const STALL_GRACE_MIN_US: u64 = 100_000;
/// Longest such wait, µs.
pub const STALL_GRACE_MAX_US: u64 = 1_000_000;

/// How long a frame waits for room on the link picked for it before the
/// link counts as stalled and the frame goes to another, in µs: two round
/// trips (a full socket drains as ACKs return), within bounds. Handing the
/// frame to whichever link has room at once would instead fill a slow
/// link's socket buffers, megabytes on a fast machine, whenever a fast
/// link is momentarily full, and the far end's reorder buffer would wait
/// for them.
pub fn stall_grace_us(srtt_us: u64) -> u64 {
    srtt_us
        .saturating_mul(2)
        .clamp(STALL_GRACE_MIN_US, STALL_GRACE_MAX_US)
}

/// Rate assumed for a link not measured yet: 1 byte/µs, so that its queue
/// still counts.
const UNMEASURED_RATE: u64 = 1_000_000;

impl LinkLoad {
    /// When a frame handed to this link now is expected to arrive, in µs
    /// from now: the measured round trip plus the time to drain our queue.
    pub fn expected_delay_us(&self) -> u64 {
        if self.queued_bytes == 0 {
            return self.srtt_us;
        }
        let rate = self.rate.max(UNMEASURED_RATE);
        self.srtt_us
            .saturating_add(self.queued_bytes.saturating_mul(1_000_000) / rate)
    }
}

/// Picks links for DATA frames; one per session, shared by its streams.
#[derive(Debug)]
pub struct Scheduler {
    kind: SchedulerKind,
    next: usize,
}

impl Scheduler {
    /// A scheduler of the configured kind.
    pub fn new(kind: SchedulerKind) -> Self {
        Scheduler { kind, next: 0 }
    }

    /// The configured kind.
    pub fn kind(&self) -> SchedulerKind {
        self.kind
    }

    /// The index of the link for the next DATA frame among `count` live
    /// links, or `None` when there is none. `load(i)` is asked only by the
    /// schedulers that weigh links, so round-robin costs nothing per frame.
    pub fn pick(&mut self, count: usize, load: impl Fn(usize) -> LinkLoad) -> Option<usize> {
        if count == 0 {
            return None;
        }
        let start = self.next;
        self.next = self.next.wrapping_add(1);
        Some(match self.kind {
            SchedulerKind::RoundRobin => start % count,
            SchedulerKind::LeastQueued => lowest(count, start, |i| {
                let l = load(i);
                (l.stalled, l.queued_bytes)
            }),
            SchedulerKind::Adaptive => lowest(count, start, |i| {
                let l = load(i);
                (l.stalled, l.expected_delay_us())
            }),
        })
    }

    /// True when this scheduler needs links measured as data flows.
    pub fn measures_links(&self) -> bool {
        self.kind == SchedulerKind::Adaptive
    }

    /// The link for a control frame: always the least loaded, because
    /// control frames must not wait behind data.
    pub fn pick_control(&self, count: usize, load: impl Fn(usize) -> LinkLoad) -> Option<usize> {
        (count > 0).then(|| {
            lowest(count, self.next, |i| {
                let l = load(i);
                (l.stalled, l.queued_bytes)
            })
        })
    }
}

/// How many of a session's live links may carry frames, when they are
/// listed primaries first: the links of non-backup paths while any is up,
/// else the backup links. Backup links carry only their own keepalives
/// while a primary is up, and everything the moment none is.
pub fn carriers(primaries: usize, live: usize) -> usize {
    if primaries > 0 {
        primaries.min(live)
    } else {
        live
    }
}

/// The index with the lowest `cost`; ties go to the first from `start` on,
/// so equal links still take turns.
fn lowest<C: Ord>(count: usize, start: usize, cost: impl Fn(usize) -> C) -> usize {
    let mut best = start % count;
    let mut best_cost = cost(best);
    for step in 1..count {
        let i = (start + step) % count;
        let c = cost(i);
        if c < best_cost {
            best = i;
            best_cost = c;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(queued_bytes: u64, srtt_us: u64, rate: u64) -> LinkLoad {
        LinkLoad {
            queued_bytes,
            srtt_us,
            rate,
            stalled: false,
        }
    }

    #[test]
    fn round_robin_takes_links_in_turn_and_never_asks_for_load() {
        let mut s = Scheduler::new(SchedulerKind::RoundRobin);
        let picks: Vec<_> = (0..6)
            .map(|_| s.pick(3, |_| panic!("round-robin weighed a link")))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2].map(Some));
        assert_eq!(s.pick(0, |_| LinkLoad::default()), None);
    }

    #[test]
    fn least_queued_prefers_the_emptiest_and_rotates_ties() {
        let mut s = Scheduler::new(SchedulerKind::LeastQueued);
        let loads = [load(500, 0, 0), load(100, 0, 0), load(100, 0, 0)];
        assert_eq!(s.pick(3, |i| loads[i]), Some(1));
        assert_eq!(s.pick(3, |i| loads[i]), Some(1));
        assert_eq!(s.pick(3, |i| loads[i]), Some(2), "ties rotate from `next`");
    }

    #[test]
    fn adaptive_sends_where_the_frame_arrives_first() {
        let mut s = Scheduler::new(SchedulerKind::Adaptive);
        // A fast link with a queue against a slow link without one.
        let fast = load(1_000_000, 10_000, 100_000_000);
        let slow = load(0, 80_000, 1_000_000);
        assert_eq!(fast.expected_delay_us(), 20_000);
        assert_eq!(s.pick(2, |i| [fast, slow][i]), Some(0));
        // The fast link's queue grows past what the slow one delivers.
        let fast = load(10_000_000, 10_000, 100_000_000);
        assert_eq!(s.pick(2, |i| [fast, slow][i]), Some(1));
    }

    #[test]
    fn unmeasured_links_count_their_queue_and_never_overflow() {
        assert_eq!(load(2_000_000, 0, 0).expected_delay_us(), 2_000_000);
        assert_eq!(load(0, 7, 0).expected_delay_us(), 7);
        assert_eq!(load(u64::MAX, u64::MAX, 1).expected_delay_us(), u64::MAX);
    }

    #[test]
    fn only_round_robin_waits_for_the_link_it_picked() {
        let waits = |k: SchedulerKind| k.waits_for_its_pick();
        assert!(waits(SchedulerKind::RoundRobin));
        assert!(!waits(SchedulerKind::LeastQueued));
        assert!(!waits(SchedulerKind::Adaptive));
    }

    #[test]
    fn only_the_adaptive_scheduler_has_links_probed() {
        let probes = |k| Scheduler::new(k).measures_links();
        assert!(probes(SchedulerKind::Adaptive));
        assert!(
            !probes(SchedulerKind::RoundRobin),
            "PINGs every 10 ms for nothing"
        );
        assert!(!probes(SchedulerKind::LeastQueued));
    }

    #[test]
    fn backup_links_carry_frames_only_without_a_primary() {
        assert_eq!(carriers(2, 4), 2, "two primaries up: only they carry");
        assert_eq!(carriers(1, 3), 1);
        assert_eq!(carriers(0, 2), 2, "no primary: the backups carry");
        assert_eq!(carriers(3, 3), 3, "no backups at all");
        assert_eq!(carriers(0, 0), 0);
        assert_eq!(carriers(5, 3), 3, "never more than are live");
    }

    #[test]
    fn a_stalled_link_is_picked_last_by_every_weighing_scheduler() {
        let stalled = LinkLoad {
            stalled: true,
            ..load(0, 1, 1)
        };
        let busy = load(5_000_000, 90_000, 1_000_000);
        for kind in [SchedulerKind::LeastQueued, SchedulerKind::Adaptive] {
            let mut s = Scheduler::new(kind);
            for _ in 0..3 {
                assert_eq!(s.pick(2, |i| [stalled, busy][i]), Some(1), "{kind}");
            }
            assert_eq!(s.pick(1, |_| stalled), Some(0), "{kind}: the only link");
        }
        let s = Scheduler::new(SchedulerKind::RoundRobin);
        assert_eq!(s.pick_control(2, |i| [stalled, busy][i]), Some(1));
    }

    #[test]
    fn a_picked_link_is_waited_for_two_round_trips_within_bounds() {
        assert_eq!(stall_grace_us(0), STALL_GRACE_MIN_US);
        assert_eq!(stall_grace_us(10_000), STALL_GRACE_MIN_US);
        assert_eq!(stall_grace_us(150_000), 300_000);
        assert_eq!(stall_grace_us(400_000), 800_000);
        assert_eq!(stall_grace_us(u64::MAX), STALL_GRACE_MAX_US);
    }

    #[test]
    fn control_frames_go_to_the_least_queued_link() {
        let s = Scheduler::new(SchedulerKind::RoundRobin);
        let loads = [load(9, 0, 0), load(3, 0, 0), load(4, 0, 0)];
        assert_eq!(s.pick_control(3, |i| loads[i]), Some(1));
        assert_eq!(s.pick_control(0, |i| loads[i]), None);
    }
}
