//! Sending again what holds a stream up: kernel MPTCP's opportunistic
//! retransmission (Raiciu et al., "How Hard Can It Be? Designing and
//! Implementing a Deployable Multipath TCP", NSDI 2012).
//!
//! The peer delivers a stream's bytes in order, so one chunk held on a link
//! whose TCP is repairing a loss (a round trip at best; a retransmission
//! timeout of 200 ms or more for a lone segment lost at the end of a burst,
//! or a lost retransmission) holds up everything behind it, however fast
//! the other links are. When the peer's ACK has stood still for about a
//! round trip of that link ([`stall_limit`]) and the chunk at the ACK point
//! is still unacknowledged by that link's TCP, which shows a loss, it is
//! sent again on another link that is fine; the peer drops whichever copy
//! arrives second, by its offset.
//!
//! Whether a link's TCP has acknowledged a chunk is told by position: each
//! chunk remembers where it ends in the link's byte stream ([`Sent::end`],
//! counted in bytes handed to the link), and the bytes handed after it are
//! compared with what the link still holds (unsent, and sent but
//! unacknowledged). So a stream whose peer application is slow (its ACK
//! stands still while the links deliver) sends nothing again, even while
//! its links are busy with other streams.
//!
//! The decision ([`SendState::check_stall`]) is a pure function of the
//! stream's state, the time and the links' snapshots; the I/O layer asks it
//! for each stream with bytes in flight, sends what it says on a spare link
//! (`Scheduler::pick_spare`) and reports with [`SendState::resent`]. The
//! extra bytes are bounded: one chunk (at most one frame) per stall, at
//! most one re-send per stall limit per stream, [`MAX_RESENDS`] per chunk,
//! and [`RESEND_SHARE`] of the stream's bytes plus one chunk in all; and
//! only when the stall costs something (see [`SendState::check_stall`]).

use super::{Payload, SendState, Sent};
use crate::proto::scheduler::LinkLoad;
use std::time::{Duration, Instant};

/// Least margin over a link's round trip before its bytes count as held:
/// ACKs are paced by up to a millisecond, and scheduling adds jitter.
const MARGIN_MIN_US: u64 = 10_000;
/// How soon after a stream starts being watched (bytes just sent, or its
/// ACK just moved) its bytes could first count as held up: the least
/// margin of [`stall_limit`]. Looking sooner finds nothing; a look per
/// small request once cost request/response traffic 5 µs of CPU each.
pub const FIRST_LOOK: Duration = Duration::from_micros(MARGIN_MIN_US);
/// Whether bytes a stream sends now (or bytes its ACK just reached) are
/// worth watching for a stall: only while re-sending is on and some link's
/// TCP retransmitted lately (`TcpState::lossy`). On a path that lost
/// nothing, the bytes at an ACK point are never held by a loss, and a lone
/// segment lost there first is repaired by TCP's tail loss probe within
/// two round trips, before a stall could count as one (a silent link
/// waits for the peer's delayed ACK too). Watching every small request of a
/// clean path cost request/response traffic 5 % of the daemons' CPU.
pub fn worth_watching(reinject: bool, links_lossy: bool) -> bool {
    reinject && links_lossy
}
/// Round trip assumed when TCP reports none.
const UNKNOWN_RTT_US: u64 = 200_000;
/// Longest a peer's TCP may hold the ACK of a lone segment (Linux's
/// delayed ACK is 40 ms to 200 ms): a link that is silent no longer than
/// this beyond a round trip has not lost anything for sure.
const DELAYED_ACK_US: u64 = 200_000;
/// How soon to look again when the carrier's last sample is older than
/// the chunk (the I/O layer samples links every 10 ms).
const RESAMPLE: Duration = Duration::from_millis(10);
/// Most times one chunk is sent again; beyond that the carrier's TCP
/// repairs it on its own.
pub const MAX_RESENDS: u8 = 2;
/// A stream sends again at most one byte in this many of those it sent
/// (plus one chunk, so that a small request can be re-sent once).
pub const RESEND_SHARE: u64 = 16;

/// How long the ACK may stand still, with the chunk at it on a link whose
/// TCP measures `rtt_us`, before the chunk counts as held up: the round
/// trip plus a quarter of it, at least 10 ms more.
pub fn stall_limit(rtt_us: u64) -> Duration {
    let rtt = if rtt_us == 0 { UNKNOWN_RTT_US } else { rtt_us };
    Duration::from_micros(rtt.saturating_add((rtt / 4).max(MARGIN_MIN_US)))
}

