//! All links of one client process and all streams riding on them.
//!
//! The session is the switchboard shared by every thread of a client pool or
//! of one client on the server: link readers hand it frames and it routes
//! them to streams; stream readers hand it DATA and its scheduler picks a
//! link. Its locks guard small tables only and are never held across I/O.
//!
//! When a link dies the session re-sends, on the links that remain (or on the
//! next one to come up), everything a lost link may have carried: unacked
//! bytes, pending FINs, OPENs the peer has not confirmed, and current ACKs.

use crate::config::{Endpoint, Role, TunnelConfig};
use crate::proto::frame::{Frame, LinkReason, RstReason, StreamId};
use crate::proto::scheduler::Scheduler;
use crate::rt::budget::SendBudget;
use crate::rt::link::{LinkHandle, Outbound, PeerLimits};
use crate::rt::stream::{self, Resend, Stream};
use crate::rt::wire::{Payload, PayloadPool};
use crate::util::shutdown::Shutdown;
use crate::util::sync::lock;
use crate::util::thread::ThreadCount;
use crossbeam_channel::Sender;
use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

thread_local! {
    /// Set on link reader threads, which must never block: control frames
    /// they originate are dropped rather than waited for when queues are full.
    static NEVER_BLOCK: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as a link reader (see `NEVER_BLOCK`), or, with
/// `false`, as one that may block again (a dead link's reader re-sending what
/// its link lost must not drop any of it).
pub fn set_never_block(on: bool) {
    NEVER_BLOCK.with(|c| c.set(on));
}

/// Where the server connects the streams of a session.
#[derive(Clone)]
pub struct Backend {
    pub endpoint: Endpoint,
    pub timeout: Duration,
    /// Streams of all sessions together, against `max_total_streams`.
    pub budget: Arc<StreamBudget>,
}

/// A count of streams shared by all sessions of a server, so that many
/// sessions together stay within one limit.
pub struct StreamBudget {
    used: AtomicUsize,
    limit: usize,
}

impl StreamBudget {
    /// A budget of `limit` streams.
    pub fn new(limit: usize) -> Self {
        StreamBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    fn try_take(&self) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Streams counted now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
}

/// Something the owner of a session wants to hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// The last stream ended (client: may close an on-demand pool).
    Idle(u64),
    /// The last link went away.
    NoLinks(u64),
}

/// Why a new stream could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The session is closing or the peer sent GOAWAY.
    Closing,
    /// The configured stream limit is reached.
    TooManyStreams(usize),
    /// Stream ids are exhausted; a new session is needed.
    IdsExhausted,
    Io(io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Closing => write!(f, "session is closing"),
            OpenError::TooManyStreams(n) => write!(f, "stream limit {n} reached"),
            OpenError::IdsExhausted => write!(f, "stream ids exhausted"),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Stream ids a session has ever seen, so a late frame of a finished stream
/// never re-creates it. Ids are handed out in order, so everything below
/// `low` has been seen and only the few above it need remembering.
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

/// How a stream that left the table ended, remembered for a while because
/// the frame that told the peer (its last ACK, or an RST) may have died with
/// a link: a peer that re-sends FIN gets the answer again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Finished,
    /// Reset; `told` when we sent the RST (so it is ours to repeat).
    Reset {
        reason: RstReason,
        told: bool,
    },
}

/// Most recently closed streams remembered per session.
const RECENTLY_CLOSED: usize = 1024;

struct StreamTable {
    map: HashMap<StreamId, Arc<Stream>>,
    seen: SeenIds,
    next_id: u64,
    closed: VecDeque<StreamId>,
    outcomes: HashMap<StreamId, Outcome>,
}

impl StreamTable {
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
}

/// Counters for stats lines.
#[derive(Default)]
pub struct SessionStats {
    pub streams_opened: AtomicU64,
    /// Frames sent again after a link failure (retransmissions).
    pub frames_resent: AtomicU64,
}

/// One session: its links, its streams and its scheduler.
pub struct Session {
    pub id: u64,
    role: Role,
    tunnel: TunnelConfig,
    backend: Option<Backend>,
    threads: ThreadCount,
    peer_max_payload: AtomicU32,
    peer_window: AtomicU32,
    links: Mutex<Vec<Arc<LinkHandle>>>,
    link_up: Condvar,
    streams: Mutex<StreamTable>,
    scheduler: Mutex<Scheduler>,
    reinject_pending: AtomicBool,
    had_link: AtomicBool,
    peer_goaway: AtomicBool,
    closed: Shutdown,
    events: Option<Sender<SessionEvent>>,
    no_links_since: Mutex<Option<Instant>>,
    payloads: Arc<PayloadPool>,
    /// Shared with every session of the daemon.
    send_budget: Arc<SendBudget>,
    pub stats: SessionStats,
}

impl Session {
    /// A session with no links yet. `backend` is set on the server only.
    pub fn new(
        id: u64,
        role: Role,
        tunnel: TunnelConfig,
        backend: Option<Backend>,
        threads: ThreadCount,
        events: Option<Sender<SessionEvent>>,
        send_budget: Arc<SendBudget>,
    ) -> Arc<Session> {
        let scheduler = Scheduler::new(tunnel.scheduler);
        let max_payload = tunnel.buffer_size as u32;
        let window = tunnel.stream_window;
        Arc::new(Session {
            id,
            role,
            tunnel,
            backend,
            threads,
            peer_max_payload: AtomicU32::new(max_payload),
            peer_window: AtomicU32::new(window),
            links: Mutex::new(Vec::new()),
            link_up: Condvar::new(),
            streams: Mutex::new(StreamTable {
                map: HashMap::new(),
                seen: SeenIds::default(),
                next_id: 1,
                closed: VecDeque::new(),
                outcomes: HashMap::new(),
            }),
            scheduler: Mutex::new(scheduler),
            reinject_pending: AtomicBool::new(false),
            had_link: AtomicBool::new(false),
            peer_goaway: AtomicBool::new(false),
            closed: Shutdown::new(),
            events,
            no_links_since: Mutex::new(Some(Instant::now())),
            payloads: Arc::new(PayloadPool::new(max_payload as usize)),
            send_budget,
            stats: SessionStats::default(),
        })
    }

    /// The tunables this session runs with.
    pub fn tunnel(&self) -> &TunnelConfig {
        &self.tunnel
    }

    /// Read buffers for this session's streams, recycled once acknowledged.
    pub fn payloads(&self) -> &PayloadPool {
        &self.payloads
    }

    /// Largest DATA payload we accept (what we announced).
    pub fn max_payload(&self) -> u32 {
        self.tunnel.buffer_size as u32
    }

    /// Records the limits the peer announced in its handshake.
    pub fn set_peer_limits(&self, limits: PeerLimits) {
        self.peer_max_payload
            .store(limits.max_payload, Ordering::SeqCst);
        self.peer_window.store(limits.window, Ordering::SeqCst);
    }

    /// Bytes a stream may have unacknowledged towards the peer.
    pub fn peer_window(&self) -> u32 {
        self.peer_window.load(Ordering::SeqCst)
    }

    /// Largest DATA payload to send: ours to read, the peer's to accept.
    pub fn send_payload_limit(&self) -> usize {
        (self.tunnel.buffer_size as u32).min(self.peer_max_payload.load(Ordering::SeqCst)) as usize
    }

    /// Ready once the session is closed, for `select!`.
    pub fn closed_signal(&self) -> &crossbeam_channel::Receiver<()> {
        self.closed.receiver()
    }

    /// True once the session is over; stream threads stop.
    pub fn is_closed(&self) -> bool {
        self.closed.is_triggered()
    }

    /// True once a link has ever joined: the client then asks to resume.
    pub fn has_had_link(&self) -> bool {
        self.had_link.load(Ordering::SeqCst)
    }

    /// True once the peer sent GOAWAY.
    pub fn peer_going_away(&self) -> bool {
        self.peer_goaway.load(Ordering::SeqCst)
    }

    /// Links alive now.
    pub fn link_count(&self) -> usize {
        lock(&self.links).len()
    }

    /// Streams open now.
    pub fn stream_count(&self) -> usize {
        lock(&self.streams).map.len()
    }

    /// How long the session has had no link, if it has none.
    pub fn linkless_for(&self) -> Option<Duration> {
        lock(&self.no_links_since).map(|t| t.elapsed())
    }

    /// Snapshot of the live links, for stats.
    pub fn links(&self) -> Vec<Arc<LinkHandle>> {
        lock(&self.links).clone()
    }

    /// Waits until at least one link is up, the session closes, or `limit`.
    pub fn wait_for_link(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut links = lock(&self.links);
        while links.is_empty() && !self.is_closed() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            links = match self.link_up.wait_timeout(links, deadline - now) {
                Ok((l, _)) => l,
                Err(p) => p.into_inner().0,
            };
        }
        !links.is_empty()
    }

    /// Joins a link that finished its handshake; re-sends what earlier links
    /// may have lost if any link died since the last re-send.
    pub fn add_link(&self, link: Arc<LinkHandle>) {
        let count = {
            let mut links = lock(&self.links);
            links.push(link.clone());
            links.len()
        };
        self.had_link.store(true, Ordering::SeqCst);
        *lock(&self.no_links_since) = None;
        self.link_up.notify_all();
        log::info!(
            "session {:016x}: link {} up (slot {}, peer {}), {count} live",
            self.id,
            link.id,
            link.index,
            link.peer
        );
        if self.reinject_pending.swap(false, Ordering::SeqCst) {
            self.reinject();
        }
    }

    /// Removes a dead link (its writer has stopped) and re-sends what it may
    /// have carried.
    pub fn remove_link(&self, link: &LinkHandle, reason: &str) {
        let remaining = {
            let mut links = lock(&self.links);
            let before = links.len();
            links.retain(|l| l.id != link.id);
            if before == links.len() {
                return;
            }
            links.len()
        };
        log::info!(
            "session {:016x}: link {} down (slot {}, peer {}): {reason}; {remaining} live",
            self.id,
            link.id,
            link.index,
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

    fn reinject(&self) {
        let mut frames = Vec::new();
        let streams: Vec<Arc<Stream>> = {
            let table = lock(&self.streams);
            for (id, outcome) in &table.outcomes {
                if let Outcome::Reset { reason, told: true } = outcome {
                    frames.push(Resend::Control(Frame::Rst {
                        stream: *id,
                        reason: *reason,
                    }));
                }
            }
            table.map.values().cloned().collect()
        };
        for s in &streams {
            s.resend_frames(&mut frames);
        }
        if frames.is_empty() {
            return;
        }
        log::debug!(
            "session {:016x}: re-sending {} frames of {} streams",
            self.id,
            frames.len(),
            streams.len()
        );
        self.stats
            .frames_resent
            .fetch_add(frames.len() as u64, Ordering::Relaxed);
        for f in frames {
            match f {
                Resend::Control(c) => self.send_control(c),
                Resend::Data(stream, offset, bytes) => self.send_data(stream, offset, bytes),
            }
        }
    }

    /// The link for the next DATA frame, as the scheduler picks it.
    fn pick_data_link(&self) -> Option<Arc<LinkHandle>> {
        let links = lock(&self.links);
        let i = lock(&self.scheduler).pick(links.len(), |i| links[i].load())?;
        Some(links[i].clone())
    }

    /// The least loaded link, for a control frame.
    fn pick_control_link(&self) -> Option<Arc<LinkHandle>> {
        let links = lock(&self.links);
        let i = lock(&self.scheduler).pick_control(links.len(), |i| links[i].load())?;
        Some(links[i].clone())
    }

    fn notify(&self, event: SessionEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.try_send(event);
        }
    }

    /// Queues a control frame on the least loaded link. Dropped when there is
    /// no link: the re-send after the next link comes up covers it.
    pub fn send_control(&self, f: Frame<'static>) {
        let never_block = NEVER_BLOCK.with(|c| c.get());
        loop {
            let Some(link) = self.pick_control_link() else {
                self.reinject_pending.store(true, Ordering::SeqCst);
                return;
            };
            if link.try_send_control(f) {
                return;
            }
            if never_block {
                log::warn!("link {}: control queue full, frame dropped", link.id);
                return;
            }
            if link.send_control(f) {
                return;
            }
            // The link died while we waited; try another.
        }
    }

    /// Queues a control frame without waiting (link readers); false when
    /// every queue was full. Counts as sent when there is no link: the
    /// re-send after the next link comes up covers it.
    pub fn try_send_control(&self, f: Frame<'static>) -> bool {
        match self.pick_control_link() {
            Some(link) => link.try_send_control(f),
            None => {
                self.reinject_pending.store(true, Ordering::SeqCst);
                true
            }
        }
    }

    /// Queues a DATA frame on the link the scheduler picks. Without a live
    /// link the bytes stay in the stream's retransmission copy and go out
    /// when a link comes up.
    pub fn send_data(&self, stream: StreamId, offset: u64, bytes: Payload) {
        let mut msg = Outbound::Data {
            stream,
            offset,
            bytes,
        };
        if lock(&self.scheduler).measures_links() {
            // Usually empty (a link is due every 10 ms at most), so this
            // allocates nothing per frame and sends with no lock held.
            let due: Vec<Arc<LinkHandle>> = lock(&self.links)
                .iter()
                .filter(|l| l.probe_due())
                .cloned()
                .collect();
            for link in due {
                link.probe_if_due();
            }
        }
        loop {
            let Some(link) = self.pick_data_link() else {
                self.reinject_pending.store(true, Ordering::SeqCst);
                // A link may have come up between the pick and the flag.
                if self.link_count() > 0 && self.reinject_pending.swap(false, Ordering::SeqCst) {
                    self.reinject();
                }
                return;
            };
            match link.send_data(msg) {
                Ok(()) => return,
                Err(back) => msg = back,
            }
        }
    }

    /// Routes one frame from a link reader. An `Err` closes that link.
    pub fn on_frame(self: &Arc<Self>, link: &LinkHandle, f: Frame<'_>) -> Result<(), String> {
        match f {
            Frame::Open { stream } => {
                self.stream_for(stream, true);
            }
            Frame::Data {
                stream,
                offset,
                data,
            } => {
                if let Some(s) = self.stream_for(stream, true) {
                    match s.on_data(offset, data) {
                        Ok(Some(delivered)) => {
                            let ack = Frame::Ack { stream, delivered };
                            if !self.try_send_control(ack) {
                                s.owe_ack();
                            }
                        }
                        Ok(None) => {}
                        Err(v) => self.violation(&s, &v.0),
                    }
                }
            }
            Frame::Fin { stream, offset } => match self.stream_for(stream, true) {
                Some(s) => {
                    if let Err(v) = s.on_fin(offset) {
                        self.violation(&s, &v.0);
                    }
                }
                None => self.answer_late_fin(stream, offset),
            },
            Frame::Ack { stream, delivered } => {
                if let Some(s) = self.stream_for(stream, false) {
                    match s.on_ack(delivered, &self.payloads) {
                        Ok(out) if out.send_finished => self.forget_stream(stream),
                        Ok(_) => {}
                        Err(v) => self.violation(&s, &v.0),
                    }
                }
            }
            Frame::Rst { stream, reason } => {
                if let Some(s) = self.stream_for(stream, false) {
                    log::debug!(
                        "session {:016x} stream {stream}: reset by peer: {reason}",
                        self.id
                    );
                    self.abort_stream(&s, reason, false, true);
                } else if self.role == Role::Server {
                    // A stream reset before it reached us must not open later.
                    let mut table = lock(&self.streams);
                    if table.seen.above.len() < 4 * self.tunnel.max_streams + 1024 {
                        table.seen.insert(u64::from(stream));
                    }
                }
            }
            Frame::GoAway(reason) => {
                if !self.peer_goaway.swap(true, Ordering::SeqCst) {
                    log::info!(
                        "session {:016x}: peer going away ({reason}), said on link {}",
                        self.id,
                        link.id
                    );
                }
            }
            other => return Err(format!("unexpected frame after handshake: {other:?}")),
        }
        Ok(())
    }

    /// A FIN for a stream that already left the table: its final ACK (or
    /// our RST) was lost with a link, and the peer is asking again.
    fn answer_late_fin(&self, stream: StreamId, offset: u64) {
        let outcome = lock(&self.streams).outcomes.get(&stream).copied();
        let reply = match outcome {
            Some(Outcome::Finished) => Frame::Ack {
                stream,
                delivered: offset + 1,
            },
            Some(Outcome::Reset { reason, .. }) => Frame::Rst { stream, reason },
            None => return,
        };
        self.send_control(reply);
    }

    fn violation(&self, s: &Arc<Stream>, what: &str) {
        log::warn!(
            "session {:016x} stream {}: peer broke protocol: {what}",
            self.id,
            s.id
        );
        self.abort_stream(s, RstReason::Protocol, true, true);
    }

    /// The stream a frame is for. On the server a frame for a stream id never
    /// seen before opens the stream (`create`); a late frame for a finished
    /// one is dropped.
    fn stream_for(self: &Arc<Self>, id: StreamId, create: bool) -> Option<Arc<Stream>> {
        let mut table = lock(&self.streams);
        if let Some(s) = table.map.get(&id) {
            return Some(s.clone());
        }
        if !create || self.role != Role::Server || table.seen.contains(u64::from(id)) {
            return None;
        }
        let limit = self.tunnel.max_streams;
        // Ids are handed out in order, so only a hostile peer leaves this
        // many gaps; refusing keeps the set of seen ids bounded.
        let gaps_ok = table.seen.above.len() < 4 * limit + 1024;
        if gaps_ok {
            table.seen.insert(u64::from(id));
        }
        let budget = self.backend.as_ref().map(|b| &b.budget);
        let refused = !gaps_ok
            || table.map.len() >= limit
            || self.is_closed()
            || self.peer_going_away()
            || budget.is_some_and(|b| !b.try_take());
        if refused {
            drop(table);
            let total = budget.map(|b| format!(", server-wide {} of {}", b.used(), b.limit));
            log::warn!(
                "session {:016x} stream {id}: refused ({} of {limit} streams open in session{}{})",
                self.id,
                self.stream_count(),
                total.unwrap_or_default(),
                if self.peer_going_away() || self.is_closed() {
                    ", closing"
                } else {
                    ""
                }
            );
            self.send_control(Frame::Rst {
                stream: id,
                reason: RstReason::Refused,
            });
            return None;
        }
        let s = Stream::new(
            id,
            self.tunnel.stream_window,
            self.payloads.clone(),
            self.send_budget.clone(),
        );
        table.map.insert(id, s.clone());
        drop(table);
        self.stats.streams_opened.fetch_add(1, Ordering::Relaxed);
        log::debug!("session {:016x} stream {id}: opened by peer", self.id);
        if let Err(e) = stream::start_backend(self, &s, &self.threads) {
            log::warn!(
                "session {:016x} stream {id}: cannot start thread: {e}",
                self.id
            );
            self.abort_stream(&s, RstReason::Refused, true, true);
            return None;
        }
        Some(s)
    }

    /// Opens a stream for an accepted application connection (client).
    pub fn open_stream(self: &Arc<Self>, socket: TcpStream) -> Result<StreamId, OpenError> {
        let (id, s) = {
            let mut table = lock(&self.streams);
            if self.is_closed() || self.peer_going_away() {
                return Err(OpenError::Closing);
            }
            if table.map.len() >= self.tunnel.max_streams {
                return Err(OpenError::TooManyStreams(self.tunnel.max_streams));
            }
            let id = StreamId::try_from(table.next_id).map_err(|_| OpenError::IdsExhausted)?;
            table.next_id += 1;
            let s = Stream::new(
                id,
                self.tunnel.stream_window,
                self.payloads.clone(),
                self.send_budget.clone(),
            );
            table.map.insert(id, s.clone());
            (id, s)
        };
        self.stats.streams_opened.fetch_add(1, Ordering::Relaxed);
        self.send_control(Frame::Open { stream: id });
        if let Err(e) = stream::start(self, &s, socket, &self.threads) {
            self.abort_stream(&s, RstReason::Refused, true, true);
            return Err(OpenError::Io(e));
        }
        Ok(id)
    }

    /// Resets a stream: tells the peer (`tell_peer`), closes the local socket
    /// (`hard`: with a TCP reset), and forgets the stream.
    pub fn abort_stream(&self, s: &Arc<Stream>, reason: RstReason, tell_peer: bool, hard: bool) {
        if !s.reset(hard) {
            return;
        }
        log::debug!("session {:016x} stream {}: reset ({reason})", self.id, s.id);
        if tell_peer {
            self.send_control(Frame::Rst {
                stream: s.id,
                reason,
            });
        }
        self.drop_stream(
            s.id,
            Outcome::Reset {
                reason,
                told: tell_peer,
            },
        );
    }

    /// Resets the stream `id` if it is still open.
    pub fn abort_stream_id(&self, id: StreamId, reason: RstReason) {
        let s = lock(&self.streams).map.get(&id).cloned();
        if let Some(s) = s {
            self.abort_stream(&s, reason, true, true);
        }
    }

    /// Drops a stream whose both directions finished from the table.
    pub fn forget_stream(&self, id: StreamId) {
        self.drop_stream(id, Outcome::Finished);
    }

    fn drop_stream(&self, id: StreamId, outcome: Outcome) {
        let left = {
            let mut table = lock(&self.streams);
            if table.map.remove(&id).is_none() {
                return;
            }
            if let Some(b) = &self.backend {
                b.budget.give_back();
            }
            table.remember(id, outcome);
            table.map.len()
        };
        log::debug!("session {:016x} stream {id}: closed, {left} open", self.id);
        if left == 0 {
            self.notify(SessionEvent::Idle(self.id));
        }
    }

    /// Resets every stream (session lost or drain time over).
    pub fn reset_all(&self, reason: RstReason, tell_peer: bool) {
        let streams: Vec<Arc<Stream>> = lock(&self.streams).map.values().cloned().collect();
        for s in streams {
            self.abort_stream(&s, reason, tell_peer, true);
        }
    }

    /// Tells the peer we are going away, so it opens no new streams here.
    pub fn send_goaway(&self, reason: LinkReason) {
        for link in self.links() {
            link.try_send_control(Frame::GoAway(reason));
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
            link.try_send_control(Frame::GoAway(LinkReason::ShuttingDown));
            link.close_after_flush();
        }
        self.link_up.notify_all();
    }

    /// Connects this session's backend, trying each resolved address within
    /// the configured timeout (server).
    pub fn connect_backend(&self) -> io::Result<TcpStream> {
        let Some(backend) = &self.backend else {
            return Err(io::Error::other("no backend on a client session"));
        };
        let addrs = backend.endpoint.resolve()?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "backend resolved to no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, backend.timeout) {
                Ok(s) => return Ok(s),
                Err(e) => last = io::Error::new(e.kind(), format!("{addr}: {e}")),
            }
        }
        Err(last)
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
        let mut table = StreamTable {
            map: HashMap::new(),
            seen: SeenIds::default(),
            next_id: 1,
            closed: VecDeque::new(),
            outcomes: HashMap::new(),
        };
        for id in 0..(RECENTLY_CLOSED as u32 + 10) {
            table.remember(id, Outcome::Finished);
        }
        assert_eq!(table.outcomes.len(), RECENTLY_CLOSED);
        assert!(!table.outcomes.contains_key(&0));
        assert!(table.outcomes.contains_key(&(RECENTLY_CLOSED as u32 + 9)));
    }
}
