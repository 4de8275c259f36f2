//! A [`Snapshot`] in the Prometheus text exposition format (version 0.0.4).
//!
//! Every scrape builds its series afresh from one snapshot, in a registry
//! of its own: a link that is gone is not in the snapshot, so its series
//! disappear with it, and label values stay bounded by the live links, the
//! live sessions and the fixed lists of reasons. The counters are read from
//! the daemon's own atomics, so they only go up while the link, session or
//! daemon they describe lives.
//!
//! The `prometheus` crate does the formatting (escaping, HELP and TYPE
//! lines, name checks). `prometheus-client` was the other candidate; it
//! writes only OpenMetrics (`# EOF`, an `info` type, `_total` added to the
//! family name), which `promtool check metrics` rejects as text format.

use crate::config::{Config, Role};
use crate::proto::frame::VERSION;
use crate::rt::counters::CounterSnapshot;
use crate::rt::monitor::{LinkSnapshot, SessionSnapshot, Snapshot};
use crate::rt::path_stats::PathSnapshot;
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels of every per-link series: the session, the link's process-unique
/// id, its slot in the client's pool and the far end's address.
const LINK_LABELS: [&str; 4] = ["session", "link", "slot", "peer"];

/// A per-link or per-session value: name, help, and how to read it.
type Series<T> = (&'static str, &'static str, fn(&T) -> u64);

/// Per-link counters.
const LINK_COUNTERS: [Series<LinkSnapshot>; 5] = [
    (
        "mtcp_link_sent_bytes_total",
        "Bytes written to the link's socket: frames with their headers (and record overhead when encrypted).",
        |l| l.bytes_out,
    ),
    (
        "mtcp_link_received_bytes_total",
        "Bytes read from the link's socket.",
        |l| l.bytes_in,
    ),
    (
        "mtcp_link_sent_frames_total",
        "Frames written to the link.",
        |l| l.frames_out,
    ),
    (
        "mtcp_link_received_frames_total",
        "Frames read from the link.",
        |l| l.frames_in,
    ),
    (
        "mtcp_link_resent_bytes_total",
        "Stream payload bytes this link carried again because another link died with them unacknowledged.",
        |l| l.bytes_resent,
    ),
];

/// Per-link gauges.
const LINK_GAUGES: [Series<LinkSnapshot>; 2] = [
    (
        "mtcp_link_up",
        "1 while the link is up; a link that is gone is not reported at all.",
        |l| u64::from(l.up),
    ),
    (
        "mtcp_link_queued_bytes",
        "Bytes handed to the link and waiting in MTCP's queue for its socket.",
        |l| l.queued_bytes,
    ),
];

/// Per-session counters.
const SESSION_COUNTERS: [Series<SessionSnapshot>; 9] = [
    (
        "mtcp_session_streams_opened_total",
        "Streams (application connections) opened in the session.",
        |s| s.streams_opened,
    ),
    (
        "mtcp_session_sent_bytes_total",
        "Stream payload bytes sent to the peer (application or backend data; re-sends not counted).",
        |s| s.bytes_sent,
    ),
    (
        "mtcp_session_received_bytes_total",
        "Stream payload bytes received from the peer (a frame re-sent after a link failure may count twice).",
        |s| s.bytes_received,
    ),
    (
        "mtcp_session_resent_bytes_total",
        "Stream payload bytes sent again after the link that carried them died.",
        |s| s.bytes_resent,
    ),
    (
        "mtcp_session_resent_frames_total",
        "Frames sent again after a link died (DATA, FIN, OPEN, ACK and RST).",
        |s| s.frames_resent,
    ),
    (
        "mtcp_session_reinjected_bytes_total",
        "Stream payload bytes sent again on another link because they held a stream's delivery up on a link repairing a loss.",
        |s| s.bytes_reinjected,
    ),
    (
        "mtcp_session_reinjected_frames_total",
        "DATA frames sent again on another link because they held a stream's delivery up on a link repairing a loss.",
        |s| s.frames_reinjected,
    ),
    (
        "mtcp_session_duplicated_bytes_total",
        "Stream payload bytes of small frames also sent on a second link (duplicate_small_frames).",
        |s| s.bytes_duplicated,
    ),
    (
        "mtcp_session_duplicated_frames_total",
        "Small DATA frames also sent on a second link (duplicate_small_frames).",
        |s| s.frames_duplicated,
    ),
];