/// `t + d`, or `t` where the clock cannot go that far (a round trip the
/// kernel reports is at most 2^32 µs, but an `Instant` sum must not panic).
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).unwrap_or(t)
}

/// What to do about a stream's bytes in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StallCheck {
    /// Nothing to watch: no bytes in flight; or the bytes at the ACK point
    /// reached the peer (the stall is its application's), wait for a link,
    /// rode a link that is gone (its death re-sends them), or were sent
    /// again as often as they may be. Watch again once the ACK moves or new
    /// bytes go out.
    Idle,
    /// Look again at this time.
    Wait(Instant),
    /// Send these bytes again, on a fine link other than `avoid`.
    Resend {
        offset: u64,
        bytes: Payload,
        avoid: u64,
    },
}

/// True when `load`, the link `sent` went to, has acknowledged it: the
/// bytes handed to the link after it are at least what the link still
/// holds, unsent or unacknowledged, as a sample taken after it tells.
fn acknowledged(sent: Sent, load: &LinkLoad) -> bool {
    load.tcp.is_some_and(|t| {
        t.at > sent.at
            && load.handed.saturating_sub(sent.end)
                >= load.backlog().saturating_add(t.unacked_bytes)
    })
}

impl SendState {
    /// Whether the bytes at the ACK point should be sent again at `now`.
    /// `window` is the peer's; `carrier(link)` is the snapshot of the live
    /// link with that id, if it is live.
    ///
    /// They are sent again when all of these hold:
    /// - the ACK has stood still, and the chunk has been out, for longer
    ///   than its carrier's [`stall_limit`] (counted from the last re-send,
    ///   if later);
    /// - the carrier's TCP has not acknowledged the chunk, and shows a
    ///   loss, in a sample taken after the chunk was sent: it is in fast
    ///   recovery or after a retransmission timeout, or has heard no ACK
    ///   for 200 ms more while holding unacknowledged bytes (lost last
    ///   segments, which TCP repairs only after a probe or a timeout; the
    ///   200 ms are what a peer may hold the ACK of a lone segment). A
    ///   chunk its carrier (or the link of its last copy) acknowledged
    ///   reached the peer: then its application is slow, and sending again
    ///   would not help;
    /// - the stall costs something: the stream has ended, or nothing new
    ///   went out for as long while nothing waits to be handed to a link
    ///   (an application waiting for an answer, or a sender waiting for
    ///   window or budget, which the ACK would give), or half the window is
    ///   in flight (the sender will soon wait for it). A stream still
    ///   sending with room in its window loses nothing yet by waiting, nor
    ///   does one whose sender waits for room on a link (the ACK would not
    ///   give it that);
    /// - the bounds allow it (see the module's text).
    pub fn check_stall(
        &self,
        now: Instant,
        window: u64,
        carrier: impl Fn(u64) -> Option<LinkLoad>,
    ) -> StallCheck {
        let Some(front) = self.unacked.front() else {
            return StallCheck::Idle;
        };
        let Some(sent) = front.sent else {
            return StallCheck::Idle;
        };
        let Some(load) = carrier(sent.link) else {
            return StallCheck::Idle;
        };
        let Some(tcp) = load.tcp else {
            return StallCheck::Idle;
        };
        let limit = stall_limit(tcp.rtt_us);
        let since = [self.progress_at, self.resent_at]
            .into_iter()
            .flatten()
            .fold(sent.at, Instant::max);
        let due = later(since, limit);
        if now < due {
            return StallCheck::Wait(due);
        }
        if tcp.at <= sent.at {
            return StallCheck::Wait(later(now, RESAMPLE));
        }
        let copy_arrived = front
            .copy
            .is_some_and(|c| carrier(c.link).is_some_and(|l| acknowledged(c, &l)));
        if acknowledged(sent, &load) || copy_arrived || front.resends >= MAX_RESENDS {
            return StallCheck::Idle;
        }
        // A link that hears no ACK while holding bytes lost its last
        // segments, unless the peer delays its ACK: it may hold one for a
        // lone segment (a request on an otherwise idle link) for up to
        // 200 ms, which its TCP's own probe allows for too.
        let silent_us = (limit.as_micros() as u64).saturating_add(DELAYED_ACK_US);
        let loss = tcp.recovering() || (tcp.unacked_bytes > 0 && tcp.since_ack_us >= silent_us);
        // The newest bytes are not on a link yet: the sender is handing
        // them over (waiting for room in a link's queue).
        let handing = self.unacked.back().is_some_and(|c| c.sent.is_none());
        let quiet = !handing
            && self
                .new_sent_at
                .is_none_or(|t| now.saturating_duration_since(t) >= limit);
        let costly = self.fin.is_some() || quiet || self.in_flight() >= window / 2;
        let len = front.bytes.len() as u64;
        let allowed = (self.next / RESEND_SHARE).saturating_add(len);
        if !loss || !costly || self.resent_bytes.saturating_add(len) > allowed {
            return StallCheck::Wait(later(now, limit));
        }
        StallCheck::Resend {
            offset: front.offset,
            bytes: front.bytes.clone(),
            avoid: sent.link,
        }
    }

