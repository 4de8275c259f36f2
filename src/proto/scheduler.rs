//! Which link carries the next DATA frame.
//!
//! Round-robin is the specification's rule: frames go to links in turn, and a
//! sender waits for the next link's queue to have room. Over links of unequal
//! speed the slowest link then sets the pace, and on a lossy path every link
//! is unequal most of the time (each loss halves one link's window), so two
//! more are offered:
//!
//! - `least_queued` (the default): each frame goes to the link with the
//!   fewest bytes waiting to be sent, in MTCP's queue and in the socket (what
//!   TCP has not sent yet), which keeps every link busy in proportion to its
//!   speed. On links that share one clean path it does as well as
//!   round-robin (bench scenario 1); on a lossy one it is faster (scenario
//!   L: 15.2 against 13.0 Mbit/s, medians).
//! - `adaptive`: each frame goes to the link where it is expected to arrive
//!   first: measured round trip (in-band PINGs, so it includes the socket's
//!   and the path's queues) plus our queue over the link's measured rate. A
//!   slow link then carries only what it can deliver as soon as the others.
//!
//! Every kind first weighs what the kernel's TCP says of each link
//! ([`TcpState`], sampled by the I/O layer every few milliseconds, never per
//! frame). A link recovering from a loss sends almost nothing new for at
//! least a round trip (a retransmission timeout: 200 ms or more), and one
//! that holds more unsent bytes than its congestion window sends in a round
//! trip makes a new frame wait behind them; on either, the frame holds up
//! the stream's in-order delivery at the far end while the other links'
//! bytes wait in its reorder buffer. So each kind chooses among the links
//! that are neither, if there is one, else among those not recovering, else
//! among all ([`Health`]). On a clean path every link is fine and each kind
//! behaves as described above; without `TCP_INFO` (not Linux) every link
//! counts as fine.
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
use std::time::Instant;

/// How DATA frames are spread over the links of a pool.
///
/// Round-robin is the specification's rule; the other two exist because over
/// links of unequal speed (and on a lossy path links are unequal most of the
/// time) round-robin lets the slowest link set the pace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// Links take frames in turn (`"round_robin"`).
    RoundRobin,
    /// Each frame goes to the link with the fewest bytes waiting
    /// (`"least_queued"`, the default).
    LeastQueued,
    /// Each frame goes to the link where it is expected to arrive first,
    /// from measured round-trip time and rate (`"adaptive"`).
    Adaptive,
}

impl SchedulerKind {
    /// True when a frame waits for room on the link picked for it even if
    /// another has room: round-robin's rule (links strictly in turn). The
    /// schedulers that weigh links hand it to another link after a grace
    /// ([`stall_grace_us`]), so that a link gone silent, whose queue fills
    /// long before its keepalive declares it dead, holds nothing back.
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

/// When a small frame is also sent on a second link (`duplicate_small_frames`).
///
/// On a lossy path a lone segment lost at the end of a burst (a request, an
/// answer) is repaired by TCP only after a probe timeout or a
/// retransmission timeout, hundreds of milliseconds; the re-send of held-up
/// bytes (`proto::send::stall`) cuts that to about a round trip. A copy on
/// a second link from the start cuts it to nothing, for bytes that cost
/// little to send twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateMode {
    /// Never (`"off"`).
    Off,
    /// While a link of the session has retransmitted in the last
    /// [`LOSS_MEMORY_US`] (`"on_loss"`, the default): clean paths pay
    /// nothing.
    #[default]
    OnLoss,
    /// Always (`"always"`).
    Always,
}

impl fmt::Display for DuplicateMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DuplicateMode::Off => "off",
            DuplicateMode::OnLoss => "on_loss",
            DuplicateMode::Always => "always",
        })
    }
}

/// Largest DATA frame sent twice: a request or an answer, not bulk.
pub const DUPLICATE_MAX: usize = 16 * 1024;
/// How long a link counts as lossy after a retransmission, in µs.
pub const LOSS_MEMORY_US: u64 = 10_000_000;

