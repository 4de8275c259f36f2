//! The effective settings written back as a config file: what `mtcp check`
//! prints and what the SIGHUP reload compares, so both show every key with
//! the value the daemon really uses, defaults included.

use super::types::{ClientConfig, Config, OpsConfig, PathConfig, ServerConfig, TunnelConfig};
use std::fmt;

impl Config {
    /// The effective settings of whichever kind this is (see
    /// [`ServerConfig::describe`]).
    pub fn describe(&self) -> String {
        match self {
            Config::Server(c) => c.describe(),
            Config::Client(c) => c.describe(),
        }
    }
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
        push_kv(
            &mut out,
            "accept_proxy_protocol",
            self.accept_proxy_protocol,
        );
        self.ops.describe_into(&mut out);
        out
    }
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
        if !self.paths.is_empty() {
            push_kv(&mut out, "path", describe_paths(&self.paths));
        }
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

impl TunnelConfig {
    fn describe_into(&self, out: &mut String) {
        push_kv(out, "buffer_size", self.buffer_size);
        push_kv(out, "stream_window", self.stream_window);
        push_kv(out, "send_budget", self.send_budget);
        push_kv(out, "scheduler", format!("\"{}\"", self.scheduler));
        push_kv(out, "reinject", self.reinject);
        push_kv(
            out,
            "duplicate_small_frames",
            format!("\"{}\"", self.duplicate),
        );
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
        if self.encrypt {
            push_kv(
                out,
                "cipher",
                format!("{:?}", self.cipher.map_or("auto", |c| c.name())),
            );
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
        match self.metrics_listen {
            Some(addr) => push_kv(out, "metrics_listen", format!("\"{addr}\"")),
            None => out.push_str("# metrics_listen: not set, no metrics endpoint\n"),
        }
    }
}

/// The `[[client.path]]` tables as one inline array, so that a reload
/// compares them as one key.
fn describe_paths(paths: &[PathConfig]) -> String {
    let tables: Vec<String> = paths
        .iter()
        .map(|p| {
            let mut keys = Vec::new();
            if let Some(ip) = p.bind_ip {
                keys.push(format!("bind_ip = \"{ip}\""));
            }
            if let Some(dev) = &p.interface {
                keys.push(format!("interface = \"{dev}\""));
            }
            keys.push(format!("links = {}", p.links));
            keys.push(format!("backup = {}", p.backup));
            format!("{{ {} }}", keys.join(", "))
        })
        .collect();
    format!("[{}]", tables.join(", "))
}

fn push_kv(out: &mut String, key: &str, value: impl fmt::Display) {
    out.push_str(&format!("{key} = {value}\n"));
}
