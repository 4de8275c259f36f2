//! The typed settings the daemons run on, and the limits and defaults they
//! are checked against.

use crate::proto::secret::Secret;
use crate::util::net::Source;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Limits and defaults. They live here rather than next to validation because
// the in-code defaults below (`TunnelConfig::new`, `OpsConfig::default`) need
// them as much as validation does; they are repeated (with reasons) in the
// example configs under `etc/`.
// ---------------------------------------------------------------------------

const MIB: u64 = 1024 * 1024;
/// Smallest `buffer_size`: below this the per-frame header dominates.
pub(super) const BUFFER_SIZE_MIN: u64 = 1024;
/// Largest `buffer_size`: one DATA frame must stay a reasonable allocation.
pub(super) const BUFFER_SIZE_MAX: u64 = 16 * MIB;
/// Default `stream_window`: room for a stall. Over 8 links capped at
/// 20 Mbit/s each (40 ms RTT), 4 MiB let one link's loss recovery stall the
/// whole stream in about a third of 5-second samples (144-149 Mbit/s of
/// 155); 8 MiB never fell below 153 in eight. The send budget, not this,
/// bounds what many streams hold.
const STREAM_WINDOW_DEFAULT: u64 = 8 * MIB;
/// Full frames a default window holds at least: with fewer, frames of a
/// large `buffer_size` could not be striped over several links at once.
const WINDOW_FRAMES_DEFAULT: u64 = 4;
/// Largest `stream_window`: per-stream memory must stay bounded.
pub(super) const STREAM_WINDOW_MAX: u64 = 1024 * MIB;
/// Default `send_budget`: four full default windows in flight at once, so a
/// handful of bulk streams each get their whole window, while a thousand busy
/// streams stay within tens of MiB per daemon.
const SEND_BUDGET_DEFAULT: u64 = 32 * MIB;
/// Largest `send_budget`.
pub(super) const SEND_BUDGET_MAX: u64 = 64 * 1024 * MIB;
pub(super) const POOL_SIZE_MIN: u64 = 1;
pub(super) const POOL_SIZE_MAX: u64 = 256;
pub(super) const KEEPALIVE_INTERVAL_MS_DEFAULT: u64 = 1000;
pub(super) const KEEPALIVE_TIMEOUT_MS_DEFAULT: u64 = 5000;
pub(super) const DRAIN_TIMEOUT_MS_DEFAULT: u64 = 10_000;
pub(super) const MAX_STREAMS_DEFAULT: u64 = 4096;
pub(super) const BACKEND_CONNECT_TIMEOUT_MS_DEFAULT: u64 = 1500;
pub(super) const HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 5000;
pub(super) const MAX_SESSIONS_DEFAULT: u64 = 1024;
pub(super) const MAX_TOTAL_STREAMS_DEFAULT: u64 = 16384;
pub(super) const MAX_PENDING_HANDSHAKES_DEFAULT: u64 = 1024;
pub(super) const SESSION_GRACE_MS_DEFAULT: u64 = 30_000;
pub(super) const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5000;
pub(super) const RECONNECT_MIN_MS_DEFAULT: u64 = 100;
pub(super) const RECONNECT_MAX_MS_DEFAULT: u64 = 5000;
pub(super) const STATS_INTERVAL_MS_DEFAULT: u64 = 60_000;
/// Smallest non-zero `stats_interval_ms`: a report per link more often than
/// this would flood the journal rather than inform.
pub(super) const STATS_INTERVAL_MS_MIN: u64 = 100;
/// Upper bound for every `*_ms` key (one day). Deadlines are computed as
/// `Instant + Duration`, which panics on overflow; a cap keeps any value a user
/// can write far away from that.
pub(super) const MS_MAX: u64 = 24 * 60 * 60 * 1000;

/// `stream_window` when the file has none: 8 MiB, or four frames when
/// `buffer_size` is large (a 16 MiB `buffer_size` is valid on its own and
/// must not need a second key to start).
pub(super) fn default_window(buffer_size: u64) -> u64 {
    STREAM_WINDOW_DEFAULT.max(WINDOW_FRAMES_DEFAULT * buffer_size)
}