/// True when a new DATA frame of `len` bytes should also go to a second
/// link: it is small, nothing else of its stream is in flight (`alone`: a
/// request, an answer, a stream's first bytes), and `mode` allows it with
/// the links `lossy` (one retransmitted lately) or not.
pub fn duplicates(mode: DuplicateMode, len: usize, alone: bool, lossy: bool) -> bool {
    let wanted = match mode {
        DuplicateMode::Off => false,
        DuplicateMode::OnLoss => lossy,
        DuplicateMode::Always => true,
    };
    wanted && alone && len > 0 && len <= DUPLICATE_MAX
}

/// A link's congestion-control state, as the kernel's TCP reports it
/// (`tcpi_ca_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaState {
    /// Nothing lost: sending normally.
    #[default]
    Open,
    /// Duplicate ACKs or SACKs seen: something may be missing.
    Disorder,
    /// The window was reduced after an ECN mark.
    Cwr,
    /// Fast recovery: repairing a loss, sending little new data.
    Recovery,
    /// A retransmission timeout: everything in flight is being sent again,
    /// from a window of one segment.
    Loss,
}

impl CaState {
    /// The state from its kernel number; an unknown number reads as `Open`.
    pub fn from_raw(raw: u8) -> CaState {
        match raw {
            1 => CaState::Disorder,
            2 => CaState::Cwr,
            3 => CaState::Recovery,
            4 => CaState::Loss,
            _ => CaState::Open,
        }
    }
}

/// What the kernel's TCP says of a link (`TCP_INFO`), as the I/O layer last
/// sampled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpState {
    pub ca_state: CaState,
    /// Retransmission timeouts in a row for the oldest unacknowledged
    /// segment; 0 while ACKs come back.
    pub retransmits: u8,
    /// Bytes the congestion window lets TCP have in flight per round trip.
    pub cwnd_bytes: u64,
    /// Bytes in the socket that TCP has not sent yet, counting what was
    /// written to it since the sample.
    pub notsent_bytes: u64,
    /// Bytes sent and not yet acknowledged (segments times their size).
    pub unacked_bytes: u64,
    /// How long, in µs, TCP had heard no ACK when sampled.
    pub since_ack_us: u64,
    /// TCP's smoothed round-trip time in µs (0 = not known).
    pub rtt_us: u64,
    /// TCP retransmitted on the link in the last [`LOSS_MEMORY_US`].
    pub lossy: bool,
    /// When the sample was taken.
    pub at: Instant,
}

impl TcpState {
    /// Repairing a loss: fast recovery, or a retransmission timeout.
    pub fn recovering(&self) -> bool {
        matches!(self.ca_state, CaState::Recovery | CaState::Loss) || self.retransmits > 0
    }
}

/// How fit a link is to carry a frame now; lower is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Neither recovering nor with a window's worth waiting.
    Fine,
    /// More bytes wait to be sent than its congestion window sends in one
    /// round trip: a new frame waits behind them.
    Full,
    /// TCP is repairing a loss on it.
    Recovering,
    /// A frame waited [`stall_grace_us`] for room in its queue and it has
    /// written nothing since: its path may have gone silent.
    Stalled,
}

/// Fewest bytes a link's writer gathers into one write (more syscalls
/// than this per byte cost CPU on fast links).
pub const BATCH_MIN_BYTES: usize = 64 * 1024;
/// Most bytes a link's writer gathers into one write.
pub const BATCH_MAX_BYTES: usize = 256 * 1024;
/// How long one batch should take the link to drain, µs.
pub const BATCH_TIME_US: u64 = 10_000;

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
    /// The kernel's view of the link's TCP, if it can be read.
    pub tcp: Option<TcpState>,
    /// Bytes ever handed to the link (frames as encoded, written or
    /// queued): with `backlog` and `unacked_bytes`, tells whether the
    /// bytes handed at some point have been acknowledged by its TCP.
    pub handed: u64,
    /// A frame waited its grace for room in the link's queue and the link
    /// has written nothing since ([`Health::Stalled`]).
    pub stalled: bool,
}

