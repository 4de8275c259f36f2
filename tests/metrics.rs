//! The Prometheus endpoint and `mtcp status` against real daemons: the
//! counters move by what was transferred, a killed link's series go away,
//! hostile input leaves the daemon serving, the exposition passes promtool,
//! a real Prometheus scrapes both daemons, and the binary wires the endpoint
//! from its config (start, SIGHUP, `mtcp status`, `mtcp check`).

mod common;

use common::*;
use mtcp::config::Role;
use mtcp::metrics::exposition::Identity;
use mtcp::metrics::{MAX_CONNECTIONS, MAX_REQUEST, MetricsServer, REQUEST_DEADLINE, Source};
use mtcp::rt::monitor::Monitor;
use mtcp::status::{Sample, scrape};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

/// An endpoint on an ephemeral loopback port for an in-process daemon.
fn endpoint(monitor: Monitor, role: Role) -> MetricsServer {
    let source = Source {
        monitor,
        identity: Identity {
            role,
            cipher: "none",
            authenticated: false,
        },
    };
    MetricsServer::start("127.0.0.1:0".parse().expect("addr"), source).expect("metrics endpoint")
}

/// One scrape's samples, failing the test when the endpoint does not answer.
fn samples(addr: SocketAddr) -> Vec<Sample> {
    scrape(addr).expect("scrape").samples
}

fn value(all: &[Sample], name: &str) -> f64 {
    all.iter().filter(|s| s.name == name).map(|s| s.value).sum()
}

/// `name` per value of label `key`.
fn by(all: &[Sample], name: &str, key: &str) -> BTreeMap<String, f64> {
    all.iter()
        .filter(|s| s.name == name)
        .map(|s| (s.label(key).to_owned(), s.value))
        .collect()
}

/// The raw answer to `request`, read until the server closes.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let _ = sock.write_all(request);
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The body of a 200 answer to `GET path`.
fn get(addr: SocketAddr, path: &str) -> String {
    let answer = exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    );
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or(("", ""));
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {answer}");
    body.to_owned()
}

/// A tunnel whose pool is fully up on both sides.
fn tunnel(pool: usize) -> Tunnel {
    let t = Tunnel::start(pool, true);
    assert!(
        wait_until(Duration::from_secs(10), || {
            t.client.monitor.snapshot().link_count() == pool
                && t.server.monitor.snapshot().link_count() == pool
        }),
        "pool did not come up"
    );
    t
}

