//! `mtcp status -c FILE`: the running daemon's sessions and links as a table
//! for a terminal, read from its metrics endpoint (`metrics_listen` in the
//! same file).
//!
//! It reads the endpoint rather than some private channel so that what a
//! person sees at a terminal is exactly what Prometheus records: one source
//! of truth, and no second door into the daemon. Two scrapes `interval`
//! apart give the rate of each link each way.

use crate::config::{self, Config, ConfigError};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long connecting to the endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole answer may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (thousands of links fit many times over).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// Why `mtcp status` has nothing to show.
#[derive(Debug)]
pub enum StatusError {
    /// The config file is unreadable or invalid.
    Config(ConfigError),
    /// The file has no `metrics_listen`.
    NotSet(PathBuf),
    /// `metrics_listen` has port 0: only the daemon's log knows the port.
    PortZero(PathBuf),
    /// Nothing answers at the address: the daemon is not running (or
    /// listens elsewhere).
    NotRunning { addr: SocketAddr, source: io::Error },
    /// Something answered, but not with MTCP's metrics.
    BadAnswer { addr: SocketAddr, detail: String },
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::Config(e) => write!(f, "{e}"),
            StatusError::NotSet(p) => write!(
                f,
                "{}: metrics_listen is not set, so the daemon has no endpoint to ask; add e.g. \
                 metrics_listen = \"127.0.0.1:9464\" and restart it (or send SIGHUP)",
                p.display()
            ),
            StatusError::PortZero(p) => write!(
                f,
                "{}: metrics_listen has port 0, so the daemon chose a port at start-up (its log \
                 says which); set a fixed port to use mtcp status",
                p.display()
            ),
            StatusError::NotRunning { addr, source } => write!(
                f,
                "no daemon answers on {addr} (metrics_listen): is it running? ({source})"
            ),
            StatusError::BadAnswer { addr, detail } => {
                write!(f, "{addr} did not answer with MTCP metrics: {detail}")
            }
        }
    }
}

impl std::error::Error for StatusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StatusError::Config(e) => Some(e),
            StatusError::NotRunning { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The status table of the daemon `path` configures, from two scrapes
/// `interval` apart (one, without rates, when `interval` is zero).
pub fn status(path: &Path, interval: Duration) -> Result<String, StatusError> {
    let config = config::load(path).map_err(StatusError::Config)?;
    let addr = endpoint(&config, path)?;
    let first = scrape(addr)?;
    if interval.is_zero() {
        return Ok(render(&first, None));
    }
    std::thread::sleep(interval);
    let second = scrape(addr)?;
    Ok(render(&second, Some(&first)))
}

/// Where to reach the endpoint `config` sets: a wildcard address is reached
/// on loopback.
pub fn endpoint(config: &Config, path: &Path) -> Result<SocketAddr, StatusError> {
    let addr = config
        .ops()
        .metrics_listen
        .ok_or_else(|| StatusError::NotSet(path.to_owned()))?;
    if addr.port() == 0 {
        return Err(StatusError::PortZero(path.to_owned()));
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, addr.port()))
}

/// One sample of the exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Series name.
    pub name: String,
    /// Label pairs, as written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, or "" without it.
    pub fn label(&self, key: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// One scrape: its samples and when it was taken.
#[derive(Clone, Debug)]
pub struct Scrape {
    /// Every sample, in the exposition's order.
    pub samples: Vec<Sample>,
    /// When the answer arrived.
    pub at: Instant,
}

impl Scrape {
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    fn value(&self, name: &str) -> f64 {
        self.all(name).map(|s| s.value).sum()
    }

    /// The value of `name` for the sample whose label `key` is `value`.
    fn by(&self, name: &str, key: &str, value: &str) -> Option<f64> {
        self.all(name)
            .find(|s| s.label(key) == value)
            .map(|s| s.value)
    }
}

/// Fetches and parses `http://addr/metrics`.
pub fn scrape(addr: SocketAddr) -> Result<Scrape, StatusError> {
    let not_running = |source| StatusError::NotRunning { addr, source };
    let bad = |detail: String| StatusError::BadAnswer { addr, detail };
    let mut sock = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(not_running)?;
    sock.set_read_timeout(Some(READ_TIMEOUT))
        .and_then(|_| sock.set_write_timeout(Some(READ_TIMEOUT)))
        .map_err(not_running)?;
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(request.as_bytes()).map_err(not_running)?;
    let mut answer = Vec::new();
    sock.take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(not_running)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("not an HTTP response".into()))?;
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
        return Err(bad(format!("\"{status}\"")));
    }
    let samples = parse(body).map_err(|line| bad(format!("cannot parse line \"{line}\"")))?;
    if !samples.iter().any(|s| s.name == "mtcp_build_info") {
        return Err(bad("no mtcp_build_info series".into()));
    }
    Ok(Scrape {
        samples,
        at: Instant::now(),
    })
}

