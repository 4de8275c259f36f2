//! From the raw file to the typed settings: ranges, relations between keys,
//! the secret and the addresses are checked here, each failure naming its
//! `table.key`, so that a config that loads is one the daemons can run on
//! without checking anything again.

use super::error::{ConfigError, ErrorKind};
use super::raw::{RawClient, RawServer, RawTunnel};
use super::types::{
    BACKEND_CONNECT_TIMEOUT_MS_DEFAULT, BUFFER_SIZE_MAX, BUFFER_SIZE_MIN,
    CONNECT_TIMEOUT_MS_DEFAULT, ClientConfig, DRAIN_TIMEOUT_MS_DEFAULT, Endpoint,
    HANDSHAKE_TIMEOUT_MS_DEFAULT, KEEPALIVE_INTERVAL_MS_DEFAULT, KEEPALIVE_TIMEOUT_MS_DEFAULT,
    LogLevel, MAX_PENDING_HANDSHAKES_DEFAULT, MAX_SESSIONS_DEFAULT, MAX_STREAMS_DEFAULT,
    MAX_TOTAL_STREAMS_DEFAULT, MS_MAX, OpsConfig, POOL_SIZE_MAX, POOL_SIZE_MIN,
    RECONNECT_MAX_MS_DEFAULT, RECONNECT_MIN_MS_DEFAULT, SEND_BUDGET_MAX, SESSION_GRACE_MS_DEFAULT,
    STATS_INTERVAL_MS_DEFAULT, STATS_INTERVAL_MS_MIN, STREAM_WINDOW_MAX, SchedulerKind,
    ServerConfig, TunnelConfig, default_budget, default_window,
};
use crate::proto::secret::Secret;
use crate::util::net::parse_ip;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where validation errors point: the file and the table being checked.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) table: &'static str,
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
        metrics_listen: Option<String>,
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
        let metrics_listen = match metrics_listen {
            None => None,
            Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                self.err(
                    "metrics_listen",
                    format!(
                        "{text:?} is not an IP address and port: write e.g. \"127.0.0.1:9464\" \
                         or \"[::1]:9464\" (remove the key to turn the endpoint off)"
                    ),
                )
            })?),
        };
        Ok(OpsConfig {
            log_level: log_level.unwrap_or(LogLevel::Info),
            stats_interval: (!interval.is_zero()).then_some(interval),
            metrics_listen,
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
                let text =
                    read_private(&full).map_err(|e| self.err("secret_file", e.to_string()))?;
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
        let cipher = raw.cipher.and_then(|c| c.cipher());
        if let Some(cipher) = cipher
            && !encrypt
        {
            return Err(self.err(
                "cipher",
                format!(
                    "\"{}\" needs encrypted links (a `secret` or `secret_file`, and `encrypt` not false): it names their record cipher",
                    cipher.name()
                ),
            ));
        }
        Ok(TunnelConfig {
            secret,
            secret_file,
            encrypt,
            cipher,
            buffer_size,
            stream_window,
            send_budget,
            scheduler: raw.scheduler.unwrap_or(SchedulerKind::LeastQueued),
            reinject: raw.reinject.unwrap_or(true),
            duplicate: raw.duplicate_small_frames.unwrap_or_default(),
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
    pub(super) fn validate(self, ctx: &Ctx<'_>) -> Result<ServerConfig, ConfigError> {
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
            reinject: self.reinject,
            duplicate_small_frames: self.duplicate_small_frames,
            keepalive_interval_ms: self.keepalive_interval_ms,
            keepalive_timeout_ms: self.keepalive_timeout_ms,
            drain_timeout_ms: self.drain_timeout_ms,
            max_streams: self.max_streams,
            secret: self.secret,
            secret_file: self.secret_file,
            encrypt: self.encrypt,
            cipher: self.cipher,
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
            accept_proxy_protocol: self.accept_proxy_protocol.unwrap_or(false),
            tunnel,
            ops: ctx.ops(self.log_level, self.stats_interval_ms, self.metrics_listen)?,
        })
    }
}

impl RawClient {
    pub(super) fn validate(self, ctx: &Ctx<'_>) -> Result<ClientConfig, ConfigError> {
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
        let paths = super::paths::validate(
            ctx.file,
            self.path.unwrap_or_default(),
            pool_size,
            parse_ip(&server.host),
        )?;
        // Paths differ in rate and round trip by a lot: links taken in turn
        // would let the slowest set the pace.
        let scheduler = match self.scheduler {
            None if !paths.is_empty() => Some(SchedulerKind::Adaptive),
            chosen => chosen,
        };
        let tunnel = ctx.tunnel(RawTunnel {
            buffer_size: self.buffer_size,
            stream_window: self.stream_window,
            send_budget: self.send_budget,
            scheduler,
            reinject: self.reinject,
            duplicate_small_frames: self.duplicate_small_frames,
            keepalive_interval_ms: self.keepalive_interval_ms,
            keepalive_timeout_ms: self.keepalive_timeout_ms,
            drain_timeout_ms: self.drain_timeout_ms,
            max_streams: self.max_streams,
            secret: self.secret,
            secret_file: self.secret_file,
            encrypt: self.encrypt,
            cipher: self.cipher,
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
            paths,
            tunnel,
            ops: ctx.ops(self.log_level, self.stats_interval_ms, self.metrics_listen)?,
        })
    }
}

/// Why a secret file was not used; its text becomes the `secret_file` error.
#[derive(Debug)]
enum SecretFileError {
    /// The file could not be inspected or read.
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Group or others may read it (`mode` is the permission bits).
    TooOpen { path: PathBuf, mode: u32 },
}

impl fmt::Display for SecretFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretFileError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            SecretFileError::TooOpen { path, mode } => write!(
                f,
                "{} is readable by group or others (mode {mode:04o}); run `chmod 600` on it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for SecretFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SecretFileError::Read { source, .. } => Some(source),
            SecretFileError::TooOpen { .. } => None,
        }
    }
}

/// Reads a secret file, refusing one that group or others may read.
fn read_private(path: &Path) -> Result<String, SecretFileError> {
    use std::os::unix::fs::PermissionsExt;
    let read_error = |source| SecretFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    std::fs::read_to_string(path).map_err(read_error)
}

/// A DNS host name by RFC 1123 (underscores tolerated, as many internal zones
/// use them). The last label may not be all digits, so a mistyped address such
/// as `1.2.3` is rejected instead of being handed to the resolver, which would
/// read it as 1.2.0.3.
pub(super) fn is_host_name(s: &str) -> bool {
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
