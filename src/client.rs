//! The client daemon: accepts application connections and keeps the pool of
//! links to the server.
//!
//! Threads: `client-accept` (the caller of [`Client::run`]) turns each
//! application connection into a stream at once — with 0-RTT its first bytes
//! leave on links that are already open. `pool-slot-I` threads each keep one
//! link connected, reconnecting with capped, jittered exponential backoff.
//! `client-pool` reacts to session events: with `enable_zero_rtt = false` it
//! closes the pool when the last stream ends.

use crate::config::{ClientConfig, Role, SchedulerKind, TunnelConfig};
use crate::proto::frame::{self, Frame, LinkReason, RstReason};
use crate::proto::handshake::{self, HANDSHAKE_BUF_LEN, HandshakeError, HandshakeFault, LinkRole};
use crate::rt::budget::SendBudget;
use crate::rt::counters::{DaemonCounters, Refusal};
use crate::rt::link::{self, LinkPath};
use crate::rt::monitor::Monitor;
use crate::rt::path_stats::PathInfo;
use crate::rt::secure;
use crate::rt::session::{Session, SessionEvent};
use crate::util::accept::Acceptor;
use crate::util::net::{Source, connect_first_from};
use crate::util::random::{jitter, random_u64};
use crate::util::shutdown::Shutdown;
use crate::util::sync::{Bell, lock};
use crate::util::thread::{self, ThreadCount};
use crate::util::throttle::Throttle;
use crossbeam_channel::{Receiver, Sender, bounded, select};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the pool checks whether a linkless session outlived its grace.
const GRACE_CHECK: Duration = Duration::from_millis(100);
/// How often a slot waiting for its session's first link checks whether
/// the daemon is shutting down, or the link that was to start the session
/// failed (a new link or the session's end wakes it at once).
const FIRST_LINK_CHECK: Duration = Duration::from_millis(100);

/// A bound, not yet running, client.
pub struct Client {
    listener: TcpListener,
    config: ClientConfig,
    threads: ThreadCount,
    monitor: Monitor,
}

/// The record cipher the client's links propose first: the one the config
/// names, else this CPU's fastest.
fn proposed_cipher(tunnel: &TunnelConfig) -> secure::Cipher {
    tunnel.cipher.unwrap_or_else(secure::preferred_cipher)
}

/// What a slot does after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Try again after the backoff.
    Retry,
    /// Try again at once (the server asked for something we can change).
    Again,
    /// The slot's work is over (its session is lost or closing).
    Stop,
}

/// The client's current session and the machinery to replace it.
struct Pool {
    /// Repeated warnings, each logged a few times per interval.
    refused: Throttle,
    no_link: Throttle,
    no_thread: Throttle,
    astray: Throttle,
    config: ClientConfig,
    threads: ThreadCount,
    current: Mutex<Option<Arc<Session>>>,
    /// Sessions whose server said GOAWAY: no new streams go there, but their
    /// open streams finish; each is closed when its last stream ends.
    retiring: Mutex<Vec<Arc<Session>>>,
    events: Sender<SessionEvent>,
    shutdown: Shutdown,
    /// Milliseconds since `epoch` of the last failed connect, 0 if the last
    /// attempt succeeded: new streams fail fast while the server is down.
    last_failure_ms: AtomicU64,
    epoch: Instant,
    /// Shared by the current session and the retiring ones.
    send_budget: Arc<SendBudget>,
    /// The record cipher new links propose: this machine's preferred one
    /// until a server refuses it.
    cipher: Mutex<secure::Cipher>,
    /// The daemon's counters (from its monitor), for sessions and handshakes.
    counters: Arc<DaemonCounters>,
    /// Rung when an application arrives while no link is up: a slot waiting
    /// out its reconnect backoff tries again now (not sooner than
    /// `reconnect_min` after its last try), so a server that came back
    /// serves that application, not only those after the backoff.
    retry_now: Bell,
}

