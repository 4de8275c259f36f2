//! One pooled TCP connection between client and server: its shared face
//! ([`LinkHandle`]) and its two threads (`writer`, `reader`).
//!
//! A frame handed to an idle link is written at once by the thread that hands
//! it over (see `wire`). `link-N-tx` (`writer.rs`) drains what had to be
//! queued, control before data, batching it into one `writev`, finishes
//! frames the fast path wrote only in part, and sends keepalive PINGs when
//! idle. `link-N-rx` (`reader.rs`) reads and decodes frames and hands each
//! to its host (the session), which routes it to its stream without ever
//! blocking on one. Either thread that fails kills the link; the host then
//! re-sends what the link may have lost on the links that remain.
//!
//! What a link needs of its session is the [`LinkHost`] trait, which the
//! session implements: this module never names the session's type.

mod reader;
mod tcp;
#[cfg(test)]
mod tests;
mod writer;

use crate::config::{SchedulerKind, TunnelConfig};
use crate::proto::error::{FrameError, LinkClose};
use crate::proto::estimator::Estimator;
use crate::proto::frame::{self, Frame, StreamId};
use crate::proto::scheduler::LinkLoad;
use crate::proto::send::Payload;
use crate::rt::secure::{Opener, Sealer};
use crate::rt::wire::{Attempt, Wire};
use crate::util::shutdown::Shutdown;
use crate::util::sync::lock;
use crate::util::thread::{self, ThreadCount};
use crossbeam_channel::{Receiver, Select, Sender, bounded};
use std::fmt;
use std::io;
use std::net::{Shutdown as Direction, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::rt::wire::Outbound;

/// Control frames waiting per link: ACKs, FINs and PONGs are small, so a deep
/// queue costs little and keeps stream writers from waiting.
const CONTROL_QUEUE: usize = 4096;
/// DATA frames waiting per link: shallow, so that the scheduler sees which
/// link is slow and a dead link strands little.
const DATA_QUEUE: usize = 8;
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

static NEXT_LINK_ID: AtomicU64 = AtomicU64::new(1);

/// What a link's threads ask of the session they belong to.
pub trait LinkHost: Send + Sync {
    /// Routes one frame from the link's reader. Must never block: the
    /// reader is what drains the socket. An error closes the link.
    fn on_frame(&self, link: &LinkHandle, f: Frame<'_>) -> Result<(), FrameError>;
    /// The link finished its handshake and its threads run.
    fn link_up(&self, link: Arc<LinkHandle>);
    /// The link is dead and its writer has stopped: nothing more can be
    /// queued on it, so a re-send now sees every byte it may have stranded.
    fn link_down(&self, link: &LinkHandle, why: &LinkError);
}

/// Why a link ended, with the detail a log line wants.
#[derive(Debug)]
pub enum LinkError {
    /// The peer closed its end.
    PeerClosed,
    /// Nothing arrived for this long (`keepalive_timeout_ms`).
    KeepaliveTimeout(Duration),
    /// Reading the socket failed.
    Read(io::Error),
    /// Writing the socket failed.
    Write(io::Error),
    /// The peer sent bytes that are not an acceptable frame.
    Frame(FrameError),
    /// We closed it (session closing, daemon shutting down).
    ClosedByUs,
    /// Its threads could not be started.
    Start(io::Error),
}

impl LinkError {
    /// The kind of close, for counters.
    pub fn kind(&self) -> LinkClose {
        let io_kind = |e: &io::Error| match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => LinkClose::Reset,
            // A record that failed authentication (`secure::Opener`).
            io::ErrorKind::InvalidData => LinkClose::DecodeError,
            _ => LinkClose::IoError,
        };
        match self {
            LinkError::PeerClosed => LinkClose::PeerClosed,
            LinkError::KeepaliveTimeout(_) => LinkClose::KeepaliveTimeout,
            LinkError::Read(e) | LinkError::Write(e) => io_kind(e),
            LinkError::Frame(FrameError::Decode(_)) => LinkClose::DecodeError,
            LinkError::Frame(FrameError::Unexpected(_)) => LinkClose::ProtocolViolation,
            LinkError::ClosedByUs | LinkError::Start(_) => LinkClose::ClosedByUs,
        }
    }
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::PeerClosed => write!(f, "closed by peer"),
            LinkError::KeepaliveTimeout(d) => write!(f, "silent for {d:?} (keepalive timeout)"),
            LinkError::Read(e) => write!(f, "read failed: {e}"),
            LinkError::Write(e) => write!(f, "write failed: {e}"),
            LinkError::Frame(e) => write!(f, "{e}"),
            LinkError::ClosedByUs => write!(f, "closed by us"),
            LinkError::Start(e) => write!(f, "cannot start its threads: {e}"),
        }
    }
}