/// Per-session gauges.
const SESSION_GAUGES: [Series<SessionSnapshot>; 2] = [
    ("mtcp_session_links", "Links up in the session.", |s| {
        s.links.len() as u64
    }),
    (
        "mtcp_session_streams",
        "Streams open in the session.",
        |s| s.streams_open as u64,
    ),
];

/// What the daemon is, for `mtcp_build_info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Server or client.
    pub role: Role,
    /// The link cipher: the Noise suite when links are encrypted, `none`
    /// otherwise.
    pub cipher: &'static str,
    /// True when links are authenticated with a pre-shared secret.
    pub authenticated: bool,
}

impl Identity {
    /// The identity of a daemon running `config`.
    pub fn of(config: &Config) -> Identity {
        let tunnel = match config {
            Config::Server(c) => &c.tunnel,
            Config::Client(c) => &c.tunnel,
        };
        Identity {
            role: config.role(),
            cipher: if tunnel.encrypt {
                // The client chooses for its links: what the config names,
                // else this CPU's fastest (a client that fell back for an
                // older server still says the latter). A server accepts
                // the one its config names, else any.
                match (tunnel.cipher, config) {
                    (Some(cipher), _) => cipher.name(),
                    (None, Config::Client(_)) => crate::rt::secure::preferred_cipher().name(),
                    (None, Config::Server(_)) => "any",
                }
            } else {
                "none"
            },
            authenticated: tunnel.secret.is_some(),
        }
    }
}

/// The exposition of `snap`: daemon-wide series, then per session, per slot
/// and per link (the encoder sorts families by name).
pub fn render(snap: &Snapshot, id: &Identity) -> prometheus::Result<String> {
    let out = Families(Registry::new());
    daemon(&out, snap, id)?;
    reasons(&out, &snap.counters)?;
    sessions(&out, &snap.sessions)?;
    links(&out, &snap.sessions)?;
    paths(&out, &snap.paths)?;
    let mut buf = Vec::new();
    TextEncoder::new().encode(&out.0.gather(), &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// The registry of one scrape; each family is made, filled and registered
/// once.
struct Families(Registry);

impl Families {
    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let family = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(family.clone()))?;
        Ok(family)
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
        let family = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(family.clone()))?;
        Ok(family)
    }

    fn float_gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
        let family = GaugeVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(family.clone()))?;
        Ok(family)
    }

    /// A family without labels, set to `value`.
    fn single(&self, name: &str, help: &str, value: u64) -> prometheus::Result<()> {
        self.gauge(name, help, &[])?
            .with_label_values::<&str>(&[])
            .set(signed(value));
        Ok(())
    }
}

/// Gauges are signed in the `prometheus` crate; no value here comes near
/// `i64::MAX`, and one that did would read as the largest, not wrap.
fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn daemon(out: &Families, snap: &Snapshot, id: &Identity) -> prometheus::Result<()> {
    let info = out.gauge(
        "mtcp_build_info",
        "Always 1; the labels say which MTCP runs: version, protocol version, role, link cipher and whether links are authenticated.",
        &["version", "protocol_version", "role", "cipher", "authenticated"],
    )?;
    let role = id.role.to_string();
    let protocol = VERSION.to_string();
    let auth = id.authenticated.to_string();
    info.with_label_values(&[
        env!("CARGO_PKG_VERSION"),
        &protocol,
        &role,
        id.cipher,
        &auth,
    ])
    .set(1);
    out.single(
        "mtcp_sessions",
        "Sessions alive (server: client processes served; client: its current session and those finishing after a server's GOAWAY).",
        snap.sessions.len() as u64,
    )?;
    out.single(
        "mtcp_links",
        "Links up over all sessions.",
        snap.link_count() as u64,
    )?;
    out.single(
        "mtcp_streams",
        "Streams open over all sessions.",
        snap.stream_count() as u64,
    )?;
    out.single(
        "mtcp_send_budget_used_bytes",
        "Bytes sent and not yet acknowledged over all streams: what the send budget counts.",
        snap.unacked_bytes,
    )?;
    out.single(
        "mtcp_send_budget_limit_bytes",
        "The send budget (send_budget).",
        snap.send_budget,
    )
}