#[test]
fn counters_move_by_what_was_transferred() {
    within(Duration::from_secs(120), || {
        let pool = 4;
        let t = tunnel(pool);
        let client = endpoint(t.client.monitor.clone(), Role::Client);
        let server = endpoint(t.server.monitor.clone(), Role::Server);
        let (c0, s0) = (samples(client.local_addr()), samples(server.local_addr()));
        let len = 16 * MIB;
        upload(&t.client, 7, len);
        let (c1, s1) = (samples(client.local_addr()), samples(server.local_addr()));
        let delta = |a: &[Sample], b: &[Sample], name: &str| value(b, name) - value(a, name);
        // Stream payload: the command byte and the bytes up, the checksum back.
        let up = (len + 1) as f64;
        assert_eq!(delta(&c0, &c1, "mtcp_session_sent_bytes_total"), up);
        assert_eq!(delta(&s0, &s1, "mtcp_session_received_bytes_total"), up);
        assert_eq!(delta(&s0, &s1, "mtcp_session_sent_bytes_total"), 32.0);
        assert_eq!(delta(&c0, &c1, "mtcp_session_received_bytes_total"), 32.0);
        assert_eq!(delta(&c0, &c1, "mtcp_session_streams_opened_total"), 1.0);
        assert_eq!(delta(&s0, &s1, "mtcp_session_streams_opened_total"), 1.0);
        assert_eq!(value(&c1, "mtcp_session_resent_bytes_total"), 0.0);
        // On the wire: every payload byte plus frame headers and control
        // frames, a little more than what was transferred.
        let wire = delta(&c0, &c1, "mtcp_link_sent_bytes_total");
        assert!(
            wire >= up && wire < up * 1.01 + 65536.0,
            "wire {wire} for {up}"
        );
        // Round robin spreads the frames over every link.
        let per_link_0 = by(&c0, "mtcp_link_sent_bytes_total", "slot");
        let per_link_1 = by(&c1, "mtcp_link_sent_bytes_total", "slot");
        assert_eq!(per_link_1.len(), pool, "{per_link_1:?}");
        for (slot, after) in &per_link_1 {
            let moved = after - per_link_0.get(slot).copied().unwrap_or(0.0);
            assert!(moved > up / (2 * pool) as f64, "slot {slot} moved {moved}");
        }
        // Per link, what the client wrote is what the server read (once
        // nothing is in flight: keepalive PINGs may be on the way).
        let matched = wait_until(Duration::from_secs(10), || {
            let c = by(
                &samples(client.local_addr()),
                "mtcp_link_sent_bytes_total",
                "slot",
            );
            let s = by(
                &samples(server.local_addr()),
                "mtcp_link_received_bytes_total",
                "slot",
            );
            c == s
        });
        assert!(matched, "links' bytes do not match between the two ends");
        let frames_c = by(&c1, "mtcp_link_sent_frames_total", "slot");
        assert!(frames_c.values().sum::<f64>() >= (len / 65536) as f64);
        assert_eq!(value(&c1, "mtcp_links"), pool as f64);
        assert_eq!(value(&s1, "mtcp_sessions"), 1.0);
    });
}

#[test]
fn a_killed_link_s_series_go_away_and_its_slot_reconnects() {
    within(Duration::from_secs(120), || {
        init_logging();
        let backend = Backend::start();
        let fast = "keepalive_interval_ms = 100\nkeepalive_timeout_ms = 1000";
        let server = start_server_toml(&server_toml(backend.addr, 2, fast));
        let proxy = FaultProxy::start(server.addr);
        let client = start_client_toml(&client_toml(
            proxy.addr,
            2,
            true,
            &format!("{fast}\nreconnect_min_ms = 20\nreconnect_max_ms = 200"),
        ));
        let up = |n| {
            wait_until(Duration::from_secs(10), || {
                client.monitor.snapshot().link_count() == n
                    && server.monitor.snapshot().link_count() == n
                    && proxy.open() == n
            })
        };
        assert!(up(2), "pool did not come up");
        let c_end = endpoint(client.monitor.clone(), Role::Client);
        let s_end = endpoint(server.monitor.clone(), Role::Server);
        let before = by(&samples(c_end.local_addr()), "mtcp_link_up", "link");
        assert_eq!(before.len(), 2, "{before:?}");
        // A download in flight, so the server holds unacknowledged bytes
        // when the link dies and must send them again.
        let app = std::thread::spawn({
            let addr = client.addr;
            move || {
                let mut sock = TcpStream::connect(addr).expect("connect");
                sock.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                sock.write_all(b"D").expect("cmd");
                sock.write_all(&(256 * MIB).to_be_bytes()).expect("len");
                sock.write_all(&9u64.to_be_bytes()).expect("seed");
                read_to_end_hash(&mut sock).expect("download")
            }
        });
        assert!(wait_until(Duration::from_secs(10), || {
            value(
                &samples(s_end.local_addr()),
                "mtcp_session_sent_bytes_total",
            ) > (16 * MIB) as f64
        }));
        assert!(proxy.cut_one(), "nothing to cut");
        // The dead link's id is gone from every series; its slot has a new link.
        let gone = wait_until(Duration::from_secs(10), || {
            let now = by(&samples(c_end.local_addr()), "mtcp_link_up", "link");
            now.len() == 2 && before.keys().filter(|id| now.contains_key(*id)).count() == 1
        });
        assert!(
            gone,
            "the killed link is still reported, or its slot did not come back"
        );
        let text = get(c_end.local_addr(), "/metrics");
        let dead: Vec<&String> = before
            .keys()
            .filter(|id| !text.contains(&format!("link=\"{id}\"")))
            .collect();
        assert_eq!(dead.len(), 1, "{text}");
        let after = samples(c_end.local_addr());
        let reconnects = by(&after, "mtcp_slot_reconnects_total", "slot");
        assert_eq!(reconnects.values().sum::<f64>(), 1.0, "{reconnects:?}");
        assert!(value(&after, "mtcp_links_closed_total") >= 1.0);
        let (n, hash) = app.join().expect("download thread");
        assert_eq!((n, hash), (256 * MIB, pattern_hash(9, 256 * MIB)));
        // The server re-sent what the dead link stranded, on the link that
        // survived; the links' shares add up to the session's.
        let s = samples(s_end.local_addr());
        let session = value(&s, "mtcp_session_resent_bytes_total");
        assert!(session > 0.0, "nothing re-sent");
        assert_eq!(value(&s, "mtcp_link_resent_bytes_total"), session);
    });
}

