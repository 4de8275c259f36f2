//! The receiving direction of one stream: the reorder buffer, what has been
//! delivered to the local socket, and when to acknowledge it.
//!
//! Frames of one stream travel on different links and arrive in any order.
//! Bytes next in order are written to the local socket at once when nothing
//! waits before them; bytes ahead of a gap wait here. The buffer never holds
//! more than the window we granted, so whoever delivers a frame can always
//! take it at once and never waits on a slow application.
//!
//! Writing to the socket happens outside this state: a [`Deliverer`] claims
//! the socket (`writing`), lets go of the state while it writes, and reports
//! what the socket took. Other deliverers meanwhile only buffer, so bytes
//! never reach the socket out of order.

use crate::proto::error::Violation;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Bytes a stream may always have unacknowledged, whatever the daemon-wide
/// send budget says (see `proto::send::credit`). The receiver acknowledges
/// every [`ACK_EVERY`] bytes, which equals it: a sender held at its floor has
/// sent enough to be acknowledged once the far application reads it, so it
/// never waits for an ACK held back until more bytes come.
pub const STREAM_FLOOR: u64 = 16 * 1024;
/// Credit goes back to the peer (ACK) once this many bytes were delivered
/// since the last ACK (or a quarter window, if less), not after every write:
/// an ACK per small message doubled the frames of request/response traffic.
pub const ACK_EVERY: u64 = STREAM_FLOOR;
/// A fast stream acknowledges at most once per [`ACK_DELAY`], or once per
/// `ACK_EVERY_MOST` bytes (a quarter window, if less): at gigabits per
/// second every ACK costs the sender a wake-up and a read, and the receiver
/// a send (1 MiB instead of 256 KiB: 15 % fewer context switches and 4-7 %
/// less CPU per GiB on loopback with 4 links). A held-back ACK is sent by the
/// stream's writer when it falls due, so a sender waiting for it never waits
/// longer than `ACK_DELAY`.
pub const ACK_EVERY_MOST: u64 = 1024 * 1024;
/// See [`ACK_EVERY_MOST`].
pub const ACK_DELAY: Duration = Duration::from_millis(1);
/// Most out-of-order pieces one stream may hold; an honest sender stays far
/// below (pieces merge as gaps fill), a hostile one is reset.
pub const MAX_OOO_PIECES: usize = 4096;
/// Buffer capacity a stream keeps between bursts; a thousand streams that
/// each kept a 64 KiB buffer held 100 MiB between them.
pub const KEEP_CAPACITY: usize = 16 * 1024;

/// The receiving direction's state.
#[derive(Debug)]
pub struct RecvState {
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Contiguous bytes not yet written to the socket.
    buf: Vec<u8>,
    /// Bytes that arrived ahead of a gap, by offset.
    ooo: BTreeMap<u64, Vec<u8>>,
    fin: Option<u64>,
    /// Bytes written to the local socket.
    delivered: u64,
    /// Someone is writing bytes taken from here: nobody else may write to
    /// the socket until it reports back.
    writing: bool,
    /// Highest delivered offset announced to the peer; the window is counted
    /// from here, as the peer counts it.
    ack_sent: u64,
    /// An ACK that could not be queued; the writer sends it.
    ack_owed: bool,
    /// When the last ACK was taken, to space a fast stream's ACKs.
    last_ack: Instant,
    /// An ACK is due but was held back to space ACKs.
    ack_deferred: bool,
    window: u64,
}

/// Where an arriving DATA frame belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Every byte is already here: a duplicate (after a re-send).
    Stale,
    /// It starts beyond a gap: hold a copy until the gap fills.
    Ahead,
    /// Its bytes from `skip` on are the next in order.
    Next { skip: usize },
}

/// What the writer thread should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterStep {
    /// The chunk it passed holds bytes to write; report with
    /// [`RecvState::writer_wrote`].
    Write,
    /// Every byte is written and the peer finished at this offset: shut the
    /// socket's write side and send the final ACK ([`RecvState::finish`]).
    Finish(u64),
    /// Nothing to write yet. Send `ack` first if set; `ack_due`: an ACK is
    /// held back and falls due in this long, look again then.
    Wait {
        ack: Option<u64>,
        ack_due: Option<Duration>,
    },
}

