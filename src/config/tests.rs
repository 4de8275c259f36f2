//! One file for all of config's unit tests: nearly all go through [`parse`]
//! with the same small example files, whichever part of config they aim at.

use super::validate::is_host_name;
use super::*;
use std::fmt;
use std::path::Path;
use std::time::Duration;

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

pub(super) const MIN_SERVER: &str = "mode = \"server\"\n[server]\nlisten_ip = \"0.0.0.0\"\nlisten_port = 8000\nbackend_ip = \"127.0.0.1\"\nbackend_port = 9000\nconnection_pool_size = 4\nbuffer_size = 65536\n";
const MIN_CLIENT: &str = "mode = \"client\"\n[client]\nlocal_listen_ip = \"127.0.0.1\"\nlocal_listen_port = 7000\nserver_ip = \"127.0.0.1\"\nserver_port = 8000\nconnection_pool_size = 4\nbuffer_size = 65536\nenable_zero_rtt = true\n";

pub(super) fn server(text: &str) -> Result<ServerConfig, ConfigError> {
    match parse(text, Path::new("x.toml"))? {
        Config::Server(s) => Ok(s),
        Config::Client(_) => panic!("expected a server config"),
    }
}

pub(super) fn client(text: &str) -> Result<ClientConfig, ConfigError> {
    match parse(text, Path::new("x.toml"))? {
        Config::Client(c) => Ok(c),
        Config::Server(_) => panic!("expected a client config"),
    }
}

pub(super) fn server_with(extra: &str) -> Result<ServerConfig, ConfigError> {
    server(&format!("{MIN_SERVER}{extra}\n"))
}

pub(super) fn client_with(extra: &str) -> Result<ClientConfig, ConfigError> {
    client(&format!("{MIN_CLIENT}{extra}\n"))
}

pub(super) fn err_of<T: fmt::Debug>(r: Result<T, ConfigError>) -> ConfigError {
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
    let Config::Server(mut s) = parse_beside_secret(include_str!("../../etc/config.server.toml"))
    else {
        panic!("server example is not a server config");
    };
    let Config::Client(mut c) = parse_beside_secret(include_str!("../../etc/config.client.toml"))
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
fn secret_file_errors_name_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!(
        "mtcp-config-unit-{}-secret-errors",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("x.toml");
    let open = dir.join("open.secret");
    std::fs::write(&open, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!("{MIN_SERVER}secret_file = \"open.secret\"\n");
    let e = err_of(parse(&text, &config));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: key `server.secret_file`: {} is readable by group or others (mode 0644); run `chmod 600` on it",
            config.display(),
            open.display()
        )
    );
    let missing = dir.join("missing.secret");
    let io_error = std::fs::metadata(&missing).unwrap_err();
    let text = format!("{MIN_SERVER}secret_file = \"missing.secret\"\n");
    let e = err_of(parse(&text, &config));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: key `server.secret_file`: {}: {io_error}",
            config.display(),
            missing.display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
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
    assert_eq!(s.tunnel.scheduler, SchedulerKind::LeastQueued);
    assert!(s.tunnel.reinject, "held-up bytes are sent again by default");
    assert_eq!(s.tunnel.duplicate, DuplicateMode::OnLoss);
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
        "stream_window = 1048576\nscheduler = \"least_queued\"\nreinject = false\nduplicate_small_frames = \"always\"\nkeepalive_interval_ms = 200\nkeepalive_timeout_ms = 900\ndrain_timeout_ms = 0\nmax_streams = 7\nbackend_connect_timeout_ms = 300\nhandshake_timeout_ms = 400\nmax_sessions = 9\nsession_grace_ms = 0",
    )
    .unwrap();
    assert_eq!(s.tunnel.stream_window, 1_048_576);
    assert_eq!(s.tunnel.scheduler, SchedulerKind::LeastQueued);
    assert!(!s.tunnel.reinject);
    assert_eq!(s.tunnel.duplicate, DuplicateMode::Always);
    assert_eq!(s.tunnel.keepalive_interval, Duration::from_millis(200));
    assert_eq!(s.tunnel.keepalive_timeout, Duration::from_millis(900));
    assert_eq!(s.tunnel.drain_timeout, Duration::ZERO);
    assert_eq!(s.tunnel.max_streams, 7);
    assert_eq!(s.backend_connect_timeout, Duration::from_millis(300));
    assert_eq!(s.handshake_timeout, Duration::from_millis(400));
    assert_eq!(s.max_sessions, 9);
    assert_eq!(s.session_grace, Duration::ZERO);

    let c = client_with("connect_timeout_ms = 50\nreconnect_min_ms = 10\nreconnect_max_ms = 10")
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
        metrics_listen: None,
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
        "accept_proxy_protocol",
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
    let dir = std::env::temp_dir().join(format!("mtcp-config-unit-{}-mode", std::process::id()));
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
