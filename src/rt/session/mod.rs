//! All links of one client process and all streams riding on them.
//!
//! The session is the switchboard shared by every thread of a client pool or
//! of one client on the server: link readers hand it frames and it routes
//! them to streams ([`StreamTable`] decides which); stream readers hand it
//! DATA and its scheduler picks a link. It implements what links and streams
//! call ([`LinkHost`], [`StreamHost`]). Its locks guard small tables only and
//! are never held across I/O.
//!
//! When a link dies the session re-sends, on the links that remain (or on the
//! next one to come up), everything a lost link may have carried: unacked
//! bytes, pending FINs, OPENs the peer has not confirmed, current ACKs, and
//! the RSTs it sent recently.
//!
//! Frames from the links are routed in `frames.rs`; bytes held up on a link
//! repairing a loss are sent again in `stall.rs`, small frames go to a
//! second link in `duplicate.rs`.

mod duplicate;
mod frames;
mod route;
mod stall;

use crate::config::TunnelConfig;
use crate::proto::Role;
use crate::proto::error::FrameError;
use crate::proto::frame::{
    DATA_OVERHEAD, Frame, LinkReason, RstReason, StreamId, segment_aligned_payload,
};
use crate::proto::handshake::{PeerLimits, kind_name};
use crate::proto::scheduler::{DUPLICATE_MAX, DuplicateMode, Scheduler};
use crate::proto::send::Payload;
use crate::proto::table::{OpenError, Outcome, StreamTable};
use crate::rt::backend::Backend;
use crate::rt::budget::SendBudget;
pub use crate::rt::counters::SessionStats;
use crate::rt::counters::{DaemonCounters, PathTotals, SlotUps};
use crate::rt::link::{LinkError, LinkHandle, LinkHost, LinkSettings, Outbound};
use crate::rt::pool::PayloadPool;
use crate::rt::secure;
use crate::rt::stream::{self, Stream, StreamHost};
use crate::util::shutdown::Shutdown;
use crate::util::sync::lock;
use crate::util::thread::ThreadCount;
use crate::util::throttle::Throttle;
use crossbeam_channel::{Receiver, Sender};
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// The session's repeated warnings, each logged a few times per interval.
#[derive(Default)]
struct Throttles {
    violation: Throttle,
    no_thread: Throttle,
    refused: Throttle,
    backend_failed: Throttle,
}

/// Whether sending a control frame may wait for room in a link's queue.
/// Link readers never wait (they drain the sockets everything else waits
/// on); a frame they cannot queue is dropped and recovered by the re-send
/// after the next link failure, or handed to the stream's writer (ACKs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Wait for room (stream threads, the re-send after a link died).
    Yes,
    /// Never wait (link readers).
    No,
}

/// Something the owner of a session wants to hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// The last stream ended (client: may close an on-demand pool).
    Idle(u64),
    /// The last link went away.
    NoLinks(u64),
}

/// Why a new application connection could not become a stream.
#[derive(Debug)]
pub enum StreamOpenError {
    /// The table refused it (closing, limit, ids).
    Refused(OpenError),
    /// Its threads could not be started.
    Io(io::Error),
}

impl std::fmt::Display for StreamOpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamOpenError::Refused(e) => write!(f, "{e}"),
            StreamOpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The live links and the scheduler that picks among them, under one lock.
struct Links {
    /// Links up, those of non-backup paths first.
    live: Vec<Arc<LinkHandle>>,
    /// How many of `live` are not backups.
    primaries: usize,
    /// Links past their HELLO and not yet up (server): they count against
    /// the session's link limit already, or links arriving together would
    /// all pass it.
    joining: usize,
    scheduler: Scheduler,
}

