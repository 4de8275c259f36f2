//! The edges where a tunnel daemon meets the operating system and a dead
//! peer: a server process that died, a client out of file descriptors, an
//! on-demand pool that closes. The daemons under test are the real binary
//! (a descriptor limit and a kill -9 need a process of their own); the
//! backend is in this process.

mod common;

use common::process::Daemon;
use common::{Backend, TempDir, pattern_hash, read_to_end_hash};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

fn server_config(port: u16, backend: SocketAddr) -> String {
    format!(
        "mode = \"server\"\n[server]\nlisten_ip = \"127.0.0.1\"\nlisten_port = {port}\n\
         backend_ip = \"127.0.0.1\"\nbackend_port = {}\nconnection_pool_size = 4\n\
         buffer_size = 65536\nstats_interval_ms = 0\nlog_level = \"info\"\n",
        backend.port()
    )
}

fn client_config(server: SocketAddr, zero_rtt: bool, extra: &str) -> String {
    format!(
        "mode = \"client\"\n[client]\nlocal_listen_ip = \"127.0.0.1\"\nlocal_listen_port = 0\n\
         server_ip = \"127.0.0.1\"\nserver_port = {}\nconnection_pool_size = 4\n\
         buffer_size = 65536\nenable_zero_rtt = {zero_rtt}\nstats_interval_ms = 0\n{extra}\n",
        server.port()
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to client");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s
}

/// A download of `len` pattern bytes through the tunnel, checked.
fn download(client: SocketAddr, seed: u64, len: u64) -> io::Result<()> {
    let mut app = connect(client);
    app.write_all(b"D")?;
    app.write_all(&len.to_be_bytes())?;
    app.write_all(&seed.to_be_bytes())?;
    let (n, hash) = read_to_end_hash(&mut app)?;
    if n != len || hash != pattern_hash(seed, len) {
        return Err(io::Error::other(format!(
            "got {n} of {len} bytes, or others"
        )));
    }
    Ok(())
}

/// Reads until the stream fails or ends; the error (or `None` for a clean
/// end) and when it came.
fn read_until_broken(app: &mut TcpStream) -> (Option<io::Error>, Instant) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match app.read(&mut buf) {
            Ok(0) => return (None, Instant::now()),
            Ok(_) => {}
            Err(e) => return (Some(e), Instant::now()),
        }
    }
}

/// The server process is killed and does not come back: open application
/// connections are reset within 2 s (a refused connect means its sessions
/// are gone, no grace period can save them); when it is started again, new
/// connections work within 2 s.
#[test]
fn a_killed_server_resets_applications_at_once_and_a_restarted_one_serves() {
    let backend = Backend::start();
    let dir = TempDir::new("dead-server");
    let server_path = dir.write("server.toml", &server_config(0, backend.addr));
    let mut server = Daemon::start("server", &server_path, None);
    let server_addr = server.listening_addr();
    let client_path = dir.write("client.toml", &client_config(server_addr, true, ""));
    let client = Daemon::start("client", &client_path, None);
    let client_addr = client.listening_addr();
    client.wait_log(&["link", "up", "4 live"]);

    // An application in the middle of a long download.
    let mut app = connect(client_addr);
    app.write_all(b"D").unwrap();
    app.write_all(&(1u64 << 40).to_be_bytes()).unwrap();
    app.write_all(&7u64.to_be_bytes()).unwrap();
    let mut first = [0u8; 4096];
    app.read_exact(&mut first).expect("the download started");
    let reader = thread::spawn(move || read_until_broken(&mut app));

    let killed_at = Instant::now();
    server.kill();
    let (error, at) = reader.join().expect("reader");
    let error = error.expect("the application saw a clean end of a cut download");
    assert_eq!(
        error.kind(),
        io::ErrorKind::ConnectionReset,
        "expected a reset, got {error}"
    );
    let took = at.duration_since(killed_at);
    assert!(took < Duration::from_secs(2), "reset after {took:?}");
    client.wait_log(&["lost", "refused"]);

    // Started again on the same port, it serves new connections at once.
    let server_path = dir.write(
        "server2.toml",
        &server_config(server_addr.port(), backend.addr),
    );
    let _server = Daemon::start("server", &server_path, None);
    _server.listening_addr();
    let restarted = Instant::now();
    let mut served = false;
    while restarted.elapsed() < Duration::from_secs(2) && !served {
        served = download(client_addr, 9, 1 << 20).is_ok();
    }
    assert!(
        served,
        "no connection served within 2 s of the restart; client log:\n{}",
        client.log()
    );
}