#[test]
fn hostile_input_on_the_metrics_port_leaves_the_daemon_serving() {
    within(Duration::from_secs(120), || {
        let t = tunnel(2);
        let end = endpoint(t.client.monitor.clone(), Role::Client);
        let addr = end.local_addr();
        let garbage = exchange(
            addr,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        );
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
        let mut line = b"GET /".to_vec();
        line.extend(std::iter::repeat_n(b'x', 4 * MAX_REQUEST));
        let huge = exchange(addr, &line);
        assert!(huge.starts_with("HTTP/1.1 431 "), "{huge}");
        let post = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        );
        assert!(
            post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET"),
            "{post}"
        );
        assert!(exchange(addr, b"GET /admin HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        // Many idle connections: they cost at most the connection cap in
        // threads, the tunnel keeps moving, and the endpoint answers again
        // once their deadline has passed.
        let idle: Vec<TcpStream> = (0..200)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let during = end.connections();
        assert!(
            during <= MAX_CONNECTIONS,
            "{during} connections served at once"
        );
        upload(&t.client, 3, 4 * MIB);
        download(&t.client, 4, 4 * MIB);
        std::thread::sleep(REQUEST_DEADLINE + Duration::from_secs(1));
        let body = get(addr, "/metrics");
        assert!(body.contains("mtcp_links 2"), "{body}");
        // The ones that got a slot were told they took too long.
        let told = idle
            .into_iter()
            .take(MAX_CONNECTIONS)
            .filter_map(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
                let mut answer = String::new();
                s.read_to_string(&mut answer).ok()?;
                Some(answer)
            })
            .filter(|a| a.starts_with("HTTP/1.1 408 "))
            .count();
        assert!(told > 0, "no idle connection got a 408");
        assert!(wait_until(Duration::from_secs(5), || end.connections() == 0));
    });
}

