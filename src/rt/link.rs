//! One pooled TCP connection between client and server, and its two threads.
//!
//! A frame handed to an idle link is written at once by the thread that hands
//! it over (see `wire`). `link-N-tx` drains what had to be queued, control
//! before data, batching it into one `writev`, finishes frames the fast path
//! wrote only in part, and sends keepalive PINGs when idle. `link-N-rx` reads
//! and decodes frames and hands each to the session, which routes it to its
//! stream without ever blocking on one. Either thread that fails kills the
//! link; the session then re-sends what the link may have lost on the links
//! that remain.

use crate::config::SchedulerKind;
use crate::proto::frame::{self, Frame, LinkReason};
use crate::proto::scheduler::LinkLoad;
use crate::rt::secure::{self, Opener, Sealer};
use crate::rt::session::Session;
use crate::rt::wire::{Attempt, Wire};
use crate::util::shutdown::Shutdown;
use crate::util::sync::lock;
use crate::util::thread::{self, ThreadCount};
use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded, select};
use std::io;
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::rt::wire::{Outbound, Payload};

/// Control frames waiting per link: ACKs, FINs and PONGs are small, so a deep
/// queue costs little and keeps stream writers from waiting.
const CONTROL_QUEUE: usize = 4096;
/// DATA frames waiting per link: shallow, so that the scheduler sees which
/// link is slow and a dead link strands little.
const DATA_QUEUE: usize = 8;
/// The writer stops collecting frames into one `write` past this many bytes.
const BATCH_BYTES: usize = 256 * 1024;
/// Most bytes a link's socket holds that TCP has not sent yet
/// (`TCP_NOTSENT_LOWAT`). Without it the kernel buffers megabytes per link,
/// a slow link hides a second of data there, and the receiver's window
/// stalls waiting for it; with it, a slow link's writer blocks early, its
/// queue grows, and the scheduler sends elsewhere.
const NOTSENT_LOWAT: u32 = 128 * 1024;
/// The same for the adaptive scheduler, lower: its PINGs wait behind the
/// socket's backlog, so a short backlog makes its choices take effect
/// sooner, and a slow link is never handed more than it drains in a few
/// round trips (20/20/20/5 Mbit/s bed: 0.81-0.93x of the sum of caps at
/// 128 KiB, 0.92-0.97x at 32 KiB).
const ADAPTIVE_NOTSENT_LOWAT: u32 = 32 * 1024;

/// Least time between two in-band PINGs of a busy link; the adaptive
/// scheduler's measure of each link's delay and rate.
const PROBE_GAP_US: u64 = 10_000;
/// A PING unanswered this long no longer blocks the next one.
const PROBE_STALE_US: u64 = 1_000_000;

static NEXT_LINK_ID: AtomicU64 = AtomicU64::new(1);

/// Counters a link keeps for logs and stats.
#[derive(Default)]
pub struct LinkStats {
    pub bytes_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub frames_in: AtomicU64,
    /// Round-trip time of the last PING, in microseconds (0 = not measured).
    pub rtt_us: AtomicU64,
}

/// What the link's PINGs measured. A PING goes out behind whatever the link
/// has queued, in its socket and on the path, so its round trip is the delay
/// a frame sent now would see; the bytes the socket took meanwhile are the
/// rate at which the link drains.
#[derive(Default)]
struct Probe {
    /// Token (send time, µs since the link was born) of the PING whose
    /// answer gives the next rate sample; 0 when none is out.
    token: AtomicU64,
    /// When the last PING was sent (µs since born), to space them.
    sent_at: AtomicU64,
    /// `bytes_out` when that PING was sent.
    bytes_at: AtomicU64,
    /// Smoothed round-trip time, µs (0 = not measured yet).
    srtt_us: AtomicU64,
    /// Bytes per second the socket took over the last round trip.
    rate: AtomicU64,
}

/// The shared face of a live link: its queues, load and kill switch.
pub struct LinkHandle {
    /// Process-unique id, for logs.
    pub id: u64,
    /// The link's slot in its client's pool.
    pub index: u16,
    pub peer: SocketAddr,
    control: Sender<Outbound>,
    data: Sender<Outbound>,
    queued: AtomicUsize,
    kill: Shutdown,
    reason: Mutex<Option<String>>,
    socket: TcpStream,
    /// The socket's sending end; see `wire` for who writes and when.
    wire: Mutex<Wire>,
    pub stats: LinkStats,
    probe: Probe,
    /// Clock for PING tokens, shared by both threads so RTTs are exact.
    born: Instant,
}