/// What taking a DATA frame asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataOutcome {
    /// An ACK to send now.
    pub ack: Option<u64>,
    /// The stream's writer must look at the buffer: bytes are left there,
    /// the FIN is reached, or an ACK was held back for it to send.
    pub wake_writer: bool,
}

/// Whoever delivers an arriving frame: it holds the state (locked, in the
/// I/O layer) and the local socket.
pub trait Deliverer {
    /// The stream's receive state, taken again if it was let go.
    fn state(&mut self) -> &mut RecvState;
    /// Writes `bytes` to the local socket without waiting, with the state let
    /// go meanwhile (the `writing` claim keeps others from the socket);
    /// returns how many the socket took.
    fn write_unlocked(&mut self, bytes: &[u8]) -> usize;
    /// Whether the local socket exists yet (the server connects the backend
    /// while the first bytes travel).
    fn has_socket(&self) -> bool;
    /// A copy of a piece that must wait for a gap (from a pool, if any).
    fn copy_piece(&mut self, bytes: &[u8]) -> Vec<u8>;
    /// Takes back a buffer no longer needed.
    fn recycle(&mut self, buf: Vec<u8>);
}

impl RecvState {
    /// Nothing received yet; `window` is what we grant the peer.
    pub fn new(window: u64, now: Instant) -> Self {
        RecvState {
            base: 0,
            buf: Vec::new(),
            ooo: BTreeMap::new(),
            fin: None,
            delivered: 0,
            writing: false,
            ack_sent: 0,
            ack_owed: false,
            last_ack: now,
            ack_deferred: false,
            window,
        }
    }

    /// Bytes written to the local socket.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The delivered offset last announced to the peer.
    pub fn ack_sent(&self) -> u64 {
        self.ack_sent
    }

    /// The peer's FIN offset, once it arrived.
    pub fn fin(&self) -> Option<u64> {
        self.fin
    }

