//! The sending direction of one stream: what was sent, what the peer has
//! acknowledged, and what to send again after a link failure.
//!
//! Every byte stays here until the peer acknowledges it, so a link that dies
//! loses nothing: its bytes are still here to re-send on another link.
//! Flow control has two limits: the peer's per-stream window, and the
//! daemon-wide send budget shared by all streams, with a per-stream floor
//! ([`STREAM_FLOOR`]) so that streams whose applications stopped reading
//! cannot starve the others.
//!
//! Each unacknowledged chunk remembers the link that carried it and when,
//! so that bytes held up on a link that is repairing a loss can be sent
//! again on another one ([`stall`]).

mod stall;

use crate::proto::error::Violation;
use crate::proto::frame::{Frame, StreamId};
pub use crate::proto::recv::STREAM_FLOOR;
pub use stall::{FIRST_LOOK, MAX_RESENDS, RESEND_SHARE, StallCheck, stall_limit, worth_watching};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// DATA bytes, shared between the stream's retransmission copy and the link
/// that sends them, so neither has to copy them.
pub type Payload = Arc<Vec<u8>>;

/// A frame to send again after a link failure.
#[derive(Debug, Clone)]
pub enum Resend {
    Control(Frame<'static>),
    Data(StreamId, u64, Payload),
}

/// Where and when a chunk was handed to a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The link (an id the I/O layer chose).
    pub link: u64,
    pub at: Instant,
    /// The link's count of bytes handed to it (`LinkLoad::handed`) just
    /// after this chunk: where the chunk ends in the link's byte stream.
    pub end: u64,
}

/// Bytes kept until the peer acknowledges them, and where they went.
#[derive(Debug)]
struct Chunk {
    offset: u64,
    bytes: Payload,
    /// The link that last carried them; `None` until handed to a link.
    sent: Option<Sent>,
    /// Times they were sent again because they held the stream up.
    resends: u8,
    /// The last such copy.
    copy: Option<Sent>,
}

impl Chunk {
    /// True when no live link holds a copy of these bytes: never handed to
    /// a link, or every link that carried them is `lost` (by id). Bytes a
    /// live link carries arrive without help: TCP repairs its own losses,
    /// and a link that dies later has its own bytes sent again then.
    fn maybe_lost(&self, lost: impl Fn(u64) -> bool) -> bool {
        let Some(sent) = self.sent else {
            return true;
        };
        lost(sent.link) && self.copy.is_none_or(|c| lost(c.link))
    }
}

/// The sending direction's state.
#[derive(Debug, Default)]
pub struct SendState {
    next: u64,
    /// Peer's cumulative delivered offset; FIN counts as one byte.
    acked: u64,
    fin: Option<u64>,
    unacked: VecDeque<Chunk>,
    /// Bytes charged to the send budget and not yet released: sent, not
    /// acknowledged, and the stream not reset.
    charged: u64,
    /// The peer opened the stream (server side): nothing to re-send an
    /// OPEN for.
    peer_opened: bool,
    /// When the peer's ACK last moved forward.
    progress_at: Option<Instant>,
    /// When new bytes (not a re-send) last went to a link.
    new_sent_at: Option<Instant>,
    /// When bytes were last sent again because they held the stream up.
    resent_at: Option<Instant>,
    /// Bytes sent again because they held the stream up, in all.
    resent_bytes: u64,
}

/// What an ACK changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AckOutcome {
    /// Bytes to give back to the send budget.
    pub freed: u64,
    /// Every byte and the FIN are delivered: the sending side is finished.
    pub finished: bool,
}

impl SendState {
    /// Nothing sent yet, on a stream this side opened.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing sent yet, on a stream the peer opened.
    pub fn opened_by_peer() -> Self {
        SendState {
            peer_opened: true,
            ..Self::default()
        }
    }

    /// Keeps `bytes` as the stream's next bytes until acknowledged, charging
    /// them to the send budget; returns their offset.
    pub fn push(&mut self, bytes: Payload) -> u64 {
        let offset = self.next;
        let n = bytes.len() as u64;
        self.next += n;
        self.charged += n;
        self.unacked.push_back(Chunk {
            offset,
            bytes,
            sent: None,
            resends: 0,
            copy: None,
        });
        offset
    }

    /// Records where and when the bytes pushed at `offset` went (first
    /// sent, or sent again after a link died). Returns true when nothing
    /// else of the stream is in flight (a request, an answer, the first
    /// bytes).
    pub fn sent_on(&mut self, offset: u64, sent: Sent) -> bool {
        let alone = self.unacked.len() == 1 && self.acked <= offset;
        // The newest first: that is where a stream reader's bytes are.
        let Some(c) = self.unacked.iter_mut().rev().find(|c| c.offset == offset) else {
            return false;
        };
        if c.sent.is_none() {
            self.new_sent_at = Some(sent.at);
        }
        c.sent = Some(sent);
        alone
    }