/// `send_budget` when the file has none: 32 MiB, or two windows when the
/// window is large, so that one bulk stream can still fill its window.
pub(super) fn default_budget(window: u64) -> u64 {
    SEND_BUDGET_DEFAULT.max(2 * window)
}

// ---------------------------------------------------------------------------
// Runtime types
// ---------------------------------------------------------------------------

pub use crate::proto::Role;
pub use crate::proto::cipher::Cipher;
pub use crate::proto::scheduler::{DuplicateMode, SchedulerKind};

/// How much the daemon logs (`log_level`), unless `RUST_LOG` is set.
///
/// A key in the file rather than only an environment variable so that a
/// service's verbosity lives with the rest of its settings and can be
/// changed with SIGHUP, without a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only failures.
    Error,
    /// Failures and things an operator should look at.
    Warn,
    /// Life-cycle events and stats (the default).
    Info,
    /// One line per stream.
    Debug,
    /// One line per frame.
    Trace,
}

impl LogLevel {
    /// The `log` crate's filter for this level.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        })
    }
}

/// Settings about running the daemon rather than moving bytes; the same keys
/// on both sides, and the ones a SIGHUP can change without a restart (the
/// ops thread owns all of them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsConfig {
    /// `log_level`: verbosity when `RUST_LOG` is not set.
    pub log_level: LogLevel,
    /// `stats_interval_ms`: how often per-session and per-link counters are
    /// logged; `None` (key = 0) turns the periodic report off (SIGUSR1 still
    /// logs one).
    pub stats_interval: Option<Duration>,
    /// `metrics_listen`: where the Prometheus endpoint listens (`GET
    /// /metrics`); `None` (key absent) means no endpoint. Port 0 picks a free
    /// port, logged at start-up (useful in tests).
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            log_level: LogLevel::Info,
            stats_interval: Some(Duration::from_millis(STATS_INTERVAL_MS_DEFAULT)),
            metrics_listen: None,
        }
    }
}

/// host (IP literal or DNS name) + port, resolved at each connect so DNS changes are seen.
///
/// A long-running client must follow a server whose address changes (dynamic
/// DNS, failover), so the name is kept rather than resolved once at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// An IP literal (IPv6 without brackets, e.g. `::1`) or a DNS host name.
    pub host: String,
    /// Destination port, never 0 (checked when the config is loaded).
    pub port: u16,
}

impl Endpoint {
    /// Resolves the host now, so each (re)connect sees the current DNS answer.
    ///
    /// Returns every address the resolver gives, in its order of preference,
    /// so a caller can try them in turn; an empty answer is an error, so callers
    /// never have to handle "resolved to nothing" separately.
    pub fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port).to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{self}: host name resolved to no addresses"),
            ));
        }
        Ok(addrs)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Host names never contain ':', so a ':' means an IPv6 literal, which
        // needs brackets to keep the port readable.
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Tunables shared by both ends of a link pool.
///
/// Both daemons carry the same set so that an operator tunes a pair of
/// daemons with the same key names on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelConfig {
    /// `buffer_size`: the largest DATA payload and the size of each socket read.
    /// Larger means fewer system calls, more memory per stream.
    pub buffer_size: usize,
    /// `stream_window`: bytes a sender may have unacknowledged per stream
    /// direction; bounds per-stream memory and must hold at least one frame.
    pub stream_window: u32,
    /// `send_budget`: bytes all streams of the daemon together may have
    /// unacknowledged (each is held in memory for re-sending, and by the
    /// peer until its application reads it). Beyond it a stream may still
    /// keep 64 KiB in flight, so a stalled stream never blocks the others.
    pub send_budget: u64,
    /// `scheduler`: how DATA frames are assigned to links.
    pub scheduler: SchedulerKind,
    /// `reinject`: send again, on another link, the bytes that hold a
    /// stream's delivery up on a link repairing a loss.
    pub reinject: bool,
    /// `duplicate_small_frames`: when a small frame alone in flight on its
    /// stream is also sent on a second link.
    pub duplicate: DuplicateMode,
    /// `keepalive_interval_ms`: how often an idle link is pinged.
    pub keepalive_interval: Duration,
    /// `keepalive_timeout_ms`: silence after which a link is declared dead.
    pub keepalive_timeout: Duration,
    /// `drain_timeout_ms`: how long open streams may finish after shutdown starts.
    pub drain_timeout: Duration,
    /// `max_streams`: open streams allowed (server: per session; client: total),
    /// so a flood of connections cannot exhaust threads or memory.
    pub max_streams: usize,
    /// `secret` or `secret_file`: the pre-shared secret that authenticates
    /// links (Noise PSK); `None` leaves links unauthenticated.
    pub secret: Option<Secret>,
    /// Where the secret came from, for `mtcp check` (never the secret).
    pub secret_file: Option<PathBuf>,
    /// `encrypt`: seal link traffic (default: on when a secret is set).
    pub encrypt: bool,
    /// `cipher`: the one record cipher a client's links propose and a
    /// server accepts; `None` (`auto`, the default): a client proposes its
    /// CPU's fastest and a server accepts any.
    pub cipher: Option<Cipher>,
}

