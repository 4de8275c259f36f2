//! Configuration files: reading, checking and the typed settings the daemons run on.
//!
//! The file format is the specification's: a top-level `mode = "server"` (or
//! `"client"`) and one `[server]` (or `[client]`) table holding every key. The
//! specification's keys are required; every other tunable has a documented
//! default (see `etc/config.*.toml`).
//!
//! Loading happens in two steps so that each kind of mistake gets a precise
//! message. First serde reads the text into "raw" structs that mirror the file
//! exactly (`deny_unknown_fields`, required keys are plain fields, optional ones
//! `Option`), which catches syntax errors, missing keys, unknown keys and wrong
//! types. Then validation turns raw values into the runtime structs
//! ([`ServerConfig`], [`ClientConfig`]) and checks ranges and relations between
//! keys. Every error is a single line naming the file and the `table.key`, so a
//! user can fix it without reading the source.

use crate::proto::secret::Secret;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

// ---------------------------------------------------------------------------
// Limits and defaults. They live here, next to the validation that enforces
// them, and are repeated (with reasons) in the example configs under `etc/`.
// ---------------------------------------------------------------------------

const MIB: u64 = 1024 * 1024;
/// Smallest `buffer_size`: below this the per-frame header dominates.
const BUFFER_SIZE_MIN: u64 = 1024;
/// Largest `buffer_size`: one DATA frame must stay a reasonable allocation.
const BUFFER_SIZE_MAX: u64 = 16 * MIB;
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
const STREAM_WINDOW_MAX: u64 = 1024 * MIB;
/// Default `send_budget`: four full default windows in flight at once, so a
/// handful of bulk streams each get their whole window, while a thousand busy
/// streams stay within tens of MiB per daemon.
const SEND_BUDGET_DEFAULT: u64 = 32 * MIB;
/// Largest `send_budget`.
const SEND_BUDGET_MAX: u64 = 64 * 1024 * MIB;
const POOL_SIZE_MIN: u64 = 1;
const POOL_SIZE_MAX: u64 = 256;
const KEEPALIVE_INTERVAL_MS_DEFAULT: u64 = 1000;
const KEEPALIVE_TIMEOUT_MS_DEFAULT: u64 = 5000;
const DRAIN_TIMEOUT_MS_DEFAULT: u64 = 10_000;
const MAX_STREAMS_DEFAULT: u64 = 4096;
const BACKEND_CONNECT_TIMEOUT_MS_DEFAULT: u64 = 1500;
const HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 5000;
const MAX_SESSIONS_DEFAULT: u64 = 1024;
const MAX_TOTAL_STREAMS_DEFAULT: u64 = 16384;
const MAX_PENDING_HANDSHAKES_DEFAULT: u64 = 1024;
const SESSION_GRACE_MS_DEFAULT: u64 = 30_000;
const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5000;
const RECONNECT_MIN_MS_DEFAULT: u64 = 100;
const RECONNECT_MAX_MS_DEFAULT: u64 = 5000;
const STATS_INTERVAL_MS_DEFAULT: u64 = 60_000;
/// Smallest non-zero `stats_interval_ms`: a report per link more often than
/// this would flood the journal rather than inform.
const STATS_INTERVAL_MS_MIN: u64 = 100;
/// Upper bound for every `*_ms` key (one day). Deadlines are computed as
/// `Instant + Duration`, which panics on overflow; a cap keeps any value a user
/// can write far away from that.
const MS_MAX: u64 = 24 * 60 * 60 * 1000;

/// `stream_window` when the file has none: 8 MiB, or four frames when
/// `buffer_size` is large (a 16 MiB `buffer_size` is valid on its own and
/// must not need a second key to start).
fn default_window(buffer_size: u64) -> u64 {
    STREAM_WINDOW_DEFAULT.max(WINDOW_FRAMES_DEFAULT * buffer_size)
}

/// `send_budget` when the file has none: 32 MiB, or two windows when the
/// window is large, so that one bulk stream can still fill its window.
fn default_budget(window: u64) -> u64 {
    SEND_BUDGET_DEFAULT.max(2 * window)
}

// ---------------------------------------------------------------------------
// Runtime types
// ---------------------------------------------------------------------------

pub use crate::proto::Role;
pub use crate::proto::scheduler::SchedulerKind;

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
/// on both sides, and the ones a SIGHUP can change without a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsConfig {
    /// `log_level`: verbosity when `RUST_LOG` is not set.
    pub log_level: LogLevel,
    /// `stats_interval_ms`: how often per-session and per-link counters are
    /// logged; `None` (key = 0) turns the periodic report off (SIGUSR1 still
    /// logs one).
    pub stats_interval: Option<Duration>,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            log_level: LogLevel::Info,
            stats_interval: Some(Duration::from_millis(STATS_INTERVAL_MS_DEFAULT)),
        }
    }
}

impl OpsConfig {
    fn describe_into(&self, out: &mut String) {
        push_kv(out, "log_level", format!("\"{}\"", self.log_level));
        push_kv(
            out,
            "stats_interval_ms",
            self.stats_interval.map_or(0, |d| d.as_millis()),
        );
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
            scheduler: SchedulerKind::RoundRobin,
            keepalive_interval: Duration::from_millis(KEEPALIVE_INTERVAL_MS_DEFAULT),
            keepalive_timeout: Duration::from_millis(KEEPALIVE_TIMEOUT_MS_DEFAULT),
            drain_timeout: Duration::from_millis(DRAIN_TIMEOUT_MS_DEFAULT),
            max_streams: MAX_STREAMS_DEFAULT as usize,
            secret: None,
            secret_file: None,
            encrypt: false,
        }
    }

    fn describe_into(&self, out: &mut String) {
        push_kv(out, "buffer_size", self.buffer_size);
        push_kv(out, "stream_window", self.stream_window);
        push_kv(out, "send_budget", self.send_budget);
        push_kv(out, "scheduler", format!("\"{}\"", self.scheduler));
        push_kv(
            out,
            "keepalive_interval_ms",
            self.keepalive_interval.as_millis(),
        );
        push_kv(
            out,
            "keepalive_timeout_ms",
            self.keepalive_timeout.as_millis(),
        );
        push_kv(out, "drain_timeout_ms", self.drain_timeout.as_millis());
        push_kv(out, "max_streams", self.max_streams);
        match (&self.secret, &self.secret_file) {
            (Some(_), Some(path)) => push_kv(
                out,
                "secret_file",
                format!("{:?}", path.display().to_string()),
            ),
            (Some(_), None) => out.push_str("# secret = (set inline, not shown)\n"),
            (None, _) => {
                out.push_str("# no secret: links are neither authenticated nor encrypted\n")
            }
        }
        push_kv(out, "encrypt", self.encrypt);
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
    /// Settings shared with the client side.
    pub tunnel: TunnelConfig,
    /// Logging and stats; reloadable with SIGHUP.
    pub ops: OpsConfig,
}