/// How a link runs, from the session's settings.
#[derive(Clone, Copy, Debug)]
pub struct LinkSettings {
    /// The client path the link takes, if paths are configured.
    pub path: LinkPath,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// `TCP_NOTSENT_LOWAT` for the link's socket.
    pub notsent_lowat: u32,
    /// Largest DATA payload we accept (what we announced).
    pub max_payload: u32,
}

impl LinkSettings {
    /// The settings for links of a session that runs with `tunnel`.
    pub fn for_tunnel(tunnel: &TunnelConfig) -> Self {
        LinkSettings {
            path: LinkPath::default(),
            keepalive_interval: tunnel.keepalive_interval,
            keepalive_timeout: tunnel.keepalive_timeout,
            notsent_lowat: match tunnel.scheduler {
                SchedulerKind::Adaptive => ADAPTIVE_NOTSENT_LOWAT,
                SchedulerKind::RoundRobin | SchedulerKind::LeastQueued => NOTSENT_LOWAT,
            },
            max_payload: tunnel.buffer_size as u32,
        }
    }
}

/// The client path a link takes (`[[client.path]]`), for logs, stats and
/// the backup rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkPath {
    /// The path's index in the client's config; `None` without paths, and
    /// on the server, which knows only whether a link is a backup.
    pub index: Option<u16>,
    /// A backup path's link: it carries data only while the session has no
    /// other link.
    pub backup: bool,
}

impl fmt::Display for LinkPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.index, self.backup) {
            (Some(i), false) => write!(f, ", path {i}"),
            (Some(i), true) => write!(f, ", path {i} (backup)"),
            (None, true) => f.write_str(", backup"),
            (None, false) => Ok(()),
        }
    }
}

/// Counters a link keeps for logs and stats.
#[derive(Default)]
pub struct LinkStats {
    pub bytes_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub frames_in: AtomicU64,
    /// Round-trip time of the last PING, in microseconds (0 = not measured).
    pub rtt_us: AtomicU64,
    /// DATA payload bytes this link carried again for a link that died.
    pub bytes_resent: AtomicU64,
    /// DATA frames this link carried again for a link that died.
    pub frames_resent: AtomicU64,
}

/// The shared face of a live link: its queues, load and kill switch.
pub struct LinkHandle {
    /// Process-unique id, for logs.
    pub id: u64,
    /// The link's slot in its client's pool.
    pub index: u16,
    /// The client path it takes.
    pub path: LinkPath,
    /// Our end of the link (a path's source address on the client).
    pub local: SocketAddr,
    pub peer: SocketAddr,
    control: Sender<Outbound>,
    data: Sender<Outbound>,
    queued: AtomicUsize,
    /// Set when a frame waited its grace for room in the queue; cleared by
    /// the writer's next write (`proto::scheduler::stall_grace_us`).
    stalled: AtomicBool,
    /// Bytes of every frame ever handed to the link, as encoded: where each
    /// frame ends in the link's byte stream (`proto::send::Sent::end`).
    handed: AtomicU64,
    kill: Shutdown,
    reason: Mutex<Option<LinkError>>,
    /// The link's one socket, shared with its two threads.
    socket: Arc<TcpStream>,
    /// The socket's sending end; see `wire` for who writes and when.
    wire: Mutex<Wire>,
    pub stats: LinkStats,
    probe: Mutex<Estimator>,
    /// The kernel's view of the link, sampled every few milliseconds.
    tcp: tcp::TcpSample,
    /// Clock for PING tokens, shared by both threads so RTTs are exact.
    born: Instant,
}

impl LinkHandle {
    /// Bytes handed to this link and not yet written to its socket; the
    /// least-queued scheduler's measure of load.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// What the scheduler weighs: our queue, the link's measurements and
    /// the last `TCP_INFO` sample.
    pub fn load(&self) -> LinkLoad {
        let bytes_out = self.stats.bytes_out.load(Ordering::Relaxed);
        let tcp = self.tcp.state(self.born, self.now_us(), bytes_out);
        let probe = lock(&self.probe);
        LinkLoad {
            queued_bytes: self.queued_bytes() as u64,
            srtt_us: probe.srtt_us(),
            rate: probe.rate(),
            tcp,
            handed: self.handed.load(Ordering::Relaxed),
            stalled: self.stalled.load(Ordering::Relaxed),
        }
    }

