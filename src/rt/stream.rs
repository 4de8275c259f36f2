//! One application connection paired with one backend connection, and the two
//! threads that own its local socket.
//!
//! `stream-N-rx` reads the local socket (application on the client, backend
//! on the server), waits for send credit, and hands DATA to the session's
//! scheduler. It keeps every byte until the peer acknowledges it, so that a
//! link failure loses nothing: the session re-sends the unacknowledged bytes.
//!
//! `stream-N-tx` owns nothing but the socket: link readers put arriving bytes
//! into the stream's reorder buffer under a short lock and ring a bell; the
//! writer takes whatever is contiguous, writes it, and returns credit (ACK).
//! The buffer never holds more than the window the peer was granted, so a
//! link reader can always accept bytes at once and never waits on a slow
//! application. When bytes arrive in order and nothing is waiting before
//! them, the link reader offers them to the local socket itself, without
//! waiting (`MSG_DONTWAIT`): a request/response round trip then needs no
//! thread hand-off on this side, and bulk data skips one copy.

use crate::proto::frame::{Frame, RstReason, StreamId};
use crate::rt::budget::{BudgetWaiter, SendBudget};
use crate::rt::session::Session;
use crate::rt::wire::{Payload, PayloadPool};
use crate::util::sync::{Bell, lock};
use crate::util::thread::{self, ThreadCount};
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Longest a waiting stream thread sleeps without a ring; every event it
/// waits for rings its bell or closes the session, so this is only a net.
const IDLE_CHECK: Duration = Duration::from_secs(10);
/// Most out-of-order pieces one stream may hold; an honest sender stays far
/// below (pieces merge as gaps fill), a hostile one is reset.
const MAX_OOO_PIECES: usize = 4096;

/// First read size of a stream; doubles up to `buffer_size` while reads
/// fill it.
const INITIAL_READ: usize = 8 * 1024;
/// Reorder-buffer capacity a stream keeps between bursts; a thousand
/// streams that each kept a 64 KiB buffer held 100 MiB between them.
const KEEP_CAPACITY: usize = 16 * 1024;
/// Credit goes back to the peer (ACK) once this many bytes were delivered
/// since the last ACK (or a quarter window, if less), not after every write:
/// an ACK per small message doubled the frames of request/response traffic.
/// No sender can wait on it: one waiting for credit has a whole window
/// undelivered, or at least its floor (`budget::STREAM_FLOOR`, equal to
/// this) when it waits for the daemon's send budget. Bounds what a quiet
/// stream's peer keeps for re-sending.
const ACK_EVERY: u64 = crate::rt::budget::STREAM_FLOOR;
/// A fast stream acknowledges at most once per `ACK_DELAY`, or once per
/// `ACK_EVERY_MOST` bytes (a quarter window, if less): at gigabits per
/// second every ACK costs the sender a wake-up and a read, and the receiver
/// a send (1 MiB instead of 256 KiB: 15 % fewer context switches and 4-7 %
/// less CPU per GiB on loopback with 4 links). Slow streams, and many
/// streams sharing the links, still acknowledge every `ACK_EVERY`. A held
/// back ACK is sent by the writer thread when it falls due, so a sender
/// waiting for it never waits longer than `ACK_DELAY`.
const ACK_EVERY_MOST: u64 = 1024 * 1024;
const ACK_DELAY: Duration = Duration::from_millis(1);

const SEND_DONE: u8 = 1;
const RECV_DONE: u8 = 2;

/// Why the peer's frame broke this stream's rules; the stream is reset.
#[derive(Debug)]
pub struct Violation(pub String);

/// Shared state of one stream, reached by its two threads and by link readers.
pub struct Stream {
    pub id: StreamId,
    send: Mutex<SendState>,
    send_bell: Bell,
    recv: Mutex<RecvState>,
    recv_bell: Bell,
    socket: OnceLock<TcpStream>,
    /// Buffers for out-of-order pieces, shared with the session.
    pool: Arc<PayloadPool>,
    /// The daemon's send budget, charged for every unacknowledged byte.
    budget: Arc<SendBudget>,
    budget_waiter: Arc<BudgetWaiter>,
    done: AtomicU8,
    reset: AtomicBool,
    writer_busy: AtomicBool,
    /// The writer shut the local socket's write side (the peer's FIN was
    /// delivered); set before the call, so the reader can tell its own
    /// half-close from a reset (see [`reset_by_local_peer`]).
    write_shut: AtomicBool,
}