impl LinkHandle {
    /// Bytes handed to this link and not yet written to its socket; the
    /// least-queued scheduler's measure of load.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Sends a DATA frame: written at once when the link is idle and its
    /// socket has room, queued otherwise, waiting while the queue is full.
    /// Fails only when the link has died, handing the frame back.
    pub fn send_data(&self, msg: Outbound) -> Result<(), Outbound> {
        let load = load_of(&msg);
        let msg = match self.try_fast(msg, load) {
            Ok(()) => return Ok(()),
            Err(back) => back,
        };
        self.queued.fetch_add(load, Ordering::Relaxed);
        self.data.send(msg).map_err(|e| {
            self.queued.fetch_sub(load, Ordering::Relaxed);
            e.into_inner()
        })
    }

    /// Sends a control frame ahead of all queued DATA.
    pub fn send_control(&self, f: Frame<'static>) -> bool {
        self.control_frame(f, true)
    }

    /// Sends a control frame only if that needs no waiting; for the link
    /// reader, which must never block.
    pub fn try_send_control(&self, f: Frame<'static>) -> bool {
        self.control_frame(f, false)
    }

    fn control_frame(&self, f: Frame<'static>, wait: bool) -> bool {
        let msg = Outbound::Control(f);
        // Counted exactly as the writer uncounts it; a mismatch would wrap
        // the load and blind the scheduler.
        let load = load_of(&msg);
        let msg = match self.try_fast(msg, load) {
            Ok(()) => return true,
            Err(back) => back,
        };
        self.queued.fetch_add(load, Ordering::Relaxed);
        let ok = if wait {
            self.control.send(msg).is_ok()
        } else {
            self.control.try_send(msg).is_ok()
        };
        if !ok {
            self.queued.fetch_sub(load, Ordering::Relaxed);
        }
        ok
    }

    /// The fast path: writes `msg` from the calling thread when nothing is
    /// queued before it and the socket takes it without waiting. Hands the
    /// frame back when it must be queued instead.
    fn try_fast(&self, msg: Outbound, load: usize) -> Result<(), Outbound> {
        if !self.control.is_empty() || !self.data.is_empty() || self.is_dead() {
            return Err(msg);
        }
        let Ok(mut wire) = self.wire.try_lock() else {
            return Err(msg);
        };
        if wire.has_pending() {
            return Err(msg);
        }
        trace_out(self.id, &msg);
        match wire.try_write(&msg, load) {
            Ok(Attempt::Sent(n)) => {
                drop(wire);
                self.count_out(1, n);
                Ok(())
            }
            Ok(Attempt::Refused) => Err(msg),
            Ok(Attempt::Partial) => {
                // Counted before the lock is let go, so the writer's uncount
                // always comes after.
                self.queued.fetch_add(load, Ordering::Relaxed);
                drop(wire);
                self.count_out(1, 0);
                let _ = self.control.try_send(Outbound::Flush);
                Ok(())
            }
            Err(e) => {
                drop(wire);
                self.kill(&format!("write failed: {e}"));
                Err(msg)
            }
        }
    }