    /// Bytes held: contiguous ones not yet written and pieces ahead of gaps.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.ooo.values().map(Vec::len).sum::<usize>()
    }

    fn contiguous_end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Checks a DATA frame against the window and the FIN, and says where
    /// it belongs.
    pub fn arrival(&self, offset: u64, len: usize) -> Result<Arrival, Violation> {
        let end = offset
            .checked_add(len as u64)
            .ok_or(Violation::OffsetOverflow {
                offset,
                len: len as u64,
            })?;
        let limit = self.ack_sent.saturating_add(self.window);
        if end > limit {
            return Err(Violation::BeyondWindow { end, limit });
        }
        if let Some(fin) = self.fin
            && end > fin
        {
            return Err(Violation::PastFin { end, fin });
        }
        let contig = self.contiguous_end();
        Ok(if end <= contig {
            Arrival::Stale
        } else if offset > contig {
            Arrival::Ahead
        } else {
            Arrival::Next {
                skip: (contig - offset) as usize,
            }
        })
    }

    /// True when a piece at `offset` of `len` bytes adds to what is held
    /// there (so it is worth copying).
    pub fn wants_piece(&self, offset: u64, len: usize) -> bool {
        self.ooo.get(&offset).is_none_or(|have| have.len() < len)
    }

    /// Keeps a piece that arrived ahead of a gap; returns the shorter piece
    /// it replaces, for recycling.
    pub fn hold(&mut self, offset: u64, piece: Vec<u8>) -> Result<Option<Vec<u8>>, Violation> {
        if !self.ooo.contains_key(&offset) && self.ooo.len() >= MAX_OOO_PIECES {
            return Err(Violation::TooManyPieces {
                limit: MAX_OOO_PIECES,
            });
        }
        Ok(self.ooo.insert(offset, piece))
    }

    /// True when bytes next in order may go straight to the socket: nothing
    /// is buffered before them and nobody is writing.
    pub fn can_write_directly(&self) -> bool {
        self.buf.is_empty() && !self.writing
    }

    /// Claims the socket for `len` bytes taken from the front of the stream.
    fn begin_write(&mut self, len: usize) {
        self.writing = true;
        self.base += len as u64;
    }

    /// Ends a claim: `unwritten` (the tail the socket did not take) goes
    /// back to the front of the buffer.
    fn end_write(&mut self, unwritten: &[u8]) {
        self.writing = false;
        if !unwritten.is_empty() {
            self.base -= unwritten.len() as u64;
            self.buf.splice(0..0, unwritten.iter().copied());
        }
        self.delivered = self.base;
    }

    /// Takes the first held piece that now continues the contiguous bytes,
    /// with how many of its bytes are already there; drops pieces wholly
    /// covered on the way.
    fn next_in_order(&mut self) -> Option<(Vec<u8>, usize)> {
        loop {
            let contig = self.contiguous_end();
            let (&off, _) = self.ooo.iter().next()?;
            if off > contig {
                return None;
            }
            let piece = self.ooo.remove(&off)?;
            if off + piece.len() as u64 > contig {
                return Some((piece, (contig - off) as usize));
            }
        }
    }

    /// The offset to acknowledge, if enough was delivered since the last
    /// ACK; counts it as announced (the caller sends it).
    pub fn take_ack(&mut self, now: Instant) -> Option<u64> {
        let owed = self.delivered - self.ack_sent.min(self.delivered);
        let quarter = (self.window / 4).max(1);
        if owed < quarter.min(ACK_EVERY) {
            return None;
        }
        if owed < quarter.min(ACK_EVERY_MOST) && now.duration_since(self.last_ack) < ACK_DELAY {
            self.ack_deferred = true;
            return None;
        }
        self.ack_deferred = false;
        self.last_ack = now;
        self.ack_sent = self.delivered;
        Some(self.delivered)
    }

    /// An ACK the caller could not queue; the writer sends it.
    pub fn owe_ack(&mut self) {
        self.ack_owed = true;
    }

    /// Records the peer's FIN. A FIN repeated after this side finished
    /// (the peer re-sent it after a link failure: our final ACK may have
    /// died with the link) returns that final ACK, to send again.
    pub fn on_fin(&mut self, offset: u64) -> Result<Option<u64>, Violation> {
        match self.fin {
            Some(first) if first != offset => {
                return Err(Violation::FinMoved {
                    first,
                    second: offset,
                });
            }
            Some(fin) => return Ok((self.ack_sent > fin).then_some(self.ack_sent)),
            None => {}
        }
        if offset == u64::MAX {
            return Err(Violation::FinOverflow);
        }
        let limit = self.ack_sent.saturating_add(self.window);
        if offset > limit {
            return Err(Violation::BeyondWindow { end: offset, limit });
        }
        let highest = self
            .ooo
            .iter()
            .next_back()
            .map(|(o, d)| o + d.len() as u64)
            .unwrap_or(0)
            .max(self.contiguous_end());
        if offset < highest {
            return Err(Violation::FinBelowData {
                fin: offset,
                highest,
            });
        }
        self.fin = Some(offset);
        Ok(None)
    }

    /// The writer thread's next step. `chunk` (empty) receives the bytes to
    /// write; while someone else writes, the bytes here come after theirs.
    pub fn writer_step(&mut self, chunk: &mut Vec<u8>, now: Instant) -> WriterStep {
        if !self.writing {
            if !self.buf.is_empty() {
                std::mem::swap(&mut self.buf, chunk);
                self.begin_write(chunk.len());
                return WriterStep::Write;
            }
            if self.fin == Some(self.base) {
                return WriterStep::Finish(self.base);
            }
        }
        let mut ack = std::mem::take(&mut self.ack_owed).then_some(self.ack_sent);
        let mut ack_due = None;
        if self.ack_deferred {
            let left = ACK_DELAY.saturating_sub(now.duration_since(self.last_ack));
            if left.is_zero() {
                ack = self.take_ack(now).or(ack);
            } else {
                ack_due = Some(left);
            }
        }
        WriterStep::Wait { ack, ack_due }
    }

    /// The writer wrote its whole chunk; returns an ACK to send, if due.
    pub fn writer_wrote(&mut self, now: Instant) -> Option<u64> {
        self.end_write(&[]);
        self.take_ack(now)
    }

    /// The stream's receiving side is finished at `fin`: the final ACK
    /// (the FIN counts as one byte) is announced and returned.
    pub fn finish(&mut self, fin: u64) -> u64 {
        // `on_fin` refused `u64::MAX`, so this cannot overflow.
        let ack = fin.saturating_add(1);
        self.ack_sent = ack;
        ack
    }
}