/// The sending direction: what was sent, what the peer has, what to re-send.
struct SendState {
    next: u64,
    /// Peer's cumulative delivered offset; FIN counts as one byte.
    acked: u64,
    fin: Option<u64>,
    unacked: VecDeque<(u64, Payload)>,
    /// Bytes charged to the send budget and not yet released: sent, not
    /// acknowledged, and the stream not reset.
    charged: u64,
}

/// The receiving direction: the reorder buffer.
struct RecvState {
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Contiguous bytes not yet taken by the writer.
    buf: Vec<u8>,
    /// Bytes that arrived ahead of a gap, by offset.
    ooo: BTreeMap<u64, Vec<u8>>,
    fin: Option<u64>,
    /// Bytes written to the local socket.
    delivered: u64,
    /// The writer thread is writing bytes it took from `buf`: nobody else
    /// may write to the socket until it is done.
    writing: bool,
    /// Highest delivered offset announced to the peer; the window is counted
    /// from here, as the peer counts it.
    ack_sent: u64,
    /// An ACK a link reader could not queue; the writer sends it.
    ack_owed: bool,
    /// When the last ACK was taken, to space a fast stream's ACKs.
    last_ack: Instant,
    /// An ACK is due but was held back to space ACKs; the writer thread
    /// sends it once `ACK_DELAY` has passed if nobody did meanwhile.
    ack_deferred: bool,
    window: u64,
}

impl RecvState {
    fn contiguous_end(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// The offset to acknowledge, if enough was delivered since the last
    /// ACK; counts it as announced (the caller sends it).
    fn take_ack(&mut self) -> Option<u64> {
        let owed = self.delivered - self.ack_sent.min(self.delivered);
        let quarter = (self.window / 4).max(1);
        if owed < quarter.min(ACK_EVERY) {
            return None;
        }
        if owed < quarter.min(ACK_EVERY_MOST) && self.last_ack.elapsed() < ACK_DELAY {
            self.ack_deferred = true;
            return None;
        }
        self.ack_deferred = false;
        self.last_ack = Instant::now();
        self.ack_sent = self.delivered;
        Some(self.delivered)
    }
}

/// What [`Stream::on_ack`] changed.
pub struct AckOutcome {
    /// Every byte and the FIN are delivered: the sending side is finished.
    pub send_finished: bool,
}

impl Stream {
    /// A stream with nothing sent or received; `window` is what we grant the
    /// peer (our receive buffer limit).
    pub fn new(
        id: StreamId,
        window: u32,
        pool: Arc<PayloadPool>,
        budget: Arc<SendBudget>,
    ) -> Arc<Stream> {
        let send_bell = Bell::new();
        Arc::new(Stream {
            id,
            send: Mutex::new(SendState {
                next: 0,
                acked: 0,
                fin: None,
                unacked: VecDeque::new(),
                charged: 0,
            }),
            budget_waiter: BudgetWaiter::new(send_bell.clone()),
            send_bell,
            recv: Mutex::new(RecvState {
                base: 0,
                buf: Vec::new(),
                ooo: BTreeMap::new(),
                fin: None,
                delivered: 0,
                writing: false,
                ack_sent: 0,
                ack_owed: false,
                last_ack: Instant::now(),
                ack_deferred: false,
                window: u64::from(window),
            }),
            recv_bell: Bell::new(),
            socket: OnceLock::new(),
            pool,
            budget,
            done: AtomicU8::new(0),
            reset: AtomicBool::new(false),
            writer_busy: AtomicBool::new(false),
            write_shut: AtomicBool::new(false),
        })
    }

    /// True once the stream was reset by either side.
    pub fn is_reset(&self) -> bool {
        self.reset.load(Ordering::SeqCst)
    }