    /// True when the link's `TCP_INFO` sample is old enough to take again.
    pub fn tcp_sample_due(&self) -> bool {
        self.tcp.due(self.now_us())
    }

    /// The link's TCP sending segment size as last sampled (`TCP_INFO`;
    /// at connect time the kernel reports a provisional one), if known.
    pub fn segment_size(&self) -> Option<u32> {
        Some(self.tcp.snd_mss()).filter(|&m| m > 0)
    }

    /// True when the link's TCP retransmitted lately (a cheap read of the
    /// last sample, no system call).
    pub fn lossy(&self) -> bool {
        self.tcp.lossy(self.now_us())
    }

    /// Samples the link's `TCP_INFO` if the last sample is old. A system
    /// call that may wait for the socket's lock: never call it under the
    /// session's locks.
    pub fn sample_tcp_if_due(&self) {
        let now = self.now_us();
        if self.tcp.due(now) {
            let bytes_out = self.stats.bytes_out.load(Ordering::Relaxed);
            self.tcp.take(&self.socket, now, bytes_out);
        }
    }

    /// Sends a DATA frame: written at once when the link is idle and its
    /// socket has room, queued otherwise, waiting while the queue is full.
    /// Returns where the frame ends in the link's byte stream (see
    /// `handed`). Fails only when the link has died, handing the frame back.
    pub fn send_data(&self, msg: Outbound) -> Result<u64, Outbound> {
        self.queue_data(msg, Wait::Forever)
    }

    /// [`send_data`](Self::send_data) that waits at most `grace` for room:
    /// when the queue stays full that long the link is marked stalled
    /// (picked last until its writer writes again) and the frame comes back,
    /// for the caller to hand to another link.
    pub fn send_data_within(&self, msg: Outbound, grace: Duration) -> Result<u64, Outbound> {
        self.queue_data(msg, Wait::Within(grace))
    }

    /// [`send_data`](Self::send_data) that never waits: the frame comes
    /// back when the link's queue is full (or the link died), so that the
    /// caller can hand it to another link instead of stalling behind this
    /// one.
    pub fn try_send_data(&self, msg: Outbound) -> Result<u64, Outbound> {
        self.queue_data(msg, Wait::Never)
    }

    /// Sends a DATA frame ahead of the DATA already queued (with the
    /// control frames), for bytes re-sent after another link died: they
    /// are the ones the far end waits for, and behind this link's own
    /// queue they would wait for all of it. Fails only when the link has
    /// died.
    pub fn send_data_ahead(&self, msg: Outbound) -> Result<u64, Outbound> {
        self.queue_data(msg, Wait::Ahead)
    }

    /// Offers a DATA frame without waiting (a re-send, a copy): written at
    /// once when the link is idle, queued behind the DATA already queued
    /// when there is room. Returns where it ends in the link's byte stream;
    /// `None` when the queue is full or the link is dead.
    pub fn offer_data(&self, stream: StreamId, offset: u64, bytes: Payload) -> Option<u64> {
        let msg = Outbound::Data {
            stream,
            offset,
            bytes,
        };
        self.try_send_data(msg).ok()
    }

    /// Writes or queues a DATA frame, counting it as handed only if the
    /// link takes it: a frame handed back must not move the ends of the
    /// frames after it.
    fn queue_data(&self, msg: Outbound, wait: Wait) -> Result<u64, Outbound> {
        let load = load_of(&msg);
        let end = self.hand(&msg);
        let msg = match self.try_fast(msg, load) {
            Ok(()) => return Ok(end),
            Err(back) => back,
        };
        self.queued.fetch_add(load, Ordering::Relaxed);
        let refused = match wait {
            Wait::Forever => self.data.send(msg).err().map(|e| e.into_inner()),
            Wait::Ahead => self.control.send(msg).err().map(|e| e.into_inner()),
            Wait::Never => self.data.try_send(msg).err().map(|e| e.into_inner()),
            Wait::Within(grace) => self.data.send_timeout(msg, grace).err().map(|e| {
                if e.is_timeout() {
                    self.stalled.store(true, Ordering::Relaxed);
                }
                e.into_inner()
            }),
        };
        match refused {
            None => Ok(end),
            Some(back) => {
                self.queued.fetch_sub(load, Ordering::Relaxed);
                self.unhand(&back);
                Err(back)
            }
        }
    }