impl ServerConfig {
    /// The effective settings as a complete config file (every key, defaults
    /// included), for `mtcp check`: it shows what the daemon will really use,
    /// and the output can be saved and loaded again.
    pub fn describe(&self) -> String {
        let mut out = String::from("mode = \"server\"\n\n[server]\n");
        push_kv(&mut out, "listen_ip", format!("\"{}\"", self.listen.ip()));
        push_kv(&mut out, "listen_port", self.listen.port());
        push_kv(&mut out, "backend_ip", format!("\"{}\"", self.backend.host));
        push_kv(&mut out, "backend_port", self.backend.port);
        push_kv(&mut out, "connection_pool_size", self.max_links_per_session);
        self.tunnel.describe_into(&mut out);
        push_kv(
            &mut out,
            "backend_connect_timeout_ms",
            self.backend_connect_timeout.as_millis(),
        );
        push_kv(
            &mut out,
            "handshake_timeout_ms",
            self.handshake_timeout.as_millis(),
        );
        push_kv(&mut out, "max_sessions", self.max_sessions);
        push_kv(&mut out, "max_total_streams", self.max_total_streams);
        push_kv(
            &mut out,
            "max_pending_handshakes",
            self.max_pending_handshakes,
        );
        push_kv(&mut out, "session_grace_ms", self.session_grace.as_millis());
        self.ops.describe_into(&mut out);
        out
    }
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
    /// Settings shared with the server side.
    pub tunnel: TunnelConfig,
    /// Logging and stats; reloadable with SIGHUP.
    pub ops: OpsConfig,
}

impl ClientConfig {
    /// The effective settings as a complete config file (every key, defaults
    /// included), for `mtcp check`: it shows what the daemon will really use,
    /// and the output can be saved and loaded again.
    pub fn describe(&self) -> String {
        let mut out = String::from("mode = \"client\"\n\n[client]\n");
        push_kv(
            &mut out,
            "local_listen_ip",
            format!("\"{}\"", self.listen.ip()),
        );
        push_kv(&mut out, "local_listen_port", self.listen.port());
        push_kv(&mut out, "server_ip", format!("\"{}\"", self.server.host));
        push_kv(&mut out, "server_port", self.server.port);
        push_kv(&mut out, "connection_pool_size", self.pool_size);
        self.tunnel.describe_into(&mut out);
        push_kv(&mut out, "enable_zero_rtt", self.zero_rtt);
        push_kv(
            &mut out,
            "connect_timeout_ms",
            self.connect_timeout.as_millis(),
        );
        push_kv(&mut out, "reconnect_min_ms", self.reconnect_min.as_millis());
        push_kv(&mut out, "reconnect_max_ms", self.reconnect_max.as_millis());
        push_kv(&mut out, "session_grace_ms", self.session_grace.as_millis());
        self.ops.describe_into(&mut out);
        out
    }
}

fn push_kv(out: &mut String, key: &str, value: impl fmt::Display) {
    out.push_str(&format!("{key} = {value}\n"));
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

    /// The effective settings of whichever kind this is (see
    /// [`ServerConfig::describe`]).
    pub fn describe(&self) -> String {
        match self {
            Config::Server(c) => c.describe(),
            Config::Client(c) => c.describe(),
        }
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a config file was rejected: one line naming the file, the line where
/// known, and the `table.key` at fault, so the user can go straight to it.
#[derive(Debug)]
pub struct ConfigError {
    file: String,
    line: Option<usize>,
    key: Option<String>,
    kind: ErrorKind,
}

#[derive(Debug)]
enum ErrorKind {
    /// The file could not be read at all.
    Read(std::io::Error),
    /// A required key is absent.
    Missing,
    /// A key the program does not know (usually a typo).
    Unknown,
    /// Anything else: syntax, type or value; the text says what.
    Invalid(String),
}

impl ConfigError {
    fn new(file: &str, line: Option<usize>, key: Option<String>, kind: ErrorKind) -> Self {
        let kind = match kind {
            // Messages from toml can span lines; the contract is one line.
            ErrorKind::Invalid(m) => ErrorKind::Invalid(one_line(&m)),
            k => k,
        };
        ConfigError {
            file: file.to_owned(),
            line,
            key,
            kind,
        }
    }

    /// The file name as given by the user.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// 1-based line of the offending text, when it could be located.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The offending key as `table.key` (or `mode`), when the error concerns one.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        match (&self.kind, self.line) {
            // Missing keys have no line: the key is, by definition, nowhere.
            (ErrorKind::Missing, _) | (ErrorKind::Read(_), _) | (_, None) => {}
            (_, Some(line)) => write!(f, ":{line}")?,
        }
        f.write_str(": ")?;
        let key = self.key.as_deref().unwrap_or("?");
        match &self.kind {
            ErrorKind::Read(e) => write!(f, "cannot read: {e}"),
            ErrorKind::Missing => write!(f, "missing key `{key}`"),
            ErrorKind::Unknown => write!(f, "unknown key `{key}`"),
            ErrorKind::Invalid(msg) => match &self.key {
                Some(key) => write!(f, "key `{key}`: {msg}"),
                None => f.write_str(msg),
            },
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Read(e) => Some(e),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Reads and checks a config file of either mode (what `mtcp check` needs).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(&path.display().to_string(), None, None, ErrorKind::Read(e))
    })?;
    parse(&text, path)
}

/// Reads a config file for `mtcp server`; a client file is an error, because
/// starting the wrong daemon silently would be worse than refusing.
pub fn load_server(path: &Path) -> Result<ServerConfig, ConfigError> {
    match load(path)? {
        Config::Server(c) => Ok(c),
        Config::Client(_) => Err(mode_mismatch(path, Role::Client, Role::Server)),
    }
}

/// Reads a config file for `mtcp client`; a server file is an error, because
/// starting the wrong daemon silently would be worse than refusing.
pub fn load_client(path: &Path) -> Result<ClientConfig, ConfigError> {
    match load(path)? {
        Config::Client(c) => Ok(c),
        Config::Server(_) => Err(mode_mismatch(path, Role::Server, Role::Client)),
    }
}

fn mode_mismatch(path: &Path, found: Role, wanted: Role) -> ConfigError {
    ConfigError::new(
        &path.display().to_string(),
        None,
        Some("mode".to_owned()),
        ErrorKind::Invalid(format!("\"{found}\" does not match `mtcp {wanted}`")),
    )
}

/// Parses config text; `origin` only names the file in error messages.
/// Separate from [`load`] so tests need no files.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let file = origin.display().to_string();
    let toml_err = |e: toml::de::Error| from_toml_error(&file, text, &e);
    // Pass 1 reads only the top level, so that a wrong or missing mode, or a
    // table of the other mode, is reported as such instead of as errors
    // inside a table that should not be there at all.
    let head: RawHead = toml::from_str(text).map_err(toml_err)?;
    let ctx = |table: &'static str| Ctx { file: &file, table };
    match head.mode {
        Mode::Server => {
            if head.client.is_some() {
                return Err(stray_table(&file, "client", Role::Server));
            }
            if head.server.is_none() {
                return Err(missing_table(&file, "server"));
            }
            let raw: RawServerFile = toml::from_str(text).map_err(toml_err)?;
            raw.server.validate(&ctx("server")).map(Config::Server)
        }
        Mode::Client => {
            if head.server.is_some() {
                return Err(stray_table(&file, "server", Role::Client));
            }
            if head.client.is_none() {
                return Err(missing_table(&file, "client"));
            }
            let raw: RawClientFile = toml::from_str(text).map_err(toml_err)?;
            raw.client.validate(&ctx("client")).map(Config::Client)
        }
    }
}

fn stray_table(file: &str, table: &str, mode: Role) -> ConfigError {
    ConfigError::new(
        file,
        None,
        Some(table.to_owned()),
        ErrorKind::Invalid(format!(
            "table `[{table}]` is not allowed in a file with mode = \"{mode}\""
        )),
    )
}

fn missing_table(file: &str, table: &str) -> ConfigError {
    ConfigError::new(
        file,
        None,
        Some(table.to_owned()),
        ErrorKind::Invalid(format!(
            "missing table `[{table}]` (required by mode = \"{table}\")"
        )),
    )
}

// ---------------------------------------------------------------------------
// Raw file shape
// ---------------------------------------------------------------------------

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Server,
    Client,
}

/// The top level only; the tables are skipped here and read in pass 2.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHead {
    mode: Mode,
    server: Option<serde::de::IgnoredAny>,
    client: Option<serde::de::IgnoredAny>,
}