    /// Takes an arriving DATA frame (link reader): writes it to the local
    /// socket at once if it is next in order and the socket has room, keeps
    /// the rest in the reorder buffer. Returns an ACK to send, if one is due.
    pub fn on_data(&self, offset: u64, data: &[u8]) -> Result<Option<u64>, Violation> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| Violation("offset overflow".into()))?;
        let mut st = lock(&self.recv);
        if end > st.ack_sent + st.window {
            return Err(Violation(format!(
                "DATA up to {end} beyond window (acked {} + {})",
                st.ack_sent, st.window
            )));
        }
        if let Some(fin) = st.fin
            && end > fin
        {
            return Err(Violation(format!("DATA up to {end} past FIN {fin}")));
        }
        let contig = st.contiguous_end();
        if end <= contig {
            return Ok(None);
        }
        if offset > contig {
            self.hold(&mut st, offset, data)?;
            return Ok(None);
        }
        let fresh = &data[(contig - offset) as usize..];
        if st.buf.is_empty() && !st.writing && self.socket.get().is_some() {
            st = self.deliver(st, fresh);
        } else {
            st.buf.extend_from_slice(fresh);
        }
        // Whatever waited for these bytes follows them into the buffer: the
        // writer thread takes only the buffer, never the pieces.
        self.drain_ooo(&mut st);
        let deferred_before = st.ack_deferred;
        let ack = st.take_ack();
        // The writer alone writes what is left buffered, ends the stream and
        // sends a held-back ACK when its time comes, so it must hear of all
        // three, even when this thread wrote everything.
        let wake = !st.buf.is_empty()
            || st.fin == Some(st.contiguous_end())
            || (st.ack_deferred && !deferred_before);
        drop(st);
        if wake {
            self.recv_bell.ring();
        }
        Ok(ack)
    }

    /// Keeps a piece that arrived ahead of a gap.
    fn hold(&self, st: &mut RecvState, offset: u64, data: &[u8]) -> Result<(), Violation> {
        let longer = st
            .ooo
            .get(&offset)
            .is_none_or(|have| have.len() < data.len());
        if !longer {
            return Ok(());
        }
        if st.ooo.len() >= MAX_OOO_PIECES {
            return Err(Violation("too many out-of-order pieces".into()));
        }
        if let Some(old) = st.ooo.insert(offset, self.pool.copy_of(data)) {
            self.pool.give_vec(old);
        }
        Ok(())
    }

    /// Writes in-order bytes to the local socket from this link reader, then
    /// whatever became contiguous meanwhile, while the socket takes them.
    /// The lock is not held during the system calls: `writing` claims the
    /// socket instead, so other link readers buffer their bytes and the
    /// writer thread waits. What the socket did not take is left at the
    /// front of the buffer.
    fn deliver<'a>(
        &'a self,
        st: MutexGuard<'a, RecvState>,
        first: &[u8],
    ) -> MutexGuard<'a, RecvState> {
        let (mut st, all) = self.write_claimed(st, first);
        if !all {
            return st;
        }
        loop {
            let mut next = if !st.buf.is_empty() {
                std::mem::take(&mut st.buf)
            } else if let Some((mut piece, skip)) = next_in_order(&mut st) {
                piece.drain(..skip);
                piece
            } else {
                return st;
            };
            let (guard, all) = self.write_claimed(st, &next);
            st = guard;
            next.clear();
            // Kept for the next burst only if small: a buffer that once held
            // a lagging application's backlog would otherwise stay resident
            // for the stream's life.
            if st.buf.capacity() == 0 && next.capacity() <= KEEP_CAPACITY {
                st.buf = next;
            } else {
                self.pool.give_vec(next);
            }
            if !all {
                return st;
            }
        }
    }

    /// Writes `bytes`, the next in order, with the socket claimed and the
    /// lock let go; true when the socket took them all.
    fn write_claimed<'a>(
        &'a self,
        mut st: MutexGuard<'a, RecvState>,
        bytes: &[u8],
    ) -> (MutexGuard<'a, RecvState>, bool) {
        st.writing = true;
        st.base += bytes.len() as u64;
        drop(st);
        let n = self.write_now(bytes);
        let mut st = lock(&self.recv);
        st.writing = false;
        if n < bytes.len() {
            let rest = &bytes[n..];
            st.base -= rest.len() as u64;
            st.buf.splice(0..0, rest.iter().copied());
        }
        st.delivered = st.base;
        (st, n == bytes.len())
    }

    /// Moves out-of-order pieces that became contiguous into the buffer.
    fn drain_ooo(&self, st: &mut RecvState) {
        while let Some((piece, skip)) = next_in_order(st) {
            st.buf.extend_from_slice(&piece[skip..]);
            self.pool.give_vec(piece);
        }
    }

    /// Writes what the local socket takes without waiting; 0 when it has no
    /// socket yet, is full, or failed (the writer thread then meets the
    /// error itself and handles it).
    fn write_now(&self, bytes: &[u8]) -> usize {
        let Some(socket) = self.socket.get() else {
            return 0;
        };
        if self.is_reset() {
            return 0;
        }
        loop {
            match socket2::SockRef::from(socket).send_with_flags(bytes, libc::MSG_DONTWAIT) {
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return 0,
            }
        }
    }

    /// Hands an ACK a link reader could not queue to the writer thread.
    pub fn owe_ack(&self) {
        lock(&self.recv).ack_owed = true;
        self.recv_bell.ring();
    }

    /// Records the peer's FIN (link reader).
    pub fn on_fin(&self, offset: u64) -> Result<(), Violation> {
        let mut st = lock(&self.recv);
        match st.fin {
            Some(f) if f != offset => {
                return Err(Violation(format!("FIN at {offset} after FIN at {f}")));
            }
            Some(_) => return Ok(()),
            None => {}
        }
        let highest = st
            .ooo
            .iter()
            .next_back()
            .map(|(o, d)| o + d.len() as u64)
            .unwrap_or(0)
            .max(st.contiguous_end());
        if offset < highest {
            return Err(Violation(format!(
                "FIN at {offset} below data at {highest}"
            )));
        }
        st.fin = Some(offset);
        drop(st);
        self.recv_bell.ring();
        Ok(())
    }

    /// Applies the peer's cumulative ACK (link reader): frees credit and
    /// retransmission copies.
    pub fn on_ack(&self, delivered: u64, pool: &PayloadPool) -> Result<AckOutcome, Violation> {
        let mut st = lock(&self.send);
        let limit = st.next + u64::from(st.fin.is_some());
        if delivered > limit {
            return Err(Violation(format!(
                "ACK {delivered} beyond what was sent ({limit})"
            )));
        }
        if delivered <= st.acked {
            return Ok(AckOutcome {
                send_finished: false,
            });
        }
        let freed = (delivered.min(st.next) - st.acked.min(st.next)).min(st.charged);
        st.charged -= freed;
        st.acked = delivered;
        while let Some((off, bytes)) = st.unacked.front() {
            if off + bytes.len() as u64 <= delivered {
                if let Some((_, bytes)) = st.unacked.pop_front() {
                    pool.give(bytes);
                }
            } else {
                break;
            }
        }
        let finished = st.fin.is_some_and(|f| delivered == f + 1);
        drop(st);
        self.budget.release(freed);
        self.send_bell.ring();
        Ok(AckOutcome {
            send_finished: finished && self.mark_done(SEND_DONE),
        })
    }

    /// Sets a done bit; true when this call completed the stream (both bits).
    pub fn mark_done(&self, bit: u8) -> bool {
        let before = self.done.fetch_or(bit, Ordering::SeqCst);
        before & bit == 0 && (before | bit) == SEND_DONE | RECV_DONE
    }

    /// Marks the stream reset and wakes both its threads. `hard` makes the
    /// local socket close with a TCP reset, so the application or backend
    /// sees an abort rather than a clean end. Returns false if the stream
    /// was already reset.
    pub fn reset(&self, hard: bool) -> bool {
        if self.reset.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.abandon_unacked();
        if let Some(sock) = self.socket.get() {
            if hard {
                let _ = socket2::SockRef::from(sock).set_linger(Some(Duration::ZERO));
            }
            // Waking a reader must not send a FIN ahead of the reset, so only
            // a writer stuck in `write` gets the write side shut too.
            let how = if self.writer_busy.load(Ordering::SeqCst) || !hard {
                Direction::Both
            } else {
                Direction::Read
            };
            let _ = sock.shutdown(how);
        }
        self.send_bell.ring();
        self.recv_bell.ring();
        true
    }

    /// Gives up the bytes kept for re-sending (a reset stream re-sends
    /// nothing) and returns their budget.
    fn abandon_unacked(&self) {
        self.budget_waiter.leave();
        let freed = {
            let mut st = lock(&self.send);
            for (_, bytes) in st.unacked.drain(..) {
                self.pool.give(bytes);
            }
            std::mem::take(&mut st.charged)
        };
        self.budget.release(freed);
    }

    /// Frames that re-create what a failed link may have lost for this
    /// stream: OPEN if the peer has acknowledged nothing, every
    /// unacknowledged byte, a pending FIN, and our current ACK.
    pub fn resend_frames(&self, out: &mut Vec<Resend>) {
        if self.is_reset() {
            return;
        }
        {
            let st = lock(&self.send);
            if st.acked == 0 {
                out.push(Resend::Control(Frame::Open { stream: self.id }));
            }
            for (offset, bytes) in &st.unacked {
                out.push(Resend::Data(self.id, *offset, bytes.clone()));
            }
            if let Some(f) = st.fin
                && st.acked <= f
            {
                out.push(Resend::Control(Frame::Fin {
                    stream: self.id,
                    offset: f,
                }));
            }
        }
        let ack = lock(&self.recv).ack_sent;
        if ack > 0 {
            out.push(Resend::Control(Frame::Ack {
                stream: self.id,
                delivered: ack,
            }));
        }
    }

    /// Bytes acknowledged and sent, for stats and drain decisions.
    pub fn progress(&self) -> (u64, u64) {
        let st = lock(&self.send);
        (st.acked, st.next)
    }
}

