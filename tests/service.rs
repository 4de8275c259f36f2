//! The `mtcp` binary as systemd runs it: the test plays the service manager
//! (it owns the `NOTIFY_SOCKET` datagram socket and sends the signals) and
//! checks readiness, graceful stop during a transfer, SIGHUP reload, SIGUSR1
//! stats and watchdog pings.
//!
//! Every daemon is the real binary on 127.0.0.1 with ephemeral ports, every
//! wait is bounded, and a daemon still running when its test ends is killed.

mod common;

use common::process::Daemon;
use common::{HeldPort, Pattern, TempDir, output_within};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Longest any single wait in these tests may take.
const LIMIT: Duration = Duration::from_secs(20);

fn server_config(port: u16, backend: u16, extra: &str) -> String {
    format!(
        "mode = \"server\"\n\n[server]\nlisten_ip = \"127.0.0.1\"\nlisten_port = {port}\n\
         backend_ip = \"127.0.0.1\"\nbackend_port = {backend}\nconnection_pool_size = 4\n\
         buffer_size = 65536\nstats_interval_ms = 0\n{extra}"
    )
}

fn client_config(server_port: u16, extra: &str) -> String {
    format!(
        "mode = \"client\"\n\n[client]\nlocal_listen_ip = \"127.0.0.1\"\nlocal_listen_port = 0\n\
         server_ip = \"127.0.0.1\"\nserver_port = {server_port}\nconnection_pool_size = 2\n\
         buffer_size = 65536\nenable_zero_rtt = true\nstats_interval_ms = 0\n{extra}"
    )
}

/// The service manager's end of `NOTIFY_SOCKET`.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn new(dir: &TempDir, name: &str) -> NotifySocket {
        let path = dir.0.join(name);
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        NotifySocket { socket, path }
    }

    /// The next notification, or `None` after `limit`.
    fn recv(&self, limit: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .expect("set timeout");
        let mut buf = vec![0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// Notifications until one has `KEY=VALUE` line `line`; all of them, in
    /// order. Panics after [`LIMIT`].
    fn until(&self, line: &str) -> Vec<String> {
        let deadline = Instant::now() + LIMIT;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Some(m) = self.recv(deadline.saturating_duration_since(Instant::now())) {
                let done = m.lines().any(|l| l == line);
                seen.push(m);
                if done {
                    return seen;
                }
            }
        }
        panic!("no {line:?} within {LIMIT:?}; got {seen:?}");
    }
}

/// The value of `KEY=` in a notification.
fn field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// The address in `STATUS=listening on ADDR[; ...]`.
fn listening_addr(msg: &str) -> SocketAddr {
    let status = field(msg, "STATUS").unwrap_or_else(|| panic!("no STATUS in {msg:?}"));
    let rest = status
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected STATUS in {msg:?}"));
    let addr = rest.split(';').next().unwrap_or(rest);
    addr.parse()
        .unwrap_or_else(|e| panic!("bad address {addr:?}: {e}"))
}

/// The number after ` KEY=` in a `key=value` stats line.
fn number(line: &str, key: &str) -> Option<u64> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split(' ').next()?.parse().ok()
}

/// The real binary, as the service manager starts it: with `NOTIFY_SOCKET`
/// pointing at the test's socket when there is one.
fn daemon(args: &[&str], notify: Option<&NotifySocket>, env: &[(&str, &str)]) -> Daemon {
    let mut vars: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, OsStr::new(*v))).collect();
    if let Some(n) = notify {
        vars.push(("NOTIFY_SOCKET", n.path.as_os_str()));
    }
    Daemon::spawn(args, &vars, None)
}

/// A TCP echo backend: every connection gets back what it sends, then EOF.
fn echo_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut sock) = conn else { continue };
            thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(LIMIT));
                let mut reader = match sock.try_clone() {
                    Ok(r) => r,
                    Err(_) => return,
                };
                let _ = std::io::copy(&mut reader, &mut sock);
                let _ = sock.shutdown(Shutdown::Write);
            });
        }
    });
    port
}