/// One session: its links, its streams and its scheduler.
pub struct Session {
    pub id: u64,
    me: Weak<Session>,
    tunnel: TunnelConfig,
    backend: Option<Backend>,
    threads: ThreadCount,
    peer_max_payload: AtomicU32,
    peer_window: AtomicU32,
    links: Mutex<Links>,
    link_up: Condvar,
    streams: Mutex<StreamTable<Arc<Stream>>>,
    /// Streams with bytes in flight, watched for a stall (`stall.rs`).
    watch: stall::Watch,
    /// Some live link's TCP retransmitted lately (refreshed whenever the
    /// links are measured): stalls are watched only then.
    links_lossy: AtomicBool,
    /// The smallest TCP sending segment size of the live links, as last
    /// sampled (0: none known; refreshed whenever the links are measured):
    /// DATA payloads fill whole segments of it.
    link_mss: AtomicU32,
    reinject_pending: AtomicBool,
    had_link: AtomicBool,
    /// Client: a link is connecting to start the session; the others wait.
    starting: AtomicBool,
    peer_goaway: AtomicBool,
    /// We said GOAWAY: streams the peer opens from now on are refused.
    goaway_sent: AtomicBool,
    closed: Shutdown,
    events: Option<Sender<SessionEvent>>,
    no_links_since: Mutex<Option<Instant>>,
    payloads: Arc<PayloadPool>,
    /// Shared with every session of the daemon.
    send_budget: Arc<SendBudget>,
    pub stats: SessionStats,
    /// The daemon's counters (links closed by reason).
    counters: Arc<DaemonCounters>,
    /// Links up per slot, for the reconnect counts.
    pub slots: SlotUps,
    throttles: Throttles,
}

impl Session {
    /// A session with no links yet. `backend` is set on the server only.
    #[allow(clippy::too_many_arguments)] // each is a separate daemon-wide part
    pub fn new(
        id: u64,
        role: Role,
        tunnel: TunnelConfig,
        backend: Option<Backend>,
        threads: ThreadCount,
        events: Option<Sender<SessionEvent>>,
        send_budget: Arc<SendBudget>,
        counters: Arc<DaemonCounters>,
    ) -> Arc<Session> {
        let max_payload = tunnel.buffer_size as u32;
        let window = tunnel.stream_window;
        let session = Arc::new_cyclic(|me| Session {
            id,
            me: me.clone(),
            links: Mutex::new(Links {
                live: Vec::new(),
                primaries: 0,
                joining: 0,
                scheduler: Scheduler::new(tunnel.scheduler),
            }),
            streams: Mutex::new(StreamTable::new(role, tunnel.max_streams)),
            watch: stall::Watch::default(),
            links_lossy: AtomicBool::new(false),
            link_mss: AtomicU32::new(0),
            tunnel,
            backend,
            threads,
            peer_max_payload: AtomicU32::new(max_payload),
            peer_window: AtomicU32::new(window),
            link_up: Condvar::new(),
            reinject_pending: AtomicBool::new(false),
            had_link: AtomicBool::new(false),
            starting: AtomicBool::new(false),
            peer_goaway: AtomicBool::new(false),
            goaway_sent: AtomicBool::new(false),
            closed: Shutdown::new(),
            events,
            no_links_since: Mutex::new(Some(Instant::now())),
            payloads: Arc::new(PayloadPool::new(max_payload as usize)),
            send_budget,
            stats: SessionStats::default(),
            throttles: Throttles::default(),
            counters,
            slots: SlotUps::default(),
        });
        session.start_stall_thread(&session.threads);
        session
    }

    /// This session as a shared handle, for the threads it starts. Always
    /// there while a method runs (the caller holds an `Arc`).
    fn me(&self) -> Option<Arc<Session>> {
        self.me.upgrade()
    }

    /// How this session's links run.
    pub fn link_settings(&self) -> LinkSettings {
        LinkSettings::for_tunnel(&self.tunnel)
    }

    /// Largest DATA payload we accept (what we announced).
    pub fn max_payload(&self) -> u32 {
        self.tunnel.buffer_size as u32
    }

    /// Our receive limits, as announced in the handshake.
    pub fn our_limits(&self) -> PeerLimits {
        PeerLimits {
            max_payload: self.max_payload(),
            window: self.tunnel.stream_window,
        }
    }

    /// Records the limits the peer announced in its handshake.
    pub fn set_peer_limits(&self, limits: PeerLimits) {
        self.peer_max_payload
            .store(limits.max_payload, Ordering::SeqCst);
        self.peer_window.store(limits.window, Ordering::SeqCst);
    }

    /// True once the session is over; its threads stop.
    pub fn is_closed(&self) -> bool {
        self.closed.is_triggered()
    }

    /// Ready once the session is closed, for `select!`.
    pub fn closed_signal(&self) -> &Receiver<()> {
        self.closed.receiver()
    }

    /// True once a link has ever joined: the client's next links join.
    pub fn has_had_link(&self) -> bool {
        self.had_link.load(Ordering::SeqCst)
    }