impl Drop for Stream {
    /// However a stream ends, the budget it holds goes back: a leak would
    /// shrink the daemon's budget for good.
    fn drop(&mut self) {
        self.budget_waiter.leave();
        let st = self.send.get_mut().unwrap_or_else(|p| p.into_inner());
        self.budget.release(std::mem::take(&mut st.charged));
    }
}

/// A frame to send again after a link failure.
pub enum Resend {
    Control(Frame<'static>),
    Data(StreamId, u64, Payload),
}

/// Takes the first out-of-order piece that now continues the contiguous
/// bytes, with how many of its bytes are already there; drops pieces wholly
/// covered on the way.
fn next_in_order(st: &mut RecvState) -> Option<(Vec<u8>, usize)> {
    loop {
        let contig = st.contiguous_end();
        let (&off, _) = st.ooo.iter().next()?;
        if off > contig {
            return None;
        }
        let piece = st.ooo.remove(&off)?;
        if off + piece.len() as u64 > contig {
            return Some((piece, (contig - off) as usize));
        }
    }
}

/// Starts both threads of a stream whose local socket is connected
/// (an accepted application connection on the client).
pub fn start(
    session: &Arc<Session>,
    stream: &Arc<Stream>,
    socket: TcpStream,
    threads: &ThreadCount,
) -> io::Result<()> {
    attach(stream, &socket)?;
    let reader_sock = socket.try_clone()?;
    let (s, st) = (session.clone(), stream.clone());
    let id = stream.id;
    thread::spawn(threads, format!("stream-{id}-tx"), move || {
        write_loop(&s, &st, socket)
    })?;
    let (s, st) = (session.clone(), stream.clone());
    thread::spawn(threads, format!("stream-{id}-rx"), move || {
        read_loop(&s, &st, reader_sock)
    })?;
    Ok(())
}

/// Connects the backend for a stream the peer opened (server), then runs
/// as its writer. Bytes that arrive meanwhile wait in the reorder buffer.
pub fn start_backend(
    session: &Arc<Session>,
    stream: &Arc<Stream>,
    threads: &ThreadCount,
) -> io::Result<()> {
    let (s, st, t) = (session.clone(), stream.clone(), threads.clone());
    let id = stream.id;
    thread::spawn(threads, format!("stream-{id}-tx"), move || {
        let socket = match s.connect_backend() {
            Ok(sock) => sock,
            Err(e) => {
                log::warn!(
                    "session {:016x} stream {id}: backend connect failed: {e}",
                    s.id
                );
                s.abort_stream(&st, RstReason::ConnectFailed, true, true);
                return Ok(());
            }
        };
        attach(&st, &socket).map_err(|e| e.to_string())?;
        if st.is_reset() {
            let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
            return Ok(());
        }
        let reader_sock = socket.try_clone().map_err(|e| e.to_string())?;
        let (s2, st2) = (s.clone(), st.clone());
        if let Err(e) = thread::spawn(&t, format!("stream-{id}-rx"), move || {
            read_loop(&s2, &st2, reader_sock)
        }) {
            s.abort_stream(&st, RstReason::Refused, true, true);
            return Err(e.to_string());
        }
        write_loop(&s, &st, socket)
    })?;
    Ok(())
}

fn attach(stream: &Stream, socket: &TcpStream) -> io::Result<()> {
    socket.set_nodelay(true)?;
    let _ = stream.socket.set(socket.try_clone()?);
    Ok(())
}

/// Sleeps until `bell` rings, the session closes or `limit` passes: idle
/// streams cost no CPU, however many there are.
fn sleep_until_rung(bell: &Bell, session: &Session, limit: Duration) {
    crossbeam_channel::select! {
        recv(bell.receiver()) -> _ => {},
        recv(session.closed_signal()) -> _ => {},
        default(limit) => {},
    }
}

/// Local socket → DATA frames, within the peer's window.
fn read_loop(
    session: &Arc<Session>,
    stream: &Arc<Stream>,
    mut socket: TcpStream,
) -> Result<(), String> {
    let id = stream.id;
    let max = session.send_payload_limit();
    // Starts small and doubles while reads fill it: a thousand idle or
    // chatty streams then hold kilobytes each, a bulk stream soon reads
    // `max` bytes per call.
    let mut size = max.min(INITIAL_READ);
    let mut buf = Vec::new();
    // The last read emptied the socket, so the next one would most likely
    // sleep. A bulk stream then gives its large buffer back and sleeps in a
    // one-byte peek instead: a thousand streams waiting for their
    // applications otherwise held a `buffer_size` buffer each.
    let mut drained = false;
    loop {
        if drained && size > INITIAL_READ {
            session.payloads().give_vec(std::mem::take(&mut buf));
            // The peek may be what reports a reset (once: the error is
            // consumed), so its error must count as the read's.
            if let Err(e) = wait_readable(&socket) {
                return local_read_failed(session, stream, &e);
            }
        }
        // Credit is looked at once there is something to send: what the
        // budget allowed before a long sleep may be spent by others since.
        let Some(credit) = wait_credit(session, stream) else {
            return Ok(());
        };
        if buf.len() < size {
            buf = session.payloads().take(size);
        }
        let want = credit.min(size);
        let n = match socket.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return local_read_failed(session, stream, &e),
        };
        if stream.is_reset() {
            return Ok(());
        }
        if n == 0 {
            if reset_by_local_peer(stream, &socket) {
                let e = io::Error::from(io::ErrorKind::ConnectionReset);
                return local_read_failed(session, stream, &e);
            }
            send_fin(session, stream);
            return Ok(());
        }
        drained = n < want;
        if n == size && size < max {
            size = (size * 2).min(max);
        }
        let bytes = Arc::new(take_payload(&mut buf, n));
        let offset = {
            let mut st = lock(&stream.send);
            let offset = st.next;
            st.next += n as u64;
            st.charged += n as u64;
            st.unacked.push_back((offset, bytes.clone()));
            offset
        };
        stream.budget.charge(n as u64);
        session.send_data(id, offset, bytes);
    }
}

