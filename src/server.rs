//! The server daemon: accepts links, groups them into sessions by session
//! id, and connects one backend connection per stream.
//!
//! Threads: `server-accept` (this module) takes new TCP connections and gives
//! each to a `handshake` thread with a deadline; `server-reaper` ends
//! sessions whose client has been gone longer than the grace period. Links
//! and streams have their own threads (see `link` and `stream`).

use crate::config::{Role, SchedulerKind, ServerConfig};
use crate::proto::frame::{self, Frame, LinkReason, RstReason};
use crate::proto::handshake::{self, HandshakeError, Join, JoinLimits, KnownSession, LinkRole};
use crate::rt::backend::{Backend, StreamBudget};
use crate::rt::budget::SendBudget;
use crate::rt::counters::{DaemonCounters, HandshakeFailure, Refusal};
use crate::rt::link;
use crate::rt::monitor::Monitor;
use crate::rt::proxy_header::{self, ProxyHeaderError, ProxyOrigin};
use crate::rt::secure::{self, Sealer};
use crate::rt::session::Session;
use crate::util::accept::Acceptor;
use crate::util::net;
use crate::util::shutdown::Shutdown;
use crate::util::sync::lock;
use crate::util::thread::{self, ThreadCount};
use crate::util::throttle::{Throttle, Throttles};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the reaper looks for abandoned sessions.
const REAP_INTERVAL: Duration = Duration::from_millis(250);

/// A bound, not yet running, server.
pub struct Server {
    listener: TcpListener,
    config: ServerConfig,
    threads: ThreadCount,
    monitor: Monitor,
}

struct Registry {
    /// Repeated warnings, each logged a few times per interval (refusals
    /// per reason, so a flood of one hides no other).
    refused: Throttles,
    too_many_handshakes: Throttle,
    no_thread: Throttle,
    config: ServerConfig,
    threads: ThreadCount,
    sessions: Mutex<HashMap<u64, Arc<Session>>>,
    pending: AtomicUsize,
    shutdown: Shutdown,
    budget: Arc<StreamBudget>,
    send_budget: Arc<SendBudget>,
    /// The daemon's counters (from its monitor): refusals, failed handshakes.
    counters: Arc<DaemonCounters>,
}

impl Server {
    /// Binds the link listener; separate from [`run`](Self::run) so callers
    /// (and tests) learn the real port before anything connects.
    pub fn bind(config: ServerConfig) -> io::Result<Server> {
        let listener = net::listen(config.listen)?;
        Ok(Server {
            listener,
            config,
            threads: ThreadCount::default(),
            monitor: Monitor::new(),
        })
    }

    /// The address links connect to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Threads this server has running (for leak checks).
    pub fn thread_count(&self) -> ThreadCount {
        self.threads.clone()
    }

    /// A window onto the server's sessions for stats and the watchdog; it
    /// sees them while [`run`](Self::run) runs.
    pub fn monitor(&self) -> Monitor {
        self.monitor.clone()
    }

    /// Serves until `shutdown` fires, then drains streams for up to the
    /// configured drain time and returns once every thread has ended.
    pub fn run(self, shutdown: Shutdown) -> io::Result<()> {
        let addr = self.local_addr()?;
        let Server {
            listener,
            config,
            threads,
            monitor,
        } = self;
        log::info!(
            "server listening on {addr}, backend {}, up to {} links per session",
            config.backend,
            config.max_links_per_session
        );
        warn_if_open(&config, addr);
        let registry = Arc::new(Registry {
            refused: Throttles::default(),
            too_many_handshakes: Throttle::default(),
            no_thread: Throttle::default(),
            threads: threads.clone(),
            sessions: Mutex::new(HashMap::new()),
            pending: AtomicUsize::new(0),
            shutdown: shutdown.clone(),
            budget: Arc::new(StreamBudget::new(config.max_total_streams)),
            send_budget: Arc::new(SendBudget::new(config.tunnel.send_budget)),
            counters: monitor.counters(),
            config,
        });
        let reg = registry.clone();
        monitor.attach(registry.send_budget.clone(), move || {
            lock(&reg.sessions).values().cloned().collect()
        });
        net::wake_on_shutdown(&threads, &shutdown, addr)?;
        let reg = registry.clone();
        thread::spawn_task(&threads, "server-reaper".into(), move || {
            reap_loop(&reg);
        })?;
        accept_loop(&listener, &registry, &shutdown);
        // Closed before the drain, so that new connections are refused at
        // once: a load balancer sends them to another server, and a client
        // without one learns within a connect that this server is leaving.
        drop(listener);
        drain(&registry);
        monitor.detach();
        if !threads.wait_idle(Duration::from_secs(5)) {
            log::warn!("{} threads still running at exit", threads.live());
        }
        log::info!("server stopped");
        Ok(())
    }
}

