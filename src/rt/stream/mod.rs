//! One application connection paired with one backend connection: its shared
//! state, and the two threads that own its local socket (`reader`, `writer`).
//!
//! `stream-N-rx` (`reader.rs`) reads the local socket (application on the
//! client, backend on the server), waits for send credit, and hands DATA to
//! the session's scheduler. Every byte stays in the stream's
//! [`SendState`] until the peer acknowledges it, so that a link failure
//! loses nothing: the session re-sends the unacknowledged bytes.
//!
//! `stream-N-tx` (`writer.rs`) owns nothing but the socket: link readers
//! put arriving bytes into the stream's [`RecvState`] under a short lock and
//! ring a bell; the writer takes whatever is contiguous, writes it, and
//! returns credit (ACK). When bytes arrive in order and nothing waits before
//! them, the link reader offers them to the local socket itself, without
//! waiting (`MSG_DONTWAIT`): a request/response round trip then needs no
//! thread hand-off on this side, and bulk data skips one copy.
//!
//! What a stream needs of its session is the [`StreamHost`] trait, which
//! the session implements: this module never names the session's type.

mod reader;
mod writer;

use crate::proto::error::Violation;
use crate::proto::frame::{Frame, RstReason, StreamId};
use crate::proto::recv::{self, DataOutcome, Deliverer, RecvState};
use crate::proto::scheduler::LinkLoad;
use crate::proto::send::{Payload, Resend, SendState, Sent, StallCheck};
use crate::rt::budget::{BudgetWaiter, SendBudget};
use crate::rt::pool::PayloadPool;
use crate::util::sync::{Bell, lock};
use crate::util::thread::{self, ThreadCount};
use crossbeam_channel::Receiver;
use std::io;
use std::net::{Shutdown as Direction, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Longest a waiting stream thread sleeps without a ring; every event it
/// waits for rings its bell or closes the session, so this is only a net.
const IDLE_CHECK: Duration = Duration::from_secs(10);

const SEND_DONE: u8 = 1;
const RECV_DONE: u8 = 2;

/// What a stream's threads ask of the session they belong to.
pub trait StreamHost: Send + Sync {
    /// The session's id, for logs.
    fn session_id(&self) -> u64;
    /// Read buffers, recycled once acknowledged.
    fn payloads(&self) -> &PayloadPool;
    /// Largest DATA payload to send.
    fn send_payload_limit(&self) -> usize;
    /// Bytes a stream may have unacknowledged towards the peer.
    fn peer_window(&self) -> u64;
    /// Hands a DATA frame of `stream` to a link (or keeps it for the
    /// re-send when no link is up), and records which link took it.
    fn send_data(&self, stream: &Arc<Stream>, offset: u64, bytes: Payload);
    /// Sends a control frame, waiting for room if the links' queues are
    /// full.
    fn send_control(&self, f: Frame<'static>);
    /// Resets the stream: tells the peer (`tell_peer`), closes the local
    /// socket (`hard`: with a TCP reset), and forgets it.
    fn abort_stream(&self, stream: &Arc<Stream>, reason: RstReason, tell_peer: bool, hard: bool);
    /// Both directions of stream `id` finished, the last with our final
    /// ACK `final_ack`: forget it (remembering that ACK).
    fn stream_finished(&self, id: StreamId, final_ack: u64);
    /// True once the session is over; stream threads stop.
    fn is_closed(&self) -> bool;
    /// Ready once the session is closed, for `select!`.
    fn closed_signal(&self) -> &Receiver<()>;
    /// Connects the backend for a stream the peer opened (server).
    fn connect_backend(&self) -> io::Result<TcpStream>;
    /// Says that the backend connect of stream `id` failed (throttled: a
    /// backend that is down fails every stream).
    fn warn_backend_failed(&self, id: StreamId, e: &io::Error);
}

/// Shared state of one stream, reached by its two threads and by link readers.
pub struct Stream {
    pub id: StreamId,
    send: Mutex<SendState>,
    send_bell: Bell,
    recv: Mutex<RecvState>,
    recv_bell: Bell,
    /// The local socket, shared with the stream's two threads: one
    /// descriptor per connection (`&TcpStream` reads and writes).
    socket: OnceLock<Arc<TcpStream>>,
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
    /// half-close from a reset (see `reader::reset_by_local_peer`).
    write_shut: AtomicBool,
    /// The session watches the stream's bytes in flight for a stall. Set
    /// and cleared only under the `send` lock, with the state it reflects.
    watched: AtomicBool,
}

/// What [`Stream::sent_on`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentOn {
    /// The stream was not watched for a stall: the session must watch it.
    pub watch: bool,
    /// Nothing else of the stream is in flight.
    pub alone: bool,
}

/// A link reader delivering one frame: the receive state, locked while it
/// decides and let go while it writes the local socket.
struct Delivery<'a> {
    stream: &'a Stream,
    guard: Option<MutexGuard<'a, RecvState>>,
}