/// Sleeps until the local socket has a byte to read, an end or an error.
fn wait_readable(socket: &TcpStream) -> io::Result<()> {
    loop {
        match socket.peek(&mut [0u8; 1]) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other.map(drop),
        }
    }
}

/// The local socket failed (reset by the application or backend): the peer
/// must see a reset too, never a clean end of a stream that lost bytes.
/// Returns what the reader returns then.
fn local_read_failed(session: &Session, stream: &Arc<Stream>, e: &io::Error) -> Result<(), String> {
    if !stream.is_reset() {
        log::debug!("stream {}: local read failed: {e}", stream.id);
        session.abort_stream(stream, RstReason::Reset, true, false);
    }
    Ok(())
}

/// True when an end of file on the local socket was really a reset whose
/// error another call on the socket took first. A socket reports a reset's
/// error once, to whichever call comes first (a link reader's or the stream
/// writer's send, say); the reader then sees only an end of file, and used
/// to forward a reset as a clean FIN, cutting the stream short unnoticed.
/// After a genuine FIN the socket may still send (CLOSE_WAIT), so an empty
/// send succeeds; after a reset it fails. Our own half-close also makes it
/// fail, hence `write_shut`, which the writer sets before shutting.
fn reset_by_local_peer(stream: &Stream, socket: &TcpStream) -> bool {
    if stream.write_shut.load(Ordering::SeqCst) {
        return false;
    }
    let probe = socket2::SockRef::from(socket).send_with_flags(&[], libc::MSG_DONTWAIT);
    probe.is_err() && !stream.write_shut.load(Ordering::SeqCst)
}