    /// Client: true for the one link that may try to start the session
    /// while it has had no link; it calls [`release_start`](Self::release_start)
    /// if it fails, so that another (maybe on another path) tries.
    pub fn claim_start(&self) -> bool {
        self.starting
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Client: the link that claimed the start failed.
    pub fn release_start(&self) {
        self.starting.store(false, Ordering::SeqCst);
    }

    /// True once the peer sent GOAWAY.
    pub fn peer_going_away(&self) -> bool {
        self.peer_goaway.load(Ordering::SeqCst)
    }

    /// Links up and joining: what the link limit counts (server).
    pub fn links_joined(&self) -> usize {
        let links = lock(&self.links);
        links.live.len() + links.joining
    }

    /// Counts one more link against `max` from its HELLO on, if there is
    /// room (server). The link leaves the count when it comes up (it then
    /// counts as live) or through [`join_failed`](Self::join_failed).
    pub fn try_join(&self, max: usize) -> bool {
        let mut links = lock(&self.links);
        if links.live.len() + links.joining >= max {
            return false;
        }
        links.joining += 1;
        true
    }

    /// A link counted by [`try_join`](Self::try_join) will not come up.
    pub fn join_failed(&self) {
        let mut links = lock(&self.links);
        links.joining = links.joining.saturating_sub(1);
    }

    /// Links alive now.
    pub fn link_count(&self) -> usize {
        lock(&self.links).live.len()
    }

    /// Streams open now.
    pub fn stream_count(&self) -> usize {
        lock(&self.streams).len()
    }

    /// How long the session has had no link, if it has none.
    pub fn linkless_for(&self) -> Option<Duration> {
        lock(&self.no_links_since).map(|t| t.elapsed())
    }

    /// Snapshot of the live links, for stats.
    pub fn links(&self) -> Vec<Arc<LinkHandle>> {
        lock(&self.links).live.clone()
    }

    /// Waits until at least one link is up, the session closes, or `limit`.
    pub fn wait_for_link(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut links = lock(&self.links);
        while links.live.is_empty() && !self.is_closed() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            links = match self.link_up.wait_timeout(links, deadline - now) {
                Ok((l, _)) => l,
                Err(p) => p.into_inner().0,
            };
        }
        !links.live.is_empty()
    }