impl Deliverer for Delivery<'_> {
    fn state(&mut self) -> &mut RecvState {
        let stream = self.stream;
        self.guard.get_or_insert_with(|| lock(&stream.recv))
    }

    fn write_unlocked(&mut self, bytes: &[u8]) -> usize {
        self.guard = None;
        self.stream.write_now(bytes)
    }

    fn has_socket(&self) -> bool {
        self.stream.socket.get().is_some()
    }

    fn copy_piece(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.stream.pool.copy_of(bytes)
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        self.stream.pool.give_vec(buf);
    }
}

impl Stream {
    /// A stream with nothing sent or received; `window` is what we grant the
    /// peer (our receive buffer limit); `by_peer` when the peer opened it.
    pub fn new(
        id: StreamId,
        window: u32,
        by_peer: bool,
        pool: Arc<PayloadPool>,
        budget: Arc<SendBudget>,
    ) -> Arc<Stream> {
        let send_bell = Bell::new();
        let send = if by_peer {
            SendState::opened_by_peer()
        } else {
            SendState::new()
        };
        Arc::new(Stream {
            id,
            send: Mutex::new(send),
            budget_waiter: BudgetWaiter::new(send_bell.clone()),
            send_bell,
            recv: Mutex::new(RecvState::new(u64::from(window), Instant::now())),
            recv_bell: Bell::new(),
            socket: OnceLock::new(),
            pool,
            budget,
            done: AtomicU8::new(0),
            reset: AtomicBool::new(false),
            writer_busy: AtomicBool::new(false),
            write_shut: AtomicBool::new(false),
            watched: AtomicBool::new(false),
        })
    }

    /// True once the stream was reset by either side.
    pub fn is_reset(&self) -> bool {
        self.reset.load(Ordering::SeqCst)
    }

    /// Takes an arriving DATA frame (link reader): writes it to the local
    /// socket at once if it is next in order and the socket has room, keeps
    /// the rest. Returns an ACK to send, if one is due.
    pub fn on_data(&self, offset: u64, data: &[u8]) -> Result<Option<u64>, Violation> {
        let mut delivery = Delivery {
            stream: self,
            guard: Some(lock(&self.recv)),
        };
        let DataOutcome { ack, wake_writer } =
            recv::on_data(&mut delivery, offset, data, Instant::now())?;
        drop(delivery);
        if wake_writer {
            self.recv_bell.ring();
        }
        Ok(ack)
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
        crate::util::net::send_now(socket, &[io::IoSlice::new(bytes)]).unwrap_or(0)
    }

    /// Hands an ACK a link reader could not queue to the writer thread.
    pub fn owe_ack(&self) {
        lock(&self.recv).owe_ack();
        self.recv_bell.ring();
    }

    /// Records the peer's FIN (link reader). Returns our final ACK when the
    /// FIN is a repeat that arrived after we finished, to send again.
    pub fn on_fin(&self, offset: u64) -> Result<Option<u64>, Violation> {
        let again = lock(&self.recv).on_fin(offset)?;
        self.recv_bell.ring();
        Ok(again)
    }

    /// The offset our last ACK announced (the final ACK once the receiving
    /// side finished).
    pub fn ack_sent(&self) -> u64 {
        lock(&self.recv).ack_sent()
    }