/// Says a test skipped a part on the real stderr, which the test harness
/// does not capture, so the line shows in every `cargo test` run.
fn skipped(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn promtool_accepts_the_exposition() {
    if !installed("promtool") {
        skipped(
            "SKIPPED promtool_accepts_the_exposition: promtool is not installed (Debian package `prometheus`)",
        );
        return;
    }
    within(Duration::from_secs(120), || {
        let t = tunnel(3);
        download(&t.client, 1, MIB);
        for (monitor, role) in [
            (t.client.monitor.clone(), Role::Client),
            (t.server.monitor.clone(), Role::Server),
        ] {
            let end = endpoint(monitor, role);
            let text = get(end.local_addr(), "/metrics");
            let mut check = Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("promtool");
            check
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write");
            let out = check.wait_with_output().expect("promtool output");
            assert!(
                out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
                "promtool on the {role} exposition: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}

/// A loopback port free now (for programs that must be told a port).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Kills a child process this test started, when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_both_daemons() {
    if !installed("prometheus") {
        skipped(
            "SKIPPED a_real_prometheus_scrapes_both_daemons: prometheus is not installed (Debian package `prometheus`)",
        );
        return;
    }
    within(Duration::from_secs(120), || {
        let t = tunnel(2);
        let client = endpoint(t.client.monitor.clone(), Role::Client);
        let server = endpoint(t.server.monitor.clone(), Role::Server);
        let dir = TempDir::new("prometheus");
        let config = dir.write(
            "prometheus.yml",
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
                 - job_name: mtcp\n    static_configs:\n      - targets: ['{}', '{}']\n",
                client.local_addr(),
                server.local_addr()
            ),
        );
        let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let log = std::fs::File::create(dir.0.join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let _reaped = Reaped(child);
        // Empty until Prometheus listens.
        let query = |q: &str| {
            let Ok(mut sock) = TcpStream::connect(web) else {
                return String::new();
            };
            let _ = sock.set_read_timeout(Some(IO_TIMEOUT));
            let request = format!(
                "GET /api/v1/query?query={q} HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\r\n"
            );
            let mut answer = String::new();
            let _ = sock.write_all(request.as_bytes());
            let _ = sock.read_to_string(&mut answer);
            answer
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default()
        };
        // count(up == 1) is 2 once both daemons were scraped successfully.
        let both_up = wait_until(Duration::from_secs(60), || {
            query("count(up%3D%3D1)").contains("\"2\"]")
        });
        let logged = std::fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default();
        assert!(
            both_up,
            "Prometheus did not see both daemons up: {}\n{logged}",
            query("up")
        );
        let links = query("sum(mtcp_links)");
        assert!(links.contains("\"4\"]"), "{links}");
    });
}

/// A daemon binary this test started, killed when dropped.
struct Daemon {
    child: Reaped,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(config: &std::path::Path, log: std::path::PathBuf) -> Daemon {
        let file = std::fs::File::create(&log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_mtcp"))
            .args(["run", "-c"])
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start mtcp");
        Daemon {
            child: Reaped(child),
            log,
        }
    }

    /// Waits for a log line containing `part` and returns it.
    fn wait_log(&self, part: &str) -> String {
        let mut found = String::new();
        let seen = wait_until(Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            match text.lines().rev().find(|l| l.contains(part)) {
                Some(l) => {
                    found = l.to_owned();
                    true
                }
                None => false,
            }
        });
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(seen, "no log line with {part:?}:\n{text}");
        found
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.0.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig}");
    }
}

/// The address in a "metrics endpoint on http://ADDR/metrics" log line.
fn logged_endpoint(line: &str) -> SocketAddr {
    let rest = line.split("http://").nth(1).unwrap_or("");
    rest.trim_end_matches("/metrics")
        .trim()
        .parse()
        .expect("logged address")
}

fn status(config: &std::path::Path, interval_ms: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mtcp"))
        .args(["status", "-i", interval_ms, "-c"])
        .arg(config)
        .output()
        .expect("mtcp status")
}

#[test]
fn the_binary_serves_its_config_s_endpoint_and_mtcp_status_reads_it() {
    within(Duration::from_secs(120), || {
        let dir = TempDir::new("status");
        let backend = Backend::start();
        let (server_port, c_metrics, s_metrics) = (free_port(), free_port(), free_port());
        let server_cfg = dir.write(
            "server.toml",
            &server_toml(
                backend.addr,
                2,
                &format!("metrics_listen = \"127.0.0.1:{s_metrics}\""),
            )
            .replace("listen_port = 0", &format!("listen_port = {server_port}")),
        );
        let server_addr: SocketAddr = format!("127.0.0.1:{server_port}").parse().expect("addr");
        let client_cfg = dir.write(
            "client.toml",
            &client_toml(
                server_addr,
                2,
                true,
                &format!("metrics_listen = \"0.0.0.0:{c_metrics}\""),
            ),
        );
        // `mtcp check` shows the key and refuses a bad one.
        let check = Command::new(env!("CARGO_BIN_EXE_mtcp"))
            .args(["check", "-c"])
            .arg(&client_cfg)
            .output()
            .expect("check");
        let shown = String::from_utf8_lossy(&check.stdout);
        assert!(
            shown.contains(&format!("metrics_listen = \"0.0.0.0:{c_metrics}\"")),
            "{shown}"
        );
        let bad = dir.write(
            "bad.toml",
            &client_toml(server_addr, 2, true, "metrics_listen = \"9464\""),
        );
        let out = Command::new(env!("CARGO_BIN_EXE_mtcp"))
            .args(["check", "-c"])
            .arg(&bad)
            .output()
            .expect("check");
        assert_eq!(out.status.code(), Some(78));
        assert!(String::from_utf8_lossy(&out.stderr).contains("client.metrics_listen"));
        // Nothing runs yet: status says so.
        let out = status(&client_cfg, "0");
        assert_eq!(out.status.code(), Some(69), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("no daemon answers"));
        // No key: status says what to set.
        let plain = dir.write("plain.toml", &client_toml(server_addr, 2, true, ""));
        let out = status(&plain, "0");
        assert_eq!(out.status.code(), Some(78), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("metrics_listen is not set"));

        let server = Daemon::start(&server_cfg, dir.0.join("server.log"));
        server.wait_log("metrics endpoint on");
        let client = Daemon::start(&client_cfg, dir.0.join("client.log"));
        let c_line = client.wait_log("metrics endpoint on");
        assert_eq!(logged_endpoint(&c_line).port(), c_metrics);
        client.wait_log("2 live");
        // A warning for the wildcard address.
        client.wait_log("not on loopback");
        let out = status(&client_cfg, "300");
        let table = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(table.contains("mtcp client"), "{table}");
        let rows = table
            .lines()
            .filter(|l| l.starts_with("  ") && l.contains(" up "))
            .filter(|l| l.contains(&server_addr.to_string()))
            .count();
        assert_eq!(rows, 2, "{table}");
        let out = status(&server_cfg, "0");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("mtcp server"));

        // SIGHUP without the key closes the endpoint; with it, it is back.
        let s_addr: SocketAddr = format!("127.0.0.1:{s_metrics}").parse().expect("addr");
        std::fs::write(
            &server_cfg,
            server_toml(backend.addr, 2, "")
                .replace("listen_port = 0", &format!("listen_port = {server_port}")),
        )
        .expect("rewrite");
        server.signal("HUP");
        server.wait_log("metrics endpoint closed");
        assert!(TcpStream::connect(s_addr).is_err());
        let moved = free_port();
        std::fs::write(
            &server_cfg,
            server_toml(
                backend.addr,
                2,
                &format!("metrics_listen = \"127.0.0.1:{moved}\""),
            )
            .replace("listen_port = 0", &format!("listen_port = {server_port}")),
        )
        .expect("rewrite");
        server.signal("HUP");
        server.wait_log(&format!("metrics endpoint on http://127.0.0.1:{moved}"));
        let moved: SocketAddr = format!("127.0.0.1:{moved}").parse().expect("addr");
        assert!(get(moved, "/metrics").contains("role=\"server\""));
        let index = get(moved, "/");
        assert!(index.contains("href=\"/metrics\""), "{index}");

        // A second daemon whose metrics port is taken does not start.
        let taken = dir.write(
            "taken.toml",
            &client_toml(
                server_addr,
                1,
                true,
                &format!("metrics_listen = \"127.0.0.1:{}\"", moved.port()),
            )
            .replace(
                "local_listen_port = 0",
                &format!("local_listen_port = {}", free_port()),
            ),
        );
        let out = Command::new(env!("CARGO_BIN_EXE_mtcp"))
            .args(["run", "-c"])
            .arg(&taken)
            .output()
            .expect("mtcp run");
        assert_eq!(out.status.code(), Some(71), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("metrics_listen"));
        drop(client);
        drop(server);
    });
}

#[test]
fn status_against_an_in_process_pair_shows_the_rates() {
    within(Duration::from_secs(120), || {
        let t = tunnel(2);
        let end = endpoint(t.client.monitor.clone(), Role::Client);
        let dir = TempDir::new("status-rates");
        let cfg = dir.write(
            "client.toml",
            &client_toml(
                t.server.addr,
                2,
                true,
                &format!("metrics_listen = \"{}\"", end.local_addr()),
            ),
        );
        // Keep bytes moving while status takes its two readings.
        let mover = std::thread::spawn({
            let addr = t.client.addr;
            move || {
                let until = Instant::now() + Duration::from_secs(3);
                while Instant::now() < until {
                    let mut app = TcpStream::connect(addr).expect("connect");
                    app.write_all(b"U").expect("cmd");
                    send_pattern(&mut app, 5, 8 * MIB).expect("upload");
                    app.shutdown(std::net::Shutdown::Write).expect("half-close");
                    let mut reply = [0u8; 32];
                    app.read_exact(&mut reply).expect("checksum");
                }
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let out = status(&cfg, "1000");
        mover.join().expect("mover");
        let table = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let rows: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with("  ") && l.contains(" up "))
            .collect();
        assert_eq!(rows.len(), 2, "{table}");
        for row in rows {
            assert!(row.contains("bit/s"), "no rate in {row:?}\n{table}");
            assert!(
                !row.contains(" 0.0 bit/s"),
                "a link moved nothing: {row:?}\n{table}"
            );
        }
    });
}

/// The PromQL expressions of the example Grafana dashboard.
fn dashboard_queries() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/grafana-dashboard.json");
    let text = std::fs::read_to_string(path).expect("etc/grafana-dashboard.json");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("\"expr\": \""))
        .map(|e| {
            e.trim_end_matches(',')
                .trim_end_matches('"')
                .replace("\\\"", "\"")
        })
        .collect()
}

#[test]
fn the_example_dashboard_and_scrape_snippet_match_the_exposition() {
    within(Duration::from_secs(120), || {
        let queries = dashboard_queries();
        assert!(queries.len() >= 10, "{queries:?}");
        // Every series the dashboard asks for is one the daemons export.
        let t = tunnel(2);
        download(&t.client, 2, MIB);
        let end = endpoint(t.client.monitor.clone(), Role::Client);
        // RTTs are reported once the first keepalive PING was answered.
        let mut text = String::new();
        let measured = wait_until(Duration::from_secs(10), || {
            text = get(end.local_addr(), "/metrics");
            text.contains("mtcp_link_rtt_seconds{")
        });
        assert!(measured, "no RTT measured: {text}");
        for q in &queries {
            let mut rest = q.as_str();
            while let Some(at) = rest.find("mtcp_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                assert!(
                    text.contains(&format!("# TYPE {name} ")),
                    "the dashboard queries {name}, which is not exported: {q}"
                );
                rest = &rest[at + name.len()..];
            }
        }
        if !installed("promtool") {
            skipped(
                "SKIPPED promtool checks of etc/: promtool is not installed (Debian package `prometheus`)",
            );
            return;
        }
        // And each is valid PromQL once Grafana's variables are filled in.
        let dir = TempDir::new("rules");
        let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
        for (i, q) in queries.iter().enumerate() {
            let q = q
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*");
            rules.push_str(&format!(
                "      - record: dashboard:q{i}\n        expr: '{q}'\n"
            ));
        }
        let file = dir.write("rules.yml", &rules);
        let etc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/prometheus.yml");
        for args in [
            vec!["check".into(), "rules".into(), file.display().to_string()],
            vec!["check".into(), "config".into(), etc.display().to_string()],
        ] {
            let out = Command::new("promtool")
                .args(&args)
                .output()
                .expect("promtool");
            assert!(
                out.status.success(),
                "promtool {args:?}: {}{}\n{rules}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}