/// Rate assumed for a link not measured yet: 1 byte/µs, so that its queue
/// still counts.
const UNMEASURED_RATE: u64 = 1_000_000;

impl LinkLoad {
    /// When a frame handed to this link now is expected to arrive, in µs
    /// from now: the round trip plus the time to drain our queue.
    pub fn expected_delay_us(&self) -> u64 {
        let rtt = self.round_trip_us();
        if self.queued_bytes == 0 {
            return rtt;
        }
        rtt.saturating_add(self.queued_bytes.saturating_mul(1_000_000) / self.drain_rate())
    }

    /// The round trip in µs: measured by PINGs, else TCP's own estimate
    /// (known from the handshake on). A new link on a 70 ms uplink beside
    /// one on a 10 ms uplink would otherwise look as near, and take a
    /// share of a transfer's first bytes it needs a second or more to
    /// deliver (bench scenario B's first two seconds).
    fn round_trip_us(&self) -> u64 {
        match self.tcp {
            Some(t) if self.srtt_us == 0 => t.rtt_us,
            _ => self.srtt_us,
        }
    }

    /// How many bytes the link's writer gathers into one blocking write:
    /// what the link drains in [`BATCH_TIME_US`], within bounds. A control
    /// frame (an ACK, bytes re-sent after another link died) that arrives
    /// meanwhile waits for the whole batch: 256 KiB took 0.4 s on a
    /// 10 Mbit/s uplink's link, and a failover stalled that much longer.
    pub fn batch_bytes(&self) -> usize {
        let bytes = self.drain_rate().saturating_mul(BATCH_TIME_US) / 1_000_000;
        usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .clamp(BATCH_MIN_BYTES, BATCH_MAX_BYTES)
    }

    /// Bytes per second our queue drains at: what TCP's window sends per
    /// round trip now, else the rate PINGs measured (at least
    /// [`UNMEASURED_RATE`]), else that. The window follows the link at
    /// once (slow start after idle, a loss); the PINGs' rate is what the
    /// socket took over the last round trip, which for a link that was
    /// idle is the keepalives' trickle: every link then looked alike at a
    /// transfer's start, and a slow uplink took as much as a fast one.
    fn drain_rate(&self) -> u64 {
        match self.tcp {
            Some(t) if t.rtt_us > 0 && t.cwnd_bytes > 0 => {
                (t.cwnd_bytes.saturating_mul(1_000_000) / t.rtt_us).max(1)
            }
            _ if self.rate > 0 => self.rate.max(UNMEASURED_RATE),
            _ => UNMEASURED_RATE,
        }
    }

    /// Bytes waiting to be sent: in MTCP's queue and, as far as the last
    /// sample tells, in the socket.
    pub fn backlog(&self) -> u64 {
        let unsent = self.tcp.map_or(0, |t| t.notsent_bytes);
        self.queued_bytes.saturating_add(unsent)
    }