    /// Counts `msg` as handed to the link; returns where it ends in the
    /// link's byte stream (frames as encoded, before any sealing). Frames
    /// are counted as they are handed, not quite in the order they are
    /// written: control frames overtake queued DATA, and of two threads
    /// handing DATA at once the second may write first. A frame's end is
    /// then placed early by the few bytes that overtook it, so its last
    /// bytes may be taken for acknowledged a little early: they are then
    /// merely not sent again (`proto::send::stall`), as without
    /// re-sending.
    pub(super) fn hand(&self, msg: &Outbound) -> u64 {
        let len = wire_len(msg);
        self.handed.fetch_add(len, Ordering::Relaxed) + len
    }

    /// Takes back [`hand`](Self::hand) for a frame the link did not take.
    fn unhand(&self, msg: &Outbound) {
        self.handed.fetch_sub(wire_len(msg), Ordering::Relaxed);
    }

    /// Waits until one of `links` has room for `msg` and queues it there,
    /// whichever frees first; returns that link and where the frame ends in
    /// its byte stream, or the frame when the one that freed first had died
    /// (the caller picks again).
    pub fn send_data_to_any(
        links: &[Arc<LinkHandle>],
        msg: Outbound,
    ) -> Result<(Arc<LinkHandle>, u64), Outbound> {
        let mut ready = Select::new();
        for link in links {
            ready.send(&link.data);
        }
        let op = ready.select();
        let Some(link) = links.get(op.index()) else {
            // Select returns one of the operations it was given.
            return Err(msg);
        };
        let load = load_of(&msg);
        let end = link.hand(&msg);
        link.queued.fetch_add(load, Ordering::Relaxed);
        match op.send(&link.data, msg) {
            Ok(()) => Ok((link.clone(), end)),
            Err(e) => {
                let back = e.into_inner();
                link.queued.fetch_sub(load, Ordering::Relaxed);
                link.unhand(&back);
                Err(back)
            }
        }
    }

