//! A session's streams and the routing of frames to them.
//!
//! The table decides which stream a frame is for: a live stream, a new one
//! the peer opens (server only, within limits), or none (a late frame of a
//! finished stream, which must never re-create it). It remembers every id it
//! has seen, and how recently closed streams ended, because the frame that
//! told the peer (a final ACK, an RST) may have died with a link: after a
//! link failure those frames are sent again ([`StreamTable::repeats`]), and
//! a peer that asks again with a re-sent FIN gets the answer again.

use crate::proto::Role;
use crate::proto::frame::{Frame, RstReason, StreamId};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Most recently closed streams remembered per session.
pub const RECENTLY_CLOSED: usize = 1024;

/// Stream ids a session has ever seen. Ids are handed out in order, so
/// everything below `low` has been seen and only the few above it need
/// remembering.
#[derive(Debug)]
struct SeenIds {
    low: u64,
    above: BTreeSet<u64>,
}

impl Default for SeenIds {
    /// Stream ids start at 1; 0 is never valid and counts as seen.
    fn default() -> Self {
        SeenIds {
            low: 1,
            above: BTreeSet::new(),
        }
    }
}

impl SeenIds {
    fn contains(&self, id: u64) -> bool {
        id < self.low || self.above.contains(&id)
    }

    fn insert(&mut self, id: u64) {
        if id < self.low {
            return;
        }
        self.above.insert(id);
        while self.above.remove(&self.low) {
            self.low += 1;
        }
    }
}

/// How a stream that left the table ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both directions ended; `final_ack` acknowledged the peer's FIN.
    Finished { final_ack: u64 },
    /// Reset; `told` when we sent the RST (so it is ours to repeat).
    Reset { reason: RstReason, told: bool },
}

/// Where a frame for a stream id goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<S> {
    /// A live stream.
    Known(S),
    /// A new stream the peer opens, within the table's limits; the id is
    /// now seen. The caller admits it ([`StreamTable::insert`]) or refuses
    /// it with an RST.
    Candidate(StreamId),
    /// A new stream beyond the table's limits: answer with an RST.
    Refused(StreamId),
    /// Nothing: a frame for a stream that ended, or that cannot be opened.
    Unknown,
}

/// Why a new stream could not be opened locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The session is closing or the peer sent GOAWAY.
    Closing,
    /// The configured stream limit is reached.
    TooManyStreams(usize),
    /// Stream ids are exhausted; a new session is needed.
    IdsExhausted,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Closing => write!(f, "session is closing"),
            OpenError::TooManyStreams(n) => write!(f, "stream limit {n} reached"),
            OpenError::IdsExhausted => write!(f, "stream ids exhausted"),
        }
    }
}

impl std::error::Error for OpenError {}

/// The streams of one session, with the ids and outcomes it remembers.
#[derive(Debug)]
pub struct StreamTable<S> {
    role: Role,
    max_streams: usize,
    map: HashMap<StreamId, S>,
    seen: SeenIds,
    next_id: u64,
    closed: VecDeque<StreamId>,
    outcomes: HashMap<StreamId, Outcome>,
}

impl<S: Clone> StreamTable<S> {
    /// An empty table for one end of a session, holding at most
    /// `max_streams` streams.
    pub fn new(role: Role, max_streams: usize) -> Self {
        StreamTable {
            role,
            max_streams,
            map: HashMap::new(),
            seen: SeenIds::default(),
            next_id: 1,
            closed: VecDeque::new(),
            outcomes: HashMap::new(),
        }
    }

    /// Streams open now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no stream is open.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The live stream `id`, if any.
    pub fn get(&self, id: StreamId) -> Option<&S> {
        self.map.get(&id)
    }

    /// Every live stream.
    pub fn streams(&self) -> impl Iterator<Item = &S> {
        self.map.values()
    }

    /// Only a hostile peer leaves this many gaps in the ids it uses, since
    /// ids are handed out in order; refusing keeps the set of seen ids
    /// bounded.
    fn gaps_ok(&self) -> bool {
        self.seen.above.len() < 4 * self.max_streams + 1024
    }

    /// The stream a frame is for. `may_open`: the frame can open a stream
    /// (OPEN, DATA or FIN arriving at the server).
    pub fn lookup(&mut self, id: StreamId, may_open: bool) -> Lookup<S> {
        if let Some(s) = self.map.get(&id) {
            return Lookup::Known(s.clone());
        }
        if !may_open || self.role != Role::Server || self.seen.contains(u64::from(id)) {
            return Lookup::Unknown;
        }
        if !self.gaps_ok() {
            self.refuse(id);
            return Lookup::Refused(id);
        }
        self.seen.insert(u64::from(id));
        if self.map.len() >= self.max_streams {
            self.refuse(id);
            return Lookup::Refused(id);
        }
        Lookup::Candidate(id)
    }