/// A long download read by a thread of its own, which counts the bytes as
/// they come, so a test can see it move while something else happens.
struct LongTransfer {
    got: Arc<AtomicU64>,
    reader: thread::JoinHandle<io::Result<(u64, [u8; 32])>>,
}

impl LongTransfer {
    fn start(client: SocketAddr, seed: u64, len: u64) -> LongTransfer {
        let mut app = connect(client);
        app.write_all(b"D").unwrap();
        app.write_all(&len.to_be_bytes()).unwrap();
        app.write_all(&seed.to_be_bytes()).unwrap();
        let got = Arc::new(AtomicU64::new(0));
        let counter = got.clone();
        let reader = thread::spawn(move || {
            // Paced, so that it is still running when the storm comes.
            let mut paced = Pacer(app, counter);
            read_to_end_hash(&mut paced)
        });
        LongTransfer { got, reader }
    }

    fn bytes(&self) -> u64 {
        self.got.load(Ordering::SeqCst)
    }

    /// Waits for the end and checks every byte.
    fn finish(self, seed: u64, len: u64) {
        let (n, hash) = self.reader.join().expect("reader").expect("long transfer");
        assert_eq!(n, len, "long transfer length");
        assert_eq!(
            hash,
            pattern_hash(seed, len),
            "the long transfer was corrupted"
        );
    }
}

/// Reads at most 8 MiB/s and counts what it read.
struct Pacer(TcpStream, Arc<AtomicU64>);

impl Read for Pacer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let most = buf.len().min(64 * 1024);
        let n = self.0.read(&mut buf[..most])?;
        self.1.fetch_add(n as u64, Ordering::SeqCst);
        thread::sleep(Duration::from_micros(n as u64 / 8));
        Ok(n)
    }
}

/// `n` applications connect to the client and hold on (echo backend). Each
/// must be served (its echo comes back) or closed at once, never left
/// hanging; returns (served, closed) and the connections.
fn storm(client: SocketAddr, n: usize) -> (usize, usize, Vec<TcpStream>) {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = connect(client);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"E");
        held.push(s);
    }
    let (mut served, mut closed) = (0, 0);
    for s in &mut held {
        let _ = s.write_all(b"ping");
        let mut back = [0u8; 4];
        match s.read_exact(&mut back) {
            Ok(()) if &back == b"ping" => served += 1,
            Ok(()) => panic!("echo returned other bytes"),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "a connection hung: neither served nor closed ({served} served, {closed} closed)"
                )
            }
            Err(_) => closed += 1,
        }
    }
    (served, closed, held)
}

/// After a storm, a new transfer goes through intact (within 10 s).
fn transfer_after_storm(client: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if download(client, 5, 8 << 20).is_ok() {
            return true;
        }
    }
    false
}