impl Client {
    /// Binds the application listener; separate from [`run`](Self::run) so
    /// callers learn the real port first.
    pub fn bind(config: ClientConfig) -> io::Result<Client> {
        let listener = crate::util::net::listen(config.listen)?;
        let monitor = Monitor::new();
        monitor.set_paths(
            config
                .paths
                .iter()
                .map(|p| PathInfo {
                    source: p.source().to_string(),
                    backup: p.backup,
                })
                .collect(),
        );
        Ok(Client {
            listener,
            config,
            threads: ThreadCount::default(),
            monitor,
        })
    }

    /// The address applications connect to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Threads this client has running (for leak checks).
    pub fn thread_count(&self) -> ThreadCount {
        self.threads.clone()
    }

    /// A window onto the client's sessions (current and retiring) for stats,
    /// readiness and the watchdog; it sees them while [`run`](Self::run) runs.
    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    /// Serves until `shutdown` fires, then lets open streams finish for up to
    /// the drain time, resets the rest and returns once every thread ended.
    pub fn run(self, shutdown: Shutdown) -> io::Result<()> {
        let addr = self.local_addr()?;
        log::info!(
            "client listening on {addr}, server {}, pool of {} links, 0-RTT {}",
            self.config.server,
            self.config.pool_size,
            if self.config.zero_rtt { "on" } else { "off" }
        );
        let tunnel = &self.config.tunnel;
        if tunnel.secret.is_some() && tunnel.encrypt {
            log::info!(
                "links are encrypted with {}",
                proposed_cipher(&self.config.tunnel).name()
            );
        }
        let (events_tx, events_rx) = bounded(1024);
        let pool = Arc::new(Pool {
            refused: Throttle::default(),
            no_link: Throttle::default(),
            no_thread: Throttle::default(),
            astray: Throttle::default(),
            config: self.config.clone(),
            threads: self.threads.clone(),
            current: Mutex::new(None),
            retiring: Mutex::new(Vec::new()),
            events: events_tx,
            shutdown: shutdown.clone(),
            last_failure_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            send_budget: Arc::new(SendBudget::new(self.config.tunnel.send_budget)),
            cipher: Mutex::new(proposed_cipher(&self.config.tunnel)),
            counters: self.monitor.counters(),
            retry_now: Bell::new(),
        });
        let p = pool.clone();
        self.monitor.attach(pool.send_budget.clone(), move || {
            let mut sessions = lock(&p.retiring).clone();
            sessions.extend(lock(&p.current).clone());
            sessions
        });
        if self.config.zero_rtt {
            pool.session();
        }
        crate::util::net::wake_on_shutdown(&self.threads, &shutdown, addr)?;
        let p = pool.clone();
        thread::spawn_task(&self.threads, "client-pool".into(), move || {
            p.event_loop(&events_rx);
        })?;
        let mut acceptor = Acceptor::new(&self.listener, "application");
        while let Some((sock, _)) = acceptor.accept(&shutdown) {
            pool.accept(sock);
        }
        pool.drain();
        self.monitor.detach();
        if !self.threads.wait_idle(Duration::from_secs(5)) {
            log::warn!("{} threads still running at exit", self.threads.live());
        }
        log::info!("client stopped");
        Ok(())
    }
}

/// The application's address for logs, which it may no longer have.
fn peer_of(sock: &TcpStream) -> String {
    sock.peer_addr()
        .map_or_else(|_| "an application already gone".into(), |a| a.to_string())
}

impl Pool {
    /// The current session, started (with its link slots) if there is none.
    fn session(self: &Arc<Self>) -> Arc<Session> {
        let mut current = lock(&self.current);
        if let Some(s) = current.as_ref() {
            return s.clone();
        }
        let s = self.start_session();
        *current = Some(s.clone());
        s
    }