    fn count_out(&self, frames: u64, bytes: usize) {
        self.stats.frames_out.fetch_add(frames, Ordering::Relaxed);
        self.stats
            .bytes_out
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// What the scheduler weighs: our queue and the link's measurements.
    pub fn load(&self) -> LinkLoad {
        LinkLoad {
            queued_bytes: self.queued_bytes() as u64,
            srtt_us: self.probe.srtt_us.load(Ordering::Relaxed),
            rate: self.probe.rate.load(Ordering::Relaxed),
        }
    }

    /// True when the link should be measured again: no PING is out and the
    /// last was a while ago. Only atomics: cheap enough to ask per frame.
    pub fn probe_due(&self) -> bool {
        self.due_since().is_some()
    }

    /// The time of the last PING, if a new one is due.
    fn due_since(&self) -> Option<u64> {
        let last = self.probe.sent_at.load(Ordering::Relaxed);
        let out = self.probe.token.load(Ordering::Relaxed) != 0;
        let wait = if out { PROBE_STALE_US } else { PROBE_GAP_US };
        (self.now_us() >= last + wait).then_some(last)
    }

    /// Sends a PING if one is due (see [`probe_due`](Self::probe_due)),
    /// unless another thread just did. Never blocks.
    pub fn probe_if_due(&self) {
        let Some(last) = self.due_since() else {
            return;
        };
        let now = self.now_us();
        let claimed = self
            .probe
            .sent_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if claimed {
            let ping = self.probe_frame();
            self.try_send_control(ping);
        }
    }

    /// A PING that also starts a measurement.
    fn probe_frame(&self) -> Frame<'static> {
        let token = self.now_us();
        self.probe.sent_at.store(token, Ordering::Relaxed);
        self.probe.bytes_at.store(
            self.stats.bytes_out.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        self.probe.token.store(token, Ordering::Relaxed);
        Frame::Ping { token }
    }

    /// Takes the answer to a PING: a round-trip sample, and a rate sample if
    /// it answers the measurement in progress.
    fn on_pong(&self, token: u64) {
        let rtt = self.now_us().saturating_sub(token).max(1);
        self.stats.rtt_us.store(rtt, Ordering::Relaxed);
        let srtt = self.probe.srtt_us.load(Ordering::Relaxed);
        // Halfway to each sample: a link that stopped being slow must be
        // seen at once, or it is never chosen again to show it.
        let srtt = if srtt == 0 { rtt } else { (srtt + rtt) / 2 };
        self.probe.srtt_us.store(srtt, Ordering::Relaxed);
        if self
            .probe
            .token
            .compare_exchange(token, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let bytes = self.stats.bytes_out.load(Ordering::Relaxed)
                - self
                    .probe
                    .bytes_at
                    .load(Ordering::Relaxed)
                    .min(self.stats.bytes_out.load(Ordering::Relaxed));
            let sample = bytes.saturating_mul(1_000_000) / rtt;
            let rate = self.probe.rate.load(Ordering::Relaxed);
            let rate = if rate == 0 {
                sample
            } else {
                (3 * rate + sample) / 4
            };
            self.probe.rate.store(rate, Ordering::Relaxed);
        }
    }

    /// Microseconds since the link was born, never 0 (0 means "no PING").
    fn now_us(&self) -> u64 {
        (self.born.elapsed().as_micros() as u64).max(1)
    }

    /// Closes the link once the frames queued so far are written (GOAWAY
    /// before a deliberate close).
    pub fn close_after_flush(&self) {
        if self.control.try_send(Outbound::Finish).is_err() {
            self.kill("closed");
        }
    }

    /// Ends the link: both threads stop and the socket is shut down. The
    /// first reason given is the one logged.
    pub fn kill(&self, reason: &str) {
        if let Ok(mut r) = self.reason.lock()
            && r.is_none()
        {
            *r = Some(reason.to_string());
        }
        self.kill.trigger();
        let _ = self.socket.shutdown(Direction::Both);
    }

    /// True once [`kill`](Self::kill) ran.
    pub fn is_dead(&self) -> bool {
        self.kill.is_triggered()
    }

    /// A receiver that is ready once the link is dead, for waiting on it.
    pub fn dead_signal(&self) -> &Receiver<()> {
        self.kill.receiver()
    }

    fn reason(&self) -> String {
        self.reason
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or_else(|| "closed".to_string())
    }
}

/// What a frame adds to its link's load while queued: its size for DATA,
/// nothing for the writer's own PINGs and PONGs (they are queued without
/// counting), a small fixed amount for other control frames.
fn load_of(msg: &Outbound) -> usize {
    match msg {
        Outbound::Data { bytes, .. } => bytes.len() + frame::DATA_OVERHEAD,
        Outbound::Control(Frame::Ping { .. } | Frame::Pong { .. }) => 0,
        Outbound::Control(_) => frame::MAX_CONTROL_BODY,
        Outbound::Finish | Outbound::Flush => 0,
    }
}

fn trace_out(link: u64, msg: &Outbound) {
    match msg {
        Outbound::Control(f) => log::trace!("link {link} tx {f:?}"),
        Outbound::Data {
            stream,
            offset,
            bytes,
        } => log::trace!(
            "link {link} tx DATA stream {stream} offset {offset} len {}",
            bytes.len()
        ),
        Outbound::Finish | Outbound::Flush => {}
    }
}

/// Limits the peer announced in the handshake.
#[derive(Clone, Copy, Debug)]
pub struct PeerLimits {
    pub max_payload: u32,
    pub window: u32,
}

/// Starts the reader and writer threads of an established link and joins it
/// to `session`.
pub fn start(
    session: &Arc<Session>,
    socket: TcpStream,
    index: u16,
    threads: &ThreadCount,
    channel: (Sealer, Opener),
) -> io::Result<Arc<LinkHandle>> {
    let (sealer, opener) = channel;
    let peer = socket.peer_addr()?;
    socket.set_nodelay(true)?;
    let tunnel = session.tunnel();
    let lowat = match tunnel.scheduler {
        SchedulerKind::Adaptive => ADAPTIVE_NOTSENT_LOWAT,
        SchedulerKind::RoundRobin | SchedulerKind::LeastQueued => NOTSENT_LOWAT,
    };
    socket2::SockRef::from(&socket).set_tcp_notsent_lowat(lowat)?;
    socket.set_read_timeout(Some(tunnel.keepalive_timeout))?;
    socket.set_write_timeout(Some(tunnel.keepalive_timeout))?;
    let (control_tx, control_rx) = bounded(CONTROL_QUEUE);
    let (data_tx, data_rx) = bounded(DATA_QUEUE);
    let handle = Arc::new(LinkHandle {
        id: NEXT_LINK_ID.fetch_add(1, Ordering::Relaxed),
        index,
        peer,
        control: control_tx,
        data: data_tx,
        queued: AtomicUsize::new(0),
        kill: Shutdown::new(),
        reason: Mutex::new(None),
        socket: socket.try_clone()?,
        wire: Mutex::new(Wire::new(sealer, socket.try_clone()?)),
        stats: LinkStats::default(),
        probe: Probe::default(),
        born: Instant::now(),
    });
    let writer = Writer {
        link: handle.clone(),
        control: control_rx,
        data: data_rx,
        interval: tunnel.keepalive_interval,
    };
    let id = handle.id;
    let writer = thread::spawn(threads, format!("link-{id}-tx"), move || writer.run())?;
    let reader = Reader {
        writer: Some(writer),
        link: handle.clone(),
        session: session.clone(),
        opener,
        socket,
        max_len: frame::max_frame_len(session.max_payload()),
    };
    if let Err(e) = thread::spawn(threads, format!("link-{id}-rx"), move || reader.run()) {
        handle.kill("cannot start reader thread");
        return Err(e);
    }
    session.add_link(handle.clone());
    Ok(handle)
}

struct Writer {
    link: Arc<LinkHandle>,
    control: Receiver<Outbound>,
    data: Receiver<Outbound>,
    interval: Duration,
}

impl Writer {
    fn run(self) -> Result<(), String> {
        let result = self.pump();
        if let Err(e) = &result {
            self.link.kill(e);
        }
        result
    }

