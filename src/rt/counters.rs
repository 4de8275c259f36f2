//! Counters an operator reads from outside: daemon-wide ones (links refused,
//! handshakes failed, links closed, each by its typed reason) and a
//! session's own.
//!
//! They are relaxed atomics bumped where the event happens and read by
//! monitor snapshots (`rt::monitor`). Every reason is a
//! fixed slot, so a peer can move a counter but never add a label value:
//! what the metrics endpoint exports stays bounded however hostile the
//! traffic.

use crate::proto::error::LinkClose;
use crate::proto::frame::LinkReason;
use crate::proto::handshake::HandshakeError;
use crate::util::sync::lock;
use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a link was refused before it joined a session: on the server the
/// refusals it sends (and the connections it closes at once), on the client
/// the refusals its server sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A REFUSE frame (or the secure layer's equivalent) with this reason.
    Link(LinkReason),
    /// Server: closed at accept, `max_pending_handshakes` were in progress.
    TooManyHandshakes,
    /// Server with `accept_proxy_protocol`: closed at once, the connection
    /// did not start with a valid PROXY protocol v2 header (none, version
    /// 1, cut short, too long or malformed).
    ProxyHeader,
}

impl Refusal {
    /// Every label, in slot order.
    pub const LABELS: [&'static str; 11] = [
        "bad_magic",
        "version",
        "unknown_session",
        "too_many_links",
        "too_many_sessions",
        "auth",
        "shutting_down",
        "protocol",
        "other",
        "too_many_handshakes",
        "proxy_header",
    ];

    fn slot(self) -> usize {
        match self {
            Refusal::Link(r) => match r {
                LinkReason::BadMagic => 0,
                LinkReason::Version => 1,
                LinkReason::UnknownSession => 2,
                LinkReason::TooManyLinks => 3,
                LinkReason::TooManySessions => 4,
                LinkReason::Auth => 5,
                LinkReason::ShuttingDown => 6,
                LinkReason::Protocol => 7,
                LinkReason::Other(_) => 8,
            },
            Refusal::TooManyHandshakes => 9,
            Refusal::ProxyHeader => 10,
        }
    }

    /// The stable label of this reason.
    pub fn label(self) -> &'static str {
        Self::LABELS[self.slot()]
    }
}

/// Why a link's handshake did not complete, when nobody refused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The deadline (`handshake_timeout_ms`, `connect_timeout_ms`) ran out.
    Timeout,
    /// The peer closed the connection before the handshake ended.
    Closed,
    /// Connecting, reading or writing failed otherwise.
    IoError,
    /// The peer broke the handshake's rules (or its secret differs).
    Protocol,
    /// Server with `accept_proxy_protocol`: a load balancer's health check
    /// (PROXY header with the LOCAL command) closed, as they do, before a
    /// handshake. Routine, and counted apart so it never reads as an attack.
    HealthCheck,
}

impl HandshakeFailure {
    /// Every label, in slot order.
    pub const LABELS: [&'static str; 5] =
        ["timeout", "closed", "io_error", "protocol", "health_check"];

    /// The stable label of this reason.
    pub fn label(self) -> &'static str {
        Self::LABELS[self as usize]
    }

    /// What a socket error during a handshake counts as.
    pub fn of_io(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HandshakeFailure::Timeout,
            io::ErrorKind::UnexpectedEof => HandshakeFailure::Closed,
            _ => HandshakeFailure::IoError,
        }
    }
}

/// Counters of one path's links.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathTotals {
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// DATA frames its links carried again for a link that died.
    pub frames_resent: u64,
    pub bytes_resent: u64,
}

impl PathTotals {
    /// Adds `o` to these.
    pub fn add(&mut self, o: PathTotals) {
        self.bytes_out = self.bytes_out.saturating_add(o.bytes_out);
        self.bytes_in = self.bytes_in.saturating_add(o.bytes_in);
        self.frames_resent = self.frames_resent.saturating_add(o.frames_resent);
        self.bytes_resent = self.bytes_resent.saturating_add(o.bytes_resent);
    }
}