fn accept_loop(listener: &TcpListener, registry: &Arc<Registry>, shutdown: &Shutdown) {
    let max_pending = registry.config.max_pending_handshakes;
    let mut acceptor = Acceptor::new(listener, "link");
    while let Some((sock, peer)) = acceptor.accept(shutdown) {
        if registry.pending.fetch_add(1, Ordering::SeqCst) >= max_pending {
            registry.pending.fetch_sub(1, Ordering::SeqCst);
            registry.counters.refused(Refusal::TooManyHandshakes);
            crate::warn_throttled!(
                registry.too_many_handshakes,
                "too many handshakes in progress ({max_pending}, max_pending_handshakes), closing connection from {}",
                peer
            );
            continue;
        }
        let reg = registry.clone();
        let spawned = thread::spawn_task(&registry.threads, "handshake".into(), move || {
            handshake(&reg, sock, peer);
            reg.pending.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            registry.pending.fetch_sub(1, Ordering::SeqCst);
            crate::warn_throttled!(registry.no_thread, "cannot start handshake thread: {e}");
        }
    }
}

/// An unauthenticated server on a public address lets anyone who reaches
/// it open connections to the backend: say so loudly at start-up.
fn warn_if_open(config: &ServerConfig, addr: SocketAddr) {
    if config.tunnel.secret.is_none() && !addr.ip().is_loopback() {
        log::warn!(
            "no secret configured and listening on {addr}: anyone who can reach this port can \
             open connections to {} through it; set `secret_file` (see README, Security)",
            config.backend
        );
    } else if config.tunnel.secret.is_some() && !config.tunnel.encrypt {
        log::warn!("links are authenticated but not encrypted (encrypt = false)");
    }
}

fn refuse(
    reg: &Registry,
    sock: &mut TcpStream,
    sealer: &mut Sealer,
    peer: SocketAddr,
    reason: LinkReason,
) {
    reg.counters.refused(Refusal::Link(reason));
    crate::warn_throttled_by!(
        reg.refused,
        reason.label(),
        "link from {peer} refused: {reason}"
    );
    let _ = sealer.send_frame(sock, &Frame::Refuse(reason));
}

/// A connection that closes before its handshake is routine (port probes,
/// health checks); one that times out or breaks is worth an info line.
fn log_unfinished(reg: &Registry, peer: SocketAddr, e: &io::Error, deadline: Duration) {
    reg.counters.handshake_failed(HandshakeFailure::of_io(e));
    match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            log::debug!("connection from {peer} closed before its handshake");
        }
        // A read or write deadline (`handshake_timeout_ms`) ran out.
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => log::info!(
            "link from {peer}: handshake not completed within {} ms (handshake_timeout_ms)",
            deadline.as_millis()
        ),
        _ => log::info!("link from {peer}: handshake not completed: {e}"),
    }
}

/// With `accept_proxy_protocol` on, reads the connection's PROXY v2 header
/// within the handshake deadline (what is left of it then bounds the rest
/// of the handshake) and returns the address to name the link by (the
/// client's, when the header gives one, else `conn`) and whether it is a
/// balancer's health check (LOCAL). `None` when the connection was refused
/// or ended, logged and counted here. With it off, `conn` as it is.
fn proxy_origin(reg: &Registry, sock: &TcpStream, conn: SocketAddr) -> Option<(SocketAddr, bool)> {
    if !reg.config.accept_proxy_protocol {
        return Some((conn, false));
    }
    let timeout = reg.config.handshake_timeout;
    let deadline = Instant::now() + timeout;
    let origin = match proxy_header::read_header(&mut proxy_header::Deadline::new(sock, deadline)) {
        Ok(origin) => origin,
        Err(ProxyHeaderError::Io(e)) => {
            log_unfinished(reg, conn, &e, timeout);
            return None;
        }
        Err(e) => {
            reg.counters.refused(Refusal::ProxyHeader);
            crate::warn_throttled_by!(
                reg.refused,
                Refusal::ProxyHeader.label(),
                "link from {conn} refused: {e}"
            );
            return None;
        }
    };
    let peer = origin.peer(conn);
    let left = deadline.saturating_duration_since(Instant::now());
    let timed = if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        sock.set_read_timeout(Some(left))
    };
    if let Err(e) = timed {
        log_unfinished(reg, peer, &e, timeout);
        return None;
    }
    match origin {
        ProxyOrigin::Client(_) => log::debug!("connection from {conn} is client {peer} (PROXY)"),
        ProxyOrigin::Local => log::debug!("connection from {conn}: health check (PROXY LOCAL)"),
        ProxyOrigin::Unknown => {
            log::debug!("connection from {conn}: PROXY header without a TCP source address")
        }
    }
    Some((peer, origin == ProxyOrigin::Local))
}