/// Pass 2 for a server file; the top level was checked by [`RawHead`].
#[derive(Deserialize)]
struct RawServerFile {
    server: RawServer,
}

/// Pass 2 for a client file; the top level was checked by [`RawHead`].
#[derive(Deserialize)]
struct RawClientFile {
    client: RawClient,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of server settings")]
struct RawServer {
    listen_ip: String,
    listen_port: u16,
    backend_ip: String,
    backend_port: u16,
    connection_pool_size: u64,
    buffer_size: u64,
    stream_window: Option<u64>,
    send_budget: Option<u64>,
    scheduler: Option<SchedulerKind>,
    keepalive_interval_ms: Option<u64>,
    keepalive_timeout_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    max_streams: Option<u64>,
    backend_connect_timeout_ms: Option<u64>,
    handshake_timeout_ms: Option<u64>,
    max_sessions: Option<u64>,
    max_total_streams: Option<u64>,
    max_pending_handshakes: Option<u64>,
    session_grace_ms: Option<u64>,
    secret: Option<String>,
    secret_file: Option<String>,
    encrypt: Option<bool>,
    log_level: Option<LogLevel>,
    stats_interval_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of client settings")]
struct RawClient {
    local_listen_ip: String,
    local_listen_port: u16,
    server_ip: String,
    server_port: u16,
    connection_pool_size: u64,
    buffer_size: u64,
    enable_zero_rtt: bool,
    stream_window: Option<u64>,
    send_budget: Option<u64>,
    scheduler: Option<SchedulerKind>,
    keepalive_interval_ms: Option<u64>,
    keepalive_timeout_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    max_streams: Option<u64>,
    connect_timeout_ms: Option<u64>,
    reconnect_min_ms: Option<u64>,
    reconnect_max_ms: Option<u64>,
    session_grace_ms: Option<u64>,
    secret: Option<String>,
    secret_file: Option<String>,
    encrypt: Option<bool>,
    log_level: Option<LogLevel>,
    stats_interval_ms: Option<u64>,
}

/// The tunnel keys, gathered from either table (serde's `flatten` cannot be
/// combined with `deny_unknown_fields`, so both raw tables list them).
struct RawTunnel {
    buffer_size: u64,
    stream_window: Option<u64>,
    send_budget: Option<u64>,
    scheduler: Option<SchedulerKind>,
    keepalive_interval_ms: Option<u64>,
    keepalive_timeout_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    max_streams: Option<u64>,
    secret: Option<String>,
    secret_file: Option<String>,
    encrypt: Option<bool>,
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// Where validation errors point: the file and the table being checked.
struct Ctx<'a> {
    file: &'a str,
    table: &'static str,
}

impl Ctx<'_> {
    fn err(&self, key: &str, msg: String) -> ConfigError {
        ConfigError::new(
            self.file,
            None,
            Some(format!("{}.{key}", self.table)),
            ErrorKind::Invalid(msg),
        )
    }

    fn range(&self, key: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(self.err(
                key,
                format!("{value} is out of range: must be between {min} and {max}"),
            ))
        }
    }

    /// A count that must fit a `usize` and be in `min..=max`.
    fn count(&self, key: &str, value: u64, min: u64, max: u64) -> Result<usize, ConfigError> {
        let v = self.range(key, value, min, max)?;
        usize::try_from(v).map_err(|_| self.err(key, format!("{v} is too large for this platform")))
    }

    /// A `*_ms` key: `value` or `default`, at least `min`, at most [`MS_MAX`].
    fn millis(
        &self,
        key: &str,
        value: Option<u64>,
        default: u64,
        min: u64,
    ) -> Result<Duration, ConfigError> {
        let v = self.range(key, value.unwrap_or(default), min, MS_MAX)?;
        Ok(Duration::from_millis(v))
    }

    fn listen(&self, ip_key: &str, ip: &str, port: u16) -> Result<SocketAddr, ConfigError> {
        match parse_ip(ip) {
            Some(addr) => Ok(SocketAddr::new(addr, port)),
            None => Err(self.err(
                ip_key,
                format!("{ip:?} is not an IP address (listen addresses must be IP literals, e.g. \"0.0.0.0\" or \"::\")"),
            )),
        }
    }

    fn endpoint(
        &self,
        host_key: &str,
        host: &str,
        port_key: &str,
        port: u16,
    ) -> Result<Endpoint, ConfigError> {
        let host = match parse_ip(host) {
            Some(ip) => ip.to_string(),
            None if is_host_name(host) => host.to_owned(),
            None => {
                return Err(self.err(
                    host_key,
                    format!("{host:?} is neither an IP address nor a valid host name"),
                ));
            }
        };
        if port == 0 {
            return Err(self.err(
                port_key,
                "0 is not a port one can connect to: must be between 1 and 65535".to_owned(),
            ));
        }
        Ok(Endpoint { host, port })
    }

    fn ops(
        &self,
        log_level: Option<LogLevel>,
        stats_interval_ms: Option<u64>,
    ) -> Result<OpsConfig, ConfigError> {
        let key = "stats_interval_ms";
        let interval = self.millis(key, stats_interval_ms, STATS_INTERVAL_MS_DEFAULT, 0)?;
        if !interval.is_zero() && interval < Duration::from_millis(STATS_INTERVAL_MS_MIN) {
            return Err(self.err(
                key,
                format!(
                    "{} is too short: must be 0 (off) or at least {STATS_INTERVAL_MS_MIN}",
                    interval.as_millis()
                ),
            ));
        }
        Ok(OpsConfig {
            log_level: log_level.unwrap_or(LogLevel::Info),
            stats_interval: (!interval.is_zero()).then_some(interval),
        })
    }