    fn notify(&self, event: SessionEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.try_send(event);
        }
    }

    /// Queues a control frame on the least loaded link. Counts as sent when
    /// there is no link: the re-send after the next link comes up covers
    /// it. With [`Wait::No`], false when every queue was full (the frame is
    /// dropped: the caller recovers it or the next re-send does).
    fn control(&self, f: Frame<'static>, wait: Wait) -> bool {
        self.measure_links(false);
        loop {
            let Some(link) = self.pick_control_link() else {
                self.reinject_pending.store(true, Ordering::SeqCst);
                return true;
            };
            if link.send_control(f, false) {
                return true;
            }
            if wait == Wait::No {
                log::debug!(
                    "link {}: control queue full, {} dropped",
                    link.id,
                    kind_name(&f)
                );
                return false;
            }
            if link.send_control(f, true) {
                return true;
            }
            // The link died while we waited; try another.
        }
    }

    /// Opens a stream for an accepted application connection (client). A
    /// connection refused here is closed with a TCP reset, as a stream the
    /// server refuses is: a plain close would look like a clean, empty
    /// answer.
    pub fn open_stream(&self, socket: TcpStream) -> Result<StreamId, StreamOpenError> {
        let refuse = |e: OpenError| {
            let _ = socket2::SockRef::from(&socket).set_linger(Some(Duration::ZERO));
            StreamOpenError::Refused(e)
        };
        let me = self.me().ok_or_else(|| refuse(OpenError::Closing))?;
        let (id, s) = {
            let mut table = lock(&self.streams);
            if self.is_closed() || self.peer_going_away() {
                return Err(refuse(OpenError::Closing));
            }
            table
                .open_local(|id| {
                    Stream::new(
                        id,
                        self.tunnel.stream_window,
                        false,
                        self.payloads.clone(),
                        self.send_budget.clone(),
                    )
                })
                .map_err(refuse)?
        };
        self.stats.streams_opened.fetch_add(1, Ordering::Relaxed);
        self.control(Frame::Open { stream: id }, Wait::Yes);
        if let Err(e) = stream::start(me, &s, socket, &self.threads) {
            self.abort(&s, RstReason::Refused, true, true, Wait::Yes);
            return Err(StreamOpenError::Io(e));
        }
        Ok(id)
    }

    /// Resets a stream: tells the peer (`tell_peer`), closes the local socket
    /// (`hard`: with a TCP reset), and forgets the stream.
    fn abort(&self, s: &Arc<Stream>, reason: RstReason, tell_peer: bool, hard: bool, wait: Wait) {
        if !s.reset(hard) {
            return;
        }
        log::debug!("session {:016x} stream {}: reset ({reason})", self.id, s.id);
        if tell_peer {
            self.control(
                Frame::Rst {
                    stream: s.id,
                    reason,
                },
                wait,
            );
        }
        self.drop_stream(
            s.id,
            Outcome::Reset {
                reason,
                told: tell_peer,
            },
        );
    }

    /// Resets the stream `id` if it is still open; true if it was.
    pub fn abort_stream_id(&self, id: StreamId, reason: RstReason) -> bool {
        let s = lock(&self.streams).get(id).cloned();
        match s {
            Some(s) => {
                self.abort(&s, reason, true, true, Wait::Yes);
                true
            }
            None => false,
        }
    }

    fn drop_stream(&self, id: StreamId, outcome: Outcome) {
        let Some(left) = lock(&self.streams).remove(id, outcome) else {
            return;
        };
        if let Some(b) = &self.backend {
            b.budget.give_back();
        }
        log::debug!("session {:016x} stream {id}: closed, {left} open", self.id);
        if left == 0 {
            self.notify(SessionEvent::Idle(self.id));
        }
    }

    /// Resets every stream (session lost or drain time over).
    pub fn reset_all(&self, reason: RstReason, tell_peer: bool) {
        let streams: Vec<Arc<Stream>> = lock(&self.streams).streams().cloned().collect();
        for s in streams {
            self.abort(&s, reason, tell_peer, true, Wait::Yes);
        }
    }

    /// Tells the peer we are going away, so it opens no new streams here
    /// (and refuses any it opens all the same).
    pub fn send_goaway(&self, reason: LinkReason) {
        self.goaway_sent.store(true, Ordering::SeqCst);
        for link in self.links() {
            link.send_control(Frame::GoAway(reason), false);
        }
    }

    /// Ends the session: stream threads stop, the peer hears GOAWAY (so it
    /// can forget the session at once), links flush and close.
    pub fn close(&self, reason: &str) {
        if self.closed.is_triggered() {
            return;
        }
        log::info!("session {:016x}: closing: {reason}", self.id);
        self.closed.trigger();
        for link in self.links() {
            link.send_control(Frame::GoAway(LinkReason::ShuttingDown), false);
            link.close_after_flush();
        }
        self.link_up.notify_all();
    }
}

impl LinkHost for Session {
    fn on_frame(&self, link: &LinkHandle, f: Frame<'_>) -> Result<(), FrameError> {
        self.route_frame(link, f)
    }

    fn link_up(&self, link: Arc<LinkHandle>) {
        let count = {
            let mut links = lock(&self.links);
            // Primaries first, so that the scheduler's carriers are the
            // first `primaries` links (`proto::scheduler::carriers`).
            if link.path.backup {
                links.live.push(link.clone());
            } else {
                let at = links.primaries;
                links.live.insert(at, link.clone());
                links.primaries += 1;
            }
            // On the server every link joined first: it now counts as live,
            // in the same step, so it is never counted twice or not at all.
            if self.backend.is_some() {
                links.joining = links.joining.saturating_sub(1);
            }
            links.live.len()
        };
        self.had_link.store(true, Ordering::SeqCst);
        self.slots.up(link.index);
        *lock(&self.no_links_since) = None;
        self.link_up.notify_all();
        log::info!(
            "session {:016x}: link {} up (slot {}{}, {} -> {}), {count} live",
            self.id,
            link.id,
            link.index,
            link.path,
            link.local,
            link.peer
        );
        if self.reinject_pending.swap(false, Ordering::SeqCst) {
            self.reinject();
        }
    }