/// Parses the text exposition format; the error is the line it stopped at.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_line(l).ok_or_else(|| l.to_owned()))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' ', '\t'])?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(mut s) = rest.strip_prefix('{') {
        loop {
            s = s.trim_start_matches([',', ' ']);
            if let Some(after) = s.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = s.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '"' => break i + 1,
                    '\\' => {
                        let (_, e) = chars.next()?;
                        value.push(if e == 'n' { '\n' } else { e });
                    }
                    c => value.push(c),
                }
            };
            labels.push((key.trim().to_owned(), value));
            s = &after[end..];
        }
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The table: the daemon, then each session with one row per link (and per
/// slot that has none now). `before`, an earlier scrape, gives the rates.
pub fn render(now: &Scrape, before: Option<&Scrape>) -> String {
    let mut out = String::new();
    let info = now.all("mtcp_build_info").next();
    let label = |k: &str| info.map_or("?", |s| s.label(k));
    let _ = writeln!(
        out,
        "mtcp {} {}, protocol {}, cipher {}{}",
        label("role"),
        label("version"),
        label("protocol_version"),
        label("cipher"),
        if label("authenticated") == "true" {
            ", authenticated"
        } else {
            ", not authenticated"
        }
    );
    let _ = writeln!(
        out,
        "sessions {}, links up {}, streams open {}; send budget in use {} of {}",
        now.value("mtcp_sessions"),
        now.value("mtcp_links"),
        now.value("mtcp_streams"),
        bytes(now.value("mtcp_send_budget_used_bytes")),
        bytes(now.value("mtcp_send_budget_limit_bytes")),
    );
    for (name, what) in [
        ("mtcp_links_refused_total", "links refused"),
        ("mtcp_handshakes_failed_total", "handshakes failed"),
        ("mtcp_links_closed_total", "links closed"),
    ] {
        let counts: Vec<String> = now
            .all(name)
            .filter(|s| s.value > 0.0)
            .map(|s| format!("{} {}", s.label("reason"), s.value))
            .collect();
        let counts = if counts.is_empty() {
            "none".to_owned()
        } else {
            counts.join(", ")
        };
        let _ = writeln!(out, "{what}: {counts}");
    }
    let elapsed = before.map(|b| now.at.saturating_duration_since(b.at).as_secs_f64());
    for session in now.all("mtcp_session_links") {
        out.push('\n');
        session_table(&mut out, now, before, elapsed, session.label("session"));
    }
    if now.all("mtcp_session_links").next().is_none() {
        out.push_str("\nno sessions\n");
    }
    out
}

/// One session's heading and link table.
fn session_table(
    out: &mut String,
    now: &Scrape,
    before: Option<&Scrape>,
    elapsed: Option<f64>,
    id: &str,
) {
    let get = |name: &str| now.by(name, "session", id).unwrap_or(0.0);
    let _ = writeln!(
        out,
        "session {id}: {} links up, {} streams open, {} opened; sent {}, received {}, re-sent {}, reinjected {}, duplicated {}",
        get("mtcp_session_links"),
        get("mtcp_session_streams"),
        get("mtcp_session_streams_opened_total"),
        bytes(get("mtcp_session_sent_bytes_total")),
        bytes(get("mtcp_session_received_bytes_total")),
        bytes(get("mtcp_session_resent_bytes_total")),
        bytes(get("mtcp_session_reinjected_bytes_total")),
        bytes(get("mtcp_session_duplicated_bytes_total")),
    );
    let reconnects: BTreeMap<String, f64> = now
        .all("mtcp_slot_reconnects_total")
        .filter(|s| s.label("session") == id)
        .map(|s| (s.label("slot").to_owned(), s.value))
        .collect();
    let mut links: Vec<&Sample> = now
        .all("mtcp_link_up")
        .filter(|s| s.label("session") == id)
        .collect();
    links.sort_by_key(|s| {
        (
            s.label("slot").parse::<u32>().unwrap_or(u32::MAX),
            s.label("link").parse::<u64>().unwrap_or(u64::MAX),
        )
    });
    let mut rows = vec![
        [
            "SLOT",
            "LINK",
            "STATE",
            "PEER",
            "RTT",
            "OUT",
            "IN",
            "RE-SENT",
            "TCP RETX",
            "RECONNECTS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for up in &links {
        let link = up.label("link");
        let value = |s: &Scrape, name: &str| s.by(name, "link", link);
        let rate = |name: &str| match (before, elapsed) {
            (Some(b), Some(secs)) if secs > 0.0 => match (value(now, name), value(b, name)) {
                (Some(n), Some(o)) if n >= o => bits_per_second((n - o) / secs),
                _ => "-".to_owned(),
            },
            _ => "-".to_owned(),
        };
        rows.push(vec![
            up.label("slot").to_owned(),
            link.to_owned(),
            if up.value > 0.0 { "up" } else { "closing" }.to_owned(),
            up.label("peer").to_owned(),
            value(now, "mtcp_link_rtt_seconds").map_or("-".into(), seconds),
            rate("mtcp_link_sent_bytes_total"),
            rate("mtcp_link_received_bytes_total"),
            bytes(value(now, "mtcp_link_resent_bytes_total").unwrap_or(0.0)),
            value(now, "mtcp_link_tcp_retransmits_total").map_or("-".into(), |v| v.to_string()),
            reconnects
                .get(up.label("slot"))
                .map_or("0".into(), |v| v.to_string()),
        ]);
    }
    for (slot, n) in &reconnects {
        if !links.iter().any(|l| l.label("slot") == slot) {
            let mut row = vec![slot.clone(), "-".into(), "down".into()];
            row.extend(std::iter::repeat_n("-".to_owned(), 6));
            row.push(n.to_string());
            rows.push(row);
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
}

/// A byte count with a binary unit.
fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A rate in bits per second with an SI unit, as links are usually rated.
fn bits_per_second(bytes_per_second: f64) -> String {
    const UNITS: [&str; 4] = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
    let mut v = bytes_per_second * 8.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A round-trip time.
fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.3} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP mtcp_build_info x
# TYPE mtcp_build_info gauge
mtcp_build_info{authenticated="true",cipher="Noise",protocol_version="1",role="client",version="0.1.0"} 1
mtcp_sessions 1
mtcp_links 2
mtcp_streams 1
mtcp_send_budget_used_bytes 0
mtcp_send_budget_limit_bytes 33554432
mtcp_links_closed_total{reason="reset"} 3
mtcp_links_closed_total{reason="peer_closed"} 0
mtcp_session_links{session="00000000000000ab"} 2
mtcp_session_streams{session="00000000000000ab"} 1
mtcp_session_sent_bytes_total{session="00000000000000ab"} 1048576
mtcp_session_reinjected_bytes_total{session="00000000000000ab"} 3072
mtcp_slot_reconnects_total{session="00000000000000ab",slot="0"} 0
mtcp_slot_reconnects_total{session="00000000000000ab",slot="1"} 2
mtcp_slot_reconnects_total{session="00000000000000ab",slot="2"} 4
mtcp_link_up{link="7",peer="[::1]:8000",session="00000000000000ab",slot="1"} 1
mtcp_link_up{link="3",peer="[::1]:8000",session="00000000000000ab",slot="0"} 1
mtcp_link_sent_bytes_total{link="3",peer="[::1]:8000",session="00000000000000ab",slot="0"} 2000000
mtcp_link_rtt_seconds{link="3",peer="[::1]:8000",session="00000000000000ab",slot="0"} 0.0125
mtcp_link_resent_bytes_total{link="7",peer="[::1]:8000",session="00000000000000ab",slot="1"} 2048
"#;

    fn scrape_of(text: &str, at: Instant) -> Scrape {
        Scrape {
            samples: parse(text).expect("parse"),
            at,
        }
    }

    #[test]
    fn parses_labels_with_escapes() {
        let s = parse("a_b{x=\"1\",y=\"q\\\"u\\\\o\\nte\"} 2.5\nc 3\n# d 4\n").expect("parse");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label("y"), "q\"u\\o\nte");
        assert_eq!((s[0].value, s[1].value), (2.5, 3.0));
        assert!(parse("broken{x=\"1\" 2").is_err());
        assert!(parse("nan_value{} abc").is_err());
    }

    #[test]
    fn table_shows_links_slots_and_rates() {
        let t0 = Instant::now();
        let first = scrape_of(TEXT, t0);
        let later = TEXT.replace("} 2000000", "} 3250000");
        let second = scrape_of(&later, t0 + Duration::from_secs(1));
        let table = render(&second, Some(&first));
        assert!(table.contains("mtcp client 0.1.0, protocol 1, cipher Noise, authenticated"));
        assert!(table.contains("links closed: reset 3\n"), "{table}");
        assert!(table.contains("links refused: none\n"), "{table}");
        assert!(table.contains("sent 1.0 MiB"), "{table}");
        assert!(
            table.contains("reinjected 3.0 KiB, duplicated 0 B\n"),
            "{table}"
        );
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("  ")).collect();
        assert!(rows[0].trim_start().starts_with("SLOT"), "{table}");
        // Slot order; 1.25 MB in one second is 10 Mbit/s.
        assert!(
            rows[1].contains(" up ") && rows[1].contains("12.500 ms"),
            "{table}"
        );
        assert!(rows[1].contains("10.0 Mbit/s"), "{table}");
        assert!(
            rows[2].contains("2.0 KiB") && rows[2].trim_end().ends_with('2'),
            "{table}"
        );
        // Slot 2 has no link now.
        assert!(
            rows[3].contains("down") && rows[3].trim_end().ends_with('4'),
            "{table}"
        );
        // Without an earlier scrape there are no rates.
        assert!(!render(&second, None).contains("bit/s"));
    }

    #[test]
    fn units() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bits_per_second(125.0), "1.0 kbit/s");
        assert_eq!(seconds(2.0), "2.00 s");
    }
}