/// Reads to EOF, checking each byte against the pattern; returns the count.
fn read_and_check(sock: &mut TcpStream, seed: u64) -> u64 {
    let mut expected = Pattern::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => n,
            Err(e) => panic!("read after {total} bytes: {e}"),
        };
        // Pattern chunks are 8 bytes: keep reads aligned by checking in
        // 8-byte units, carrying a partial tail over to the next read.
        let whole = n - n % 8;
        expected.fill(&mut want[..whole]);
        assert!(
            buf[..whole] == want[..whole],
            "corrupt data near byte {total}"
        );
        total += whole as u64;
        if whole < n {
            let tail = n - whole;
            let mut rest = [0u8; 8];
            rest[..tail].copy_from_slice(&buf[whole..n]);
            sock.read_exact(&mut rest[tail..])
                .unwrap_or_else(|e| panic!("read tail after {total} bytes: {e}"));
            let mut w = [0u8; 8];
            expected.fill(&mut w);
            assert_eq!(rest, w, "corrupt data near byte {total}");
            total += 8;
        }
    }
}

/// Starts a server (via `mtcp run`) and waits for its READY=1; returns the
/// daemon and the address it reported.
fn ready_server(
    dir: &TempDir,
    notify: &NotifySocket,
    port: u16,
    backend: u16,
) -> (Daemon, SocketAddr) {
    let cfg = dir.write("server.toml", &server_config(port, backend, ""));
    let d = daemon(&["run", "-c", path(&cfg)], Some(notify), &[]);
    let msgs = notify.until("READY=1");
    (d, listening_addr(msgs.last().expect("a message")))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

#[test]
fn server_is_ready_once_it_listens_and_says_stopping() {
    let dir = TempDir::new("ready");
    let notify = NotifySocket::new(&dir, "notify");
    let (mut server, addr) = ready_server(&dir, &notify, 0, 9);
    // READY=1 came with the address: it must accept at once.
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
    assert!(
        sock.is_ok(),
        "connect to {addr} right after READY=1: {sock:?}"
    );
    drop(sock);
    server.wait_log(&["starting as server"]);
    server.signal("TERM");
    let msgs = notify.until("STOPPING=1");
    let stopping = msgs.last().expect("a message");
    assert!(
        field(stopping, "EXTEND_TIMEOUT_USEC").is_some(),
        "{stopping:?}"
    );
    assert_eq!(server.wait_exit(), Some(0), "{}", server.log());
}

#[test]
fn zero_rtt_client_is_ready_only_once_a_link_is_up() {
    let dir = TempDir::new("client-ready");
    // Nothing listens on the server's port yet (it is held, so no other
    // test can take it before our server does): every link attempt fails.
    let server_port = HeldPort::new("127.0.0.1");
    let cfg = dir.write(
        "client.toml",
        &client_config(
            server_port.addr.port(),
            "connect_timeout_ms = 30000\nreconnect_min_ms = 20\nreconnect_max_ms = 100\n",
        ),
    );
    let notify = NotifySocket::new(&dir, "notify");
    let mut client = daemon(&["client", "-c", path(&cfg)], Some(&notify), &[]);
    // First word: listening, pool not up, and a longer start timeout asked.
    let first = notify.recv(LIMIT).expect("a first notification");
    assert!(!first.contains("READY=1"), "{first:?}");
    assert!(field(&first, "EXTEND_TIMEOUT_USEC").is_some(), "{first:?}");
    let app_addr = listening_addr(&first);
    // No READY while every link attempt fails.
    client.wait_log(&["cannot connect"]);
    let quiet_until = Instant::now() + Duration::from_millis(700);
    while let Some(m) = notify.recv(quiet_until.saturating_duration_since(Instant::now())) {
        assert!(!m.contains("READY=1"), "READY=1 before any link: {m:?}");
    }
    // The real server arrives on the same port: READY follows.
    let backend = echo_backend();
    let server_notify = NotifySocket::new(&dir, "server-notify");
    let (mut server, _) = ready_server(&dir, &server_notify, server_port.addr.port(), backend);
    let msgs = notify.until("READY=1");
    let ready = msgs.last().expect("a message");
    assert!(
        field(ready, "STATUS").is_some_and(|s| s.contains("pool up")),
        "{ready:?}"
    );
    // And it serves.
    let mut app = TcpStream::connect(app_addr).expect("connect to client");
    app.set_read_timeout(Some(LIMIT)).expect("timeout");
    app.write_all(b"ping through the pool").expect("write");
    app.shutdown(Shutdown::Write).expect("shutdown");
    let mut echoed = String::new();
    app.read_to_string(&mut echoed).expect("read echo");
    assert_eq!(echoed, "ping through the pool");
    // SIGUSR1: per-session and per-link counters in the log.
    client.signal("USR1");
    client.wait_log(&["stats total sessions=1"]);
    let session = client.wait_log(&["stats session=", "streams_opened=1"]);
    let link_count = number(&session, "links").expect("links=") as usize;
    assert!(link_count >= 1, "{session}");
    let link = client.wait_log(&["stats session=", " link=", "frames_out="]);
    assert!(link.contains("rtt_ms="), "{link}");
    // One line per link of the session; together they carried the stream
    // both ways.
    let link_lines = || client.log_lines(&["stats session=", " link="]);
    let deadline = Instant::now() + LIMIT;
    while link_lines().len() < link_count && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let links = link_lines();
    assert_eq!(links.len(), link_count, "{}", client.log());
    let sum = |key: &str| -> u64 { links.iter().filter_map(|l| number(l, key)).sum() };
    assert!(
        sum("bytes_out") >= "ping through the pool".len() as u64,
        "{links:?}"
    );
    assert!(sum("bytes_in") > 0 && sum("frames_in") > 0, "{links:?}");
    client.stop();
    server.stop();
}

/// A ready server in front of an echo backend and a ready client with a
/// long drain (60 s), both the real binary, for the shutdown tests.
struct DrainPair {
    server: Daemon,
    server_notify: NotifySocket,
    client: Daemon,
    notify: NotifySocket,
    app_addr: SocketAddr,
}

impl DrainPair {
    fn start(dir: &TempDir) -> DrainPair {
        let backend = echo_backend();
        let server_notify = NotifySocket::new(dir, "server-notify");
        let (server, server_addr) = ready_server(dir, &server_notify, 0, backend);
        let cfg = dir.write(
            "client.toml",
            &client_config(server_addr.port(), "drain_timeout_ms = 60000\n"),
        );
        let notify = NotifySocket::new(dir, "notify");
        let client = daemon(&["client", "-c", path(&cfg)], Some(&notify), &[]);
        let app_addr = listening_addr(notify.until("READY=1").last().expect("a message"));
        DrainPair {
            server,
            server_notify,
            client,
            notify,
            app_addr,
        }
    }
}

#[test]
fn sigterm_during_a_transfer_lets_it_finish_and_exits_zero() {
    const SEED: u64 = 42;
    const TOTAL: u64 = 48 * 1024 * 1024;
    const BEFORE_SIGNAL: u64 = 8 * 1024 * 1024;
    let dir = TempDir::new("drain");
    let pair = DrainPair::start(&dir);
    let (mut server, mut client) = (pair.server, pair.client);
    let (server_notify, notify) = (pair.server_notify, pair.notify);

    let mut app = TcpStream::connect(pair.app_addr).expect("connect to client");
    app.set_read_timeout(Some(LIMIT)).expect("timeout");
    app.set_write_timeout(Some(LIMIT)).expect("timeout");
    let mut reader = app.try_clone().expect("clone");
    let received = thread::spawn(move || read_and_check(&mut reader, SEED));
    let (halfway_tx, halfway_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let writer = thread::spawn(move || {
        let mut pattern = Pattern::new(SEED);
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < TOTAL {
            if sent == BEFORE_SIGNAL {
                let _ = halfway_tx.send(());
                let _ = go_rx.recv_timeout(LIMIT);
            }
            pattern.fill(&mut buf);
            app.write_all(&buf).expect("write to the tunnel");
            sent += buf.len() as u64;
        }
        app.shutdown(Shutdown::Write).expect("shutdown");
        sent
    });
    halfway_rx.recv_timeout(LIMIT).expect("first part written");
    let signalled = Instant::now();
    client.signal("TERM");
    server.signal("TERM");
    notify.until("STOPPING=1");
    server_notify.until("STOPPING=1");
    go_tx.send(()).expect("writer waiting");
    let sent = writer.join().expect("writer");
    let got = received.join().expect("reader");
    assert_eq!(sent, TOTAL);
    assert_eq!(got, TOTAL, "echoed bytes");
    assert_eq!(client.wait_exit(), Some(0), "{}", client.log());
    assert_eq!(server.wait_exit(), Some(0), "{}", server.log());
    // They left because the stream ended, not because the drain timed out.
    assert!(signalled.elapsed() < Duration::from_secs(50));
    assert!(
        client.log().contains("SIGTERM received"),
        "{}",
        client.log()
    );
    assert!(
        server.log().contains("SIGTERM received"),
        "{}",
        server.log()
    );
}

#[test]
fn a_second_sigterm_exits_at_once_and_resets_open_streams() {
    // An exit at once used to close the application's socket cleanly: a
    // transfer cut short reached it as a normal end.
    let dir = TempDir::new("second-term");
    let pair = DrainPair::start(&dir);
    let (mut server, mut client, notify) = (pair.server, pair.client, pair.notify);
    let mut app = TcpStream::connect(pair.app_addr).expect("connect to client");
    app.set_read_timeout(Some(LIMIT)).expect("timeout");
    app.write_all(&[7u8; 64 * 1024]).expect("write");
    let mut echoed = [0u8; 1024];
    app.read_exact(&mut echoed).expect("the stream is up");

    client.signal("TERM");
    notify.until("STOPPING=1");
    client.signal("TERM");
    assert_eq!(client.wait_exit(), Some(1), "{}", client.log());
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        match app.read(&mut buf) {
            Ok(0) => break None,
            Ok(_) => {}
            Err(e) => break Some(e.kind()),
        }
    };
    assert_eq!(
        end,
        Some(std::io::ErrorKind::ConnectionReset),
        "the application must see a reset, not a clean end; {}",
        client.log()
    );
    server.signal("TERM");
    assert_eq!(server.wait_exit(), Some(0), "{}", server.log());
}

#[test]
fn sighup_reloads_reports_and_never_exits() {
    let dir = TempDir::new("reload");
    let notify = NotifySocket::new(&dir, "notify");
    let (mut server, addr) = ready_server(&dir, &notify, 0, 9);
    let cfg = dir.0.join("server.toml");
    // SIGUSR1 logs a report even with the periodic one off.
    server.signal("USR1");
    server.wait_log(&["stats total sessions=0 links=0 streams_open=0"]);

    let text = server_config(addr.port(), 10, "log_level = \"debug\"\n")
        .replace("stats_interval_ms = 0", "stats_interval_ms = 200");
    std::fs::write(&cfg, text).expect("rewrite config");
    server.signal("HUP");
    server.wait_log(&["reload: backend_port changed from 9 to 10", "restart"]);
    server.wait_log(&["reload: log_level changed from \"info\" to \"debug\": applied"]);
    server.wait_log(&["reload: stats_interval_ms changed from 0 to 200: applied"]);
    server.wait_log(&["reload: listen_port changed from 0 to", "restart"]);
    // The new interval is in force: periodic reports appear.
    let deadline = Instant::now() + LIMIT;
    while server.count_log("stats total") < 3 {
        assert!(
            Instant::now() < deadline,
            "no periodic stats:\n{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    // The new level is in force: a connection that closes before its
    // handshake is logged at debug.
    drop(TcpStream::connect(addr).expect("connect"));
    server.wait_log(&["closed before its handshake"]);

    // A broken file is reported, and the running settings stay in force:
    // the debug level (another short connection is logged) and the 200 ms
    // stats interval (three more reports in a row), both of which the
    // broken file would undo (it sets neither).
    std::fs::write(&cfg, "mode = \"server\"\n[server]\nlisten_port = \"x\"\n").expect("write");
    server.signal("HUP");
    server.wait_log(&[
        "reload:",
        "server.toml",
        "keeping the running configuration",
    ]);
    let (debug_lines, reports) = (
        server.count_log("closed before its handshake"),
        server.count_log("stats total"),
    );
    drop(TcpStream::connect(addr).expect("connect"));
    let deadline = Instant::now() + LIMIT;
    while server.count_log("closed before its handshake") == debug_lines
        || server.count_log("stats total") < reports + 3
    {
        assert!(
            Instant::now() < deadline,
            "the broken file changed the running settings:\n{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    // A file for the other role is not applied either.
    std::fs::write(&cfg, client_config(1, "")).expect("write");
    server.signal("HUP");
    server.wait_log(&[
        "reload: mode changed from \"server\" to \"client\"",
        "restart",
    ]);
    // A missing file too.
    std::fs::remove_file(&cfg).expect("remove");
    server.signal("HUP");
    server.wait_log(&[
        "reload:",
        "cannot read",
        "keeping the running configuration",
    ]);
    assert!(server.is_running(), "{}", server.log());
    assert!(TcpStream::connect(addr).is_ok(), "still accepting");
    server.stop();
}

#[test]
fn watchdog_pings_at_half_the_interval() {
    const USEC: u64 = 400_000;
    let dir = TempDir::new("watchdog");
    let notify = NotifySocket::new(&dir, "notify");
    let cfg = dir.write("server.toml", &server_config(0, 9, ""));
    let mut server = daemon(
        &["server", "-c", path(&cfg)],
        Some(&notify),
        &[("WATCHDOG_USEC", &USEC.to_string())],
    );
    notify.until("READY=1");
    notify.until("WATCHDOG=1");
    let mut last = Instant::now();
    let mut gaps = Vec::new();
    for _ in 0..8 {
        notify.until("WATCHDOG=1");
        gaps.push(last.elapsed().as_millis() as u64);
        last = Instant::now();
    }
    // Half of WATCHDOG_USEC is 200 ms. A sleep only ever oversleeps, so the
    // median gap must sit between 0.4 and 0.9 of WATCHDOG_USEC: pinging at
    // the full interval (or slower) would let systemd's watchdog fire, and
    // much faster is not what was asked.
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    let usec_ms = USEC / 1000;
    assert!(
        (usec_ms * 4 / 10..=usec_ms * 9 / 10).contains(&median),
        "median gap {median} ms between pings, WATCHDOG_USEC {usec_ms} ms: {gaps:?}"
    );
    server.wait_log(&["watchdog on: pinging every 200 ms"]);
    server.stop();
}

#[test]
fn without_notify_socket_nothing_changes() {
    let dir = TempDir::new("plain");
    let cfg = dir.write("server.toml", &server_config(0, 9, ""));
    let mut server = daemon(&["server", "-c", path(&cfg)], None, &[]);
    server.wait_log(&["server listening on 127.0.0.1:"]);
    server.signal("HUP");
    server.wait_log(&["reload:", "no setting changed"]);
    server.stop();
    assert_eq!(server.count_log("stopped"), 1, "{}", server.log());
}

#[test]
fn secret_from_the_credentials_directory_as_under_load_credential() {
    // What LoadCredential=mtcp.secret:/etc/mtcp/mtcp.secret gives the
    // service: the secret in $CREDENTIALS_DIRECTORY, not next to the config.
    let dir = TempDir::new("creds");
    let creds = dir.0.join("credentials");
    std::fs::create_dir_all(&creds).expect("mkdir");
    let secret = creds.join("mtcp.secret");
    std::fs::write(&secret, "c2VydmljZS10ZXN0LXNlY3JldC0wMTIzNDU2Nzg5\n").expect("write");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let env = [("CREDENTIALS_DIRECTORY", path(&creds))];
    let with_secret = "secret_file = \"mtcp.secret\"\n";

    let backend = echo_backend();
    let server_cfg = dir.write("server.toml", &server_config(0, backend, with_secret));
    // `mtcp check` finds the secret in $CREDENTIALS_DIRECTORY too.
    let check = output_within(
        Command::new(env!("CARGO_BIN_EXE_mtcp"))
            .args(["check", "--quiet", "-c", path(&server_cfg)])
            .env("CREDENTIALS_DIRECTORY", &creds),
        LIMIT,
    );
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    assert!(check.stdout.is_empty(), "{check:?}");

    let server_notify = NotifySocket::new(&dir, "server-notify");
    let mut server = daemon(
        &["run", "-c", path(&server_cfg)],
        Some(&server_notify),
        &env,
    );
    let server_addr = listening_addr(server_notify.until("READY=1").last().expect("msg"));
    let client_cfg = dir.write(
        "client.toml",
        &client_config(server_addr.port(), with_secret),
    );
    let notify = NotifySocket::new(&dir, "notify");
    let mut client = daemon(&["run", "-c", path(&client_cfg)], Some(&notify), &env);
    let msgs = notify.until("READY=1");
    let ready = msgs.last().expect("a message");
    assert!(
        field(ready, "STATUS").is_some_and(|s| s.contains("pool up")),
        "{ready:?}\n{}",
        client.log()
    );
    let mut app = TcpStream::connect(listening_addr(ready)).expect("connect");
    app.set_read_timeout(Some(LIMIT)).expect("timeout");
    app.write_all(b"sealed").expect("write");
    app.shutdown(Shutdown::Write).expect("shutdown");
    let mut echoed = String::new();
    app.read_to_string(&mut echoed).expect("read echo");
    assert_eq!(echoed, "sealed");
    client.stop();
    server.stop();
}

#[test]
fn check_quiet_and_journal_priority_of_fatal_errors() {
    let dir = TempDir::new("quiet");
    let good = dir.write("good.toml", &server_config(0, 9, ""));
    let bad = dir.write("bad.toml", "mode = \"server\"\n[server]\n");
    let run = |args: &[&str], journal: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mtcp"));
        cmd.args(args)
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM");
        if journal {
            cmd.env("JOURNAL_STREAM", "8:12345");
        }
        output_within(&mut cmd, LIMIT)
    };
    let out = run(&["check", "-q", "-c", path(&good)], false);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let out = run(&["check", "--quiet", "-c", path(&bad)], false);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("mtcp: "),
        "{out:?}"
    );
    // Under journald the reason for exiting carries the `err` priority.
    let out = run(&["run", "-c", path(&bad)], true);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("<3>mtcp: "), "{stderr}");
    assert!(stderr.contains("missing key"), "{stderr}");
}

#[test]
fn a_zero_rtt_client_whose_server_is_unreachable_is_ready_after_connect_timeout() {
    const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
    let dir = TempDir::new("client-unreachable");
    let server_port = HeldPort::new("127.0.0.1");
    let cfg = dir.write(
        "client.toml",
        &client_config(
            server_port.addr.port(),
            &format!(
                "connect_timeout_ms = {}\nreconnect_min_ms = 20\nreconnect_max_ms = 100\n",
                CONNECT_TIMEOUT.as_millis()
            ),
        ),
    );
    let notify = NotifySocket::new(&dir, "notify");
    let started = Instant::now();
    let mut client = daemon(&["client", "-c", path(&cfg)], Some(&notify), &[]);
    let msgs = notify.until("READY=1");
    let took = started.elapsed();
    let ready = msgs.last().expect("a message");
    // Units ordered after it must not hang on a server that is down: READY
    // comes once the connect timeout ran out, and says why.
    assert!(
        field(ready, "STATUS").is_some_and(|s| s.contains("no link to the server yet")),
        "{ready:?}"
    );
    assert!(
        took >= CONNECT_TIMEOUT,
        "READY=1 after {took:?}, before the connect timeout"
    );
    assert!(
        took < CONNECT_TIMEOUT + Duration::from_secs(10),
        "READY=1 only after {took:?}"
    );
    assert!(
        msgs[..msgs.len() - 1]
            .iter()
            .all(|m| !m.contains("READY=1")),
        "{msgs:?}"
    );
    client.wait_log(&["no link to the server within 1000 ms"]);
    client.stop();
}

#[test]
fn rust_log_overrides_log_level_and_its_reload() {
    let dir = TempDir::new("rust-log");
    let cfg = dir.write(
        "server.toml",
        &server_config(0, 9, "log_level = \"error\"\n"),
    );
    // RUST_LOG=debug wins over log_level = "error": info and debug lines
    // appear, and a reload cannot take the level back.
    let notify = NotifySocket::new(&dir, "notify");
    let mut loud = daemon(
        &["server", "-c", path(&cfg)],
        Some(&notify),
        &[("RUST_LOG", "debug")],
    );
    let addr = listening_addr(notify.until("READY=1").last().expect("a message"));
    loud.wait_log(&["server listening on"]);
    drop(TcpStream::connect(addr).expect("connect"));
    loud.wait_log(&["closed before its handshake"]);
    std::fs::write(
        &cfg,
        server_config(addr.port(), 9, "log_level = \"warn\"\n"),
    )
    .expect("rewrite config");
    loud.signal("HUP");
    loud.wait_log(&["log_level not applied: RUST_LOG is set"]);
    loud.stop();

    // Without RUST_LOG the file's level holds: nothing below error.
    let cfg = dir.write(
        "quiet.toml",
        &server_config(0, 9, "log_level = \"error\"\n"),
    );
    let notify = NotifySocket::new(&dir, "quiet-notify");
    let mut quiet = daemon(&["server", "-c", path(&cfg)], Some(&notify), &[]);
    let addr = listening_addr(notify.until("READY=1").last().expect("a message"));
    drop(TcpStream::connect(addr).expect("connect"));
    quiet.stop();
    assert_eq!(
        quiet.log(),
        "",
        "log_level = \"error\" let lower levels through"
    );
}
