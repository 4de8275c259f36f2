//! Operational statistics: what each session and link has done, read from
//! outside the daemon's hot paths.
//!
//! The daemons keep their sessions private (the server in its registry, the
//! client in its pool). A [`Monitor`] is the one window an operator-facing
//! thread gets onto them: the daemon attaches a closure that lists its
//! sessions when it starts running, and anyone holding a clone of the
//! monitor can take a [`Snapshot`]. Counters are relaxed atomics kept by the
//! link threads, so a snapshot costs a few lock acquisitions and never slows
//! the data path.
//!
//! Taking a snapshot also proves that the daemon's shared state is not
//! deadlocked (it takes the session table lock and each session's link and
//! stream locks), which is what the systemd watchdog relies on.

use crate::rt::budget::SendBudget;
use crate::rt::counters::{CounterSnapshot, DaemonCounters, PathTotals};
use crate::rt::link::LinkPath;
use crate::rt::path_stats::{self, LiveLink, PathInfo, PathSnapshot};
use crate::rt::session::Session;
use crate::util::sync::lock;
use crate::util::tcpinfo::TcpInfo;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// Lists a daemon's live sessions; supplied by the daemon itself.
type SessionLister = Arc<dyn Fn() -> Vec<Arc<Session>> + Send + Sync>;

/// A cloneable handle through which operator-facing threads (stats log,
/// systemd readiness and watchdog) read a running daemon's sessions.
///
/// It exists so that those threads need no access to the server's registry
/// or the client's pool, which stay private to their modules.
#[derive(Clone, Default)]
pub struct Monitor {
    attached: Arc<Mutex<Option<Attached>>>,
    /// The daemon's counters: they live as long as the daemon, not only
    /// while it runs, so they never go backwards.
    counters: Arc<DaemonCounters>,
    /// Client: its configured paths, for per-path figures.
    paths: Arc<Mutex<Vec<PathInfo>>>,
}

/// What a running daemon lends its monitor.
#[derive(Clone)]
struct Attached {
    lister: SessionLister,
    send_budget: Arc<SendBudget>,
}

impl Monitor {
    /// A monitor with nothing attached: it sees no sessions until the daemon
    /// starts running.
    pub fn new() -> Self {
        Self::default()
    }

    /// The daemon-wide counters, for the daemon to hand to its sessions and
    /// its accept or connect paths.
    pub fn counters(&self) -> Arc<DaemonCounters> {
        self.counters.clone()
    }

    /// Called by a client that bonds paths, so that snapshots report each.
    pub fn set_paths(&self, paths: Vec<PathInfo>) {
        *lock(&self.paths) = paths;
    }

    /// Called by the daemon when it starts running, with its send budget and
    /// a closure that lists its sessions. The closure must not take the
    /// monitor's lock.
    pub fn attach(
        &self,
        send_budget: Arc<SendBudget>,
        lister: impl Fn() -> Vec<Arc<Session>> + Send + Sync + 'static,
    ) {
        *lock(&self.attached) = Some(Attached {
            lister: Arc::new(lister),
            send_budget,
        });
    }

    /// Called by the daemon when it stops, so the monitor no longer keeps its
    /// state alive.
    pub fn detach(&self) {
        lock(&self.attached).take();
    }

    /// The sessions alive now; empty before the daemon runs or after it
    /// stopped.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        // Cloned out first: the lister takes daemon locks, and holding ours
        // meanwhile would order the two locks for no reason.
        let attached = lock(&self.attached).clone();
        attached.map(|a| (a.lister)()).unwrap_or_default()
    }

    /// True when any session has at least one link up; the client's
    /// readiness test.
    pub fn any_link_up(&self) -> bool {
        self.sessions().iter().any(|s| s.link_count() > 0)
    }

    /// Every counter of every session and link, read now.
    pub fn snapshot(&self) -> Snapshot {
        let budget = lock(&self.attached)
            .as_ref()
            .map(|a| (a.send_budget.used(), a.send_budget.limit()));
        let (unacked_bytes, send_budget) = budget.unwrap_or_default();
        let sessions: Vec<SessionSnapshot> =
            self.sessions().iter().map(|s| session_stats(s)).collect();
        let live: Vec<LiveLink> = sessions
            .iter()
            .flat_map(|s| &s.links)
            .map(|l| LiveLink {
                path: l.path.index,
                totals: PathTotals {
                    bytes_out: l.bytes_out,
                    bytes_in: l.bytes_in,
                    frames_resent: l.frames_resent,
                    bytes_resent: l.bytes_resent,
                },
                srtt_us: l.srtt_us,
            })
            .collect();
        let paths = path_stats::snapshot(&lock(&self.paths), &self.counters.ended_paths, &live);
        Snapshot {
            sessions,
            paths,
            unacked_bytes,
            send_budget,
            counters: self.counters.snapshot(),
        }
    }
}