    fn pump(&self) -> Result<(), String> {
        let kill = self.link.kill.receiver().clone();
        let mut batch = Vec::new();
        loop {
            let first = select! {
                recv(self.control) -> m => m.ok(),
                recv(self.data) -> m => m.ok(),
                recv(kill) -> _ => return Ok(()),
                default(self.interval) => Some(Outbound::Control(self.link.probe_frame())),
            };
            let Some(first) = first else {
                return Ok(());
            };
            let finish = self.collect(first, &mut batch);
            let load: usize = batch.iter().map(load_of).sum();
            let written = self.write(&batch);
            let frames = batch.len() as u64;
            batch.clear();
            match written {
                Ok((pending_load, bytes)) => {
                    self.link
                        .queued
                        .fetch_sub(load + pending_load, Ordering::Relaxed);
                    self.link.count_out(frames, bytes);
                }
                Err(e) => {
                    self.link.queued.fetch_sub(load, Ordering::Relaxed);
                    return Err(format!("write failed: {e}"));
                }
            }
            if finish {
                self.link.kill("closed by us");
                return Ok(());
            }
        }
    }

    /// Gathers `first` and whatever else is queued, control first, up to
    /// one batch; true when the batch ends with `Finish`.
    fn collect(&self, first: Outbound, batch: &mut Vec<Outbound>) -> bool {
        let mut finish = matches!(first, Outbound::Finish);
        let mut bytes = load_of(&first);
        batch.push(first);
        while bytes < BATCH_BYTES && !finish {
            let next = match self.control.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => match self.data.try_recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
                Err(TryRecvError::Disconnected) => break,
            };
            finish = matches!(next, Outbound::Finish);
            bytes += load_of(&next);
            batch.push(next);
        }
        finish
    }