/// The first `n` bytes of `buf` as a payload. A mostly full buffer is handed
/// over as it is (no copy; the caller takes a new one); a small read is
/// copied to a payload of its own size and the buffer kept for the next
/// read, so that bytes waiting for their ACK hold no slack — a thousand
/// chatty streams once held hundreds of MiB of mostly empty buffers.
fn take_payload(buf: &mut Vec<u8>, n: usize) -> Vec<u8> {
    if 2 * n >= buf.len() {
        let mut full = std::mem::take(buf);
        full.truncate(n);
        full
    } else {
        buf[..n].to_vec()
    }
}

/// Waits until the peer's window and the daemon's send budget allow
/// sending; `None` when the stream or session ends meanwhile.
fn wait_credit(session: &Session, stream: &Stream) -> Option<usize> {
    let window = u64::from(session.peer_window());
    let budget = &stream.budget;
    loop {
        if stream.is_reset() || session.is_closed() {
            return None;
        }
        let own = {
            let st = lock(&stream.send);
            st.next - st.acked.min(st.next)
        };
        let credit = budget.credit(own, window);
        if credit > 0 {
            return Some(credit as usize);
        }
        if own < window {
            // Short of budget, not of window: queue for it, and look once
            // more in case it came back before we were in the queue.
            budget.wait_turn(&stream.budget_waiter);
            if budget.credit(own, window) > 0 {
                continue;
            }
        }
        sleep_until_rung(&stream.send_bell, session, IDLE_CHECK);
    }
}