    /// Applies the peer's cumulative ACK (link reader): frees credit and
    /// retransmission copies. True when this ACK finished the stream (both
    /// directions done).
    pub fn on_ack(&self, delivered: u64) -> Result<bool, Violation> {
        let outcome = lock(&self.send).on_ack(delivered, Instant::now(), |p| self.pool.give(p))?;
        self.budget.release(outcome.freed);
        self.send_bell.ring();
        Ok(outcome.finished && self.mark_done(SEND_DONE))
    }

    /// Sets a done bit; true when this call completed the stream (both bits).
    fn mark_done(&self, bit: u8) -> bool {
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
    /// nothing) and returns their budget. The waiter leaves the budget's
    /// queue first, so the wake-up this release makes goes to a stream that
    /// can use it.
    fn abandon_unacked(&self) {
        self.budget_waiter.leave();
        let freed = lock(&self.send).abandon(|p| self.pool.give(p));
        self.budget.release(freed);
    }

    /// Frames that re-create what a failed link may have lost for this
    /// stream: OPEN if the peer has acknowledged nothing, the
    /// unacknowledged bytes only `lost` links (by id) carried, a pending
    /// FIN, and our current ACK.
    pub fn resend_frames(&self, out: &mut Vec<Resend>, lost: impl Fn(u64) -> bool) {
        if self.is_reset() {
            return;
        }
        lock(&self.send).resend(self.id, out, lost);
        let ack = lock(&self.recv).ack_sent();
        if ack > 0 {
            out.push(Resend::Control(Frame::Ack {
                stream: self.id,
                delivered: ack,
            }));
        }
    }

    /// Records where the bytes at `offset` went: whether the session must
    /// start watching the stream for a stall (if it wants stalls watched:
    /// `watch`), and whether nothing else of it is in flight.
    pub fn sent_on(&self, offset: u64, sent: Sent, watch: bool) -> SentOn {
        let mut send = lock(&self.send);
        let alone = send.sent_on(offset, sent);
        SentOn {
            watch: watch && !self.watched.swap(true, Ordering::SeqCst),
            alone,
        }
    }

    /// The bytes at `offset` also went out as `copy` (on a second link).
    pub fn copied(&self, offset: u64, copy: Sent) {
        lock(&self.send).copied(offset, copy);
    }

    /// True when the stream has bytes in flight that nobody watches yet
    /// (after its ACK moved); the caller then watches it.
    pub fn claim_watch(&self) -> bool {
        let send = lock(&self.send);
        send.in_flight() > 0 && !self.watched.swap(true, Ordering::SeqCst)
    }

    /// Whether the bytes at the ACK point should be sent again now (see
    /// `proto::send::stall`). When there is nothing to watch the stream
    /// stops being watched, in the same step.
    pub fn check_stall(
        &self,
        now: Instant,
        window: u64,
        carrier: impl Fn(u64) -> Option<LinkLoad>,
    ) -> StallCheck {
        let send = lock(&self.send);
        let check = if self.is_reset() {
            StallCheck::Idle
        } else {
            send.check_stall(now, window, carrier)
        };
        if check == StallCheck::Idle {
            self.watched.store(false, Ordering::SeqCst);
        }
        check
    }

    /// True while the session watches the stream.
    pub fn is_watched(&self) -> bool {
        self.watched.load(Ordering::SeqCst)
    }

    /// The bytes at `offset` were sent again, as `copy` says.
    pub fn resent(&self, offset: u64, copy: Sent) {
        lock(&self.send).resent(offset, copy);
    }

    /// Bytes acknowledged and sent, for stats and drain decisions.
    pub fn progress(&self) -> (u64, u64) {
        lock(&self.send).progress()
    }
}

impl Drop for Stream {
    /// However a stream ends, the budget it holds goes back: a leak would
    /// shrink the daemon's budget for good.
    fn drop(&mut self) {
        self.budget_waiter.leave();
        let st = self.send.get_mut().unwrap_or_else(|p| p.into_inner());
        self.budget.release(st.abandon(drop));
    }
}

/// Starts both threads of a stream whose local socket is connected
/// (an accepted application connection on the client).
pub fn start(
    host: Arc<dyn StreamHost>,
    stream: &Arc<Stream>,
    socket: TcpStream,
    threads: &ThreadCount,
) -> io::Result<()> {
    let socket = attach(stream, socket)?;
    let reader_sock = socket.clone();
    let id = stream.id;
    let (h, st) = (host.clone(), stream.clone());
    thread::spawn_task(threads, format!("stream-{id}-tx"), move || {
        writer::run(&*h, &st, socket)
    })?;
    let st = stream.clone();
    thread::spawn_task(threads, format!("stream-{id}-rx"), move || {
        reader::run(&*host, &st, reader_sock)
    })?;
    Ok(())
}

/// Connects the backend for a stream the peer opened (server), then runs
/// as its writer. Bytes that arrive meanwhile wait in the reorder buffer.
pub fn start_backend(
    host: Arc<dyn StreamHost>,
    stream: &Arc<Stream>,
    threads: &ThreadCount,
) -> io::Result<()> {
    let (st, t) = (stream.clone(), threads.clone());
    let id = stream.id;
    thread::spawn(threads, format!("stream-{id}-tx"), move || {
        let socket = match host.connect_backend() {
            Ok(sock) => sock,
            Err(e) => {
                host.warn_backend_failed(id, &e);
                host.abort_stream(&st, RstReason::ConnectFailed, true, true);
                return Ok(());
            }
        };
        let socket = attach(&st, socket)?;
        if st.is_reset() {
            let _ = socket2::SockRef::from(&*socket).set_linger(Some(Duration::ZERO));
            return Ok(());
        }
        let reader_sock = socket.clone();
        let (h2, st2) = (host.clone(), st.clone());
        if let Err(e) = thread::spawn_task(&t, format!("stream-{id}-rx"), move || {
            reader::run(&*h2, &st2, reader_sock)
        }) {
            host.abort_stream(&st, RstReason::Refused, true, true);
            return Err(e);
        }
        writer::run(&*host, &st, socket);
        Ok::<(), io::Error>(())
    })?;
    Ok(())
}

/// Makes `socket` the stream's local socket; returns the shared handle its
/// threads use.
fn attach(stream: &Stream, socket: TcpStream) -> io::Result<Arc<TcpStream>> {
    socket.set_nodelay(true)?;
    let socket = Arc::new(socket);
    let _ = stream.socket.set(socket.clone());
    Ok(socket)
}

/// Sleeps until `bell` rings, the session closes or `limit` passes: idle
/// streams cost no CPU, however many there are.
fn sleep_until_rung(bell: &Bell, host: &dyn StreamHost, limit: Duration) {
    crossbeam_channel::select! {
        recv(bell.receiver()) -> _ => {},
        recv(host.closed_signal()) -> _ => {},
        default(limit) => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    fn test_stream(window: u32) -> Arc<Stream> {
        let budget = Arc::new(SendBudget::new(1 << 20));
        Stream::new(1, window, false, Arc::new(PayloadPool::new(16)), budget)
    }

    fn connected() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (app, _) = listener.accept().unwrap();
        (local, app)
    }

    #[test]
    fn a_link_reader_writes_in_order_bytes_itself() {
        let (local, mut app) = connected();
        let s = test_stream(1000);
        attach(&s, local).unwrap();
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
    fn what_a_full_socket_refuses_waits_in_the_buffer() {
        let (local, _app) = connected();
        let s = test_stream(1 << 24);
        attach(&s, local).unwrap();
        // Far more than the sockets hold while the application reads nothing.
        let big = vec![7u8; 8 << 20];
        s.on_data(8 << 20, b"tail").unwrap();
        s.on_data(0, &big).unwrap();
        let st = lock(&s.recv);
        assert!(st.delivered() < 8 << 20, "the socket took everything");
        assert_eq!(st.buffered() as u64 + st.delivered(), (8 << 20) + 4);
    }

    #[test]
    fn a_reset_stream_gives_its_budget_back() {
        let budget = Arc::new(SendBudget::new(1 << 20));
        let s = Stream::new(
            1,
            1000,
            false,
            Arc::new(PayloadPool::new(16)),
            budget.clone(),
        );
        lock(&s.send).push(Arc::new(vec![0; 100]));
        budget.charge(100);
        assert!(s.reset(true));
        assert_eq!(budget.used(), 0);
        assert!(!s.reset(true), "a second reset is a no-op");
    }

    #[test]
    fn ack_beyond_sent_is_a_violation() {
        let s = test_stream(100);
        assert!(s.on_ack(1).is_err());
    }
}