/// A client limited to 300 descriptors, hit by 400 applications that hold
/// their connections: it stays up, logs a handful of lines, closes the
/// connections it cannot serve at once (none hangs), keeps an open transfer
/// moving, and serves a new transfer intact once the storm is over.
#[test]
fn a_client_out_of_descriptors_sheds_new_connections_and_keeps_serving() {
    let backend = Backend::start();
    let dir = TempDir::new("emfile");
    let server_path = dir.write("server.toml", &server_config(0, backend.addr));
    let server = Daemon::start("server", &server_path, None);
    let server_addr = server.listening_addr();
    let client_path = dir.write(
        "client.toml",
        &client_config(server_addr, true, "max_streams = 1000"),
    );
    let mut client = Daemon::start("client", &client_path, Some(300));
    let client_addr = client.listening_addr();
    client.wait_log(&["link", "up", "4 live"]);

    let len = 64u64 << 20;
    let long = LongTransfer::start(client_addr, 3, len);
    let before = long.bytes();
    let (served, closed, held) = storm(client_addr, 400);
    // One descriptor per connection: 300 descriptors serve well over 250
    // applications (three per connection, as once, served under 100).
    assert!(served >= 250, "only {served} of 400 served");
    assert!(closed > 0, "a 300-descriptor client served all 400");
    assert!(long.bytes() > before, "the open transfer stood still");
    assert!(client.is_running(), "the client died");
    let lines = client.count_log("out of file descriptors");
    assert!(
        (1..=3).contains(&lines),
        "{lines} lines about descriptors; log:\n{}",
        client.log()
    );
    long.finish(3, len);
    drop(held);
    assert!(
        transfer_after_storm(client_addr),
        "no transfer after the storm; log:\n{}",
        client.log()
    );
    assert!(client.is_running());
    drop(server);
}

/// A server limited to 300 descriptors, whose client opens 400 streams that
/// hold on: backend connects beyond the limit fail, those applications get
/// a reset at once (none hangs), the server logs a handful of lines, an
/// open transfer keeps moving, and a new one goes through afterwards.
#[test]
fn a_server_out_of_descriptors_resets_new_streams_and_keeps_serving() {
    let backend = Backend::start();
    let dir = TempDir::new("emfile-server");
    let server_path = dir.write(
        "server.toml",
        &format!("{}max_streams = 1000\n", server_config(0, backend.addr)),
    );
    let mut server = Daemon::start("server", &server_path, Some(300));
    let server_addr = server.listening_addr();
    let client_path = dir.write(
        "client.toml",
        &client_config(server_addr, true, "max_streams = 1000"),
    );
    let client = Daemon::start("client", &client_path, None);
    let client_addr = client.listening_addr();
    client.wait_log(&["link", "up", "4 live"]);

    let len = 64u64 << 20;
    let long = LongTransfer::start(client_addr, 4, len);
    let before = long.bytes();
    let (served, closed, held) = storm(client_addr, 400);
    assert!(served >= 250, "only {served} of 400 served");
    assert!(closed > 0, "a 300-descriptor server served all 400");
    assert!(long.bytes() > before, "the open transfer stood still");
    assert!(server.is_running(), "the server died");
    // A few lines of each kind per 10 s (`util::throttle::DEFAULT_BURST`),
    // then a count: never one per failed stream.
    let lines = server.count_log("backend connect failed");
    assert!(
        (1..=6).contains(&lines),
        "{lines} lines about backend connects; log:\n{}",
        server.log()
    );
    long.finish(4, len);
    drop(held);
    assert!(
        transfer_after_storm(client_addr),
        "no transfer after the storm; log:\n{}",
        server.log()
    );
}

/// With an on-demand pool, the pool closes when the last stream ends; that
/// stream finished cleanly, so nothing is reset and nothing warns.
#[test]
fn an_on_demand_pool_closing_after_a_clean_stream_warns_of_nothing() {
    let backend = Backend::start();
    let dir = TempDir::new("on-demand");
    let server_path = dir.write("server.toml", &server_config(0, backend.addr));
    let server = Daemon::start("server", &server_path, None);
    let server_addr = server.listening_addr();
    let client_path = dir.write("client.toml", &client_config(server_addr, false, ""));
    let mut client = Daemon::start("client", &client_path, None);
    let client_addr = client.listening_addr();
    let mut app = connect(client_addr);
    app.write_all(b"E").unwrap();
    app.write_all(b"hello").unwrap();
    app.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    app.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"hello");
    drop(app);
    client.wait_log(&["closing", "last stream ended"]);
    // A clean stop waits for every thread, the first link's watcher too.
    client.stop();
    assert_eq!(
        client.count_log("WARN"),
        0,
        "warnings after a clean stream:\n{}",
        client.log()
    );
}