fn session_stats(s: &Session) -> SessionSnapshot {
    let links = s
        .links()
        .iter()
        .map(|l| {
            let load = l.load();
            LinkSnapshot {
                id: l.id,
                index: l.index,
                path: l.path,
                local: l.local,
                peer: l.peer,
                up: !l.is_dead(),
                bytes_out: l.stats.bytes_out.load(Ordering::Relaxed),
                bytes_in: l.stats.bytes_in.load(Ordering::Relaxed),
                frames_out: l.stats.frames_out.load(Ordering::Relaxed),
                frames_in: l.stats.frames_in.load(Ordering::Relaxed),
                rtt_us: l.stats.rtt_us.load(Ordering::Relaxed),
                srtt_us: load.srtt_us,
                rate: load.rate,
                queued_bytes: load.queued_bytes,
                bytes_resent: l.stats.bytes_resent.load(Ordering::Relaxed),
                frames_resent: l.stats.frames_resent.load(Ordering::Relaxed),
                // A link dying meanwhile has no socket state worth reporting.
                tcp: l.tcp_info().unwrap_or_default(),
            }
        })
        .collect();
    let stats = &s.stats;
    SessionSnapshot {
        id: s.id,
        streams_open: s.stream_count(),
        streams_opened: stats.streams_opened.load(Ordering::Relaxed),
        frames_resent: stats.frames_resent.load(Ordering::Relaxed),
        bytes_resent: stats.bytes_resent.load(Ordering::Relaxed),
        frames_reinjected: stats.frames_reinjected.load(Ordering::Relaxed),
        bytes_reinjected: stats.bytes_reinjected.load(Ordering::Relaxed),
        frames_duplicated: stats.frames_duplicated.load(Ordering::Relaxed),
        bytes_duplicated: stats.bytes_duplicated.load(Ordering::Relaxed),
        bytes_sent: stats.bytes_sent.load(Ordering::Relaxed),
        bytes_received: stats.bytes_received.load(Ordering::Relaxed),
        slots: s.slots.reconnects(),
        links,
    }
}

/// The counters of one link at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSnapshot {
    /// Process-unique link id, as in the link's other log lines.
    pub id: u64,
    /// The link's slot in the client's pool.
    pub index: u16,
    /// The client path it takes (`[[client.path]]`).
    pub path: LinkPath,
    /// Our end of the link.
    pub local: SocketAddr,
    /// The far end of the link.
    pub peer: SocketAddr,
    /// False once the link is being torn down (it leaves the list soon).
    pub up: bool,
    /// Bytes written to the link's socket.
    pub bytes_out: u64,
    /// Bytes read from the link's socket.
    pub bytes_in: u64,
    /// Frames written.
    pub frames_out: u64,
    /// Frames read.
    pub frames_in: u64,
    /// Round-trip time of the last PING in microseconds; 0 = not measured yet.
    pub rtt_us: u64,
    /// Smoothed round-trip time in microseconds, what the adaptive scheduler
    /// weighs; 0 = not measured yet.
    pub srtt_us: u64,
    /// Bytes per second the link's socket took over its last measured round
    /// trip; 0 = not measured yet.
    pub rate: u64,
    /// Bytes handed to the link and not yet written to its socket.
    pub queued_bytes: u64,
    /// DATA payload bytes this link carried again for links that died.
    pub bytes_resent: u64,
    /// DATA frames this link carried again for links that died.
    pub frames_resent: u64,
    /// The kernel's view: unsent bytes, TCP retransmissions.
    pub tcp: TcpInfo,
}