/// `(reason, count)` pairs of one daemon-wide family.
type Counts = [(&'static str, u64)];

fn reasons(out: &Families, c: &CounterSnapshot) -> prometheus::Result<()> {
    let families: [(&str, &str, &Counts); 3] = [
        (
            "mtcp_links_refused_total",
            "Links refused before joining a session, by reason: on the server those it refused, on the client those its server refused.",
            &c.refused,
        ),
        (
            "mtcp_handshakes_failed_total",
            "Link handshakes that failed without a refusal, by reason (on the client, failed connects count too).",
            &c.handshakes_failed,
        ),
        (
            "mtcp_links_closed_total",
            "Links that ended, by reason.",
            &c.links_closed,
        ),
    ];
    for (name, help, counts) in families {
        let family = out.counter(name, help, &["reason"])?;
        for (reason, n) in counts {
            family.with_label_values(&[*reason]).inc_by(*n);
        }
    }
    Ok(())
}

/// Labels of the per-path families: the path's index in the config, its
/// source address or device, and whether it is a backup.
const PATH_LABELS: [&str; 3] = ["path", "source", "backup"];

type PathRead = fn(&PathSnapshot) -> u64;

const PATH_COUNTERS: [(&str, &str, PathRead); 4] = [
    (
        "mtcp_path_sent_bytes_total",
        "Bytes the path's links wrote, ended links included.",
        |p| p.totals.bytes_out,
    ),
    (
        "mtcp_path_received_bytes_total",
        "Bytes the path's links read, ended links included.",
        |p| p.totals.bytes_in,
    ),
    (
        "mtcp_path_resent_frames_total",
        "DATA frames the path's links carried again for links that died.",
        |p| p.totals.frames_resent,
    ),
    (
        "mtcp_path_resent_bytes_total",
        "DATA payload bytes the path's links carried again for links that died.",
        |p| p.totals.bytes_resent,
    ),
];

/// Client with `[[client.path]]` tables: one series per path and family.
fn paths(out: &Families, all: &[PathSnapshot]) -> prometheus::Result<()> {
    if all.is_empty() {
        return Ok(());
    }
    let labels = |p: &PathSnapshot| {
        [
            p.index.to_string(),
            p.info.source.clone(),
            p.info.backup.to_string(),
        ]
    };
    for (name, help, read) in PATH_COUNTERS {
        let family = out.counter(name, help, &PATH_LABELS)?;
        for p in all {
            family.with_label_values(&labels(p)).inc_by(read(p));
        }
    }
    let links = out.gauge("mtcp_path_links", "Links up on the path.", &PATH_LABELS)?;
    let rtt = out.float_gauge(
        "mtcp_path_rtt_seconds",
        "Lowest smoothed round-trip time of the path's live links (absent while none is measured).",
        &PATH_LABELS,
    )?;
    for p in all {
        links
            .with_label_values(&labels(p))
            .set(signed(p.links as u64));
        if p.srtt_us > 0 {
            rtt.with_label_values(&labels(p))
                .set(p.srtt_us as f64 / 1e6);
        }
    }
    Ok(())
}

fn session_label(s: &SessionSnapshot) -> String {
    format!("{:016x}", s.id)
}

fn sessions(out: &Families, all: &[SessionSnapshot]) -> prometheus::Result<()> {
    for (name, help, read) in SESSION_COUNTERS {
        let family = out.counter(name, help, &["session"])?;
        for s in all {
            family
                .with_label_values(&[session_label(s)])
                .inc_by(read(s));
        }
    }
    for (name, help, read) in SESSION_GAUGES {
        let family = out.gauge(name, help, &["session"])?;
        for s in all {
            family
                .with_label_values(&[session_label(s)])
                .set(signed(read(s)));
        }
    }
    let reconnects = out.counter(
        "mtcp_slot_reconnects_total",
        "Links that came up in a pool slot after its first: the slot's reconnects in this session.",
        &["session", "slot"],
    )?;
    for s in all {
        for (slot, n) in &s.slots {
            reconnects
                .with_label_values(&[session_label(s), slot.to_string()])
                .inc_by(*n);
        }
    }
    Ok(())
}

fn links(out: &Families, all: &[SessionSnapshot]) -> prometheus::Result<()> {
    let each = || {
        all.iter().flat_map(|s| {
            s.links.iter().map(move |l| {
                let labels = [
                    session_label(s),
                    l.id.to_string(),
                    l.index.to_string(),
                    l.peer.to_string(),
                ];
                (labels, l)
            })
        })
    };
    for (name, help, read) in LINK_COUNTERS {
        let family = out.counter(name, help, &LINK_LABELS)?;
        for (labels, l) in each() {
            family.with_label_values(&labels).inc_by(read(l));
        }
    }
    for (name, help, read) in LINK_GAUGES {
        let family = out.gauge(name, help, &LINK_LABELS)?;
        for (labels, l) in each() {
            family.with_label_values(&labels).set(signed(read(l)));
        }
    }
    let rtt = out.float_gauge(
        "mtcp_link_rtt_seconds",
        "Smoothed round-trip time of the link's PINGs, queueing in its socket included (absent until measured).",
        &LINK_LABELS,
    )?;
    let unsent = out.gauge(
        "mtcp_link_unsent_bytes",
        "Bytes in the link socket's send queue that TCP has not sent yet (TCP_INFO tcpi_notsent_bytes).",
        &LINK_LABELS,
    )?;
    let retrans = out.counter(
        "mtcp_link_tcp_retransmits_total",
        "Segments TCP retransmitted on the link's connection (TCP_INFO tcpi_total_retrans).",
        &LINK_LABELS,
    )?;
    for (labels, l) in each() {
        if l.srtt_us > 0 {
            rtt.with_label_values(&labels).set(l.srtt_us as f64 / 1e6);
        }
        if let Some(n) = l.tcp.notsent_bytes {
            unsent.with_label_values(&labels).set(i64::from(n));
        }
        if let Some(n) = l.tcp.total_retrans {
            retrans.with_label_values(&labels).inc_by(u64::from(n));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::counters::{DaemonCounters, PathTotals};
    use crate::rt::path_stats::PathInfo;
    use crate::util::tcpinfo::TcpInfo;

    fn link(id: u64, index: u16) -> LinkSnapshot {
        LinkSnapshot {
            id,
            index,
            path: crate::rt::link::LinkPath::default(),
            local: "[::1]:40000".parse().expect("addr"),
            peer: "[::1]:8000".parse().expect("addr"),
            up: true,
            bytes_out: 1000,
            bytes_in: 2000,
            frames_out: 3,
            frames_in: 4,
            rtt_us: 1500,
            srtt_us: 2500,
            rate: 0,
            queued_bytes: 7,
            bytes_resent: 9,
            frames_resent: 2,
            tcp: TcpInfo {
                notsent_bytes: Some(11),
                total_retrans: None,
                ..TcpInfo::default()
            },
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            sessions: vec![SessionSnapshot {
                id: 0xab,
                streams_open: 2,
                streams_opened: 5,
                frames_resent: 1,
                bytes_resent: 9,
                frames_reinjected: 2,
                bytes_reinjected: 70,
                frames_duplicated: 3,
                bytes_duplicated: 80,
                bytes_sent: 100,
                bytes_received: 200,
                slots: vec![(0, 0), (1, 3)],
                links: vec![link(10, 0), link(12, 1)],
            }],
            paths: Vec::new(),
            unacked_bytes: 64,
            send_budget: 1024,
            counters: DaemonCounters::default().snapshot(),
        }
    }

    fn identity() -> Identity {
        Identity {
            role: Role::Client,
            cipher: "none",
            authenticated: false,
        }
    }

    #[test]
    fn series_carry_the_snapshot() {
        let text = render(&snapshot(), &identity()).expect("render");
        for line in [
            "mtcp_sessions 1",
            "mtcp_links 2",
            "mtcp_streams 2",
            "mtcp_send_budget_used_bytes 64",
            "mtcp_send_budget_limit_bytes 1024",
            "mtcp_session_sent_bytes_total{session=\"00000000000000ab\"} 100",
            "mtcp_session_reinjected_bytes_total{session=\"00000000000000ab\"} 70",
            "mtcp_session_reinjected_frames_total{session=\"00000000000000ab\"} 2",
            "mtcp_session_duplicated_bytes_total{session=\"00000000000000ab\"} 80",
            "mtcp_session_duplicated_frames_total{session=\"00000000000000ab\"} 3",
            "mtcp_session_links{session=\"00000000000000ab\"} 2",
            "mtcp_slot_reconnects_total{session=\"00000000000000ab\",slot=\"1\"} 3",
            "mtcp_link_sent_bytes_total{link=\"12\",peer=\"[::1]:8000\",session=\"00000000000000ab\",slot=\"1\"} 1000",
            "mtcp_link_rtt_seconds{link=\"10\",peer=\"[::1]:8000\",session=\"00000000000000ab\",slot=\"0\"} 0.0025",
            "mtcp_link_unsent_bytes{link=\"10\",peer=\"[::1]:8000\",session=\"00000000000000ab\",slot=\"0\"} 11",
            "mtcp_links_closed_total{reason=\"keepalive_timeout\"} 0",
            "mtcp_links_refused_total{reason=\"too_many_handshakes\"} 0",
            "mtcp_links_refused_total{reason=\"proxy_header\"} 0",
            "mtcp_handshakes_failed_total{reason=\"health_check\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            text.contains(&format!(
                "mtcp_build_info{{authenticated=\"false\",cipher=\"none\",protocol_version=\"{}\",role=\"client\",version=\"{version}\"}} 1",
                VERSION
            )),
            "{text}"
        );
        // A value the kernel did not give is absent, not zero.
        assert!(!text.contains("mtcp_link_tcp_retransmits_total{"), "{text}");
        assert!(text.contains("# TYPE mtcp_link_sent_bytes_total counter"));
        assert!(text.contains("# HELP mtcp_link_up "));
    }

    #[test]
    fn paths_have_their_own_series() {
        let mut snap = snapshot();
        let text = render(&snap, &identity()).expect("render");
        assert!(
            !text.contains("mtcp_path_"),
            "no paths, no path series: {text}"
        );
        snap.paths = vec![PathSnapshot {
            index: 1,
            info: PathInfo {
                source: "198.51.100.7 on wwan0".into(),
                backup: true,
            },
            links: 2,
            totals: PathTotals {
                bytes_out: 10,
                bytes_in: 20,
                frames_resent: 3,
                bytes_resent: 4,
            },
            srtt_us: 62_000,
        }];
        let text = render(&snap, &identity()).expect("render");
        let labels = "{backup=\"true\",path=\"1\",source=\"198.51.100.7 on wwan0\"}";
        for line in [
            format!("mtcp_path_links{labels} 2"),
            format!("mtcp_path_sent_bytes_total{labels} 10"),
            format!("mtcp_path_received_bytes_total{labels} 20"),
            format!("mtcp_path_resent_frames_total{labels} 3"),
            format!("mtcp_path_resent_bytes_total{labels} 4"),
            format!("mtcp_path_rtt_seconds{labels} 0.062"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn proxy_header_refusals_and_health_checks_have_their_own_reasons() {
        use crate::rt::counters::{HandshakeFailure, Refusal};
        let c = DaemonCounters::default();
        c.refused(Refusal::ProxyHeader);
        c.refused(Refusal::ProxyHeader);
        c.handshake_failed(HandshakeFailure::HealthCheck);
        let mut snap = snapshot();
        snap.counters = c.snapshot();
        let text = render(&snap, &identity()).expect("render");
        for line in [
            "mtcp_links_refused_total{reason=\"proxy_header\"} 2",
            "mtcp_handshakes_failed_total{reason=\"health_check\"} 1",
            "mtcp_handshakes_failed_total{reason=\"closed\"} 0",
            "mtcp_links_refused_total{reason=\"bad_magic\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn a_gone_link_has_no_series() {
        let mut snap = snapshot();
        snap.sessions[0].links.retain(|l| l.id != 12);
        let text = render(&snap, &identity()).expect("render");
        assert!(text.contains("link=\"10\""));
        assert!(!text.contains("link=\"12\""), "{text}");
        // No sessions, no per-session or per-link families at all.
        snap.sessions.clear();
        let text = render(&snap, &identity()).expect("render");
        assert!(!text.contains("mtcp_link_"), "{text}");
        assert!(!text.contains("mtcp_session_"), "{text}");
        assert!(text.contains("mtcp_sessions 0"));
    }
}