    /// Reads the secret inline or from its file. A relative `secret_file` is
    /// looked up in `$CREDENTIALS_DIRECTORY` when systemd provides one
    /// (`LoadCredential=`), so units need not make the file readable to the
    /// service user, and otherwise next to the config file. A file others
    /// can read is refused: the secret is the only thing standing between
    /// the internet and the backend.
    fn secret(
        &self,
        inline: Option<String>,
        file: Option<String>,
    ) -> Result<(Option<Secret>, Option<PathBuf>), ConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(self.err(
                "secret_file",
                "set either `secret` or `secret_file`, not both".into(),
            )),
            (Some(text), None) => Secret::from_text(&text)
                .map(|s| (Some(s), None))
                .map_err(|e| self.err("secret", e.to_string())),
            (None, Some(path)) => {
                let mut full = PathBuf::from(&path);
                if full.is_relative() {
                    let base = match std::env::var_os("CREDENTIALS_DIRECTORY") {
                        Some(dir) => PathBuf::from(dir),
                        None => Path::new(self.file)
                            .parent()
                            .map(Path::to_path_buf)
                            .unwrap_or_default(),
                    };
                    full = base.join(full);
                }
                let text = read_private(&full).map_err(|e| self.err("secret_file", e))?;
                Secret::from_text(&text)
                    .map(|s| (Some(s), Some(full)))
                    .map_err(|e| self.err("secret_file", e.to_string()))
            }
            (None, None) => Ok((None, None)),
        }
    }

    fn tunnel(&self, raw: RawTunnel) -> Result<TunnelConfig, ConfigError> {
        let buffer_size = self.count(
            "buffer_size",
            raw.buffer_size,
            BUFFER_SIZE_MIN,
            BUFFER_SIZE_MAX,
        )?;
        let window = raw
            .stream_window
            .unwrap_or_else(|| default_window(raw.buffer_size));
        if window < raw.buffer_size {
            return Err(self.err(
                "stream_window",
                format!(
                    "{window} is smaller than buffer_size ({}): a window must hold at least one full frame",
                    raw.buffer_size
                ),
            ));
        }
        let window = self.range("stream_window", window, raw.buffer_size, STREAM_WINDOW_MAX)?;
        let stream_window = u32::try_from(window)
            .map_err(|_| self.err("stream_window", format!("{window} does not fit 32 bits")))?;
        let send_budget = self.range(
            "send_budget",
            raw.send_budget.unwrap_or_else(|| default_budget(window)),
            raw.buffer_size,
            SEND_BUDGET_MAX,
        )?;
        let keepalive_interval = self.millis(
            "keepalive_interval_ms",
            raw.keepalive_interval_ms,
            KEEPALIVE_INTERVAL_MS_DEFAULT,
            1,
        )?;
        let keepalive_timeout = self.millis(
            "keepalive_timeout_ms",
            raw.keepalive_timeout_ms,
            KEEPALIVE_TIMEOUT_MS_DEFAULT,
            1,
        )?;
        if keepalive_timeout <= keepalive_interval {
            return Err(self.err(
                "keepalive_timeout_ms",
                format!(
                    "{} must be greater than keepalive_interval_ms ({}): otherwise a healthy idle link is declared dead before its first ping",
                    keepalive_timeout.as_millis(),
                    keepalive_interval.as_millis()
                ),
            ));
        }
        let (secret, secret_file) = self.secret(raw.secret, raw.secret_file)?;
        if raw.encrypt == Some(true) && secret.is_none() {
            return Err(self.err(
                "encrypt",
                "true needs a `secret` or `secret_file`: the cipher keys come from it".into(),
            ));
        }
        let encrypt = raw.encrypt.unwrap_or(secret.is_some());
        Ok(TunnelConfig {
            secret,
            secret_file,
            encrypt,
            buffer_size,
            stream_window,
            send_budget,
            scheduler: raw.scheduler.unwrap_or(SchedulerKind::RoundRobin),
            keepalive_interval,
            keepalive_timeout,
            drain_timeout: self.millis(
                "drain_timeout_ms",
                raw.drain_timeout_ms,
                DRAIN_TIMEOUT_MS_DEFAULT,
                0,
            )?,
            max_streams: self.count(
                "max_streams",
                raw.max_streams.unwrap_or(MAX_STREAMS_DEFAULT),
                1,
                u64::from(u32::MAX),
            )?,
        })
    }
}

impl RawServer {
    fn validate(self, ctx: &Ctx<'_>) -> Result<ServerConfig, ConfigError> {
        let listen = ctx.listen("listen_ip", &self.listen_ip, self.listen_port)?;
        let backend = ctx.endpoint(
            "backend_ip",
            &self.backend_ip,
            "backend_port",
            self.backend_port,
        )?;
        let max_links_per_session = ctx.count(
            "connection_pool_size",
            self.connection_pool_size,
            POOL_SIZE_MIN,
            POOL_SIZE_MAX,
        )?;
        let tunnel = ctx.tunnel(RawTunnel {
            buffer_size: self.buffer_size,
            stream_window: self.stream_window,
            send_budget: self.send_budget,
            scheduler: self.scheduler,
            keepalive_interval_ms: self.keepalive_interval_ms,
            keepalive_timeout_ms: self.keepalive_timeout_ms,
            drain_timeout_ms: self.drain_timeout_ms,
            max_streams: self.max_streams,
            secret: self.secret,
            secret_file: self.secret_file,
            encrypt: self.encrypt,
        })?;
        Ok(ServerConfig {
            listen,
            backend,
            max_links_per_session,
            backend_connect_timeout: ctx.millis(
                "backend_connect_timeout_ms",
                self.backend_connect_timeout_ms,
                BACKEND_CONNECT_TIMEOUT_MS_DEFAULT,
                1,
            )?,
            handshake_timeout: ctx.millis(
                "handshake_timeout_ms",
                self.handshake_timeout_ms,
                HANDSHAKE_TIMEOUT_MS_DEFAULT,
                1,
            )?,
            max_sessions: ctx.count(
                "max_sessions",
                self.max_sessions.unwrap_or(MAX_SESSIONS_DEFAULT),
                1,
                u64::from(u32::MAX),
            )?,
            max_total_streams: ctx.count(
                "max_total_streams",
                self.max_total_streams.unwrap_or(MAX_TOTAL_STREAMS_DEFAULT),
                1,
                u64::from(u32::MAX),
            )?,
            max_pending_handshakes: ctx.count(
                "max_pending_handshakes",
                self.max_pending_handshakes
                    .unwrap_or(MAX_PENDING_HANDSHAKES_DEFAULT),
                1,
                u64::from(u32::MAX),
            )?,
            session_grace: ctx.millis(
                "session_grace_ms",
                self.session_grace_ms,
                SESSION_GRACE_MS_DEFAULT,
                0,
            )?,
            tunnel,
            ops: ctx.ops(self.log_level, self.stats_interval_ms)?,
        })
    }
}

impl RawClient {
    fn validate(self, ctx: &Ctx<'_>) -> Result<ClientConfig, ConfigError> {
        let listen = ctx.listen(
            "local_listen_ip",
            &self.local_listen_ip,
            self.local_listen_port,
        )?;
        let server = ctx.endpoint(
            "server_ip",
            &self.server_ip,
            "server_port",
            self.server_port,
        )?;
        let pool_size = ctx.count(
            "connection_pool_size",
            self.connection_pool_size,
            POOL_SIZE_MIN,
            POOL_SIZE_MAX,
        )?;
        let tunnel = ctx.tunnel(RawTunnel {
            buffer_size: self.buffer_size,
            stream_window: self.stream_window,
            send_budget: self.send_budget,
            scheduler: self.scheduler,
            keepalive_interval_ms: self.keepalive_interval_ms,
            keepalive_timeout_ms: self.keepalive_timeout_ms,
            drain_timeout_ms: self.drain_timeout_ms,
            max_streams: self.max_streams,
            secret: self.secret,
            secret_file: self.secret_file,
            encrypt: self.encrypt,
        })?;
        let connect_timeout = ctx.millis(
            "connect_timeout_ms",
            self.connect_timeout_ms,
            CONNECT_TIMEOUT_MS_DEFAULT,
            1,
        )?;
        // 0 would make the doubling backoff stay at 0: a dead server would be
        // hammered in a busy loop.
        let reconnect_min = ctx.millis(
            "reconnect_min_ms",
            self.reconnect_min_ms,
            RECONNECT_MIN_MS_DEFAULT,
            1,
        )?;
        let reconnect_max = ctx.millis(
            "reconnect_max_ms",
            self.reconnect_max_ms,
            RECONNECT_MAX_MS_DEFAULT,
            1,
        )?;
        if reconnect_max < reconnect_min {
            return Err(ctx.err(
                "reconnect_max_ms",
                format!(
                    "{} is smaller than reconnect_min_ms ({})",
                    reconnect_max.as_millis(),
                    reconnect_min.as_millis()
                ),
            ));
        }
        let session_grace = ctx.millis(
            "session_grace_ms",
            self.session_grace_ms,
            SESSION_GRACE_MS_DEFAULT,
            0,
        )?;
        Ok(ClientConfig {
            listen,
            server,
            pool_size,
            zero_rtt: self.enable_zero_rtt,
            connect_timeout,
            reconnect_min,
            reconnect_max,
            session_grace,
            tunnel,
            ops: ctx.ops(self.log_level, self.stats_interval_ms)?,
        })
    }
}

/// Reads a secret file, refusing one that group or others may read.
fn read_private(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable by group or others (mode {mode:04o}); run `chmod 600` on it",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// An IP literal; IPv6 may be written with or without brackets.
fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    s.parse().ok()
}