/// The counters of one session at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// Session id, as in the session's other log lines.
    pub id: u64,
    /// Streams open now.
    pub streams_open: usize,
    /// Streams opened since the session started.
    pub streams_opened: u64,
    /// Frames re-sent after link failures since the session started.
    pub frames_resent: u64,
    /// Payload bytes of the DATA among those frames.
    pub bytes_resent: u64,
    /// DATA frames sent again on another link because they held a stream's
    /// delivery up on a link repairing a loss.
    pub frames_reinjected: u64,
    /// Payload bytes of those frames.
    pub bytes_reinjected: u64,
    /// Small DATA frames also sent on a second link.
    pub frames_duplicated: u64,
    /// Payload bytes of those copies.
    pub bytes_duplicated: u64,
    /// Stream payload bytes sent to the peer (first sends only).
    pub bytes_sent: u64,
    /// Stream payload bytes received from the peer.
    pub bytes_received: u64,
    /// `(slot, reconnects)` of every slot that ever had a link.
    pub slots: Vec<(u16, u64)>,
    /// Its live links.
    pub links: Vec<LinkSnapshot>,
}

/// Every session's and link's counters at one moment, for the stats log and
/// the systemd status line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// One entry per live session.
    pub sessions: Vec<SessionSnapshot>,
    /// Client: one entry per configured path (`[[client.path]]`).
    pub paths: Vec<PathSnapshot>,
    /// Bytes the daemon's streams sent and hold for re-sending, not yet
    /// acknowledged: what the send budget counts.
    pub unacked_bytes: u64,
    /// The daemon's `send_budget`.
    pub send_budget: u64,
    /// Refusals, failed handshakes and closed links, by reason.
    pub counters: CounterSnapshot,
}

impl Snapshot {
    /// Live links over all sessions.
    pub fn link_count(&self) -> usize {
        self.sessions.iter().map(|s| s.links.len()).sum()
    }

    /// Open streams over all sessions.
    pub fn stream_count(&self) -> usize {
        self.sessions.iter().map(|s| s.streams_open).sum()
    }

    /// One human line for `systemctl status` (the STATUS= notification).
    pub fn summary(&self) -> String {
        format!(
            "{} sessions, {} links, {} streams open",
            self.sessions.len(),
            self.link_count(),
            self.stream_count()
        )
    }

    /// The stats report as log lines: a total, then one line per session and
    /// one per link, then (a client bonding uplinks) one per path. Lines are `key=value` so that they can be grepped and
    /// parsed from the journal without knowing the wording.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "stats total sessions={} links={} streams_open={} unacked_bytes={} send_budget={}",
            self.sessions.len(),
            self.link_count(),
            self.stream_count(),
            self.unacked_bytes,
            self.send_budget
        )];
        for s in &self.sessions {
            out.push(format!(
                "stats session={:016x} links={} streams_open={} streams_opened={} frames_resent={} \
                 bytes_resent={} frames_reinjected={} bytes_reinjected={} frames_duplicated={} \
                 bytes_duplicated={} bytes_sent={} bytes_received={}",
                s.id,
                s.links.len(),
                s.streams_open,
                s.streams_opened,
                s.frames_resent,
                s.bytes_resent,
                s.frames_reinjected,
                s.bytes_reinjected,
                s.frames_duplicated,
                s.bytes_duplicated,
                s.bytes_sent,
                s.bytes_received
            ));
            out.extend(s.links.iter().map(|l| link_line(s.id, l)));
        }
        out.extend(self.paths.iter().map(path_line));
        out
    }

    /// Logs [`lines`](Self::lines) at info.
    pub fn log(&self) {
        for line in self.lines() {
            log::info!("{line}");
        }
    }
}