    /// The bytes at `offset` were sent again as `copy` says, as
    /// [`check_stall`](Self::check_stall) said.
    pub fn resent(&mut self, offset: u64, copy: Sent) {
        let Some(c) = self.unacked.iter_mut().find(|c| c.offset == offset) else {
            return;
        };
        c.resends = c.resends.saturating_add(1);
        c.copy = Some(copy);
        self.resent_bytes = self.resent_bytes.saturating_add(c.bytes.len() as u64);
        self.resent_at = Some(copy.at);
    }

    /// Bytes sent again because they held the stream up, in all.
    pub fn resent_bytes(&self) -> u64 {
        self.resent_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_are_watched_only_with_reinjection_on_and_a_lossy_link() {
        assert!(worth_watching(true, true));
        assert!(
            !worth_watching(true, false),
            "a clean path has no stall to find"
        );
        assert!(!worth_watching(false, true), "reinject = false");
    }
    use crate::proto::scheduler::{CaState, TcpState};
    use std::sync::Arc;

    const MS: Duration = Duration::from_millis(1);
    const RTT_US: u64 = 40_000;
    /// `stall_limit(RTT_US)`: 40 ms + 10 ms.
    const LIMIT: Duration = Duration::from_millis(50);
    const WINDOW: u64 = 8 << 20;
    const CARRIER: u64 = 7;
    const SPARE: u64 = 8;
    const KIB: u64 = 1024;

    /// A link sampled at `at` in `ca_state`, to which `handed` bytes were
    /// handed, of which it holds `unsent` not sent yet and `unacked` sent
    /// and not acknowledged, and which heard no ACK for `since_ack`.
    #[derive(Clone, Copy)]
    struct Link {
        at: Instant,
        ca_state: CaState,
        handed: u64,
        unsent: u64,
        unacked: u64,
        since_ack: Duration,
    }

    impl Link {
        /// An idle link that holds nothing.
        fn idle(at: Instant, handed: u64) -> Link {
            Link {
                at,
                ca_state: CaState::Open,
                handed,
                unsent: 0,
                unacked: 0,
                since_ack: MS,
            }
        }

        fn load(&self) -> LinkLoad {
            LinkLoad {
                tcp: Some(TcpState {
                    ca_state: self.ca_state,
                    retransmits: 0,
                    cwnd_bytes: 64 * KIB,
                    notsent_bytes: self.unsent,
                    unacked_bytes: self.unacked,
                    since_ack_us: self.since_ack.as_micros() as u64,
                    rtt_us: RTT_US,
                    lossy: true,
                    at: self.at,
                }),
                handed: self.handed,
                ..LinkLoad::default()
            }
        }
    }

    /// Holding the lone 1000-byte request it was handed (its only bytes).
    fn lost(at: Instant, ca_state: CaState, since_ack: Duration) -> Link {
        Link {
            at,
            ca_state,
            handed: 1000,
            unsent: 0,
            unacked: 1000,
            since_ack,
        }
    }

    fn sent(link: u64, at: Instant, end: u64) -> Sent {
        Sent { link, at, end }
    }

    /// A stream that sent one 1000-byte chunk on the carrier at `t0` (the
    /// first bytes the carrier was handed) and nothing since: an
    /// application waiting for its answer.
    fn request(t0: Instant) -> SendState {
        let mut s = SendState::new();
        let off = s.push(Arc::new(vec![1; 1000]));
        s.sent_on(off, sent(CARRIER, t0, 1000));
        s
    }

    /// The same after 64 KiB acknowledged long before, so that the share
    /// allows more than one re-send of the request (at offset 64 KiB).
    fn later_request(t0: Instant) -> SendState {
        let mut s = SendState::new();
        let off = s.push(Arc::new(vec![0; 64 * 1024]));
        s.sent_on(off, sent(9, t0 - 10 * LIMIT, 64 * KIB));
        s.on_ack(64 * KIB, t0 - 9 * LIMIT, |_| {}).unwrap();
        let off = s.push(Arc::new(vec![1; 1000]));
        s.sent_on(off, sent(CARRIER, t0, 1000));
        s
    }

    fn only(l: Link) -> impl Fn(u64) -> Option<LinkLoad> {
        move |id| (id == CARRIER).then(|| l.load())
    }

    fn resend_of(c: &StallCheck) -> Option<(u64, usize, u64)> {
        match c {
            StallCheck::Resend {
                offset,
                bytes,
                avoid,
            } => Some((*offset, bytes.len(), *avoid)),
            _ => None,
        }
    }

    #[test]
    fn the_limit_is_the_round_trip_and_a_margin() {
        assert_eq!(stall_limit(40_000), LIMIT);
        assert_eq!(stall_limit(200_000), 250 * MS, "a quarter of it");
        assert_eq!(stall_limit(1_000), 11 * MS, "at least 10 ms more");
        assert_eq!(stall_limit(0), 250 * MS, "unknown: 200 ms assumed");
        assert_eq!(stall_limit(u64::MAX), Duration::from_micros(u64::MAX));
    }

    #[test]
    fn a_request_lost_on_its_link_is_sent_again_after_the_limit() {
        let t0 = Instant::now();
        let s = request(t0);
        let at = t0 + 45 * MS;
        assert_eq!(
            s.check_stall(t0 + 10 * MS, WINDOW, only(lost(at, CaState::Recovery, MS))),
            StallCheck::Wait(t0 + LIMIT)
        );
        let c = s.check_stall(t0 + LIMIT, WINDOW, only(lost(at, CaState::Recovery, MS)));
        assert_eq!(resend_of(&c), Some((0, 1000, CARRIER)));
        let c = s.check_stall(t0 + LIMIT, WINDOW, only(lost(at, CaState::Loss, MS)));
        assert_eq!(resend_of(&c), Some((0, 1000, CARRIER)), "a timeout");
        // A lone segment lost on an otherwise idle link: TCP stays open and
        // hears no ACK (it would wait for a probe or its timeout)...
        let c = s.check_stall(t0 + LIMIT, WINDOW, only(lost(at, CaState::Open, 300 * MS)));
        assert_eq!(resend_of(&c), Some((0, 1000, CARRIER)));
        // ...for longer than the peer may delay the ACK of a lone segment.
        let delayed = lost(at, CaState::Open, LIMIT + 199 * MS);
        assert_eq!(
            s.check_stall(t0 + LIMIT, WINDOW, only(delayed)),
            StallCheck::Wait(t0 + 2 * LIMIT)
        );
        // Open and hearing ACKs: no sign of a loss.
        assert_eq!(
            s.check_stall(t0 + LIMIT, WINDOW, only(lost(at, CaState::Open, MS))),
            StallCheck::Wait(t0 + 2 * LIMIT)
        );
    }

    #[test]
    fn bytes_the_carrier_acknowledged_are_not_sent_again() {
        let t0 = Instant::now();
        let s = request(t0);
        let at = t0 + 45 * MS;
        // An idle link that holds nothing acknowledged them: the peer's
        // application is slow (or the peer ACKs only once more follows).
        assert_eq!(
            s.check_stall(t0 + LIMIT, WINDOW, only(Link::idle(at, 1000))),
            StallCheck::Idle
        );
        // A busy link, even one repairing a loss now, that was handed
        // 500 kB after the chunk and holds less than that.
        let busy = Link {
            at,
            ca_state: CaState::Recovery,
            handed: 1000 + 500_000,
            unsent: 20_000,
            unacked: 30_000,
            since_ack: MS,
        };
        assert_eq!(
            s.check_stall(t0 + LIMIT, WINDOW, only(busy)),
            StallCheck::Idle
        );
        // Handed only 40 kB after it and holding 50 kB: the chunk is among
        // them, and the link is repairing a loss.
        let holding = Link {
            handed: 1000 + 40_000,
            ..busy
        };
        let c = s.check_stall(t0 + LIMIT, WINDOW, only(holding));
        assert_eq!(resend_of(&c), Some((0, 1000, CARRIER)));
    }

    #[test]
    fn a_copy_its_link_acknowledged_is_not_sent_again() {
        let t0 = Instant::now();
        let mut s = later_request(t0);
        let t1 = t0 + LIMIT;
        s.resent(64 * KIB, sent(SPARE, t1, 5000));
        let at = t1 + LIMIT;
        let links = |spare: Link| {
            move |id| match id {
                CARRIER => Some(lost(t1 + 30 * MS, CaState::Recovery, MS).load()),
                SPARE => Some(spare.load()),
                _ => None,
            }
        };
        // The peer ACKs 1000 bytes only once more follows, so no ACK says
        // the copy arrived; the spare link's TCP does.
        assert_eq!(
            s.check_stall(at, WINDOW, links(Link::idle(t1 + 30 * MS, 5000))),
            StallCheck::Idle
        );
        // A sample of the spare link from before the copy says nothing.
        let c = s.check_stall(at, WINDOW, links(Link::idle(t1 - MS, 5000)));
        assert_eq!(resend_of(&c), Some((64 * KIB, 1000, CARRIER)));
    }

    #[test]
    fn nothing_is_judged_without_a_sample_taken_after_the_send() {
        let t0 = Instant::now();
        let s = request(t0);
        let old = lost(t0 - MS, CaState::Loss, 300 * MS);
        assert_eq!(
            s.check_stall(t0 + LIMIT, WINDOW, only(old)),
            StallCheck::Wait(t0 + LIMIT + RESAMPLE)
        );
    }

    #[test]
    fn idle_without_bytes_a_carrier_or_tcp_state() {
        let t0 = Instant::now();
        let l = || lost(t0 + MS, CaState::Loss, 300 * MS);
        assert_eq!(
            SendState::new().check_stall(t0, WINDOW, only(l())),
            StallCheck::Idle,
            "nothing in flight"
        );
        let mut s = SendState::new();
        s.push(Arc::new(vec![1; 10]));
        assert_eq!(
            s.check_stall(t0 + LIMIT, WINDOW, only(l())),
            StallCheck::Idle,
            "not sent yet: waiting for a link"
        );
        let s = request(t0);
        assert_eq!(
            s.check_stall(t0 + LIMIT, WINDOW, |_| None),
            StallCheck::Idle,
            "the carrier is gone: its death re-sends"
        );
        assert_eq!(
            s.check_stall(t0 + LIMIT, WINDOW, |_| Some(LinkLoad::default())),
            StallCheck::Idle,
            "no TCP_INFO: nothing to judge by"
        );
    }

    #[test]
    fn a_sender_still_sending_with_room_in_its_window_waits() {
        let t0 = Instant::now();
        let mut s = request(t0);
        let l = || lost(t0 + 45 * MS, CaState::Recovery, MS);
        // New bytes went out just now, on another link.
        let off = s.push(Arc::new(vec![2; 1000]));
        s.sent_on(off, sent(SPARE, t0 + 49 * MS, 1000));
        assert_eq!(
            s.check_stall(t0 + LIMIT, WINDOW, only(l())),
            StallCheck::Wait(t0 + 2 * LIMIT)
        );
        // Unless half the window is in flight...
        let c = s.check_stall(t0 + LIMIT, 4000, only(l()));
        assert!(resend_of(&c).is_some(), "{c:?}");
        // ...or the stream has ended.
        s.close();
        let c = s.check_stall(t0 + LIMIT, WINDOW, only(l()));
        assert!(resend_of(&c).is_some(), "{c:?}");
    }

    #[test]
    fn a_sender_waiting_for_room_on_a_link_is_not_helped_by_a_resend() {
        let t0 = Instant::now();
        let mut s = request(t0);
        let l = || lost(t0 + 45 * MS, CaState::Recovery, MS);
        // Nothing new went out for a while, but only because the newest
        // bytes wait for room on a link: the ACK would not help.
        s.push(Arc::new(vec![2; 1000]));
        assert_eq!(
            s.check_stall(t0 + LIMIT, WINDOW, only(l())),
            StallCheck::Wait(t0 + 2 * LIMIT)
        );
    }

    #[test]
    fn the_ack_moving_restarts_the_clock() {
        let t0 = Instant::now();
        let mut s = SendState::new();
        for end in [1000, 2000] {
            let off = s.push(Arc::new(vec![1; 1000]));
            s.sent_on(off, sent(CARRIER, t0, end));
        }
        s.on_ack(1000, t0 + 40 * MS, |_| {}).unwrap();
        let l = || Link {
            handed: 2000,
            ..lost(t0 + 45 * MS, CaState::Recovery, MS)
        };
        assert_eq!(
            s.check_stall(t0 + LIMIT, WINDOW, only(l())),
            StallCheck::Wait(t0 + 40 * MS + LIMIT)
        );
        let c = s.check_stall(t0 + 40 * MS + LIMIT, WINDOW, only(l()));
        assert_eq!(resend_of(&c), Some((1000, 1000, CARRIER)));
    }

    #[test]
    fn resends_are_spaced_counted_and_bounded() {
        let t0 = Instant::now();
        let mut s = later_request(t0);
        let l = |at| lost(at, CaState::Recovery, MS);
        let mut t = t0 + LIMIT;
        for n in 1..=MAX_RESENDS {
            let c = s.check_stall(t, WINDOW, only(l(t)));
            assert!(resend_of(&c).is_some(), "re-send {n}: {c:?}");
            s.resent(64 * KIB, sent(SPARE, t, 1000));
            assert_eq!(s.resent_bytes(), 1000 * u64::from(n));
            assert_eq!(
                s.check_stall(t + MS, WINDOW, only(l(t + MS))),
                StallCheck::Wait(t + LIMIT),
                "one re-send per limit"
            );
            t += LIMIT;
        }
        assert_eq!(
            s.check_stall(t, WINDOW, only(l(t))),
            StallCheck::Idle,
            "the chunk was sent again as often as it may be"
        );
    }

    #[test]
    fn a_small_request_is_sent_again_once() {
        let t0 = Instant::now();
        let mut s = request(t0);
        let l = |at| lost(at, CaState::Recovery, MS);
        let t = t0 + LIMIT;
        assert!(resend_of(&s.check_stall(t, WINDOW, only(l(t)))).is_some());
        s.resent(0, sent(SPARE, t, 1000));
        let t = t + LIMIT;
        assert_eq!(
            s.check_stall(t, WINDOW, only(l(t))),
            StallCheck::Wait(t + LIMIT),
            "a second copy would pass a sixteenth of 1000 bytes plus one chunk"
        );
    }

    #[test]
    fn a_stream_sends_again_at_most_a_share_of_its_bytes_plus_one_chunk() {
        let t0 = Instant::now();
        let mut s = SendState::new();
        // 64 KiB in four chunks: a share of 4 KiB plus one 16 KiB chunk.
        for i in 1..=4 {
            let off = s.push(Arc::new(vec![1; 16 * 1024]));
            s.sent_on(off, sent(CARRIER, t0, i * 16 * KIB));
        }
        s.close();
        let l = |at| Link {
            handed: 64 * KIB,
            unacked: 64 * KIB,
            ..lost(at, CaState::Recovery, MS)
        };
        let t = t0 + LIMIT;
        assert!(resend_of(&s.check_stall(t, WINDOW, only(l(t)))).is_some());
        s.resent(0, sent(SPARE, t, 16 * KIB));
        s.on_ack(16 * KIB, t + MS, |_| {}).unwrap();
        let t = t + MS + LIMIT;
        assert_eq!(
            s.check_stall(t, WINDOW, only(l(t))),
            StallCheck::Wait(t + LIMIT),
            "a second chunk would pass the share"
        );
    }

    #[test]
    fn a_link_death_resend_moves_the_chunk_to_its_new_carrier() {
        let t0 = Instant::now();
        let mut s = request(t0);
        s.sent_on(0, sent(9, t0 + 20 * MS, 1000));
        let on9 = |id| (id == 9).then(|| lost(t0 + 80 * MS, CaState::Recovery, MS).load());
        assert_eq!(
            s.check_stall(t0 + LIMIT, WINDOW, on9),
            StallCheck::Wait(t0 + 20 * MS + LIMIT),
            "timed from the second send"
        );
        let c = s.check_stall(t0 + 20 * MS + LIMIT, WINDOW, on9);
        assert_eq!(resend_of(&c), Some((0, 1000, 9)));
    }
}