fn send_fin(session: &Session, stream: &Stream) {
    let offset = {
        let mut st = lock(&stream.send);
        st.fin = Some(st.next);
        st.next
    };
    log::debug!(
        "stream {}: local end closed at {offset}, sending FIN",
        stream.id
    );
    session.send_control(Frame::Fin {
        stream: stream.id,
        offset,
    });
}

/// Reorder buffer → local socket, returning credit as bytes leave.
fn write_loop(
    session: &Arc<Session>,
    stream: &Arc<Stream>,
    mut socket: TcpStream,
) -> Result<(), String> {
    let mut chunk = Vec::new();
    loop {
        match take_next(stream, &mut chunk) {
            Next::Stop => return Ok(()),
            Next::Wait { ack, ack_due } => {
                if let Some(delivered) = ack {
                    send_ack(session, stream, delivered);
                }
                if session.is_closed() {
                    return Ok(());
                }
                sleep_until_rung(&stream.recv_bell, session, ack_due.unwrap_or(IDLE_CHECK));
            }
            Next::Write => {
                stream.writer_busy.store(true, Ordering::SeqCst);
                let result = socket.write_all(&chunk);
                stream.writer_busy.store(false, Ordering::SeqCst);
                if let Err(e) = result {
                    if !stream.is_reset() {
                        log::debug!("stream {}: local write failed: {e}", stream.id);
                        session.abort_stream(stream, RstReason::Reset, true, false);
                    }
                    return Ok(());
                }
                chunk.clear();
                if chunk.capacity() > KEEP_CAPACITY {
                    // A burst grew it; do not keep a burst's worth per stream.
                    chunk = Vec::new();
                }
                let ack = {
                    let mut st = lock(&stream.recv);
                    st.writing = false;
                    st.delivered = st.base;
                    st.take_ack()
                };
                if let Some(delivered) = ack {
                    send_ack(session, stream, delivered);
                }
            }
            Next::Finish(fin) => {
                stream.write_shut.store(true, Ordering::SeqCst);
                let _ = socket.shutdown(Direction::Write);
                log::debug!(
                    "stream {}: peer finished at {fin}, local write side shut",
                    stream.id
                );
                lock(&stream.recv).ack_sent = fin + 1;
                send_ack(session, stream, fin + 1);
                if stream.mark_done(RECV_DONE) {
                    session.forget_stream(stream.id);
                }
                return Ok(());
            }
        }
    }
}

/// What the writer found in the reorder buffer.
enum Next {
    /// `chunk` holds bytes to write.
    Write,
    /// Every byte is written and the peer finished at this offset.
    Finish(u64),
    /// Nothing to write yet. Send `ack` first: one a link reader could not
    /// queue, or one held back that is now due. `ack_due`: an ACK is held
    /// back and falls due in this long; look again then.
    Wait {
        ack: Option<u64>,
        ack_due: Option<Duration>,
    },
    Stop,
}

fn take_next(stream: &Stream, chunk: &mut Vec<u8>) -> Next {
    if stream.is_reset() {
        return Next::Stop;
    }
    let mut st = lock(&stream.recv);
    // While a link reader writes (`writing`), the bytes here come after its.
    if !st.writing {
        if !st.buf.is_empty() {
            std::mem::swap(&mut st.buf, chunk);
            st.base += chunk.len() as u64;
            st.writing = true;
            return Next::Write;
        }
        if st.fin == Some(st.base) {
            return Next::Finish(st.base);
        }
    }
    let mut ack = std::mem::take(&mut st.ack_owed).then_some(st.ack_sent);
    let mut ack_due = None;
    if st.ack_deferred {
        let left = ACK_DELAY.saturating_sub(st.last_ack.elapsed());
        if left.is_zero() {
            ack = st.take_ack().or(ack);
        } else {
            ack_due = Some(left);
        }
    }
    Next::Wait { ack, ack_due }
}