/// The totals of the links that ended, per path index.
#[derive(Default)]
pub struct EndedPaths(Mutex<Vec<PathTotals>>);

impl EndedPaths {
    /// Adds an ended link's counters to path `index`.
    pub fn link_ended(&self, index: u16, link: PathTotals) {
        let mut all = lock(&self.0);
        let i = usize::from(index);
        if all.len() <= i {
            all.resize(i + 1, PathTotals::default());
        }
        all[i].add(link);
    }

    /// Path `index`'s totals.
    pub fn get(&self, index: usize) -> PathTotals {
        lock(&self.0).get(index).copied().unwrap_or_default()
    }
}

/// Daemon-wide counters, one per daemon, shared by its sessions and its
/// accept or connect paths.
#[derive(Default)]
pub struct DaemonCounters {
    refused: [AtomicU64; Refusal::LABELS.len()],
    handshakes_failed: [AtomicU64; HandshakeFailure::LABELS.len()],
    links_closed: [AtomicU64; LinkClose::ALL.len()],
    /// Client: what the ended links of each path carried.
    pub ended_paths: EndedPaths,
}

impl DaemonCounters {
    /// Counts a refused link.
    pub fn refused(&self, why: Refusal) {
        self.refused[why.slot()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a handshake that failed without a refusal.
    pub fn handshake_failed(&self, why: HandshakeFailure) {
        self.handshakes_failed[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed handshake by its error: a refusal as such, anything
    /// else as a failure.
    pub fn handshake_error(&self, e: &HandshakeError) {
        match e {
            HandshakeError::Refused(r) => self.refused(Refusal::Link(*r)),
            HandshakeError::Io(e) => self.handshake_failed(HandshakeFailure::of_io(e)),
            HandshakeError::Fault(_) => self.handshake_failed(HandshakeFailure::Protocol),
        }
    }

    /// Counts a link that ended.
    pub fn link_closed(&self, why: LinkClose) {
        let slot = LinkClose::ALL.iter().position(|c| *c == why).unwrap_or(0);
        self.links_closed[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Every counter now, each with its label, zeros included (so that a
    /// dashboard's `increase()` sees the first event too).
    pub fn snapshot(&self) -> CounterSnapshot {
        let read = |labels: &[&'static str], values: &[AtomicU64]| {
            labels
                .iter()
                .zip(values)
                .map(|(l, v)| (*l, v.load(Ordering::Relaxed)))
                .collect()
        };
        let closes: Vec<&'static str> = LinkClose::ALL.iter().map(|c| c.label()).collect();
        CounterSnapshot {
            refused: read(&Refusal::LABELS, &self.refused),
            handshakes_failed: read(&HandshakeFailure::LABELS, &self.handshakes_failed),
            links_closed: read(&closes, &self.links_closed),
        }
    }
}

/// [`DaemonCounters`] at one moment: `(label, count)` pairs in a fixed order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Links refused, by [`Refusal`] label.
    pub refused: Vec<(&'static str, u64)>,
    /// Handshakes failed, by [`HandshakeFailure`] label.
    pub handshakes_failed: Vec<(&'static str, u64)>,
    /// Links closed, by [`LinkClose`] label.
    pub links_closed: Vec<(&'static str, u64)>,
}

/// A session's counters for the stats lines and the metrics endpoint.
#[derive(Default)]
pub struct SessionStats {
    /// Streams opened since the session started.
    pub streams_opened: AtomicU64,
    /// Frames sent again after a link failure (retransmissions).
    pub frames_resent: AtomicU64,
    /// Payload bytes of those re-sent DATA frames.
    pub bytes_resent: AtomicU64,
    /// DATA frames sent again on another link because they held a stream's
    /// delivery up on a link repairing a loss (`proto::send::stall`).
    pub frames_reinjected: AtomicU64,
    /// Payload bytes of those frames.
    pub bytes_reinjected: AtomicU64,
    /// Small DATA frames also sent on a second link
    /// (`duplicate_small_frames`).
    pub frames_duplicated: AtomicU64,
    /// Payload bytes of those copies.
    pub bytes_duplicated: AtomicU64,
    /// Stream payload bytes handed to links the first time (application or
    /// backend bytes going to the peer).
    pub bytes_sent: AtomicU64,
    /// Stream payload bytes that arrived in DATA frames (a frame re-sent
    /// after a link failure may count twice).
    pub bytes_received: AtomicU64,
}

/// Links that came up per slot of a session: every one after a slot's
/// first is a reconnect.
#[derive(Default)]
pub struct SlotUps(Mutex<BTreeMap<u16, u64>>);

impl SlotUps {
    /// A link came up in `slot`.
    pub fn up(&self, slot: u16) {
        *lock(&self.0).entry(slot).or_default() += 1;
    }

    /// `(slot, reconnects)` for every slot that ever had a link.
    pub fn reconnects(&self) -> Vec<(u16, u64)> {
        let ups = lock(&self.0);
        ups.iter().map(|(s, n)| (*s, n.saturating_sub(1))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_slot_and_label() {
        let reasons = [
            LinkReason::BadMagic,
            LinkReason::Version,
            LinkReason::UnknownSession,
            LinkReason::TooManyLinks,
            LinkReason::TooManySessions,
            LinkReason::Auth,
            LinkReason::ShuttingDown,
            LinkReason::Protocol,
            LinkReason::Other(77),
        ];
        let c = DaemonCounters::default();
        for r in reasons {
            c.refused(Refusal::Link(r));
        }
        c.refused(Refusal::TooManyHandshakes);
        c.refused(Refusal::ProxyHeader);
        c.refused(Refusal::ProxyHeader);
        c.refused(Refusal::Link(LinkReason::Other(3)));
        let snap = c.snapshot();
        let other = snap.refused.iter().find(|(l, _)| *l == "other");
        assert_eq!(other, Some(&("other", 2)));
        let proxy = snap.refused.iter().find(|(l, _)| *l == "proxy_header");
        assert_eq!(proxy, Some(&("proxy_header", 2)));
        assert_eq!(snap.refused.iter().map(|(_, n)| n).sum::<u64>(), 13);
        assert_eq!(snap.refused.len(), Refusal::LABELS.len());
        assert_eq!(Refusal::TooManyHandshakes.label(), "too_many_handshakes");
        assert_eq!(Refusal::ProxyHeader.label(), "proxy_header");
        assert_eq!(Refusal::Link(LinkReason::Auth).label(), "auth");
    }

    #[test]
    fn handshake_errors_split_into_refusals_and_failures() {
        let c = DaemonCounters::default();
        c.handshake_error(&HandshakeError::Refused(LinkReason::TooManyLinks));
        c.handshake_error(&HandshakeError::Io(io::ErrorKind::WouldBlock.into()));
        c.handshake_error(&HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
        c.handshake_error(&HandshakeError::Io(io::ErrorKind::ConnectionRefused.into()));
        c.handshake_failed(HandshakeFailure::HealthCheck);
        c.link_closed(LinkClose::KeepaliveTimeout);
        let snap = c.snapshot();
        let get = |v: &[(&str, u64)], k: &str| v.iter().find(|(l, _)| *l == k).map(|p| p.1);
        assert_eq!(get(&snap.refused, "too_many_links"), Some(1));
        assert_eq!(get(&snap.handshakes_failed, "timeout"), Some(1));
        assert_eq!(get(&snap.handshakes_failed, "closed"), Some(1));
        assert_eq!(get(&snap.handshakes_failed, "io_error"), Some(1));
        assert_eq!(get(&snap.handshakes_failed, "protocol"), Some(0));
        assert_eq!(get(&snap.handshakes_failed, "health_check"), Some(1));
        assert_eq!(HandshakeFailure::HealthCheck.label(), "health_check");
        assert_eq!(get(&snap.links_closed, "keepalive_timeout"), Some(1));
        assert_eq!(snap.links_closed.len(), 7);
    }

    #[test]
    fn a_slot_reconnects_from_its_second_link_on() {
        let slots = SlotUps::default();
        slots.up(2);
        slots.up(0);
        slots.up(2);
        slots.up(2);
        assert_eq!(slots.reconnects(), vec![(0, 0), (2, 2)]);
    }
}