    /// Writes a frame left pending by the fast path, then the batch.
    /// Returns the pending frame's load and the bytes written.
    fn write(&self, batch: &[Outbound]) -> io::Result<(usize, usize)> {
        for msg in batch {
            trace_out(self.link.id, msg);
        }
        let mut wire = lock(&self.link.wire);
        let (pending_load, mut bytes) = wire.finish_pending()?;
        bytes += wire.write_batch(batch)?;
        Ok((pending_load, bytes))
    }
}

struct Reader {
    /// Joined before the link leaves the session: once the writer is gone,
    /// nothing can be queued on this link any more, so the re-send that
    /// follows sees every byte the link may have stranded.
    writer: Option<std::thread::JoinHandle<()>>,
    link: Arc<LinkHandle>,
    session: Arc<Session>,
    opener: Opener,
    socket: TcpStream,
    max_len: u32,
}

impl Reader {
    fn run(mut self) -> Result<(), String> {
        crate::rt::session::set_never_block(true);
        let result = self.pump();
        let reason = match &result {
            Ok(()) => "closed by peer".to_string(),
            Err(e) => e.clone(),
        };
        self.link.kill(&reason);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        crate::rt::session::set_never_block(false);
        self.session.remove_link(&self.link, &self.link.reason());
        result
    }

    fn pump(&mut self) -> Result<(), String> {
        // Room for a whole frame, and for a whole decrypted record.
        let room = (self.max_len as usize + 4).max(secure::MAX_PLAIN);
        let cap = 4 * room;
        let mut buf = vec![0u8; cap];
        let (mut start, mut end) = (0usize, 0usize);
        loop {
            if cap - end < room {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            let n = match self.opener.read(&mut self.socket, &mut buf[end..]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => {
                    return Err(format!(
                        "silent for {:?} (keepalive timeout)",
                        self.session.tunnel().keepalive_timeout
                    ));
                }
                Err(e) => return Err(format!("read failed: {e}")),
            };
            if self.link.is_dead() {
                return Ok(());
            }
            end += n;
            self.link
                .stats
                .bytes_in
                .fetch_add(n as u64, Ordering::Relaxed);
            while let Some((f, used)) = frame::decode(&buf[start..end], self.max_len)
                .map_err(|e| format!("bad frame: {e}"))?
            {
                self.link.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                self.handle(f)?;
                start += used;
            }
            if start == end {
                start = 0;
                end = 0;
            }
        }
    }

    fn handle(&mut self, f: Frame<'_>) -> Result<(), String> {
        log::trace!("link {} rx {:?}", self.link.id, TraceFrame(&f));
        match f {
            Frame::Ping { token } => {
                self.link.try_send_control(Frame::Pong { token });
                Ok(())
            }
            Frame::Pong { token } => {
                self.link.on_pong(token);
                Ok(())
            }
            other => self.session.on_frame(&self.link, other),
        }
    }
}

/// Shows DATA without dumping its payload into the trace log.
struct TraceFrame<'a, 'b>(&'a Frame<'b>);

impl std::fmt::Debug for TraceFrame<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Frame::Data {
                stream,
                offset,
                data,
            } => write!(f, "DATA stream {stream} offset {offset} len {}", data.len()),
            other => write!(f, "{other:?}"),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Why a link handshake failed; the client branches on `Refused` to start a
/// new session when the server has forgotten the old one.
#[derive(Debug)]
pub enum HandshakeError {
    Io(io::Error),
    Refused(LinkReason),
    Protocol(String),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "{e}"),
            HandshakeError::Refused(r) => write!(f, "refused by server: {r}"),
            HandshakeError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

/// Largest frame accepted during a handshake: no handshake frame is larger,
/// so a stranger cannot make us buffer more.
pub const HANDSHAKE_MAX_LEN: u32 = 64;