    /// Records that the peer's new stream `id` is refused with an RST, so
    /// that the RST is repeated if it dies with a link (the peer's stream
    /// would otherwise never end: its re-sent frames find the id seen).
    pub fn refuse(&mut self, id: StreamId) {
        self.remember(
            id,
            Outcome::Reset {
                reason: RstReason::Refused,
                told: true,
            },
        );
    }

    /// Adds a stream the peer opened (after [`Lookup::Candidate`]).
    pub fn insert(&mut self, id: StreamId, s: S) {
        self.map.insert(id, s);
    }

    /// A peer's RST for a stream we do not have: on the server it may not
    /// have reached us yet, and must never open later.
    pub fn reset_unknown(&mut self, id: StreamId) {
        if self.role == Role::Server && self.gaps_ok() {
            self.seen.insert(u64::from(id));
        }
    }

    /// Opens a stream for a local connection (client): the next id.
    pub fn open_local(
        &mut self,
        make: impl FnOnce(StreamId) -> S,
    ) -> Result<(StreamId, S), OpenError> {
        if self.map.len() >= self.max_streams {
            return Err(OpenError::TooManyStreams(self.max_streams));
        }
        let id = StreamId::try_from(self.next_id).map_err(|_| OpenError::IdsExhausted)?;
        self.next_id += 1;
        let s = make(id);
        self.map.insert(id, s.clone());
        Ok((id, s))
    }

    /// Takes stream `id` out of the table, remembering how it ended;
    /// returns how many remain, or `None` if it was not there.
    pub fn remove(&mut self, id: StreamId, outcome: Outcome) -> Option<usize> {
        self.map.remove(&id)?;
        self.remember(id, outcome);
        Some(self.map.len())
    }

    fn remember(&mut self, id: StreamId, outcome: Outcome) {
        if self.outcomes.insert(id, outcome).is_none() {
            self.closed.push_back(id);
        }
        while self.closed.len() > RECENTLY_CLOSED {
            if let Some(old) = self.closed.pop_front() {
                self.outcomes.remove(&old);
            }
        }
    }

    /// The answer to a FIN for a stream that already left the table: its
    /// final ACK (or our RST) was lost with a link, and the peer asks again.
    pub fn late_fin_reply(&self, id: StreamId) -> Option<Frame<'static>> {
        self.outcomes.get(&id).map(|o| answer(id, *o))
    }

    /// The frames that told the peer how recently closed streams ended (our
    /// final ACKs, the RSTs we sent), oldest first, to repeat after a link
    /// failure: the first ones may have died with the link, and a peer
    /// still waiting for them would hold its stream forever.
    pub fn repeats(&self) -> impl Iterator<Item = Frame<'static>> + '_ {
        self.closed.iter().filter_map(|id| {
            let o = *self.outcomes.get(id)?;
            let ours = !matches!(o, Outcome::Reset { told: false, .. });
            ours.then(|| answer(*id, o))
        })
    }
}