/// Takes an arriving DATA frame: writes it to the local socket at once if it
/// is next in order and the socket has room, keeps the rest. Returns what
/// the caller must do next (send an ACK, wake the writer).
pub fn on_data(
    d: &mut impl Deliverer,
    offset: u64,
    data: &[u8],
    now: Instant,
) -> Result<DataOutcome, Violation> {
    let skip = match d.state().arrival(offset, data.len())? {
        Arrival::Stale => return Ok(DataOutcome::default()),
        Arrival::Ahead => {
            if d.state().wants_piece(offset, data.len()) {
                let piece = d.copy_piece(data);
                if let Some(old) = d.state().hold(offset, piece)? {
                    d.recycle(old);
                }
            }
            return Ok(DataOutcome::default());
        }
        Arrival::Next { skip } => skip,
    };
    let fresh = &data[skip..];
    if d.state().can_write_directly() && d.has_socket() {
        deliver(d, fresh);
    } else {
        d.state().buf.extend_from_slice(fresh);
    }
    // Whatever waited for these bytes follows them into the buffer: the
    // writer takes only the buffer, never the pieces.
    while let Some((piece, skip)) = d.state().next_in_order() {
        d.state().buf.extend_from_slice(&piece[skip..]);
        d.recycle(piece);
    }
    let st = d.state();
    let deferred_before = st.ack_deferred;
    let ack = st.take_ack(now);
    // The writer alone writes what is left buffered, ends the stream and
    // sends a held-back ACK when its time comes, so it must hear of all
    // three, even when the caller wrote everything.
    let wake_writer = !st.buf.is_empty()
        || st.fin == Some(st.contiguous_end())
        || (st.ack_deferred && !deferred_before);
    Ok(DataOutcome { ack, wake_writer })
}

/// Writes in-order bytes to the socket, then whatever became contiguous
/// meanwhile, while the socket takes them. What it does not take is left at
/// the front of the buffer.
fn deliver(d: &mut impl Deliverer, first: &[u8]) {
    if !write_claimed(d, first) {
        return;
    }
    loop {
        let st = d.state();
        let mut next = if !st.buf.is_empty() {
            std::mem::take(&mut st.buf)
        } else if let Some((mut piece, skip)) = st.next_in_order() {
            piece.drain(..skip);
            piece
        } else {
            return;
        };
        let all = write_claimed(d, &next);
        next.clear();
        // Kept for the next burst only if small: a buffer that once held a
        // lagging application's backlog would otherwise stay resident for
        // the stream's life.
        let st = d.state();
        if st.buf.capacity() == 0 && next.capacity() <= KEEP_CAPACITY {
            st.buf = next;
        } else {
            d.recycle(next);
        }
        if !all {
            return;
        }
    }
}