    /// Sends a control frame ahead of all queued DATA, waiting for room in
    /// the queue when `wait` (never on a link reader, which must not block).
    /// False when it could not be queued.
    pub fn send_control(&self, f: Frame<'static>, wait: bool) -> bool {
        let msg = Outbound::Control(f);
        // Counted exactly as the writer uncounts it; a mismatch would wrap
        // the load and blind the scheduler.
        let load = load_of(&msg);
        self.hand(&msg);
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
            Ok(Attempt::Partial(n)) => {
                // Counted before the lock is let go, so the writer's uncount
                // always comes after.
                self.queued.fetch_add(load, Ordering::Relaxed);
                drop(wire);
                self.count_out(1, n);
                let _ = self.control.try_send(Outbound::Flush);
                Ok(())
            }
            Err(e) => {
                drop(wire);
                self.kill(LinkError::Write(e));
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

    /// True when the link should be measured again: no PING is out and the
    /// last was a while ago.
    pub fn probe_due(&self) -> bool {
        lock(&self.probe).probe_due(self.now_us())
    }

    /// Sends a measuring PING if one is due. Never blocks.
    pub fn probe_if_due(&self) {
        let now = self.now_us();
        let ping = {
            let mut probe = lock(&self.probe);
            if !probe.probe_due(now) {
                return;
            }
            let bytes_out = self.stats.bytes_out.load(Ordering::Relaxed);
            Frame::Ping {
                token: probe.start_probe(now, bytes_out),
            }
        };
        self.send_control(ping, false);
    }

    /// A PING that also starts a measurement (the writer's keepalive).
    fn probe_frame(&self) -> Frame<'static> {
        let bytes_out = self.stats.bytes_out.load(Ordering::Relaxed);
        let token = lock(&self.probe).start_probe(self.now_us(), bytes_out);
        Frame::Ping { token }
    }

    /// Takes the answer to a PING.
    fn on_pong(&self, token: u64) {
        let bytes_out = self.stats.bytes_out.load(Ordering::Relaxed);
        let rtt = lock(&self.probe).on_pong(self.now_us(), token, bytes_out);
        self.stats.rtt_us.store(rtt, Ordering::Relaxed);
    }

    /// Microseconds since the link was born, never 0 (0 means "no PING").
    fn now_us(&self) -> u64 {
        (self.born.elapsed().as_micros() as u64).max(1)
    }

    /// Closes the link once the frames queued so far are written (GOAWAY
    /// before a deliberate close).
    pub fn close_after_flush(&self) {
        if self.control.try_send(Outbound::Finish).is_err() {
            self.kill(LinkError::ClosedByUs);
        }
    }

    /// Ends the link: both threads stop and the socket is shut down. The
    /// first reason given is the one logged.
    pub fn kill(&self, why: LinkError) {
        {
            let mut reason = lock(&self.reason);
            if reason.is_none() {
                *reason = Some(why);
            }
        }
        self.kill.trigger();
        let _ = self.socket.shutdown(Direction::Both);
    }

    /// The kernel's view of the link's socket (unsent bytes, TCP
    /// retransmissions), for the metrics endpoint.
    pub fn tcp_info(&self) -> io::Result<crate::util::tcpinfo::TcpInfo> {
        crate::util::tcpinfo::read(&self.socket)
    }

    /// True once [`kill`](Self::kill) ran.
    pub fn is_dead(&self) -> bool {
        self.kill.is_triggered()
    }

    /// A receiver that is ready once the link is dead, for waiting on it.
    pub fn dead_signal(&self) -> &Receiver<()> {
        self.kill.receiver()
    }

    /// The reason the link was killed with, taken (once).
    fn take_reason(&self) -> LinkError {
        lock(&self.reason).take().unwrap_or(LinkError::ClosedByUs)
    }
}

/// A frame's bytes as encoded (before any record sealing).
fn wire_len(msg: &Outbound) -> u64 {
    match msg {
        Outbound::Data { bytes, .. } => (frame::DATA_OVERHEAD + bytes.len()) as u64,
        Outbound::Control(f) => frame::encoded_len(f) as u64,
        Outbound::Finish | Outbound::Flush => 0,
    }
}

/// How long a DATA frame waits for room in a link's queue.
#[derive(Clone, Copy)]
enum Wait {
    Forever,
    /// In the control queue, ahead of the queued DATA (deep: it waits only
    /// when thousands of frames wait there).
    Ahead,
    Never,
    /// Up to the grace, then the link is marked stalled.
    Within(Duration),
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

/// Starts the reader and writer threads of an established link and joins it
/// to `host`; the link's peer is the socket's.
pub fn start(
    host: Arc<dyn LinkHost>,
    socket: TcpStream,
    index: u16,
    threads: &ThreadCount,
    channel: (Sealer, Opener),
    settings: LinkSettings,
) -> io::Result<Arc<LinkHandle>> {
    let peer = socket.peer_addr()?;
    start_from(peer, host, socket, index, threads, channel, settings)
}

/// As [`start`], for a link whose far end is not the socket's peer: behind
/// a load balancer the server learns the client's address from the PROXY
/// header, and logs, stats and metrics name the link by it.
pub fn start_from(
    peer: SocketAddr,
    host: Arc<dyn LinkHost>,
    socket: TcpStream,
    index: u16,
    threads: &ThreadCount,
    channel: (Sealer, Opener),
    settings: LinkSettings,
) -> io::Result<Arc<LinkHandle>> {
    let (sealer, opener) = channel;
    let local = socket.local_addr()?;
    socket.set_nodelay(true)?;
    socket2::SockRef::from(&socket).set_tcp_notsent_lowat(settings.notsent_lowat)?;
    socket.set_read_timeout(Some(settings.keepalive_timeout))?;
    socket.set_write_timeout(Some(settings.keepalive_timeout))?;
    let socket = Arc::new(socket);
    let (control_tx, control_rx) = bounded(CONTROL_QUEUE);
    let (data_tx, data_rx) = bounded(DATA_QUEUE);
    let handle = Arc::new(LinkHandle {
        id: NEXT_LINK_ID.fetch_add(1, Ordering::Relaxed),
        index,
        path: settings.path,
        local,
        peer,
        control: control_tx,
        data: data_tx,
        queued: AtomicUsize::new(0),
        stalled: AtomicBool::new(false),
        handed: AtomicU64::new(0),
        kill: Shutdown::new(),
        reason: Mutex::new(None),
        socket: socket.clone(),
        wire: Mutex::new(Wire::new(sealer, socket.clone())),
        stats: LinkStats::default(),
        probe: Mutex::new(Estimator::new()),
        tcp: tcp::TcpSample::default(),
        born: Instant::now(),
    });
    let writer = writer::Writer::new(handle.clone(), control_rx, data_rx, settings);
    let id = handle.id;
    let writer = thread::spawn_task(threads, format!("link-{id}-tx"), move || writer.run())?;
    let reader = reader::Reader::new(
        writer,
        handle.clone(),
        host.clone(),
        opener,
        socket,
        settings,
    );
    if let Err(e) = thread::spawn_task(threads, format!("link-{id}-rx"), move || reader.run()) {
        handle.kill(LinkError::Start(io::Error::new(e.kind(), e.to_string())));
        return Err(e);
    }
    host.link_up(handle.clone());
    Ok(handle)
}