    /// The bytes at `offset` also went out as `copy` (a small frame sent
    /// on two links); the stall check counts them delivered if it arrived.
    pub fn copied(&mut self, offset: u64, copy: Sent) {
        if let Some(c) = self.unacked.iter_mut().rev().find(|c| c.offset == offset) {
            c.copy = Some(copy);
        }
    }

    /// Marks the end of the stream (the local side closed); returns the FIN
    /// offset to send.
    pub fn close(&mut self) -> u64 {
        self.fin = Some(self.next);
        self.next
    }

    /// Bytes sent and not yet acknowledged: what counts against the window.
    pub fn in_flight(&self) -> u64 {
        self.next - self.acked.min(self.next)
    }

    /// Bytes acknowledged and sent.
    pub fn progress(&self) -> (u64, u64) {
        (self.acked, self.next)
    }

    /// Applies the peer's cumulative ACK, arrived at `now`: frees credit
    /// and retransmission copies (handed to `release`).
    pub fn on_ack(
        &mut self,
        delivered: u64,
        now: Instant,
        mut release: impl FnMut(Payload),
    ) -> Result<AckOutcome, Violation> {
        let sent = self.next + u64::from(self.fin.is_some());
        if delivered > sent {
            return Err(Violation::AckBeyondSent {
                ack: delivered,
                sent,
            });
        }
        if delivered <= self.acked {
            return Ok(AckOutcome::default());
        }
        let freed = (delivered.min(self.next) - self.acked.min(self.next)).min(self.charged);
        self.charged -= freed;
        self.acked = delivered;
        self.progress_at = Some(now);
        while let Some(c) = self.unacked.front() {
            if c.offset + c.bytes.len() as u64 > delivered {
                break;
            }
            if let Some(c) = self.unacked.pop_front() {
                release(c.bytes);
            }
        }
        let finished = self.fin.is_some_and(|f| delivered == f + 1);
        Ok(AckOutcome { freed, finished })
    }

    /// Gives up everything kept for re-sending (a reset stream re-sends
    /// nothing); returns the budget to give back.
    pub fn abandon(&mut self, mut release: impl FnMut(Payload)) -> u64 {
        for c in self.unacked.drain(..) {
            release(c.bytes);
        }
        std::mem::take(&mut self.charged)
    }

    /// Frames that re-create what a failed link may have lost for stream
    /// `id`: OPEN if we opened it and the peer has acknowledged nothing,
    /// the unacknowledged bytes no live link holds (every link `lost`
    /// says of its id carried them, or none did yet), and a pending FIN.
    /// Re-sending every unacknowledged byte instead put up to the whole
    /// window (megabytes) of duplicates ahead of the missing bytes on the
    /// links left, and delayed them by that much.
    pub fn resend(&self, id: StreamId, out: &mut Vec<Resend>, lost: impl Fn(u64) -> bool) {
        if self.acked == 0 && !self.peer_opened {
            out.push(Resend::Control(Frame::Open { stream: id }));
        }
        for c in self.unacked.iter().filter(|c| c.maybe_lost(&lost)) {
            out.push(Resend::Data(id, c.offset, c.bytes.clone()));
        }
        if let Some(f) = self.fin
            && self.acked <= f
        {
            out.push(Resend::Control(Frame::Fin {
                stream: id,
                offset: f,
            }));
        }
    }
}