fn send_ack(session: &Session, stream: &Stream, delivered: u64) {
    session.send_control(Frame::Ack {
        stream: stream.id,
        delivered,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_stream(window: u32) -> Arc<Stream> {
        let budget = Arc::new(SendBudget::new(1 << 20));
        Stream::new(1, window, Arc::new(PayloadPool::new(16)), budget)
    }

    #[test]
    fn reorders_and_drops_duplicates() {
        let s = test_stream(1000);
        s.on_data(5, b"fghij").unwrap();
        s.on_data(0, b"abc").unwrap();
        s.on_data(0, b"abc").unwrap();
        s.on_data(3, b"de").unwrap();
        s.on_data(2, b"cdefgh").unwrap();
        let st = lock(&s.recv);
        assert_eq!(st.buf, b"abcdefghij");
        assert!(st.ooo.is_empty());
    }

    #[test]
    fn window_is_enforced() {
        let s = test_stream(4);
        assert!(s.on_data(0, b"abcd").is_ok());
        assert!(s.on_data(4, b"e").is_err());
    }

    #[test]
    fn data_past_fin_is_a_violation() {
        let s = test_stream(100);
        s.on_fin(3).unwrap();
        assert!(s.on_data(0, b"abcd").is_err());
        assert!(s.on_fin(4).is_err());
    }

    #[test]
    fn writer_hears_of_a_fin_reached_by_a_direct_write() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut app, _) = listener.accept().unwrap();
        let s = test_stream(1000);
        attach(&s, &local).unwrap();
        s.on_fin(5).unwrap();
        while s.recv_bell.receiver().try_recv().is_ok() {}
        s.on_data(0, b"hello").unwrap();
        let mut got = [0u8; 5];
        app.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello", "written by the link reader itself");
        assert!(
            s.recv_bell.receiver().try_recv().is_ok(),
            "the writer must wake to end the stream"
        );
    }

    #[test]
    fn pieces_waiting_behind_a_partly_written_frame_join_the_buffer() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_app, _) = listener.accept().unwrap();
        let s = test_stream(1 << 24);
        attach(&s, &local).unwrap();
        // Far more than the sockets hold while the application reads nothing.
        let big = vec![7u8; 8 << 20];
        s.on_data(8 << 20, b"tail").unwrap();
        s.on_data(0, &big).unwrap();
        let st = lock(&s.recv);
        assert!(st.delivered < 8 << 20, "the socket took everything");
        assert!(st.ooo.is_empty(), "a contiguous piece was left behind");
        assert_eq!(st.contiguous_end(), (8 << 20) + 4);
    }

    #[test]
    fn a_held_back_ack_is_sent_by_the_writer_when_due() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_app, _) = listener.accept().unwrap();
        let s = test_stream(1 << 20);
        attach(&s, &local).unwrap();
        // An ACK was just sent: the next one is held back.
        lock(&s.recv).last_ack = Instant::now() + Duration::from_secs(3600);
        while s.recv_bell.receiver().try_recv().is_ok() {}
        assert_eq!(s.on_data(0, &[1u8; 20_000]).unwrap(), None);
        assert!(
            s.recv_bell.receiver().try_recv().is_ok(),
            "the writer must hear of the held-back ACK"
        );
        let mut chunk = Vec::new();
        match take_next(&s, &mut chunk) {
            Next::Wait { ack: None, ack_due } => {
                assert!(ack_due.is_some_and(|d| d <= ACK_DELAY), "{ack_due:?}");
            }
            _ => panic!("expected a wait for the held-back ACK"),
        }
        lock(&s.recv).last_ack = Instant::now() - ACK_DELAY;
        match take_next(&s, &mut chunk) {
            Next::Wait {
                ack: Some(20_000),
                ack_due: None,
            } => {}
            _ => panic!("the held-back ACK was not sent when due"),
        }
    }

    #[test]
    fn small_reads_leave_no_slack_in_payloads() {
        let mut buf = vec![1u8; 64 * 1024];
        let small = take_payload(&mut buf, 100);
        assert_eq!(small.len(), 100);
        assert!(small.capacity() < 1024, "a small payload kept a big buffer");
        assert_eq!(
            buf.len(),
            64 * 1024,
            "the read buffer is kept for the next read"
        );
        let big = take_payload(&mut buf, 60 * 1024);
        assert_eq!(big.len(), 60 * 1024);
        assert!(buf.is_empty(), "a full buffer is handed over, not copied");
    }

    #[test]
    fn ack_beyond_sent_is_a_violation() {
        let s = test_stream(100);
        assert!(s.on_ack(1, &PayloadPool::new(16)).is_err());
    }
}