    fn start_session(self: &Arc<Self>) -> Arc<Session> {
        let id = random_u64();
        let session = Session::new(
            id,
            Role::Client,
            self.config.tunnel.clone(),
            None,
            self.threads.clone(),
            Some(self.events.clone()),
            self.send_budget.clone(),
            self.counters.clone(),
        );
        log::info!(
            "session {id:016x} started, connecting {} links",
            self.config.pool_size
        );
        for index in 0..self.config.pool_size {
            let (pool, s) = (self.clone(), session.clone());
            let spawned =
                thread::spawn_task(&self.threads, format!("pool-slot-{index}"), move || {
                    pool.slot_loop(&s, index as u16);
                });
            if let Err(e) = spawned {
                log::error!("cannot start link slot {index}: {e}");
            }
        }
        session
    }

    fn accept(self: &Arc<Self>, sock: TcpStream) {
        let peer = peer_of(&sock);
        // Held until the stream is in the session's table, so an idle pool
        // cannot be closed between choosing the session and opening on it.
        let mut current = lock(&self.current);
        if let Some(old) = current.take_if(|s| s.is_closed() || s.peer_going_away()) {
            self.retire(old);
        }
        let session = match current.as_ref() {
            Some(s) => s.clone(),
            None => {
                let s = self.start_session();
                *current = Some(s.clone());
                s
            }
        };
        // `max_streams` is the client's total: the streams of sessions
        // retiring after a GOAWAY count too.
        let retiring: usize = lock(&self.retiring).iter().map(|s| s.stream_count()).sum();
        let max = self.config.tunnel.max_streams;
        if retiring + session.stream_count() >= max {
            let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
            crate::warn_throttled!(
                self.refused,
                "application connection from {peer} refused: stream limit {max} reached"
            );
            return;
        }
        let opened_at = Instant::now();
        let linkless = session.link_count() == 0;
        if linkless && self.server_failing() {
            // Try the server again now; `watch_first_link` resets this
            // application as soon as that attempt fails too.
            self.retry_now.ring();
        }
        let id = match session.open_stream(sock) {
            Ok(id) => id,
            Err(e) => {
                crate::warn_throttled!(
                    self.refused,
                    "application connection from {peer} refused: {e}"
                );
                return;
            }
        };
        drop(current);
        log::debug!("session {:016x} stream {id}: opened for {peer}", session.id);
        if linkless {
            self.watch_first_link(session, id, opened_at);
        }
    }