/// A DNS host name by RFC 1123 (underscores tolerated, as many internal zones
/// use them). The last label may not be all digits, so a mistyped address such
/// as `1.2.3` is rejected instead of being handed to the resolver, which would
/// read it as 1.2.0.3.
fn is_host_name(s: &str) -> bool {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let last_not_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && last_not_numeric
}

// ---------------------------------------------------------------------------
// Turning toml/serde errors into "file:line: key `table.key`: ..." messages
// ---------------------------------------------------------------------------

fn from_toml_error(file: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let msg = e.message();
    let span = e.span();
    let line = span.as_ref().map(|s| line_number(text, s.start));
    let quoted = |prefix: &str| {
        msg.strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(name) = quoted("missing field `") {
        // serde points a missing key at its table's header; at the very start
        // of the file (empty span) for the top level.
        let key = match span {
            Some(s) if !s.is_empty() => match path_at(text, s.clone()) {
                Some(table) if !table.is_empty() => format!("{table}.{name}"),
                _ => name,
            },
            _ => name,
        };
        return ConfigError::new(file, None, Some(key), ErrorKind::Missing);
    }
    if let Some(name) = quoted("unknown field `") {
        // serde points an unknown key at the key itself.
        let key = span
            .clone()
            .and_then(|s| path_at(text, s))
            .filter(|k| !k.is_empty())
            .unwrap_or(name);
        return ConfigError::new(file, line, Some(key), ErrorKind::Unknown);
    }
    let key = span
        .and_then(|s| path_at(text, s))
        .filter(|k| !k.is_empty());
    ConfigError::new(file, line, key, ErrorKind::Invalid(msg.to_owned()))
}

fn line_number(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key path of whatever `span` points at: a table header, a key,
/// or a value (then the key it is assigned to), prefixed with the enclosing
/// `[table]`. Best effort by design: it reads single lines, which is all a
/// config of scalar values needs; `None` when nothing sensible is found.
fn path_at(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let bytes = text.as_bytes();
    let start = span.start.min(text.len());
    let line_start = bytes[..start]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line_end = bytes[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(text.len(), |i| start + i);
    let line = text.get(line_start..line_end)?;
    if line.trim_start().starts_with('[') {
        // A header, or a broken one (then there is no key to name).
        return header_name(line);
    }
    let table = text
        .get(..line_start)?
        .lines()
        .rev()
        .find_map(header_name)
        .unwrap_or_default();
    let prefix = text.get(line_start..start)?;
    let key = if prefix.contains('=') {
        // The span is a value: the key is what stands before its '=', through
        // any enclosing inline tables (`a = { b = <value>`).
        let parts: Vec<String> = prefix
            .split('{')
            .filter_map(|seg| {
                let before_eq = &seg[..seg.rfind('=')?];
                let after_comma = before_eq.rsplit(',').next().unwrap_or(before_eq);
                Some(normalize_key(after_comma))
            })
            .collect();
        parts.join(".")
    } else {
        // The span is a key, possibly the last part of a dotted key.
        let end = span.end.clamp(start, line_end);
        normalize_key(text.get(line_start..end)?)
    };
    Some(match (table.is_empty(), key.is_empty()) {
        (_, true) => table,
        (true, false) => key,
        (false, false) => format!("{table}.{key}"),
    })
}

/// `Some("server")` for a line `[server]` (or `[[server]]`, `[ "server" ]  # c`).
fn header_name(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix('[')?;
    let rest = rest.strip_prefix('[').unwrap_or(rest);
    let inner = &rest[..rest.find(']')?];
    Some(normalize_key(inner))
}

/// `server . "listen_port"` → `server.listen_port`.
fn normalize_key(raw: &str) -> String {
    raw.split('.')
        .map(|p| p.trim().trim_matches(|c| c == '"' || c == '\''))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_SERVER: &str = r#"mode = "server"

[server]
listen_ip = "0.0.0.0"          # MTCP 监听地址
listen_port = 8000              # MTCP 监听端口
backend_ip = "127.0.0.1"        # 后端服务地址
backend_port = 9000             # 后端服务端口
connection_pool_size = 4        # 连接池大小
buffer_size = 65536             # 缓冲区大小
"#;

    const SEED_CLIENT: &str = r#"mode = "client"

[client]
local_listen_ip = "127.0.0.1"   # 本地监听地址
local_listen_port = 7000        # 本地监听端口
server_ip = "127.0.0.1"         # MTCP 服务器地址
server_port = 8000              # MTCP 服务器端口
connection_pool_size = 4        # 连接池大小
buffer_size = 65536             # 缓冲区大小
enable_zero_rtt = true          # 启用 0-RTT
"#;

    const MIN_SERVER: &str = "mode = \"server\"\n[server]\nlisten_ip = \"0.0.0.0\"\nlisten_port = 8000\nbackend_ip = \"127.0.0.1\"\nbackend_port = 9000\nconnection_pool_size = 4\nbuffer_size = 65536\n";
    const MIN_CLIENT: &str = "mode = \"client\"\n[client]\nlocal_listen_ip = \"127.0.0.1\"\nlocal_listen_port = 7000\nserver_ip = \"127.0.0.1\"\nserver_port = 8000\nconnection_pool_size = 4\nbuffer_size = 65536\nenable_zero_rtt = true\n";

    fn server(text: &str) -> Result<ServerConfig, ConfigError> {
        match parse(text, Path::new("x.toml"))? {
            Config::Server(s) => Ok(s),
            Config::Client(_) => panic!("expected a server config"),
        }
    }

    fn client(text: &str) -> Result<ClientConfig, ConfigError> {
        match parse(text, Path::new("x.toml"))? {
            Config::Client(c) => Ok(c),
            Config::Server(_) => panic!("expected a client config"),
        }
    }

    fn server_with(extra: &str) -> Result<ServerConfig, ConfigError> {
        server(&format!("{MIN_SERVER}{extra}\n"))
    }

    fn client_with(extra: &str) -> Result<ClientConfig, ConfigError> {
        client(&format!("{MIN_CLIENT}{extra}\n"))
    }

    fn err_of<T: fmt::Debug>(r: Result<T, ConfigError>) -> ConfigError {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e,
        }
    }

    /// Replaces the line starting with `key` in `text` by `line`.
    fn replace_line(text: &str, key: &str, line: &str) -> String {
        text.lines()
            .map(|l| if l.starts_with(key) { line } else { l })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    fn without_line(text: &str, key: &str) -> String {
        text.lines()
            .filter(|l| !l.starts_with(key))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    #[test]
    fn seed_server_example_parses() {
        let s = server(SEED_SERVER).unwrap();
        assert_eq!(s.listen, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(
            s.backend,
            Endpoint {
                host: "127.0.0.1".into(),
                port: 9000
            }
        );
        assert_eq!(s.max_links_per_session, 4);
        assert_eq!(s.tunnel.buffer_size, 65536);
    }

    #[test]
    fn seed_client_example_parses() {
        let c = client(SEED_CLIENT).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(c.server.to_string(), "127.0.0.1:8000");
        assert_eq!(c.pool_size, 4);
        assert!(c.zero_rtt);
        assert_eq!(c.tunnel.buffer_size, 65536);
    }

    /// Parses `text` as if it were a file in a directory that also holds
    /// `mtcp.secret`, as the examples expect.
    fn parse_beside_secret(text: &str) -> Config {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Own directory per call: tests run in parallel and this one removes
        // its directory afterwards.
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mtcp-config-unit-{}-secret-{}",
            std::process::id(),
            CALLS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("mtcp.secret");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let parsed = parse(text, &dir.join("example.toml")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        parsed
    }

    fn without_secret(mut t: TunnelConfig) -> TunnelConfig {
        assert!(
            t.secret.is_some() && t.encrypt,
            "the examples use an encrypting secret"
        );
        t.secret = None;
        t.secret_file = None;
        t.encrypt = false;
        t
    }

    #[test]
    fn etc_examples_parse() {
        let Config::Server(mut s) = parse_beside_secret(include_str!("../etc/config.server.toml"))
        else {
            panic!("server example is not a server config");
        };
        let Config::Client(mut c) = parse_beside_secret(include_str!("../etc/config.client.toml"))
        else {
            panic!("client example is not a client config");
        };
        s.tunnel = without_secret(s.tunnel);
        c.tunnel = without_secret(c.tunnel);
        // The examples spell out every default; they must agree with the code.
        assert_eq!(s, server(SEED_SERVER).unwrap());
        assert_eq!(c, client(SEED_CLIENT).unwrap());
    }

    #[test]
    fn a_large_buffer_size_alone_gets_a_window_and_budget_to_match() {
        let big = MIN_SERVER.replace("buffer_size = 65536", "buffer_size = 16777216");
        let s = server(&big).unwrap();
        assert_eq!(s.tunnel.stream_window, 64 << 20, "four full frames");
        assert_eq!(s.tunnel.send_budget, 128 << 20, "two windows");
        assert_eq!(s.tunnel, TunnelConfig::new(16 << 20));
        // A window set too small is still the user's error, named.
        let small = format!("{big}stream_window = 4194304\n");
        let e = server(&small).unwrap_err().to_string();
        assert!(e.contains("server.stream_window"), "{e}");
    }

    #[test]
    fn server_defaults() {
        let s = server(MIN_SERVER).unwrap();
        assert_eq!(s.tunnel, TunnelConfig::new(65536));
        assert_eq!(s.tunnel.stream_window, 8_388_608);
        assert_eq!(s.tunnel.scheduler, SchedulerKind::RoundRobin);
        assert_eq!(s.tunnel.keepalive_interval, Duration::from_millis(1000));
        assert_eq!(s.tunnel.keepalive_timeout, Duration::from_millis(5000));
        assert_eq!(s.tunnel.drain_timeout, Duration::from_millis(10_000));
        assert_eq!(s.tunnel.max_streams, 4096);
        assert_eq!(s.backend_connect_timeout, Duration::from_millis(1500));
        assert_eq!(s.handshake_timeout, Duration::from_millis(5000));
        assert_eq!(s.max_sessions, 1024);
        assert_eq!(s.session_grace, Duration::from_millis(30_000));
    }

    #[test]
    fn client_defaults() {
        let c = client(MIN_CLIENT).unwrap();
        assert_eq!(c.tunnel, TunnelConfig::new(65536));
        assert_eq!(c.connect_timeout, Duration::from_millis(5000));
        assert_eq!(c.reconnect_min, Duration::from_millis(100));
        assert_eq!(c.reconnect_max, Duration::from_millis(5000));
    }

    #[test]
    fn optional_keys_are_read() {
        let s = server_with(
            "stream_window = 1048576\nscheduler = \"least_queued\"\nkeepalive_interval_ms = 200\nkeepalive_timeout_ms = 900\ndrain_timeout_ms = 0\nmax_streams = 7\nbackend_connect_timeout_ms = 300\nhandshake_timeout_ms = 400\nmax_sessions = 9\nsession_grace_ms = 0",
        )
        .unwrap();
        assert_eq!(s.tunnel.stream_window, 1_048_576);
        assert_eq!(s.tunnel.scheduler, SchedulerKind::LeastQueued);
        assert_eq!(s.tunnel.keepalive_interval, Duration::from_millis(200));
        assert_eq!(s.tunnel.keepalive_timeout, Duration::from_millis(900));
        assert_eq!(s.tunnel.drain_timeout, Duration::ZERO);
        assert_eq!(s.tunnel.max_streams, 7);
        assert_eq!(s.backend_connect_timeout, Duration::from_millis(300));
        assert_eq!(s.handshake_timeout, Duration::from_millis(400));
        assert_eq!(s.max_sessions, 9);
        assert_eq!(s.session_grace, Duration::ZERO);

        let c =
            client_with("connect_timeout_ms = 50\nreconnect_min_ms = 10\nreconnect_max_ms = 10")
                .unwrap();
        assert_eq!(c.connect_timeout, Duration::from_millis(50));
        assert_eq!(c.reconnect_min, Duration::from_millis(10));
        assert_eq!(c.reconnect_max, Duration::from_millis(10));
    }

    #[test]
    fn ops_keys() {
        for text in [MIN_SERVER, MIN_CLIENT] {
            let c = parse(text, Path::new("x.toml")).unwrap();
            assert_eq!(c.ops(), &OpsConfig::default());
            assert_eq!(c.ops().log_level, LogLevel::Info);
            assert_eq!(c.ops().stats_interval, Some(Duration::from_millis(60_000)));
            assert!(c.describe().contains("\nlog_level = \"info\"\n"));
            assert!(c.describe().contains("\nstats_interval_ms = 60000\n"));
        }
        let s = server_with("log_level = \"debug\"\nstats_interval_ms = 0").unwrap();
        assert_eq!(s.ops.log_level, LogLevel::Debug);
        assert_eq!(s.ops.stats_interval, None);
        assert!(s.describe().contains("\nstats_interval_ms = 0\n"));
        assert_eq!(server(&s.describe()).unwrap(), s);
        let c = client_with("log_level = \"trace\"\nstats_interval_ms = 100").unwrap();
        assert_eq!(c.ops.log_level.filter(), log::LevelFilter::Trace);
        assert_eq!(c.ops.stats_interval, Some(Duration::from_millis(100)));
        let e = err_of(server_with("stats_interval_ms = 99"));
        assert_eq!(e.key(), Some("server.stats_interval_ms"));
        assert!(e.to_string().contains("0 (off)"), "{e}");
        let e = err_of(client_with("log_level = \"loud\""));
        assert_eq!(e.key(), Some("client.log_level"));
        let running = Config::Server(server(MIN_SERVER).unwrap());
        let ops = OpsConfig {
            log_level: LogLevel::Warn,
            stats_interval: None,
        };
        assert_eq!(running.with_ops(ops.clone()).ops(), &ops);
        for level in ["error", "warn", "info", "debug", "trace"] {
            let s = server_with(&format!("log_level = \"{level}\"")).unwrap();
            assert_eq!(s.ops.log_level.to_string(), level);
        }
    }

    #[test]
    fn describe_lists_every_key_and_round_trips() {
        let s = server_with("scheduler = \"least_queued\"\nmax_sessions = 3").unwrap();
        let text = s.describe();
        for key in [
            "listen_ip",
            "listen_port",
            "backend_ip",
            "backend_port",
            "connection_pool_size",
            "buffer_size",
            "stream_window",
            "send_budget",
            "scheduler",
            "keepalive_interval_ms",
            "keepalive_timeout_ms",
            "drain_timeout_ms",
            "max_streams",
            "backend_connect_timeout_ms",
            "handshake_timeout_ms",
            "max_sessions",
            "session_grace_ms",
        ] {
            assert!(
                text.contains(&format!("\n{key} = ")),
                "{key} missing in\n{text}"
            );
        }
        assert_eq!(server(&text).unwrap(), s);

        let c = client(&replace_line(
            MIN_CLIENT,
            "local_listen_ip",
            "local_listen_ip = \"::1\"",
        ))
        .unwrap();
        let text = c.describe();
        for key in [
            "enable_zero_rtt",
            "connect_timeout_ms",
            "reconnect_min_ms",
            "reconnect_max_ms",
        ] {
            assert!(
                text.contains(&format!("\n{key} = ")),
                "{key} missing in\n{text}"
            );
        }
        assert_eq!(client(&text).unwrap(), c);
    }

    #[test]
    fn ipv6_listen_and_host_names() {
        let s = server(&replace_line(MIN_SERVER, "listen_ip", "listen_ip = \"::\"")).unwrap();
        assert_eq!(s.listen, "[::]:8000".parse().unwrap());
        let s = server(&replace_line(
            MIN_SERVER,
            "listen_ip",
            "listen_ip = \"[::1]\"",
        ))
        .unwrap();
        assert_eq!(s.listen, "[::1]:8000".parse().unwrap());

        let text = replace_line(MIN_SERVER, "backend_ip", "backend_ip = \"::1\"");
        let s = server(&text).unwrap();
        assert_eq!(s.backend.host, "::1");
        assert_eq!(s.backend.to_string(), "[::1]:9000");
        assert_eq!(
            s.backend.resolve().unwrap(),
            vec!["[::1]:9000".parse().unwrap()]
        );

        let text = replace_line(MIN_CLIENT, "server_ip", "server_ip = \"remote.server.com\"");
        let c = client(&text).unwrap();
        assert_eq!(c.server.host, "remote.server.com");
        assert_eq!(c.server.to_string(), "remote.server.com:8000");

        let text = replace_line(MIN_SERVER, "backend_ip", "backend_ip = \"localhost\"");
        let s = server(&text).unwrap();
        assert_eq!(s.backend.host, "localhost");
        let addrs = s.backend.resolve().unwrap();
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 9000)
        );
    }

    #[test]
    fn host_name_rules() {
        for good in [
            "a",
            "example.com",
            "example.com.",
            "my-host_1.internal",
            "x1",
        ] {
            assert!(is_host_name(good), "{good}");
        }
        for bad in [
            "",
            "1.2.3",
            "256.1.1.1",
            "a..b",
            "-a.com",
            "a-.com",
            "a b",
            "a:b",
            "host/x",
            ".",
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }

    #[test]
    fn missing_keys_are_named() {
        for key in [
            "listen_ip",
            "listen_port",
            "backend_ip",
            "backend_port",
            "connection_pool_size",
            "buffer_size",
        ] {
            let e = err_of(server(&without_line(MIN_SERVER, key)));
            assert_eq!(e.to_string(), format!("x.toml: missing key `server.{key}`"));
            assert_eq!(e.key(), Some(format!("server.{key}").as_str()));
        }
        for key in [
            "local_listen_ip",
            "local_listen_port",
            "server_ip",
            "server_port",
            "connection_pool_size",
            "buffer_size",
            "enable_zero_rtt",
        ] {
            let e = err_of(client(&without_line(MIN_CLIENT, key)));
            assert_eq!(e.to_string(), format!("x.toml: missing key `client.{key}`"));
        }
        let e = err_of(server(&without_line(MIN_SERVER, "mode")));
        assert_eq!(e.to_string(), "x.toml: missing key `mode`");
        let e = err_of(server(""));
        assert_eq!(e.to_string(), "x.toml: missing key `mode`");
    }

    #[test]
    fn missing_and_stray_tables() {
        let e = err_of(parse("mode = \"server\"\n", Path::new("x.toml")));
        assert_eq!(e.key(), Some("server"));
        assert!(e.to_string().contains("missing table `[server]`"), "{e}");

        let text = format!("{MIN_SERVER}[client]\n");
        let e = err_of(parse(&text, Path::new("x.toml")));
        assert_eq!(e.key(), Some("client"));
        assert!(e.to_string().starts_with("x.toml: key `client`: "), "{e}");

        let text = format!("{MIN_CLIENT}[server]\nlisten_ip = \"1.1.1.1\"\n");
        let e = err_of(parse(&text, Path::new("x.toml")));
        assert_eq!(
            e.to_string(),
            "x.toml: key `server`: table `[server]` is not allowed in a file with mode = \"client\""
        );
        // A wrong mode is reported before anything inside the tables.
        let text = MIN_CLIENT
            .replace("mode = \"client\"", "mode = \"clint\"")
            .replace("buffer_size", "bufer_size");
        let e = err_of(parse(&text, Path::new("x.toml")));
        assert_eq!(e.key(), Some("mode"));
    }

    #[test]
    fn unknown_keys_are_named_with_line() {
        let e = err_of(server_with("foo = 1"));
        assert_eq!(e.to_string(), "x.toml:9: unknown key `server.foo`");
        let e = err_of(client(
            &MIN_CLIENT.replace("[client]\n", "[client]\nfoo = 1\n"),
        ));
        assert_eq!(e.to_string(), "x.toml:3: unknown key `client.foo`");
        let e = err_of(server(&format!("extra = 1\n{MIN_SERVER}")));
        assert_eq!(e.to_string(), "x.toml:1: unknown key `extra`");
        let e = err_of(server(&format!("{MIN_SERVER}[other]\nx = 1\n")));
        assert_eq!(e.to_string(), "x.toml:9: unknown key `other`");
        // A tunnel key of one side is not accepted on the other.
        let e = err_of(server_with("enable_zero_rtt = true"));
        assert_eq!(e.key(), Some("server.enable_zero_rtt"));
    }

    #[test]
    fn wrong_types_are_named_with_line() {
        let e = err_of(server(&replace_line(
            MIN_SERVER,
            "listen_port",
            "listen_port = \"a\"",
        )));
        assert_eq!(
            e.to_string(),
            "x.toml:4: key `server.listen_port`: invalid type: string \"a\", expected u16"
        );
        let e = err_of(server(&replace_line(
            MIN_SERVER,
            "listen_port",
            "listen_port = 70000",
        )));
        assert_eq!(e.key(), Some("server.listen_port"));
        assert_eq!(e.line(), Some(4));
        let e = err_of(client(&replace_line(
            MIN_CLIENT,
            "enable_zero_rtt",
            "enable_zero_rtt = \"yes\"",
        )));
        assert_eq!(e.key(), Some("client.enable_zero_rtt"));
        let e = err_of(server_with("scheduler = \"fastest\""));
        assert_eq!(e.key(), Some("server.scheduler"));
        assert!(e.to_string().contains("round_robin"), "{e}");
        let e = err_of(server_with("keepalive_interval_ms = -5"));
        assert_eq!(e.key(), Some("server.keepalive_interval_ms"));
        let e = err_of(server(
            &MIN_SERVER.replace("mode = \"server\"", "mode = \"both\""),
        ));
        assert_eq!(e.key(), Some("mode"));
        assert_eq!(e.line(), Some(1));
        // Dotted and inline-table spellings still name the key.
        let text = "mode = \"server\"\nserver = { listen_ip = \"0.0.0.0\", listen_port = \"a\" }\n";
        let e = err_of(server(text));
        assert_eq!(e.key(), Some("server.listen_port"));
        let text = "mode = \"server\"\nserver.listen_ip = \"0.0.0.0\"\nserver.bogus = 1\n";
        let e = err_of(server(text));
        assert_eq!(e.to_string(), "x.toml:3: unknown key `server.bogus`");
    }

    #[test]
    fn syntax_errors_are_one_line_with_line_number() {
        let e = err_of(server(&replace_line(
            MIN_SERVER,
            "listen_ip",
            "listen_ip = 0.0.0.0",
        )));
        assert_eq!(e.line(), Some(3));
        assert_eq!(e.key(), Some("server.listen_ip"));
        let e = err_of(server(&format!("{MIN_SERVER}listen_port = 1\n")));
        assert_eq!(e.key(), Some("server.listen_port"));
        assert_eq!(e.line(), Some(9));
        let e = err_of(server("mode = \"server\"\n[server\n"));
        assert_eq!(e.line(), Some(2));
        assert_eq!(e.key(), None);
        let e = err_of(server("mode = \"server\n[server]\n"));
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(e.to_string().starts_with("x.toml:1: "), "{e}");
    }

    #[test]
    fn bad_addresses_are_named() {
        let e = err_of(server(&replace_line(
            MIN_SERVER,
            "listen_ip",
            "listen_ip = \"1.2.3\"",
        )));
        assert!(
            e.to_string()
                .starts_with("x.toml: key `server.listen_ip`: \"1.2.3\" is not an IP address"),
            "{e}"
        );
        let e = err_of(server(&replace_line(
            MIN_SERVER,
            "listen_ip",
            "listen_ip = \"localhost\"",
        )));
        assert_eq!(e.key(), Some("server.listen_ip"));
        let e = err_of(client(&replace_line(
            MIN_CLIENT,
            "local_listen_ip",
            "local_listen_ip = \"\"",
        )));
        assert_eq!(e.key(), Some("client.local_listen_ip"));
        let e = err_of(server(&replace_line(
            MIN_SERVER,
            "backend_ip",
            "backend_ip = \"1.2.3\"",
        )));
        assert_eq!(e.key(), Some("server.backend_ip"));
        let e = err_of(client(&replace_line(
            MIN_CLIENT,
            "server_ip",
            "server_ip = \"a b\"",
        )));
        assert_eq!(e.key(), Some("client.server_ip"));
        let e = err_of(server(&replace_line(
            MIN_SERVER,
            "backend_port",
            "backend_port = 0",
        )));
        assert_eq!(e.key(), Some("server.backend_port"));
        let e = err_of(client(&replace_line(
            MIN_CLIENT,
            "server_port",
            "server_port = 0",
        )));
        assert_eq!(e.key(), Some("client.server_port"));
        // Listen ports may be 0: the OS picks one.
        let s = server(&replace_line(MIN_SERVER, "listen_port", "listen_port = 0")).unwrap();
        assert_eq!(s.listen.port(), 0);
        let c = client(&replace_line(
            MIN_CLIENT,
            "local_listen_port",
            "local_listen_port = 0",
        ))
        .unwrap();
        assert_eq!(c.listen.port(), 0);
    }

    #[test]
    fn ranges_and_relations_are_named() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "connection_pool_size",
                "connection_pool_size = 0",
                "server.connection_pool_size",
            ),
            (
                "connection_pool_size",
                "connection_pool_size = 257",
                "server.connection_pool_size",
            ),
            ("buffer_size", "buffer_size = 1023", "server.buffer_size"),
            (
                "buffer_size",
                "buffer_size = 16777217",
                "server.buffer_size",
            ),
        ];
        for (line_key, line, key) in cases {
            let e = err_of(server(&replace_line(MIN_SERVER, line_key, line)));
            assert_eq!(e.key(), Some(*key), "{line}: {e}");
            assert!(
                e.to_string().starts_with(&format!("x.toml: key `{key}`: ")),
                "{e}"
            );
        }
        let extras: &[(&str, &str)] = &[
            ("stream_window = 65535", "server.stream_window"),
            ("stream_window = 1073741825", "server.stream_window"),
            ("send_budget = 65535", "server.send_budget"),
            ("send_budget = 68719476737", "server.send_budget"),
            ("keepalive_interval_ms = 0", "server.keepalive_interval_ms"),
            ("keepalive_timeout_ms = 1000", "server.keepalive_timeout_ms"),
            (
                "keepalive_interval_ms = 6000",
                "server.keepalive_timeout_ms",
            ),
            ("max_streams = 0", "server.max_streams"),
            (
                "backend_connect_timeout_ms = 0",
                "server.backend_connect_timeout_ms",
            ),
            ("handshake_timeout_ms = 0", "server.handshake_timeout_ms"),
            ("max_sessions = 0", "server.max_sessions"),
            ("session_grace_ms = 86400001", "server.session_grace_ms"),
            (
                "drain_timeout_ms = 18446744073709551615",
                "server.drain_timeout_ms",
            ),
        ];
        for (extra, key) in extras {
            let e = err_of(server_with(extra));
            assert_eq!(e.key(), Some(*key), "{extra}: {e}");
        }
        let extras: &[(&str, &str)] = &[
            ("connect_timeout_ms = 0", "client.connect_timeout_ms"),
            ("reconnect_min_ms = 0", "client.reconnect_min_ms"),
            ("reconnect_max_ms = 50", "client.reconnect_max_ms"),
            ("stream_window = 1024", "client.stream_window"),
            ("send_budget = 0", "client.send_budget"),
        ];
        for (extra, key) in extras {
            let e = err_of(client_with(extra));
            assert_eq!(e.key(), Some(*key), "{extra}: {e}");
        }
        // Boundaries are accepted.
        let s = server(&replace_line(
            MIN_SERVER,
            "buffer_size",
            "buffer_size = 1024",
        ))
        .unwrap();
        assert_eq!(s.tunnel.buffer_size, 1024);
        let s = server_with("stream_window = 65536\nkeepalive_timeout_ms = 1001").unwrap();
        assert_eq!(s.tunnel.stream_window, 65536);
        let s = server_with("stream_window = 1073741824").unwrap();
        assert_eq!(s.tunnel.stream_window, 1 << 30);
        let s = server_with("send_budget = 65536").unwrap();
        assert_eq!(s.tunnel.send_budget, 65536);
        let c = client_with("send_budget = 68719476736").unwrap();
        assert_eq!(c.tunnel.send_budget, 64 << 30);
    }

    #[test]
    fn mode_mismatch_and_read_errors() {
        let dir =
            std::env::temp_dir().join(format!("mtcp-config-unit-{}-mode", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.toml");
        std::fs::write(&path, MIN_CLIENT).unwrap();
        let e = err_of(load_server(&path));
        assert_eq!(e.key(), Some("mode"));
        assert_eq!(
            e.to_string(),
            format!(
                "{}: key `mode`: \"client\" does not match `mtcp server`",
                path.display()
            )
        );
        assert_eq!(load_client(&path).unwrap(), client(MIN_CLIENT).unwrap());
        assert_eq!(load(&path).unwrap().role(), Role::Client);
        std::fs::write(&path, MIN_SERVER).unwrap();
        let e = err_of(load_client(&path));
        assert!(
            e.to_string()
                .ends_with("\"server\" does not match `mtcp client`"),
            "{e}"
        );
        assert_eq!(load(&path).unwrap().role(), Role::Server);
        std::fs::remove_file(&path).unwrap();
        let e = err_of(load(&path));
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot read: ", path.display())),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn errors_are_one_line() {
        let texts = [
            "mode = \"server\"\n[server]\nlisten_ip = \"\"\"\nabc\n",
            "mode = \n",
            "= 1\n",
            "[server\n",
            "mode = \"server\"\n[server]\n[server]\n",
        ];
        for text in texts {
            let e = err_of(parse(text, Path::new("x.toml")));
            let s = e.to_string();
            assert!(!s.contains('\n') && s.starts_with("x.toml"), "{s:?}");
        }
    }

    #[test]
    fn display_names() {
        assert_eq!(Role::Server.to_string(), "server");
        assert_eq!(Role::Client.to_string(), "client");
        assert_eq!(SchedulerKind::RoundRobin.to_string(), "round_robin");
        assert_eq!(SchedulerKind::LeastQueued.to_string(), "least_queued");
        assert_eq!(SchedulerKind::Adaptive.to_string(), "adaptive");
    }
}
