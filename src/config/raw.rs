//! The file's shape, exactly as written: serde reads the text into these
//! structs first, so syntax errors, missing keys, unknown keys and wrong types
//! are caught (with the key's position) before any value is judged.

use super::types::{DuplicateMode, LogLevel, SchedulerKind};
use crate::proto::cipher::Cipher;
use serde::Deserialize;

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum Mode {
    Server,
    Client,
}

/// The top level only; the tables are skipped here and read in pass 2.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHead {
    pub(super) mode: Mode,
    pub(super) server: Option<serde::de::IgnoredAny>,
    pub(super) client: Option<serde::de::IgnoredAny>,
}

/// Pass 2 for a server file; the top level was checked by [`RawHead`].
#[derive(Deserialize)]
pub(super) struct RawServerFile {
    pub(super) server: RawServer,
}

/// Pass 2 for a client file; the top level was checked by [`RawHead`].
#[derive(Deserialize)]
pub(super) struct RawClientFile {
    pub(super) client: RawClient,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of server settings")]
pub(super) struct RawServer {
    pub(super) listen_ip: String,
    pub(super) listen_port: u16,
    pub(super) backend_ip: String,
    pub(super) backend_port: u16,
    pub(super) connection_pool_size: u64,
    pub(super) buffer_size: u64,
    pub(super) stream_window: Option<u64>,
    pub(super) send_budget: Option<u64>,
    pub(super) scheduler: Option<SchedulerKind>,
    pub(super) reinject: Option<bool>,
    pub(super) duplicate_small_frames: Option<DuplicateMode>,
    pub(super) keepalive_interval_ms: Option<u64>,
    pub(super) keepalive_timeout_ms: Option<u64>,
    pub(super) drain_timeout_ms: Option<u64>,
    pub(super) max_streams: Option<u64>,
    pub(super) backend_connect_timeout_ms: Option<u64>,
    pub(super) handshake_timeout_ms: Option<u64>,
    pub(super) max_sessions: Option<u64>,
    pub(super) max_total_streams: Option<u64>,
    pub(super) max_pending_handshakes: Option<u64>,
    pub(super) session_grace_ms: Option<u64>,
    pub(super) accept_proxy_protocol: Option<bool>,
    pub(super) secret: Option<String>,
    pub(super) secret_file: Option<String>,
    pub(super) encrypt: Option<bool>,
    pub(super) cipher: Option<CipherSetting>,
    pub(super) log_level: Option<LogLevel>,
    pub(super) stats_interval_ms: Option<u64>,
    pub(super) metrics_listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of client settings")]
pub(super) struct RawClient {
    pub(super) local_listen_ip: String,
    pub(super) local_listen_port: u16,
    pub(super) server_ip: String,
    pub(super) server_port: u16,
    pub(super) connection_pool_size: u64,
    pub(super) buffer_size: u64,
    pub(super) enable_zero_rtt: bool,
    /// `[[client.path]]` tables: the uplinks the links leave by.
    pub(super) path: Option<Vec<RawPath>>,
    pub(super) stream_window: Option<u64>,
    pub(super) send_budget: Option<u64>,
    pub(super) scheduler: Option<SchedulerKind>,
    pub(super) reinject: Option<bool>,
    pub(super) duplicate_small_frames: Option<DuplicateMode>,
    pub(super) keepalive_interval_ms: Option<u64>,
    pub(super) keepalive_timeout_ms: Option<u64>,
    pub(super) drain_timeout_ms: Option<u64>,
    pub(super) max_streams: Option<u64>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) reconnect_min_ms: Option<u64>,
    pub(super) reconnect_max_ms: Option<u64>,
    pub(super) session_grace_ms: Option<u64>,
    pub(super) secret: Option<String>,
    pub(super) secret_file: Option<String>,
    pub(super) encrypt: Option<bool>,
    pub(super) cipher: Option<CipherSetting>,
    pub(super) log_level: Option<LogLevel>,
    pub(super) stats_interval_ms: Option<u64>,
    pub(super) metrics_listen: Option<String>,
}

/// One `[[client.path]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of path settings")]
pub(super) struct RawPath {
    pub(super) bind_ip: Option<String>,
    pub(super) interface: Option<String>,
    pub(super) links: u64,
    pub(super) backup: Option<bool>,
}

/// `cipher` as written: `auto` or one cipher's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub(super) enum CipherSetting {
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "aegis-256x2")]
    Aegis256X2,
    #[serde(rename = "aes-256-gcm")]
    AesGcm,
    #[serde(rename = "chacha20-poly1305")]
    ChaChaPoly,
}

impl CipherSetting {
    /// The one cipher named, `None` for `auto`.
    pub(super) fn cipher(self) -> Option<Cipher> {
        match self {
            CipherSetting::Auto => None,
            CipherSetting::Aegis256X2 => Some(Cipher::Aegis256X2),
            CipherSetting::AesGcm => Some(Cipher::AesGcm),
            CipherSetting::ChaChaPoly => Some(Cipher::ChaChaPoly),
        }
    }
}

/// The tunnel keys, gathered from either table (serde's `flatten` cannot be
/// combined with `deny_unknown_fields`, so both raw tables list them).
pub(super) struct RawTunnel {
    pub(super) buffer_size: u64,
    pub(super) stream_window: Option<u64>,
    pub(super) send_budget: Option<u64>,
    pub(super) scheduler: Option<SchedulerKind>,
    pub(super) reinject: Option<bool>,
    pub(super) duplicate_small_frames: Option<DuplicateMode>,
    pub(super) keepalive_interval_ms: Option<u64>,
    pub(super) keepalive_timeout_ms: Option<u64>,
    pub(super) drain_timeout_ms: Option<u64>,
    pub(super) max_streams: Option<u64>,
    pub(super) secret: Option<String>,
    pub(super) secret_file: Option<String>,
    pub(super) encrypt: Option<bool>,
    pub(super) cipher: Option<CipherSetting>,
}