    fn link_down(&self, link: &LinkHandle, why: &LinkError) {
        let remaining = {
            let mut links = lock(&self.links);
            let Some(at) = links.live.iter().position(|l| l.id == link.id) else {
                return;
            };
            links.live.remove(at);
            if !link.path.backup {
                links.primaries = links.primaries.saturating_sub(1);
            }
            links.live.len()
        };
        self.counters.link_closed(why.kind());
        if let Some(path) = link.path.index {
            let carried = PathTotals {
                bytes_out: link.stats.bytes_out.load(Ordering::Relaxed),
                bytes_in: link.stats.bytes_in.load(Ordering::Relaxed),
                frames_resent: link.stats.frames_resent.load(Ordering::Relaxed),
                bytes_resent: link.stats.bytes_resent.load(Ordering::Relaxed),
            };
            self.counters.ended_paths.link_ended(path, carried);
        }
        log::info!(
            "session {:016x}: link {} down (slot {}{}, {} -> {}): {why}; {remaining} live",
            self.id,
            link.id,
            link.index,
            link.path,
            link.local,
            link.peer
        );
        if self.is_closed() {
            return;
        }
        if remaining == 0 {
            *lock(&self.no_links_since) = Some(Instant::now());
            self.reinject_pending.store(true, Ordering::SeqCst);
            self.notify(SessionEvent::NoLinks(self.id));
        } else {
            self.reinject();
        }
    }
}

impl StreamHost for Session {
    fn session_id(&self) -> u64 {
        self.id
    }

    fn payloads(&self) -> &PayloadPool {
        &self.payloads
    }

    /// Frames fill whole TCP segments of the links
    /// (`proto::frame::segment_aligned_payload`); on sealed links a frame
    /// also fits in one record, so the receiver decodes it where it was
    /// opened (`rt::secure::record`).
    fn send_payload_limit(&self) -> usize {
        let limit =
            (self.tunnel.buffer_size as u32).min(self.peer_max_payload.load(Ordering::SeqCst));
        let mss = self.link_mss.load(Ordering::Relaxed) as usize;
        if self.tunnel.secret.is_some() && self.tunnel.encrypt {
            let limit = (limit as usize).min(secure::MAX_SEALED_PAYLOAD);
            segment_aligned_payload(limit, mss, DATA_OVERHEAD + secure::RECORD_OVERHEAD)
        } else {
            segment_aligned_payload(limit as usize, mss, DATA_OVERHEAD)
        }
    }

    fn peer_window(&self) -> u64 {
        u64::from(self.peer_window.load(Ordering::SeqCst))
    }

    /// A stream's new DATA: counted, then routed (see `route_data`); the
    /// stream records the link that took it, and is watched for a stall; a
    /// small frame alone in flight may go to a second link too
    /// (`duplicate.rs`).
    fn send_data(&self, stream: &Arc<Stream>, offset: u64, bytes: Payload) {
        let len = bytes.len() as u64;
        self.stats.bytes_sent.fetch_add(len, Ordering::Relaxed);
        let copy = (self.tunnel.duplicate != DuplicateMode::Off && bytes.len() <= DUPLICATE_MAX)
            .then(|| bytes.clone());
        let Some((_, sent)) = self.route_data(Outbound::Data {
            stream: stream.id,
            offset,
            bytes,
        }) else {
            return;
        };
        let on = stream.sent_on(offset, sent, self.stalls_matter());
        if on.watch {
            self.watch(stream);
        }
        if let Some(bytes) = copy
            && on.alone
        {
            self.duplicate(stream, offset, bytes, sent.link);
        }
    }

    fn send_control(&self, f: Frame<'static>) {
        self.control(f, Wait::Yes);
    }

    fn abort_stream(&self, stream: &Arc<Stream>, reason: RstReason, tell_peer: bool, hard: bool) {
        self.abort(stream, reason, tell_peer, hard, Wait::Yes);
    }

    fn stream_finished(&self, id: StreamId, final_ack: u64) {
        self.drop_stream(id, Outcome::Finished { final_ack });
    }

    fn is_closed(&self) -> bool {
        Session::is_closed(self)
    }

    fn closed_signal(&self) -> &Receiver<()> {
        Session::closed_signal(self)
    }

    fn warn_backend_failed(&self, id: StreamId, e: &io::Error) {
        crate::warn_throttled!(
            self.throttles.backend_failed,
            "session {:016x} stream {id}: backend connect failed: {e}",
            self.id
        );
    }

    /// Connects this session's backend, trying each resolved address within
    /// the configured timeout.
    fn connect_backend(&self) -> io::Result<TcpStream> {
        let Some(backend) = &self.backend else {
            return Err(io::Error::other("no backend on a client session"));
        };
        backend.connect()
    }
}