/// Writes `bytes`, the next in order, with the socket claimed; true when
/// the socket took them all.
fn write_claimed(d: &mut impl Deliverer, bytes: &[u8]) -> bool {
    d.state().begin_write(bytes.len());
    let n = d.write_unlocked(bytes).min(bytes.len());
    d.state().end_write(&bytes[n..]);
    n == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deliverer whose socket takes at most `room` bytes.
    struct Sink {
        st: RecvState,
        out: Vec<u8>,
        room: usize,
        socket: bool,
    }

    impl Deliverer for Sink {
        fn state(&mut self) -> &mut RecvState {
            &mut self.st
        }
        fn write_unlocked(&mut self, bytes: &[u8]) -> usize {
            assert!(self.st.writing, "wrote without the claim");
            let n = bytes.len().min(self.room);
            self.room -= n;
            self.out.extend_from_slice(&bytes[..n]);
            n
        }
        fn has_socket(&self) -> bool {
            self.socket
        }
        fn copy_piece(&mut self, bytes: &[u8]) -> Vec<u8> {
            bytes.to_vec()
        }
        fn recycle(&mut self, _: Vec<u8>) {}
    }

    fn sink(window: u64, room: usize) -> (Sink, Instant) {
        let now = Instant::now();
        let st = RecvState::new(window, now);
        let s = Sink {
            st,
            out: Vec::new(),
            room,
            socket: true,
        };
        (s, now)
    }

    #[test]
    fn reorders_and_drops_duplicates() {
        let (mut s, now) = sink(1000, 0);
        on_data(&mut s, 5, b"fghij", now).unwrap();
        on_data(&mut s, 0, b"abc", now).unwrap();
        on_data(&mut s, 0, b"abc", now).unwrap();
        on_data(&mut s, 3, b"de", now).unwrap();
        on_data(&mut s, 2, b"cdefgh", now).unwrap();
        assert_eq!(s.st.buf, b"abcdefghij");
        assert!(s.st.ooo.is_empty());
    }

    #[test]
    fn in_order_bytes_go_straight_to_the_socket_and_the_rest_waits() {
        let (mut s, now) = sink(1000, 4);
        on_data(&mut s, 3, b"def", now).unwrap();
        let out = on_data(&mut s, 0, b"abc", now).unwrap();
        assert_eq!(s.out, b"abcd", "the socket took what it had room for");
        assert_eq!(s.st.buf, b"ef", "the rest waits for the writer");
        assert_eq!(s.st.delivered(), 4);
        assert!(out.wake_writer);
        let mut chunk = Vec::new();
        assert_eq!(s.st.writer_step(&mut chunk, now), WriterStep::Write);
        assert_eq!(chunk, b"ef");
        s.st.writer_wrote(now);
        assert_eq!(s.st.delivered(), 6);
    }

    #[test]
    fn without_a_socket_bytes_wait_in_the_buffer() {
        let (mut s, now) = sink(1000, 100);
        s.socket = false;
        on_data(&mut s, 0, b"early", now).unwrap();
        assert!(s.out.is_empty());
        assert_eq!(s.st.buf, b"early");
    }

    #[test]
    fn window_and_fin_are_enforced() {
        let (mut s, now) = sink(4, 0);
        assert!(on_data(&mut s, 0, b"abcd", now).is_ok());
        assert_eq!(
            on_data(&mut s, 4, b"e", now),
            Err(Violation::BeyondWindow { end: 5, limit: 4 })
        );
        let (mut s, now) = sink(100, 0);
        s.st.on_fin(3).unwrap();
        assert_eq!(
            on_data(&mut s, 0, b"abcd", now),
            Err(Violation::PastFin { end: 4, fin: 3 })
        );
        assert_eq!(
            s.st.on_fin(4),
            Err(Violation::FinMoved {
                first: 3,
                second: 4
            })
        );
        assert_eq!(s.st.on_fin(3), Ok(None), "a repeated FIN is fine");
        assert_eq!(
            s.st.on_fin(200),
            Err(Violation::FinMoved {
                first: 3,
                second: 200
            })
        );
        let (mut far, _) = sink(100, 0);
        assert_eq!(
            far.st.on_fin(101),
            Err(Violation::BeyondWindow {
                end: 101,
                limit: 100
            }),
            "no honest sender ends a stream beyond the window"
        );
    }

    #[test]
    fn peer_chosen_offsets_never_overflow() {
        let (mut s, now) = sink(u64::MAX, 0);
        assert!(matches!(
            on_data(&mut s, u64::MAX, b"ab", now),
            Err(Violation::OffsetOverflow { .. })
        ));
        assert_eq!(s.st.on_fin(u64::MAX), Err(Violation::FinOverflow));
        s.st.ack_sent = u64::MAX - 1;
        assert!(
            s.st.arrival(u64::MAX - 2, 1).is_ok(),
            "window limit saturates"
        );
    }

    #[test]
    fn fin_below_received_data_is_refused() {
        let (mut s, now) = sink(100, 0);
        on_data(&mut s, 10, b"xyz", now).unwrap();
        assert_eq!(
            s.st.on_fin(12),
            Err(Violation::FinBelowData {
                fin: 12,
                highest: 13
            })
        );
    }

    #[test]
    fn too_many_pieces_is_a_violation() {
        let (mut s, now) = sink(1 << 40, 0);
        for i in 0..MAX_OOO_PIECES as u64 {
            on_data(&mut s, 10 + 2 * i, b"x", now).unwrap();
        }
        assert!(matches!(
            on_data(&mut s, 1 << 30, b"x", now),
            Err(Violation::TooManyPieces { .. })
        ));
        assert!(
            on_data(&mut s, 10, b"xy", now).is_ok(),
            "a longer copy of a held piece replaces it"
        );
    }

    #[test]
    fn acks_every_floor_of_bytes_and_spaces_fast_ones() {
        let (mut s, t0) = sink(1 << 30, usize::MAX);
        let half = vec![0u8; (ACK_EVERY / 2) as usize];
        assert_eq!(on_data(&mut s, 0, &half, t0).unwrap().ack, None);
        let out = on_data(&mut s, ACK_EVERY / 2, &half, t0 + ACK_DELAY).unwrap();
        assert_eq!(out.ack, Some(ACK_EVERY), "a floor's worth is acknowledged");
        // Right after an ACK, the next floor's worth is held back...
        let block = vec![0u8; ACK_EVERY as usize];
        let t1 = t0 + ACK_DELAY + Duration::from_micros(10);
        let out = on_data(&mut s, ACK_EVERY, &block, t1).unwrap();
        assert_eq!(out.ack, None);
        assert!(out.wake_writer, "the writer must hear of the held-back ACK");
        let mut chunk = Vec::new();
        match s.st.writer_step(&mut chunk, t1) {
            WriterStep::Wait {
                ack: None,
                ack_due: Some(d),
            } => assert!(d <= ACK_DELAY),
            other => panic!("expected a wait, got {other:?}"),
        }
        // ...and the writer sends it once the delay is over.
        let t2 = t0 + 2 * ACK_DELAY + Duration::from_micros(10);
        assert_eq!(
            s.st.writer_step(&mut chunk, t2),
            WriterStep::Wait {
                ack: Some(2 * ACK_EVERY),
                ack_due: None
            }
        );
    }

    #[test]
    fn a_megabyte_is_acknowledged_without_waiting() {
        let (mut s, t0) = sink(1 << 30, usize::MAX);
        let first = vec![0u8; ACK_EVERY as usize];
        let t1 = t0 + ACK_DELAY;
        assert!(on_data(&mut s, 0, &first, t1).unwrap().ack.is_some());
        let big = vec![0u8; ACK_EVERY_MOST as usize];
        let out = on_data(&mut s, ACK_EVERY, &big, t1).unwrap();
        assert_eq!(out.ack, Some(ACK_EVERY + ACK_EVERY_MOST));
    }

    #[test]
    fn small_windows_ack_every_quarter() {
        let (mut s, now) = sink(4000, usize::MAX);
        assert_eq!(on_data(&mut s, 0, &[0; 999], now).unwrap().ack, None);
        let later = now + ACK_DELAY;
        assert_eq!(
            on_data(&mut s, 999, &[0; 1], later).unwrap().ack,
            Some(1000)
        );
    }

    #[test]
    fn fin_reached_by_a_direct_write_wakes_the_writer() {
        let (mut s, now) = sink(1000, 100);
        s.st.on_fin(5).unwrap();
        let out = on_data(&mut s, 0, b"hello", now).unwrap();
        assert_eq!(s.out, b"hello");
        assert!(out.wake_writer, "the writer must end the stream");
        let mut chunk = Vec::new();
        assert_eq!(s.st.writer_step(&mut chunk, now), WriterStep::Finish(5));
        assert_eq!(s.st.finish(5), 6, "the FIN counts as one byte");
        assert_eq!(
            s.st.on_fin(5),
            Ok(Some(6)),
            "a FIN re-sent after a link failure gets the final ACK again"
        );
    }

    #[test]
    fn pieces_waiting_behind_a_partly_written_frame_join_the_buffer() {
        let (mut s, now) = sink(1 << 24, 1000);
        s.st.owe_ack();
        on_data(&mut s, 4000, b"tail", now).unwrap();
        on_data(&mut s, 0, &[7u8; 4000], now).unwrap();
        assert_eq!(s.st.delivered(), 1000);
        assert!(s.st.ooo.is_empty(), "a contiguous piece was left behind");
        assert_eq!(s.st.contiguous_end(), 4004);
    }

    #[test]
    fn while_someone_writes_others_only_buffer() {
        let (mut s, now) = sink(1000, 100);
        s.st.buf.extend_from_slice(b"ab");
        let mut chunk = Vec::new();
        assert_eq!(s.st.writer_step(&mut chunk, now), WriterStep::Write);
        on_data(&mut s, 2, b"cd", now).unwrap();
        assert!(s.out.is_empty(), "wrote past the writer's claim");
        assert_eq!(s.st.buf, b"cd");
        assert!(matches!(
            s.st.writer_step(&mut Vec::new(), now),
            WriterStep::Wait { .. }
        ));
        s.st.writer_wrote(now);
        assert_eq!(s.st.delivered(), 2);
    }

    #[test]
    fn an_owed_ack_goes_to_the_writer() {
        let (mut s, now) = sink(1000, 100);
        s.st.owe_ack();
        assert_eq!(
            s.st.writer_step(&mut Vec::new(), now),
            WriterStep::Wait {
                ack: Some(0),
                ack_due: None
            }
        );
    }

    #[test]
    fn the_accessors_say_what_the_state_holds() {
        let (mut s, now) = sink(1 << 20, 3);
        on_data(&mut s, 10, b"later", now).unwrap();
        on_data(&mut s, 0, b"abcdef", now).unwrap();
        assert_eq!(s.st.delivered(), 3, "the socket took three bytes");
        assert_eq!(s.st.buffered(), 3 + 5, "three contiguous, five ahead");
        assert_eq!(s.st.fin(), None);
        s.st.on_fin(15).unwrap();
        assert_eq!(s.st.fin(), Some(15));
        assert_eq!(s.st.ack_sent(), 0);
        s.st.finish(15);
        assert_eq!(s.st.ack_sent(), 16);
    }

    #[test]
    fn a_shorter_piece_never_replaces_a_longer_one_held_at_its_offset() {
        let (mut s, now) = sink(1000, 0);
        on_data(&mut s, 3, b"defgh", now).unwrap();
        on_data(&mut s, 3, b"de", now).unwrap();
        assert!(!s.st.wants_piece(3, 5), "an equal piece adds nothing");
        assert!(s.st.wants_piece(3, 6), "a longer one does");
        on_data(&mut s, 0, b"abc", now).unwrap();
        assert_eq!(s.st.buf, b"abcdefgh");
    }

    #[test]
    fn a_held_piece_overlapping_the_bytes_before_it_gives_only_its_new_bytes() {
        let (mut s, now) = sink(1000, 0);
        on_data(&mut s, 1, b"bc", now).unwrap();
        on_data(&mut s, 0, b"ab", now).unwrap();
        assert_eq!(s.st.buf, b"abc", "the piece's last byte was lost");
    }

    #[test]
    fn a_repeated_fin_gets_the_final_ack_only_once_the_fin_was_delivered() {
        // A window of 16: a quarter of it (4 bytes) is worth an ACK at once.
        let (mut s, now) = sink(16, usize::MAX);
        let out = on_data(&mut s, 0, b"abcd", now).unwrap();
        assert_eq!(out.ack, Some(4));
        assert_eq!(s.st.ack_sent(), 4);
        assert_eq!(s.st.on_fin(4), Ok(None));
        assert_eq!(
            s.st.on_fin(4),
            Ok(None),
            "an ACK of the data alone is no answer to the FIN"
        );
        s.st.finish(4);
        assert_eq!(s.st.on_fin(4), Ok(Some(5)), "the FIN counts as one byte");
    }

    #[test]
    fn a_fin_may_sit_exactly_at_the_windows_end() {
        let (mut s, _) = sink(100, 0);
        assert_eq!(s.st.on_fin(100), Ok(None));
        let (mut s, _) = sink(100, 0);
        assert_eq!(
            s.st.on_fin(101),
            Err(Violation::BeyondWindow {
                end: 101,
                limit: 100
            })
        );
    }

    #[test]
    fn a_writer_already_told_of_a_held_back_ack_is_not_woken_again() {
        let (mut s, t0) = sink(1 << 30, usize::MAX);
        let floor = vec![0u8; ACK_EVERY as usize];
        let t1 = t0 + ACK_DELAY;
        assert!(on_data(&mut s, 0, &floor, t1).unwrap().ack.is_some());
        let t2 = t1 + Duration::from_micros(10);
        let held = on_data(&mut s, ACK_EVERY, &floor, t2).unwrap();
        assert!(held.ack.is_none() && held.wake_writer);
        let again = on_data(&mut s, 2 * ACK_EVERY, &floor, t2).unwrap();
        assert!(again.ack.is_none());
        assert!(
            !again.wake_writer,
            "everything was written and the writer already waits for the ACK's time"
        );
    }

    /// A deliverer that counts the buffers it is handed back.
    struct Recycler {
        inner: Sink,
        recycled: Vec<usize>,
    }

    impl Deliverer for Recycler {
        fn state(&mut self) -> &mut RecvState {
            self.inner.state()
        }
        fn write_unlocked(&mut self, bytes: &[u8]) -> usize {
            self.inner.write_unlocked(bytes)
        }
        fn has_socket(&self) -> bool {
            true
        }
        fn copy_piece(&mut self, bytes: &[u8]) -> Vec<u8> {
            bytes.to_vec()
        }
        fn recycle(&mut self, buf: Vec<u8>) {
            self.recycled.push(buf.capacity());
        }
    }

    #[test]
    fn a_large_buffer_goes_back_to_the_pool_and_a_small_one_is_kept() {
        let (inner, now) = sink(1 << 30, usize::MAX);
        let mut d = Recycler {
            inner,
            recycled: Vec::new(),
        };
        let big = vec![7u8; 4 * KEEP_CAPACITY];
        on_data(&mut d, 1, &big, now).unwrap();
        on_data(&mut d, 0, b"x", now).unwrap();
        assert_eq!(d.recycled.len(), 1, "the held piece went back");
        assert!(d.recycled[0] > KEEP_CAPACITY);
        assert_eq!(
            d.state().buf.capacity(),
            0,
            "no large buffer stays resident"
        );
        let small = vec![7u8; 100];
        let at = 1 + big.len() as u64;
        on_data(&mut d, at + 1, &small, now).unwrap();
        on_data(&mut d, at, b"y", now).unwrap();
        assert_eq!(
            d.recycled.len(),
            1,
            "a small buffer is kept for the next burst"
        );
        assert!(d.state().buf.capacity() > 0);
    }

    #[test]
    fn what_is_owed_counts_from_the_last_ack_only() {
        let (mut s, t0) = sink(1 << 30, usize::MAX);
        let floor = vec![0u8; ACK_EVERY as usize];
        let t1 = t0 + ACK_DELAY;
        assert_eq!(on_data(&mut s, 0, &floor, t1).unwrap().ack, Some(ACK_EVERY));
        let t2 = t1 + ACK_DELAY;
        assert_eq!(
            on_data(&mut s, ACK_EVERY, b"x", t2).unwrap().ack,
            None,
            "one byte after an ACK is not an ACK's worth"
        );
    }
}