/// How many more bytes a stream with `in_flight` bytes unacknowledged may
/// send now under the peer's `window` when the daemon's streams together
/// use `used` of a budget of `limit`: at least up to its floor, beyond that
/// what both the window and the budget allow.
pub fn credit(in_flight: u64, window: u64, limit: u64, used: u64) -> u64 {
    let floor = STREAM_FLOOR.min(window).saturating_sub(in_flight);
    let free = limit.saturating_sub(used);
    floor.max(window.saturating_sub(in_flight).min(free))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn payload(n: usize) -> Payload {
        Arc::new(vec![0; n])
    }

    fn now() -> Instant {
        Instant::now()
    }

    #[test]
    fn acks_free_copies_and_budget_in_order() {
        let mut s = SendState::new();
        assert_eq!(s.push(payload(10)), 0);
        assert_eq!(s.push(payload(5)), 10);
        let mut released = Vec::new();
        let out = s.on_ack(12, now(), |p| released.push(p.len())).unwrap();
        assert_eq!(out.freed, 12);
        assert_eq!(released, [10], "the second payload is still partly owed");
        assert_eq!(s.in_flight(), 3);
        assert_eq!(s.on_ack(11, now(), |_| {}).unwrap(), AckOutcome::default());
        assert_eq!(
            s.on_ack(16, now(), |_| {}),
            Err(Violation::AckBeyondSent { ack: 16, sent: 15 })
        );
    }

    #[test]
    fn a_payload_acknowledged_to_its_last_byte_is_released_at_once() {
        let mut s = SendState::new();
        s.push(payload(10));
        s.push(payload(5));
        let mut released = Vec::new();
        s.on_ack(10, now(), |p| released.push(p.len())).unwrap();
        assert_eq!(released, [10]);
    }

    #[test]
    fn progress_is_what_was_acknowledged_and_sent() {
        let mut s = SendState::new();
        assert_eq!(s.progress(), (0, 0));
        s.push(payload(10));
        s.push(payload(6));
        s.on_ack(4, now(), |_| {}).unwrap();
        assert_eq!(s.progress(), (4, 16));
    }

    #[test]
    fn a_chunk_is_alone_when_nothing_else_of_its_stream_is_in_flight() {
        let mut s = SendState::new();
        let t = Instant::now();
        let at = |end| Sent {
            link: 1,
            at: t,
            end,
        };
        let a = s.push(payload(10));
        assert!(s.sent_on(a, at(10)), "the first bytes");
        let b = s.push(payload(10));
        assert!(!s.sent_on(b, at(20)), "the first are still in flight");
        s.on_ack(20, t, |_| {}).unwrap();
        let c = s.push(payload(10));
        assert!(
            s.sent_on(c, at(30)),
            "an answer after the request was acked"
        );
        assert!(!s.sent_on(99, at(40)), "no such chunk");
    }

    #[test]
    fn the_fin_counts_as_one_byte() {
        let mut s = SendState::new();
        s.push(payload(4));
        assert_eq!(s.close(), 4);
        let out = s.on_ack(4, now(), |_| {}).unwrap();
        assert!(!out.finished);
        let out = s.on_ack(5, now(), |_| {}).unwrap();
        assert!(out.finished);
        assert_eq!(out.freed, 0, "the FIN byte was never charged");
    }

    #[test]
    fn resend_lists_open_data_and_fin_until_acknowledged() {
        let mut s = SendState::new();
        s.push(payload(3));
        s.push(payload(2));
        s.close();
        let mut out = Vec::new();
        s.resend(7, &mut out, |_| true);
        let kinds: Vec<String> = out
            .iter()
            .map(|r| match r {
                Resend::Control(f) => format!("{f:?}"),
                Resend::Data(_, off, b) => format!("DATA {off}+{}", b.len()),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "Open { stream: 7 }",
                "DATA 0+3",
                "DATA 3+2",
                "Fin { stream: 7, offset: 5 }"
            ]
        );
        s.on_ack(6, now(), |_| {}).unwrap();
        out.clear();
        s.resend(7, &mut out, |_| true);
        assert!(out.is_empty(), "{out:?}");
        out.clear();
        SendState::opened_by_peer().resend(8, &mut out, |_| true);
        assert!(out.is_empty(), "an OPEN for the peer's own stream: {out:?}");
    }

    #[test]
    fn abandon_returns_the_whole_charge() {
        let mut s = SendState::new();
        s.push(payload(100));
        s.push(payload(50));
        s.on_ack(30, now(), |_| {}).unwrap();
        let mut released = 0;
        assert_eq!(s.abandon(|_| released += 1), 120);
        assert_eq!(released, 2);
        let mut out = Vec::new();
        s.resend(1, &mut out, |_| true);
        assert!(out.iter().all(|r| matches!(r, Resend::Control(_))));
    }

    #[test]
    fn only_bytes_no_live_link_holds_are_sent_again() {
        let mut s = SendState::opened_by_peer();
        let on = |link| Sent {
            link,
            at: now(),
            end: 0,
        };
        let on_dead = s.push(payload(1));
        let on_live = s.push(payload(2));
        s.push(payload(3)); // never handed to a link
        let copied_to_live = s.push(payload(4));
        let copied_to_dead = s.push(payload(5));
        s.sent_on(on_dead, on(1));
        s.sent_on(on_live, on(2));
        s.sent_on(copied_to_live, on(1));
        s.copied(copied_to_live, on(2));
        s.sent_on(copied_to_dead, on(1));
        s.copied(copied_to_dead, on(3));
        let mut out = Vec::new();
        s.resend(9, &mut out, |link| link != 2);
        let again: Vec<usize> = out
            .iter()
            .filter_map(|r| match r {
                Resend::Data(9, _, b) => Some(b.len()),
                _ => None,
            })
            .collect();
        assert_eq!(again, [1, 3, 5], "{out:?}");
    }

    #[test]
    fn floor_holds_whatever_the_budget() {
        assert_eq!(credit(0, 4 * MIB, MIB, 10 * MIB), STREAM_FLOOR);
        assert_eq!(credit(STREAM_FLOOR - 1, 4 * MIB, MIB, 10 * MIB), 1);
        assert_eq!(credit(STREAM_FLOOR, 4 * MIB, MIB, 10 * MIB), 0);
        assert_eq!(credit(0, 1000, MIB, 10 * MIB), 1000, "window caps floor");
    }

    #[test]
    fn budget_and_window_both_cap_credit() {
        assert_eq!(credit(0, 4 * MIB, MIB, 0), MIB);
        assert_eq!(credit(MIB, 2 * MIB, MIB, 0), MIB);
        assert_eq!(credit(MIB, MIB + 10, MIB, 0), 10);
        assert_eq!(credit(3 * STREAM_FLOOR, 4 * MIB, MIB, MIB - 100), 100);
    }
}