/// The frame that tells the peer how stream `id` ended.
fn answer(id: StreamId, outcome: Outcome) -> Frame<'static> {
    match outcome {
        Outcome::Finished { final_ack } => Frame::Ack {
            stream: id,
            delivered: final_ack,
        },
        Outcome::Reset { reason, .. } => Frame::Rst { stream: id, reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_ids_remember_out_of_order_arrivals_compactly() {
        let mut seen = SeenIds::default();
        for id in [1u64, 3, 2, 5] {
            seen.insert(id);
        }
        assert!(seen.contains(0) && seen.contains(1) && seen.contains(2) && seen.contains(3));
        assert!(!seen.contains(4));
        assert!(seen.contains(5));
        seen.insert(4);
        assert_eq!(seen.low, 6);
        assert!(seen.above.is_empty());
    }

    #[test]
    fn recently_closed_streams_are_bounded() {
        let mut t = StreamTable::new(Role::Server, 10);
        for id in 1..=(RECENTLY_CLOSED as u32 + 10) {
            t.insert(id, ());
            t.remove(id, Outcome::Finished { final_ack: 1 });
        }
        assert_eq!(t.outcomes.len(), RECENTLY_CLOSED);
        assert_eq!(t.late_fin_reply(1), None, "the oldest is forgotten");
        assert!(t.late_fin_reply(RECENTLY_CLOSED as u32 + 10).is_some());
        assert_eq!(t.repeats().count(), RECENTLY_CLOSED);
    }

    #[test]
    fn the_server_opens_new_ids_once_and_never_again() {
        let mut t = StreamTable::new(Role::Server, 10);
        assert_eq!(t.lookup(1, true), Lookup::Candidate(1));
        t.insert(1, "one");
        assert_eq!(t.lookup(1, false), Lookup::Known("one"));
        assert_eq!(t.remove(1, Outcome::Finished { final_ack: 1 }), Some(0));
        assert_eq!(
            t.lookup(1, true),
            Lookup::Unknown,
            "a late frame re-opened it"
        );
        assert_eq!(t.lookup(2, false), Lookup::Unknown, "an ACK opens nothing");
        t.reset_unknown(3);
        assert_eq!(
            t.lookup(3, true),
            Lookup::Unknown,
            "reset before it arrived"
        );
    }

    #[test]
    fn a_candidate_refused_by_the_caller_stays_seen() {
        let mut t: StreamTable<()> = StreamTable::new(Role::Server, 10);
        assert_eq!(t.lookup(4, true), Lookup::Candidate(4));
        assert_eq!(t.lookup(4, true), Lookup::Unknown);
    }

    #[test]
    fn the_client_never_opens_for_the_peer() {
        let mut t: StreamTable<()> = StreamTable::new(Role::Client, 10);
        assert_eq!(t.lookup(1, true), Lookup::Unknown);
    }

    #[test]
    fn limits_refuse_new_streams() {
        let mut t = StreamTable::new(Role::Server, 1);
        assert_eq!(t.lookup(1, true), Lookup::Candidate(1));
        t.insert(1, ());
        assert_eq!(t.lookup(2, true), Lookup::Refused(2));
        assert_eq!(
            t.repeats().collect::<Vec<_>>(),
            [Frame::Rst {
                stream: 2,
                reason: RstReason::Refused
            }],
            "the refusal is repeated if it dies with a link"
        );
        let mut c = StreamTable::new(Role::Client, 1);
        assert!(c.open_local(|_| ()).is_ok());
        assert_eq!(c.open_local(|_| ()), Err(OpenError::TooManyStreams(1)));
    }

    #[test]
    fn too_many_gaps_are_refused() {
        // The bound grows with the stream limit: 4 gaps per stream, plus
        // 1,024.
        for max in [1usize, 8] {
            let mut t: StreamTable<()> = StreamTable::new(Role::Server, max);
            let limit = 4 * max + 1024;
            for i in 0..limit as u32 {
                assert_eq!(t.lookup(2 + 2 * i, true), Lookup::Candidate(2 + 2 * i));
            }
            assert_eq!(t.lookup(1_000_000, true), Lookup::Refused(1_000_000));
        }
    }

    #[test]
    fn the_table_lists_its_live_streams() {
        let mut t: StreamTable<&str> = StreamTable::new(Role::Server, 4);
        assert!(t.is_empty());
        t.insert(1, "one");
        t.insert(3, "three");
        assert!(!t.is_empty());
        assert_eq!(t.get(1), Some(&"one"));
        assert_eq!(t.get(2), None);
        let mut all: Vec<&str> = t.streams().copied().collect();
        all.sort_unstable();
        assert_eq!(all, ["one", "three"]);
    }

    #[test]
    fn open_errors_say_why() {
        assert_eq!(OpenError::Closing.to_string(), "session is closing");
        assert_eq!(
            OpenError::TooManyStreams(7).to_string(),
            "stream limit 7 reached"
        );
        assert_eq!(OpenError::IdsExhausted.to_string(), "stream ids exhausted");
    }

    #[test]
    fn how_streams_ended_is_answered_and_repeated_in_order() {
        let mut t = StreamTable::new(Role::Server, 10);
        t.insert(1, ());
        t.remove(1, Outcome::Finished { final_ack: 42 });
        t.insert(2, ());
        let refused = Outcome::Reset {
            reason: RstReason::Refused,
            told: true,
        };
        t.remove(2, refused);
        t.insert(3, ());
        let by_peer = Outcome::Reset {
            reason: RstReason::Reset,
            told: false,
        };
        t.remove(3, by_peer);
        let ack = Frame::Ack {
            stream: 1,
            delivered: 42,
        };
        let rst = Frame::Rst {
            stream: 2,
            reason: RstReason::Refused,
        };
        assert_eq!(t.late_fin_reply(1), Some(ack));
        assert_eq!(t.late_fin_reply(2), Some(rst));
        assert_eq!(
            t.repeats().collect::<Vec<_>>(),
            [ack, rst],
            "a reset the peer sent is not ours to repeat"
        );
    }

    #[test]
    fn local_ids_run_out_cleanly() {
        let mut t = StreamTable::new(Role::Client, 10);
        t.next_id = u64::from(u32::MAX);
        assert_eq!(t.open_local(|_| ()).map(|(id, _)| id), Ok(u32::MAX));
        t.remove(u32::MAX, Outcome::Finished { final_ack: 1 });
        assert_eq!(t.open_local(|_| ()), Err(OpenError::IdsExhausted));
    }
}