impl TunnelConfig {
    /// The settings a config file with only `buffer_size` would give.
    ///
    /// Exists so tests and embedders can build configs in code with the same
    /// defaults a file gets, without repeating them.
    pub fn new(buffer_size: usize) -> Self {
        TunnelConfig {
            buffer_size,
            stream_window: default_window(buffer_size as u64) as u32,
            send_budget: default_budget(default_window(buffer_size as u64)),
            scheduler: SchedulerKind::LeastQueued,
            reinject: true,
            duplicate: DuplicateMode::OnLoss,
            keepalive_interval: Duration::from_millis(KEEPALIVE_INTERVAL_MS_DEFAULT),
            keepalive_timeout: Duration::from_millis(KEEPALIVE_TIMEOUT_MS_DEFAULT),
            drain_timeout: Duration::from_millis(DRAIN_TIMEOUT_MS_DEFAULT),
            max_streams: MAX_STREAMS_DEFAULT as usize,
            secret: None,
            secret_file: None,
            encrypt: false,
            cipher: None,
        }
    }
}

/// Everything `mtcp server` runs on, checked and with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// `listen_ip` + `listen_port`: where clients' links arrive. Port 0 asks the
    /// OS for a free port (useful in tests).
    pub listen: SocketAddr,
    /// `backend_ip` + `backend_port`: the service every stream is forwarded to.
    pub backend: Endpoint,
    /// `connection_pool_size`: the most links one client session may hold, so
    /// one client cannot open unbounded connections.
    pub max_links_per_session: usize,
    /// `backend_connect_timeout_ms`: a failed backend must reach the application
    /// as a reset quickly, never as a hang.
    pub backend_connect_timeout: Duration,
    /// `handshake_timeout_ms`: a link that does not say HELLO in time is dropped,
    /// so idle or hostile connections cannot pile up.
    pub handshake_timeout: Duration,
    /// `max_sessions`: client sessions served at once.
    pub max_sessions: usize,
    /// `max_total_streams`: streams open at once over all sessions, so many
    /// sessions together cannot exhaust threads either.
    pub max_total_streams: usize,
    /// `max_pending_handshakes`: connections allowed to be in their handshake
    /// at once; more are closed at once, so a flood of idle connections
    /// cannot exhaust threads.
    pub max_pending_handshakes: usize,
    /// `session_grace_ms`: how long a session whose links all died is kept, so
    /// a client that reconnects finds its streams still there.
    pub session_grace: Duration,
    /// `accept_proxy_protocol`: every link arrives through a load balancer
    /// (HAProxy's `send-proxy-v2`) and starts with a PROXY protocol v2
    /// header naming the client's real address, which logs, stats and
    /// metrics then show instead of the balancer's. Off by default: a
    /// header is then not an MTCP peer, and with it on a link without one
    /// is refused, so a client can never claim an address by itself.
    pub accept_proxy_protocol: bool,
    /// Settings shared with the client side.
    pub tunnel: TunnelConfig,
    /// Logging and stats; reloadable with SIGHUP.
    pub ops: OpsConfig,
}