/// True for the ways a peer ends a connection itself: HAProxy closes its
/// health checks with a reset, other balancers with a FIN.
fn is_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A balancer's health check that closed after its PROXY LOCAL header, as
/// they do every few seconds: debug only, and counted as what it is.
fn health_check_done(reg: &Registry, peer: SocketAddr) {
    reg.counters.handshake_failed(HandshakeFailure::HealthCheck);
    log::debug!("health check from {peer} done (PROXY LOCAL, then closed)");
}

/// Runs the server's side of a new link's handshake (the `handshake`
/// thread), and starts the link in its session when it passes.
/// `peer` is the address `accept` gave: a health check's reset may already
/// have arrived, after which the socket no longer knows it.
fn handshake(reg: &Registry, mut sock: TcpStream, peer: SocketAddr) {
    let deadline = reg.config.handshake_timeout;
    let setup = sock
        .set_read_timeout(Some(deadline))
        .and_then(|_| sock.set_write_timeout(Some(deadline)))
        .and_then(|_| sock.set_nodelay(true));
    if let Err(e) = setup {
        return log::info!("link from {peer}: {e}");
    }
    let Some((peer, health_check)) = proxy_origin(reg, &sock, peer) else {
        return;
    };
    let tunnel = &reg.config.tunnel;
    let channel = secure::open_server_channel(
        &mut sock,
        tunnel.secret.as_ref(),
        tunnel.encrypt,
        tunnel.cipher,
    );
    let (mut sealer, mut opener, start) = match channel {
        Ok(channel) => channel,
        Err(HandshakeError::Io(e)) if health_check && is_close(&e) => {
            return health_check_done(reg, peer);
        }
        Err(HandshakeError::Io(e)) => return log_unfinished(reg, peer, &e, deadline),
        Err(HandshakeError::Refused(reason)) => {
            reg.counters.refused(Refusal::Link(reason));
            return crate::warn_throttled_by!(
                reg.refused,
                reason.label(),
                "link from {peer} refused: {reason}"
            );
        }
        Err(HandshakeError::Fault(e)) => {
            reg.counters.handshake_failed(HandshakeFailure::Protocol);
            return crate::warn_throttled_by!(
                reg.refused,
                e.label(),
                "link from {peer} refused: {e}"
            );
        }
    };
    let hello = match secure::recv_hello(&mut sock, &mut opener, start) {
        Ok(h) => h,
        Err(HandshakeError::Refused(r)) => return refuse(reg, &mut sock, &mut sealer, peer, r),
        Err(HandshakeError::Io(e)) => return log_unfinished(reg, peer, &e, deadline),
        Err(HandshakeError::Fault(e)) => {
            crate::warn_throttled_by!(
                reg.refused,
                e.label(),
                "link from {peer}: bad handshake: {e}"
            );
            return refuse(reg, &mut sock, &mut sealer, peer, LinkReason::Protocol);
        }
    };
    let client_limits = match handshake::check_hello(&hello) {
        Ok(limits) => limits,
        Err(reason) => return refuse(reg, &mut sock, &mut sealer, peer, reason),
    };
    let session = match join_session(reg, &hello, peer) {
        Ok(s) => s,
        Err(reason) => return refuse(reg, &mut sock, &mut sealer, peer, reason),
    };
    let welcome = handshake::welcome(session.our_limits());
    if let Err(e) = sealer.send_frame(&mut sock, &welcome) {
        session.join_failed();
        reg.counters.handshake_failed(HandshakeFailure::of_io(&e));
        return log::warn!("link from {peer}: cannot send WELCOME: {e}");
    }
    session.set_peer_limits(client_limits);
    let mut settings = session.link_settings();
    settings.path.backup = LinkRole::of(&hello).backup;
    let started = link::start_from(
        peer,
        session.clone(),
        sock,
        hello.link_index,
        &reg.threads,
        (sealer, opener),
        settings,
    );
    if let Err(e) = started {
        session.join_failed();
        log::warn!("link from {peer}: cannot start: {e}");
    }
}