    /// How fit the link is to carry a frame now (see the module's text).
    pub fn health(&self) -> Health {
        if self.stalled {
            return Health::Stalled;
        }
        match self.tcp {
            None => Health::Fine,
            Some(t) if t.recovering() => Health::Recovering,
            Some(t) if self.backlog() >= t.cwnd_bytes.max(1) => Health::Full,
            Some(_) => Health::Fine,
        }
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
    /// links, or `None` when there is none. Each kind chooses among the
    /// healthiest links present (see [`Health`]): round-robin the next one
    /// in turn, `least_queued` the one with the least backlog, `adaptive`
    /// the one where the frame arrives first.
    pub fn pick(&mut self, count: usize, load: impl Fn(usize) -> LinkLoad) -> Option<usize> {
        if count == 0 {
            return None;
        }
        let start = self.next;
        let i = match self.kind {
            SchedulerKind::RoundRobin => {
                let i = choose(count, start, load, |_| 0);
                // In turn from the one chosen: a link passed over because it
                // was recovering gets its next turn a round later.
                self.next = i.wrapping_add(1);
                return Some(i);
            }
            SchedulerKind::LeastQueued => choose(count, start, load, LinkLoad::backlog),
            SchedulerKind::Adaptive => choose(count, start, load, LinkLoad::expected_delay_us),
        };
        self.next = start.wrapping_add(1);
        Some(i)
    }

    /// True when this scheduler needs links measured as data flows.
    pub fn measures_links(&self) -> bool {
        self.kind == SchedulerKind::Adaptive
    }

    /// The link for a control frame: the healthiest with the least backlog,
    /// because control frames (ACKs above all: a sender may be waiting for
    /// one) must not wait behind data or a lost segment.
    pub fn pick_control(&self, count: usize, load: impl Fn(usize) -> LinkLoad) -> Option<usize> {
        (count > 0).then(|| choose(count, self.next, load, LinkLoad::backlog))
    }

    /// A fine link other than `avoid`, with the least backlog, for bytes
    /// sent again because they hold a stream up; `None` when no other link
    /// is fine (sending them behind another backlog or loss would not help).
    pub fn pick_spare(
        &self,
        count: usize,
        load: impl Fn(usize) -> LinkLoad,
        avoid: Option<usize>,
    ) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for step in 0..count {
            let i = (self.next + step) % count;
            if Some(i) == avoid {
                continue;
            }
            let l = load(i);
            if l.health() == Health::Fine && best.is_none_or(|(_, b)| l.backlog() < b) {
                best = Some((i, l.backlog()));
            }
        }
        best.map(|(i, _)| i)
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

/// The index to use among `count` links: of those with the best health
/// present, the one with the lowest `cost`; ties go to the first from
/// `start` on, so equal links still take turns. One pass, no allocation.
fn choose(
    count: usize,
    start: usize,
    load: impl Fn(usize) -> LinkLoad,
    cost: impl Fn(&LinkLoad) -> u64,
) -> usize {
    let mut best: [Option<(usize, u64)>; 4] = [None; 4];
    for step in 0..count {
        let i = (start + step) % count;
        let l = load(i);
        let slot = &mut best[l.health() as usize];
        let c = cost(&l);
        if slot.is_none_or(|(_, b)| c < b) {
            *slot = Some((i, c));
        }
    }
    best.into_iter()
        .flatten()
        .next()
        .map_or(start % count, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(queued_bytes: u64, srtt_us: u64, rate: u64) -> LinkLoad {
        LinkLoad {
            queued_bytes,
            srtt_us,
            rate,
            tcp: None,
            handed: 0,
            stalled: false,
        }
    }

    /// A link whose TCP is in `ca_state` with a window of `cwnd_bytes` and
    /// `notsent` bytes not sent yet.
    fn tcp(ca_state: CaState, cwnd_bytes: u64, notsent: u64) -> LinkLoad {
        LinkLoad {
            tcp: Some(TcpState {
                ca_state,
                retransmits: 0,
                cwnd_bytes,
                notsent_bytes: notsent,
                unacked_bytes: 0,
                since_ack_us: 0,
                rtt_us: 40_000,
                lossy: false,
                at: Instant::now(),
            }),
            ..LinkLoad::default()
        }
    }

    const OPEN: CaState = CaState::Open;
    const KIB: u64 = 1024;

    #[test]
    fn round_robin_takes_links_in_turn_while_all_are_fine() {
        let mut s = Scheduler::new(SchedulerKind::RoundRobin);
        let picks: Vec<_> = (0..6).map(|_| s.pick(3, |_| load(0, 0, 0))).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2].map(Some), "no TCP_INFO");
        let fine = tcp(OPEN, 64 * KIB, 10 * KIB);
        let picks: Vec<_> = (0..4).map(|_| s.pick(3, |_| fine)).collect();
        assert_eq!(picks, [0, 1, 2, 0].map(Some), "every link fine");
        let full = tcp(OPEN, 16 * KIB, 64 * KIB);
        let picks: Vec<_> = (0..4).map(|_| s.pick(3, |_| full)).collect();
        assert_eq!(picks, [1, 2, 0, 1].map(Some), "every link full alike");
        assert_eq!(s.pick(0, |_| LinkLoad::default()), None);
    }

    #[test]
    fn round_robin_passes_over_a_recovering_or_full_link_while_another_is_fine() {
        let mut s = Scheduler::new(SchedulerKind::RoundRobin);
        let fine = tcp(OPEN, 64 * KIB, 0);
        let mut loads = [fine, tcp(CaState::Recovery, 64 * KIB, 0), fine];
        let picks: Vec<_> = (0..4).map(|_| s.pick(3, |i| loads[i])).collect();
        assert_eq!(picks, [0, 2, 0, 2].map(Some), "link 1 is in fast recovery");
        loads[1] = tcp(CaState::Loss, 64 * KIB, 0);
        assert_eq!(s.pick(3, |i| loads[i]), Some(0), "a timeout counts too");
        loads[1] = LinkLoad {
            tcp: loads[1].tcp.map(|t| TcpState {
                ca_state: OPEN,
                retransmits: 2,
                ..t
            }),
            ..loads[1]
        };
        assert_eq!(s.pick(3, |i| loads[i]), Some(2), "and timeouts in a row");
        // A window's worth unsent: a frame would wait a round trip.
        let loads = [fine, tcp(OPEN, 20 * KIB, 20 * KIB), fine];
        let picks: Vec<_> = (0..3).map(|_| s.pick(3, |i| loads[i])).collect();
        assert_eq!(picks, [0, 2, 0].map(Some));
        let loads = [fine, load(20 * KIB, 0, 0), fine];
        let loads = loads.map(|l| LinkLoad {
            tcp: Some(TcpState {
                cwnd_bytes: 20 * KIB,
                ..fine.tcp.unwrap()
            }),
            ..l
        });
        assert_eq!(
            (0..3).map(|_| s.pick(3, |i| loads[i])).collect::<Vec<_>>(),
            [2, 0, 2].map(Some),
            "MTCP's own queue counts towards the backlog"
        );
    }

    #[test]
    fn with_no_fine_link_the_full_ones_go_before_the_recovering_ones() {
        let mut s = Scheduler::new(SchedulerKind::RoundRobin);
        let full = tcp(OPEN, 16 * KIB, 64 * KIB);
        let loads = [tcp(CaState::Recovery, 64 * KIB, 0), full, full];
        let picks: Vec<_> = (0..4).map(|_| s.pick(3, |i| loads[i])).collect();
        assert_eq!(picks, [1, 2, 1, 2].map(Some));
        let all = [tcp(CaState::Loss, 64 * KIB, 0); 3];
        let picks: Vec<_> = (0..3).map(|_| s.pick(3, |i| all[i])).collect();
        assert_eq!(picks, [0, 1, 2].map(Some), "all recovering: in turn");
    }

    #[test]
    fn least_queued_weighs_unsent_bytes_and_prefers_fine_links() {
        let mut s = Scheduler::new(SchedulerKind::LeastQueued);
        let loads = [
            tcp(OPEN, MIB, 300 * KIB),
            tcp(OPEN, MIB, 100 * KIB),
            tcp(OPEN, MIB, 200 * KIB),
        ];
        assert_eq!(s.pick(3, |i| loads[i]), Some(1), "least unsent");
        let loads = [
            tcp(OPEN, MIB, 300 * KIB),
            tcp(CaState::Recovery, MIB, 0),
            tcp(OPEN, MIB, 200 * KIB),
        ];
        assert_eq!(s.pick(3, |i| loads[i]), Some(2), "not the recovering one");
    }

    const MIB: u64 = 1024 * KIB;

    #[test]
    fn adaptive_prefers_a_fine_link_even_if_a_recovering_one_looks_faster() {
        let mut s = Scheduler::new(SchedulerKind::Adaptive);
        let mut fast = tcp(CaState::Recovery, MIB, 0);
        fast.srtt_us = 10_000;
        let mut slow = tcp(OPEN, MIB, 0);
        slow.srtt_us = 80_000;
        assert_eq!(s.pick(2, |i| [fast, slow][i]), Some(1));
        fast.tcp = fast.tcp.map(|t| TcpState {
            ca_state: OPEN,
            ..t
        });
        assert_eq!(s.pick(2, |i| [fast, slow][i]), Some(0), "recovered");
    }

    #[test]
    fn control_frames_avoid_a_recovering_link() {
        let s = Scheduler::new(SchedulerKind::RoundRobin);
        let loads = [tcp(CaState::Recovery, MIB, 0), tcp(OPEN, MIB, 5 * KIB)];
        assert_eq!(s.pick_control(2, |i| loads[i]), Some(1));
    }

    #[test]
    fn a_spare_link_is_fine_not_the_avoided_one_and_least_backlogged() {
        let s = Scheduler::new(SchedulerKind::RoundRobin);
        let loads = [
            tcp(OPEN, MIB, 0),
            tcp(OPEN, MIB, 50 * KIB),
            tcp(OPEN, MIB, 10 * KIB),
            tcp(CaState::Recovery, MIB, 0),
            tcp(OPEN, 8 * KIB, 10 * KIB),
        ];
        assert_eq!(s.pick_spare(5, |i| loads[i], None), Some(0));
        assert_eq!(s.pick_spare(5, |i| loads[i], Some(0)), Some(2));
        assert_eq!(s.pick_spare(2, |i| loads[i], Some(0)), Some(1));
        assert_eq!(s.pick_spare(1, |i| loads[i], Some(0)), None, "only itself");
        assert_eq!(
            s.pick_spare(2, |i| loads[i + 3], None),
            None,
            "recovering or full: no spare"
        );
    }

    #[test]
    fn only_small_frames_alone_on_their_stream_are_duplicated() {
        use DuplicateMode::*;
        assert!(duplicates(Always, 64, true, false));
        assert!(duplicates(Always, DUPLICATE_MAX, true, false));
        assert!(!duplicates(Always, DUPLICATE_MAX + 1, true, false), "bulk");
        assert!(!duplicates(Always, 64, false, false), "others in flight");
        assert!(!duplicates(Always, 0, true, false));
        assert!(duplicates(OnLoss, 64, true, true));
        assert!(!duplicates(OnLoss, 64, true, false), "a clean path");
        assert!(!duplicates(Off, 64, true, true));
        assert_eq!(DuplicateMode::default(), OnLoss);
        assert_eq!(OnLoss.to_string(), "on_loss");
    }

    #[test]
    fn kernel_states_read_from_their_numbers() {
        let states = [0u8, 1, 2, 3, 4, 5, 255].map(CaState::from_raw);
        assert_eq!(
            states,
            [
                CaState::Open,
                CaState::Disorder,
                CaState::Cwr,
                CaState::Recovery,
                CaState::Loss,
                CaState::Open,
                CaState::Open
            ]
        );
        // Disorder and CWR are not recovery: TCP still sends new data.
        assert_eq!(tcp(CaState::Disorder, MIB, 0).health(), Health::Fine);
        assert_eq!(tcp(CaState::Cwr, MIB, 0).health(), Health::Fine);
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
    fn a_link_not_measured_yet_is_weighed_by_what_its_tcp_knows() {
        let new_link = |rtt_us, cwnd_bytes, queued| LinkLoad {
            queued_bytes: queued,
            tcp: Some(TcpState {
                rtt_us,
                cwnd_bytes,
                ..tcp(OPEN, 0, 0).tcp.unwrap()
            }),
            ..LinkLoad::default()
        };
        let near = new_link(10_000, 100_000, 0);
        let far = new_link(70_000, 100_000, 0);
        assert_eq!(near.expected_delay_us(), 10_000);
        assert_eq!(far.expected_delay_us(), 70_000);
        // 50 kB queued at 100 kB per 10 ms: 5 ms more.
        assert_eq!(
            new_link(10_000, 100_000, 50_000).expected_delay_us(),
            15_000
        );
        let mut s = Scheduler::new(SchedulerKind::Adaptive);
        for _ in 0..3 {
            assert_eq!(s.pick(2, |i| [far, near][i]), Some(1));
        }
        // PINGs measured its round trip: that wins (it includes our
        // socket's queue); the rate is still the window's.
        let measured = LinkLoad {
            srtt_us: 30_000,
            rate: 2_000_000,
            queued_bytes: 2_000_000,
            ..far
        };
        assert_eq!(measured.expected_delay_us(), 30_000 + 1_400_000);
        // Without TCP_INFO, the PINGs' rate.
        let no_tcp = LinkLoad {
            tcp: None,
            ..measured
        };
        assert_eq!(no_tcp.expected_delay_us(), 1_030_000);
        // A window or round trip of 0 never divides.
        assert_eq!(
            new_link(0, 100_000, 1_000_000).expected_delay_us(),
            1_000_000
        );
        assert_eq!(
            new_link(10_000, 0, 1_000_000).expected_delay_us(),
            1_010_000
        );
    }

    #[test]
    fn a_batch_is_what_the_link_drains_in_ten_milliseconds_within_bounds() {
        let with_window = |rtt_us, cwnd_bytes| LinkLoad {
            tcp: Some(TcpState {
                rtt_us,
                cwnd_bytes,
                ..tcp(OPEN, 0, 0).tcp.unwrap()
            }),
            ..LinkLoad::default()
        };
        // A 10 Mbit/s uplink's link: one 64 KiB frame at a time.
        assert_eq!(with_window(70_000, 87_500).batch_bytes(), BATCH_MIN_BYTES);
        // 100 MB/s: 1 MB in 10 ms, capped.
        assert_eq!(with_window(1_000, 100_000).batch_bytes(), BATCH_MAX_BYTES);
        // 15 MB/s: 150 kB.
        assert_eq!(with_window(10_000, 150_000).batch_bytes(), 150_000);
        assert_eq!(LinkLoad::default().batch_bytes(), BATCH_MIN_BYTES);
        assert_eq!(with_window(1, u64::MAX).batch_bytes(), BATCH_MAX_BYTES);
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
    fn a_stalled_link_is_picked_last_by_every_scheduler() {
        let stalled = LinkLoad {
            stalled: true,
            ..load(0, 1, 1)
        };
        let recovering = tcp(CaState::Loss, 64 * KIB, 5 * 1024 * KIB);
        assert_eq!(stalled.health(), Health::Stalled);
        for kind in [
            SchedulerKind::RoundRobin,
            SchedulerKind::LeastQueued,
            SchedulerKind::Adaptive,
        ] {
            let mut s = Scheduler::new(kind);
            for _ in 0..3 {
                assert_eq!(s.pick(2, |i| [stalled, recovering][i]), Some(1), "{kind}");
            }
            assert_eq!(s.pick(1, |_| stalled), Some(0), "{kind}: the only link");
        }
        let s = Scheduler::new(SchedulerKind::RoundRobin);
        assert_eq!(s.pick_control(2, |i| [stalled, recovering][i]), Some(1));
        assert_eq!(
            s.pick_spare(2, |_| stalled, None),
            None,
            "never for a re-send"
        );
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