/// Everything `mtcp client` runs on, checked and with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// `local_listen_ip` + `local_listen_port`: where applications connect.
    /// Port 0 asks the OS for a free port (useful in tests).
    pub listen: SocketAddr,
    /// `server_ip` + `server_port`: the mtcp server; a host name is resolved
    /// again at every connect.
    pub server: Endpoint,
    /// `connection_pool_size`: number of links kept to the server.
    pub pool_size: usize,
    /// `enable_zero_rtt`: keep the pool connected at all times so a new
    /// application connection pays no handshake across the long path.
    pub zero_rtt: bool,
    /// `connect_timeout_ms`: deadline for one link's TCP connect + handshake.
    pub connect_timeout: Duration,
    /// `reconnect_min_ms`: first delay before reconnecting a dead link.
    pub reconnect_min: Duration,
    /// `reconnect_max_ms`: cap of the exponential reconnect backoff.
    pub reconnect_max: Duration,
    /// `session_grace_ms`: how long application connections are held while
    /// no link is up; past it they are reset rather than left hanging.
    pub session_grace: Duration,
    /// `[[client.path]]`: the uplinks the links leave by, in slot order
    /// (their `links` add up to `pool_size`). Empty: every link takes the
    /// default route.
    pub paths: Vec<PathConfig>,
    /// Settings shared with the server side.
    pub tunnel: TunnelConfig,
    /// Logging and stats; reloadable with SIGHUP.
    pub ops: OpsConfig,
}

/// One uplink of the client (`[[client.path]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathConfig {
    /// `bind_ip`: the source address of this path's links, which (with
    /// source-based policy routing) picks the uplink.
    pub bind_ip: Option<IpAddr>,
    /// `interface`: the device the links are bound to (`SO_BINDTODEVICE`).
    pub interface: Option<String>,
    /// `links`: how many of the pool's links take this path.
    pub links: usize,
    /// `backup`: the links carry data only while no link of a non-backup
    /// path is up.
    pub backup: bool,
}

impl PathConfig {
    /// Where this path's links leave from.
    pub fn source(&self) -> Source {
        Source {
            ip: self.bind_ip,
            device: self.interface.clone(),
        }
    }
}

impl ClientConfig {
    /// The path of pool slot `slot` and its index, if paths are configured.
    pub fn path_of_slot(&self, slot: usize) -> Option<(usize, &PathConfig)> {
        let mut first = 0;
        for (i, p) in self.paths.iter().enumerate() {
            if slot < first + p.links {
                return Some((i, p));
            }
            first += p.links;
        }
        None
    }
}

/// A loaded config file of either kind; `mtcp check` accepts both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Config {
    /// `mode = "server"`.
    Server(ServerConfig),
    /// `mode = "client"`.
    Client(ClientConfig),
}

impl Config {
    /// Which daemon this file configures.
    pub fn role(&self) -> Role {
        match self {
            Config::Server(_) => Role::Server,
            Config::Client(_) => Role::Client,
        }
    }

    /// The logging and stats settings of whichever kind this is.
    pub fn ops(&self) -> &OpsConfig {
        match self {
            Config::Server(c) => &c.ops,
            Config::Client(c) => &c.ops,
        }
    }

    /// The same config with `ops` replaced: what a SIGHUP applies while
    /// every other key keeps its running value.
    pub fn with_ops(&self, ops: OpsConfig) -> Config {
        match self {
            Config::Server(c) => Config::Server(ServerConfig { ops, ..c.clone() }),
            Config::Client(c) => Config::Client(ClientConfig { ops, ..c.clone() }),
        }
    }
}