/// Finds or starts the session a HELLO names and counts the link against
/// its `connection_pool_size` from here on (`Session::try_join`): links
/// arriving together all passed the check while each was counted only once
/// up. The caller calls `Session::join_failed` if the link never comes up.
fn join_session(
    reg: &Registry,
    hello: &frame::Hello,
    peer: SocketAddr,
) -> Result<Arc<Session>, LinkReason> {
    let mut sessions = lock(&reg.sessions);
    let known = sessions.get(&hello.session_id).map(|s| KnownSession {
        closed: s.is_closed(),
        links: s.links_joined(),
    });
    let limits = JoinLimits {
        max_links_per_session: reg.config.max_links_per_session,
        max_sessions: reg.config.max_sessions,
    };
    let shutting_down = reg.shutdown.is_triggered();
    let session = match handshake::join(hello, known, sessions.len(), limits, shutting_down)? {
        Join::Existing => sessions
            .get(&hello.session_id)
            .cloned()
            .ok_or(LinkReason::UnknownSession)?,
        Join::New => {
            let backend = Backend {
                endpoint: reg.config.backend.clone(),
                timeout: reg.config.backend_connect_timeout,
                budget: reg.budget.clone(),
            };
            let mut tunnel = reg.config.tunnel.clone();
            if LinkRole::of(hello).paths {
                // The client bonds uplinks of unequal rate and round trip:
                // links taken in turn would let the slowest set the pace.
                tunnel.scheduler = SchedulerKind::Adaptive;
            }
            let session = Session::new(
                hello.session_id,
                Role::Server,
                tunnel,
                Some(backend),
                reg.threads.clone(),
                None,
                reg.send_budget.clone(),
                reg.counters.clone(),
            );
            sessions.insert(hello.session_id, session.clone());
            log::info!(
                "session {:016x} started by {peer} ({} sessions){}",
                hello.session_id,
                sessions.len(),
                if LinkRole::of(hello).paths {
                    ", scheduler adaptive (the client bonds several paths)"
                } else {
                    ""
                }
            );
            session
        }
    };
    if !session.try_join(reg.config.max_links_per_session) {
        return Err(LinkReason::TooManyLinks);
    }
    Ok(session)
}

fn reap_loop(reg: &Registry) {
    loop {
        if reg.shutdown.receiver().recv_timeout(REAP_INTERVAL).is_err()
            && reg.shutdown.is_triggered()
        {
            return;
        }
        let expired: Vec<Arc<Session>> = {
            let mut sessions = lock(&reg.sessions);
            let dead: Vec<u64> = sessions
                .iter()
                .filter(|(_, s)| is_expired(s, reg.config.session_grace))
                .map(|(id, _)| *id)
                .collect();
            dead.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for s in expired {
            let streams = s.stream_count();
            s.reset_all(RstReason::SessionLost, false);
            s.close("client gone");
            log::info!("session {:016x} ended ({streams} streams reset)", s.id);
        }
    }
}

fn is_expired(s: &Session, grace: Duration) -> bool {
    let Some(gone) = s.linkless_for() else {
        return false;
    };
    (s.peer_going_away() && s.stream_count() == 0) || gone >= grace
}

fn drain(reg: &Registry) {
    let sessions: Vec<Arc<Session>> = lock(&reg.sessions).values().cloned().collect();
    let open: usize = sessions.iter().map(|s| s.stream_count()).sum();
    log::info!(
        "shutting down: {} sessions, {open} streams; draining up to {:?}",
        sessions.len(),
        reg.config.tunnel.drain_timeout
    );
    for s in &sessions {
        s.send_goaway(LinkReason::ShuttingDown);
    }
    let deadline = Instant::now() + reg.config.tunnel.drain_timeout;
    while Instant::now() < deadline && sessions.iter().any(|s| s.stream_count() > 0) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for s in &sessions {
        s.reset_all(RstReason::Shutdown, true);
        s.close("server shutting down");
    }
    lock(&reg.sessions).clear();
}