fn path_line(p: &PathSnapshot) -> String {
    let t = &p.totals;
    let mut line = format!(
        "stats path={} source={} backup={} links={} bytes_out={} bytes_in={} frames_resent={} bytes_resent={}",
        p.index,
        p.info.source,
        p.info.backup,
        p.links,
        t.bytes_out,
        t.bytes_in,
        t.frames_resent,
        t.bytes_resent
    );
    if p.srtt_us == 0 {
        line.push_str(" srtt_ms=-");
    } else {
        let _ = write!(line, " srtt_ms={:.3}", p.srtt_us as f64 / 1000.0);
    }
    line
}

fn link_line(session: u64, l: &LinkSnapshot) -> String {
    let mut line = format!(
        "stats session={session:016x} link={} id={} peer={} bytes_out={} bytes_in={} frames_out={} frames_in={}",
        l.index, l.id, l.peer, l.bytes_out, l.bytes_in, l.frames_out, l.frames_in
    );
    if l.rtt_us == 0 {
        line.push_str(" rtt_ms=-");
    } else {
        let _ = write!(line, " rtt_ms={:.3}", l.rtt_us as f64 / 1000.0);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u16, rtt_us: u64) -> LinkSnapshot {
        LinkSnapshot {
            id: 10 + u64::from(index),
            index,
            path: LinkPath::default(),
            local: "127.0.0.1:40000".parse().expect("addr"),
            peer: "127.0.0.1:8000".parse().expect("addr"),
            up: true,
            bytes_out: 100,
            bytes_in: 200,
            frames_out: 3,
            frames_in: 4,
            rtt_us,
            srtt_us: rtt_us,
            rate: 0,
            queued_bytes: 0,
            bytes_resent: 0,
            frames_resent: 0,
            tcp: TcpInfo::default(),
        }
    }

    #[test]
    fn empty_monitor_sees_nothing() {
        let m = Monitor::new();
        assert!(m.sessions().is_empty());
        assert!(!m.any_link_up());
        let snap = m.snapshot();
        assert!(snap.sessions.is_empty());
        // Every reason is reported from the start, at zero.
        assert_eq!(snap.counters.links_closed.len(), 7);
        assert!(snap.counters.refused.iter().all(|(_, n)| *n == 0));
        m.counters()
            .link_closed(crate::proto::error::LinkClose::Reset);
        let closed = m.snapshot().counters.links_closed;
        assert!(closed.contains(&("reset", 1)), "{closed:?}");
        m.attach(Arc::new(SendBudget::new(1)), Vec::new);
        assert!(m.sessions().is_empty());
        m.detach();
        assert_eq!(
            m.snapshot().summary(),
            "0 sessions, 0 links, 0 streams open"
        );
    }

    #[test]
    fn lines_are_key_value() {
        let snap = Snapshot {
            sessions: vec![SessionSnapshot {
                id: 0xab,
                streams_open: 2,
                streams_opened: 7,
                frames_resent: 3,
                bytes_resent: 10,
                frames_reinjected: 13,
                bytes_reinjected: 14,
                frames_duplicated: 15,
                bytes_duplicated: 16,
                bytes_sent: 11,
                bytes_received: 12,
                slots: vec![(0, 0), (1, 2)],
                links: vec![link(0, 1500), link(1, 0)],
            }],
            paths: Vec::new(),
            unacked_bytes: 5,
            send_budget: 9,
            counters: CounterSnapshot::default(),
        };
        let lines = snap.lines();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(
            lines[0],
            "stats total sessions=1 links=2 streams_open=2 unacked_bytes=5 send_budget=9"
        );
        assert_eq!(
            lines[1],
            "stats session=00000000000000ab links=2 streams_open=2 streams_opened=7 frames_resent=3 \
             bytes_resent=10 frames_reinjected=13 bytes_reinjected=14 frames_duplicated=15 \
             bytes_duplicated=16 bytes_sent=11 bytes_received=12"
        );
        assert_eq!(
            lines[2],
            "stats session=00000000000000ab link=0 id=10 peer=127.0.0.1:8000 bytes_out=100 bytes_in=200 frames_out=3 frames_in=4 rtt_ms=1.500"
        );
        assert!(lines[3].ends_with("rtt_ms=-"), "{}", lines[3]);
        assert_eq!(snap.summary(), "1 sessions, 2 links, 2 streams open");
    }
}