    /// A stream opened while no link was up is reset if none comes up within
    /// the connect timeout, or as soon as a connect attempt fails: the
    /// application must see a prompt failure, never a hang.
    fn watch_first_link(
        self: &Arc<Self>,
        session: Arc<Session>,
        id: frame::StreamId,
        since: Instant,
    ) {
        let pool = self.clone();
        let spawned = thread::spawn_task(&self.threads, format!("stream-{id}-wait"), move || {
            let deadline = since + pool.config.connect_timeout;
            while Instant::now() < deadline && !session.is_closed() {
                if session.link_count() > 0 {
                    return;
                }
                if pool.failed_since(since) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if session.link_count() == 0 && session.abort_stream_id(id, RstReason::SessionLost) {
                crate::warn_throttled!(
                    pool.no_link,
                    "session {:016x} stream {id}: no link to the server, reset",
                    session.id
                );
            }
        });
        if let Err(e) = spawned {
            crate::warn_throttled!(self.no_thread, "cannot start watch thread: {e}");
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn server_failing(&self) -> bool {
        self.last_failure_ms.load(Ordering::SeqCst) != 0
    }

    fn failed_since(&self, t: Instant) -> bool {
        let at = self.last_failure_ms.load(Ordering::SeqCst);
        at != 0 && at >= t.duration_since(self.epoch).as_millis() as u64
    }

    /// Keeps link `index` of `session` connected until the session ends.
    fn slot_loop(self: &Arc<Self>, session: &Arc<Session>, index: u16) {
        let mut backoff = self.config.reconnect_min;
        let mut failures = 0u32;
        while !session.is_closed() && !self.shutdown.is_triggered() {
            if session.peer_going_away() && session.link_count() == 0 {
                // Its server is gone for good; nothing left to carry.
                if session.stream_count() == 0 {
                    return;
                }
            }
            // One link starts the session alone; the others join once it is
            // welcomed. A load balancer pins a session to a server when its
            // first link arrives: links racing in at the same moment could
            // be sent to different servers, each starting half a session.
            let starts = !session.has_had_link();
            if starts && !session.claim_start() {
                session.wait_for_link(FIRST_LINK_CHECK);
                continue;
            }
            let attempt = self.connect_link(session, index);
            if starts && attempt.is_err() {
                session.release_start();
            }
            let e = match attempt {
                Ok(link) => {
                    self.last_failure_ms.store(0, Ordering::SeqCst);
                    failures = 0;
                    backoff = self.config.reconnect_min;
                    select! {
                        recv(link.dead_signal()) -> _ => {},
                        recv(session.closed_signal()) -> _ => {},
                        recv(self.shutdown.receiver()) -> _ => {},
                    }
                    continue;
                }
                Err(e) => e,
            };
            match self.after_failure(session, index, e, &mut failures) {
                Next::Stop => return,
                Next::Again => continue,
                Next::Retry => {}
            }
            self.back_off(session, jitter(backoff));
            backoff = (backoff * 2).min(self.config.reconnect_max);
        }
    }

    /// Waits out `pause` after a failed attempt, or less when an
    /// application arrives while no link is up ([`Pool::retry_now`]); never
    /// less than `reconnect_min`, however many arrive.
    fn back_off(&self, session: &Session, pause: Duration) {
        let failed_at = Instant::now();
        let retry_now = select! {
            recv(session.closed_signal()) -> _ => false,
            recv(self.shutdown.receiver()) -> _ => false,
            recv(self.retry_now.receiver()) -> _ => true,
            default(pause) => false,
        };
        if retry_now {
            let floor = self
                .config
                .reconnect_min
                .saturating_sub(failed_at.elapsed());
            select! {
                recv(session.closed_signal()) -> _ => {},
                recv(self.shutdown.receiver()) -> _ => {},
                default(floor) => {},
            }
        }
    }

    /// What a failed link attempt means: the session lost, our own
    /// teardown, a link a balancer sent astray, or a failure to retry
    /// after the backoff (logged at the first of a series only).
    fn after_failure(
        self: &Arc<Self>,
        session: &Arc<Session>,
        index: u16,
        e: HandshakeError,
        failures: &mut u32,
    ) -> Next {
        if let HandshakeError::Fault(HandshakeFault::CipherRefused(refused)) = e
            && self.cipher_after_refusal(refused)
        {
            self.counters.handshake_error(&e);
            return Next::Again;
        }
        match e {
            HandshakeError::Refused(LinkReason::UnknownSession) if session.link_count() > 0 => {
                // The session lives on its other links, so this one reached
                // another server than theirs: a load balancer sent it
                // astray. Its server is still there; try again.
                self.counters
                    .refused(Refusal::Link(LinkReason::UnknownSession));
                crate::warn_throttled!(
                    self.astray,
                    "session {:016x} slot {index}: refused by a server that does not know \
                     the session while its other links are up (a load balancer in front of \
                     several servers sent the link to another one; see README, Scale out); \
                     retrying",
                    session.id
                );
                Next::Retry
            }
            HandshakeError::Refused(LinkReason::UnknownSession) => {
                self.counters
                    .refused(Refusal::Link(LinkReason::UnknownSession));
                self.session_lost(session, "the server no longer knows it: it restarted");
                Next::Stop
            }
            HandshakeError::Io(e) if server_is_gone(&e, session) => {
                // Nothing listens on the server's port: its sessions died
                // with it, and no grace period brings them back. Outages
                // look different (connects time out or the network is
                // unreachable) and keep the grace period.
                self.last_failure_ms.store(self.now_ms(), Ordering::SeqCst);
                let why = format!("the server refused a new link ({e}): it is not running");
                self.session_lost(session, &why);
                Next::Stop
            }
            _ if session.is_closed() || self.shutdown.is_triggered() => {
                // Our own teardown (an idle on-demand pool closing) cut the
                // handshake short; the server did not fail. Counted as a
                // failure, it made the next session refuse applications at
                // once ("no link to the server is up").
                Next::Stop
            }
            e => {
                self.counters.handshake_error(&e);
                self.last_failure_ms.store(self.now_ms(), Ordering::SeqCst);
                *failures += 1;
                if *failures == 1 {
                    log::warn!(
                        "session {:016x} slot {index}: cannot connect to {}: {e}; retrying with backoff",
                        session.id,
                        self.config.server
                    );
                } else {
                    log::debug!(
                        "session {:016x} slot {index}: attempt {failures}: {e}",
                        session.id
                    );
                }
                Next::Retry
            }
        }
    }

    /// After a server refused the record cipher `refused`: the links
    /// propose the next one ([`secure::Cipher::fallback`]) from now on. An
    /// older server lacks AEGIS-256X2; a server's `cipher` setting may name
    /// any one. False when the config names our cipher, or none is left.
    fn cipher_after_refusal(&self, refused: &str) -> bool {
        if self.config.tunnel.cipher.is_some() {
            // The config named this one cipher: nothing else to try.
            return false;
        }
        let mut cipher = lock(&self.cipher);
        if cipher.name() != refused {
            // Another slot already moved on.
            return true;
        }
        let Some(older) = cipher.fallback() else {
            return false;
        };
        log::warn!(
            "the server {} refused the record cipher {refused} (it runs an older MTCP, or its \
             `cipher` setting names another); links propose {} instead until the client restarts",
            self.config.server,
            older.name()
        );
        *cipher = older;
        true
    }

    fn connect_link(
        &self,
        session: &Arc<Session>,
        index: u16,
    ) -> Result<Arc<link::LinkHandle>, HandshakeError> {
        let timeout = self.config.connect_timeout;
        let addrs = self.config.server.resolve()?;
        let path = self.config.path_of_slot(usize::from(index));
        let source = path.map_or_else(Source::default, |(_, p)| p.source());
        let mut sock = connect_first_from(&addrs, &source, timeout, "server name")?;
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(timeout))?;
        sock.set_write_timeout(Some(timeout))?;
        let role = LinkRole {
            join: session.has_had_link(),
            backup: path.is_some_and(|(_, p)| p.backup),
            paths: !self.config.paths.is_empty()
                && self.config.tunnel.scheduler == SchedulerKind::Adaptive,
        };
        let hello = handshake::hello(session.id, role, index, session.our_limits());
        let tunnel = &self.config.tunnel;
        let (mut sealer, mut opener) = match &tunnel.secret {
            Some(secret) => {
                let cipher = *lock(&self.cipher);
                secure::client_handshake_with(&mut sock, secret, tunnel.encrypt, &hello, cipher)?
            }
            None => secure::plain(),
        };
        sealer.send_frame(&mut sock, &Frame::Hello(hello))?;
        let mut buf = [0u8; HANDSHAKE_BUF_LEN];
        let answer = opener.recv_frame(&mut sock, None, &mut buf)?;
        session.set_peer_limits(handshake::check_answer(answer)?);
        if session.is_closed() {
            return Err(HandshakeFault::SessionClosed.into());
        }
        let mut settings = session.link_settings();
        settings.path = LinkPath {
            index: path.and_then(|(i, _)| u16::try_from(i).ok()),
            backup: role.backup,
        };
        Ok(link::start(
            session.clone(),
            sock,
            index,
            &self.threads,
            (sealer, opener),
            settings,
        )?)
    }

    /// The server no longer knows `session` (it restarted): its streams
    /// cannot be saved, so the applications see a reset now, and a new
    /// session takes over.
    fn session_lost(self: &Arc<Self>, session: &Arc<Session>, why: &str) {
        let mut current = lock(&self.current);
        let is_current = current.as_ref().is_some_and(|s| s.id == session.id);
        if !session.is_closed() {
            log::warn!(
                "session {:016x}: lost ({why}); resetting {} streams",
                session.id,
                session.stream_count()
            );
            session.reset_all(RstReason::SessionLost, false);
            session.close("lost by server");
        }
        if is_current {
            *current = None;
            if self.config.zero_rtt && !self.shutdown.is_triggered() {
                drop(current);
                self.session();
            }
        }
    }

    /// Lets a session whose server is going away finish its streams.
    fn retire(&self, old: Arc<Session>) {
        if old.is_closed() {
            return;
        }
        if old.stream_count() == 0 {
            old.close("server going away");
            return;
        }
        log::info!(
            "session {:016x}: server going away; {} streams finish there, new ones use a new session",
            old.id,
            old.stream_count()
        );
        lock(&self.retiring).push(old);
    }

    fn close_retired_if_idle(&self, id: u64) {
        let mut retiring = lock(&self.retiring);
        retiring.retain(|s| {
            let done = s.id == id && s.stream_count() == 0;
            if done {
                s.close("retired session finished its streams");
            }
            !done
        });
    }

    fn event_loop(self: &Arc<Self>, events: &Receiver<SessionEvent>) {
        loop {
            let event = select! {
                recv(events) -> e => match e { Ok(e) => Some(e), Err(_) => return },
                recv(self.shutdown.receiver()) -> _ => return,
                default(GRACE_CHECK) => None,
            };
            match event {
                Some(SessionEvent::Idle(id)) => {
                    self.close_retired_if_idle(id);
                    if !self.config.zero_rtt {
                        self.close_if_idle(id);
                    }
                }
                _ => self.expire_if_linkless(),
            }
        }
    }

    /// Applications must not hang on a session whose links have all been
    /// gone longer than the grace period: reset its streams, start afresh.
    fn expire_if_linkless(self: &Arc<Self>) {
        let session = lock(&self.current).clone();
        let Some(s) = session else { return };
        let expired = s
            .linkless_for()
            .is_some_and(|d| d >= self.config.session_grace);
        if expired && s.stream_count() > 0 {
            log::warn!(
                "session {:016x}: no link for {:?}, resetting {} streams",
                s.id,
                self.config.session_grace,
                s.stream_count()
            );
            self.session_lost(&s, "no link within the grace period");
        }
    }

    fn close_if_idle(&self, id: u64) {
        let mut current = lock(&self.current);
        let idle = current
            .as_ref()
            .is_some_and(|s| s.id == id && s.stream_count() == 0);
        if idle && let Some(s) = current.take() {
            s.close("last stream ended (0-RTT off)");
        }
    }

    fn drain(&self) {
        // The sessions stay listed (as retiring) while they drain, so that
        // stats, the watchdog and an exit at once (second SIGTERM, which
        // resets their streams) still see them.
        let current = lock(&self.current).take();
        let sessions: Vec<Arc<Session>> = {
            let mut retiring = lock(&self.retiring);
            retiring.extend(current);
            retiring.clone()
        };
        let open: usize = sessions.iter().map(|s| s.stream_count()).sum();
        log::info!(
            "shutting down: {open} streams open; draining up to {:?}",
            self.config.tunnel.drain_timeout
        );
        let deadline = Instant::now() + self.config.tunnel.drain_timeout;
        while Instant::now() < deadline && sessions.iter().any(|s| s.stream_count() > 0) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for s in &sessions {
            s.reset_all(RstReason::Shutdown, true);
            s.close("client shutting down");
        }
        lock(&self.retiring).clear();
    }
}

/// True when a failed connect says the server process is gone: the
/// connection was refused (nothing listens) after the session's links all
/// died. Only then: a refusal while other links live is not the server's
/// death, and a session that never had a link has nothing to lose.
fn server_is_gone(e: &io::Error, session: &Session) -> bool {
    e.kind() == io::ErrorKind::ConnectionRefused
        && session.has_had_link()
        && session.link_count() == 0
}
