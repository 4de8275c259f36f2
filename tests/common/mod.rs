//! Test harness: a real backend, a real server and a real client on
//! 127.0.0.1 with ephemeral ports, in this process, plus helpers that bound
//! every wait in time.
#![allow(dead_code)]

pub mod process;

use mtcp::client::Client;
use mtcp::config::{self, Config};
use mtcp::server::Server;
use mtcp::util::shutdown::Shutdown;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::net::{Shutdown as Direction, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest any single socket operation in a test may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The test logger of [`init_logging`].
static LOGGER: OnceLock<Capture> = OnceLock::new();

/// Installs the test logger: what `RUST_LOG` asks for is printed (through
/// the test harness's capture), and every line at `info` or above is also
/// kept, so a test can check why the daemons did something (a refused link,
/// a start-up warning) and not only that they did.
pub fn init_logging() {
    let mut first = false;
    let logger = LOGGER.get_or_init(|| {
        first = true;
        Capture {
            print: env_logger::Builder::from_default_env()
                .is_test(true)
                .build(),
            lines: Mutex::new(Vec::new()),
        }
    });
    if first && log::set_logger(logger).is_ok() {
        log::set_max_level(logger.print.filter().max(log::LevelFilter::Info));
    }
}

struct Capture {
    print: env_logger::Logger,
    lines: Mutex<Vec<String>>,
}

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info || self.print.enabled(m)
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.level() <= log::Level::Info {
            let line = format!("{} {}", record.level(), record.args());
            self.lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(line);
        }
        if self.print.matches(record) {
            self.print.log(record);
        }
    }

    fn flush(&self) {
        self.print.flush();
    }
}

/// The log lines (level first; `info` and above) of every daemon in this
/// test process so far that contain each of `parts`. Tests run in parallel,
/// so `parts` should include something only this test has (an address, a
/// session id).
pub fn log_lines(parts: &[&str]) -> Vec<String> {
    let Some(logger) = LOGGER.get() else {
        return Vec::new();
    };
    logger
        .lines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .cloned()
        .collect()
}

/// Waits up to `limit` for a log line with each of `parts` (see
/// [`log_lines`]); returns it.
pub fn wait_log(limit: Duration, parts: &[&str]) -> Option<String> {
    let mut found = None;
    wait_until(limit, || {
        found = log_lines(parts).into_iter().next();
        found.is_some()
    });
    found
}

/// Reports a test that cannot run here. libtest has no "skipped" outcome,
/// so the line goes straight to the terminal (past the output capture,
/// which would hide it in a passing test), and with `MTCP_TEST_NO_SKIP` set
/// (CI on a machine known to support everything) the test fails instead.
pub fn skip(test: &str, reason: &str) {
    assert!(
        std::env::var_os("MTCP_TEST_NO_SKIP").is_none(),
        "{test} cannot run here ({reason}) and MTCP_TEST_NO_SKIP is set"
    );
    let _ = writeln!(io::stderr(), "SKIPPED: {test}: {reason}");
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("worker ended without a result"),
        },
        Err(_) => panic!("test step did not finish within {limit:?}"),
    }
}

/// Polls `cond` until true or `limit` passes; returns the final value.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), so both ends of a test
/// can produce or check the same stream without holding it in memory.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Pattern(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Sends `len` pattern bytes into `w`, returning their sha256.
pub fn send_pattern(w: &mut impl Write, seed: u64, len: u64) -> io::Result<[u8; 32]> {
    let mut p = Pattern::new(seed);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        p.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        w.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(h.finalize().into())
}

/// Reads until EOF, returning (byte count, sha256).
pub fn read_to_end_hash(r: &mut impl Read) -> io::Result<(u64, [u8; 32])> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok((total, h.finalize().into()));
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
}

/// sha256 of `len` pattern bytes with `seed`.
pub fn pattern_hash(seed: u64, len: u64) -> [u8; 32] {
    send_pattern(&mut io::sink(), seed, len).expect("sink never fails")
}

/// The test backend. Each connection starts with a one-byte command:
/// - `U`: read to EOF, reply with the 32-byte sha256 of what came, close.
/// - `D` + u64 len + u64 seed: send `len` pattern bytes, close.
/// - `E`: echo everything; on EOF shut down the write side. How the
///   connection ended (EOF or an error such as a reset) goes to `echo_ends`.
/// - `R` + u64 len + u64 seed: read to EOF, reply sha256 then `len` pattern bytes (half-close test).
/// - `X`: read the command, then reset the connection (SO_LINGER 0).
/// - `S`: never read anything; send forever (stalled-reader test).
/// - `W` + u64 len + u64 seed: send `len` pattern bytes, shut down the write
///   side first, then read to EOF and record the sha256 in `received`.
pub struct Backend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    /// Connections whose handler has not returned yet.
    pub open: Arc<AtomicUsize>,
    /// Checksums recorded by `W` connections.
    pub received: Arc<std::sync::Mutex<Vec<[u8; 32]>>>,
    /// How each `E` connection's input ended: `None` for a clean end of
    /// stream, else the error's kind (a reset is `ConnectionReset`).
    pub echo_ends: Arc<std::sync::Mutex<Vec<Option<io::ErrorKind>>>>,
}

impl Backend {
    pub fn start() -> Backend {
        Backend::start_on("127.0.0.1")
    }

    /// A backend listening on `ip` (e.g. `::1`).
    pub fn start_on(ip: &str) -> Backend {
        let listener = TcpListener::bind((ip, 0)).expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let received: Arc<std::sync::Mutex<Vec<[u8; 32]>>> = Arc::default();
        let echo_ends: Arc<std::sync::Mutex<Vec<Option<io::ErrorKind>>>> = Arc::default();
        let (count, live, got, ends) = (
            accepted.clone(),
            open.clone(),
            received.clone(),
            echo_ends.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(sock) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                live.fetch_add(1, Ordering::SeqCst);
                let (live, got, ends) = (live.clone(), got.clone(), ends.clone());
                std::thread::spawn(move || {
                    let _ = serve(sock, &got, &ends);
                    live.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Backend {
            addr,
            accepted,
            open,
            received,
            echo_ends,
        }
    }
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn serve(
    mut sock: TcpStream,
    received: &std::sync::Mutex<Vec<[u8; 32]>>,
    echo_ends: &std::sync::Mutex<Vec<Option<io::ErrorKind>>>,
) -> io::Result<()> {
    sock.set_read_timeout(Some(IO_TIMEOUT))?;
    sock.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut cmd = [0u8; 1];
    sock.read_exact(&mut cmd)?;
    match cmd[0] {
        b'U' => {
            let (_, hash) = read_to_end_hash(&mut sock)?;
            sock.write_all(&hash)?;
        }
        b'D' => {
            let len = read_u64(&mut sock)?;
            let seed = read_u64(&mut sock)?;
            send_pattern(&mut sock, seed, len)?;
        }
        b'E' => {
            let mut reader = sock.try_clone()?;
            let copied = io::copy(&mut reader, &mut sock);
            echo_ends
                .lock()
                .expect("backend lock")
                .push(copied.as_ref().err().map(io::Error::kind));
            copied?;
            sock.shutdown(Direction::Write)?;
            // Keep the socket until the peer closes, like a real server.
            let _ = reader.read(&mut [0u8; 1]);
            return Ok(());
        }
        b'R' => {
            let len = read_u64(&mut sock)?;
            let seed = read_u64(&mut sock)?;
            let (_, hash) = read_to_end_hash(&mut sock)?;
            sock.write_all(&hash)?;
            send_pattern(&mut sock, seed, len)?;
        }
        b'W' => {
            let len = read_u64(&mut sock)?;
            let seed = read_u64(&mut sock)?;
            send_pattern(&mut sock, seed, len)?;
            sock.shutdown(Direction::Write)?;
            let (_, hash) = read_to_end_hash(&mut sock)?;
            received.lock().expect("backend lock").push(hash);
            return Ok(());
        }
        b'X' => {
            socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO))?;
            return Ok(());
        }
        b'B' => {
            // A burst, then a reset (SO_LINGER 0), as a crashing server does.
            let len = read_u64(&mut sock)?;
            let seed = read_u64(&mut sock)?;
            send_pattern(&mut sock, seed, len)?;
            socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO))?;
            return Ok(());
        }
        b'S' => {
            sock.set_write_timeout(Some(Duration::from_secs(120)))?;
            let buf = vec![0x5a; 64 * 1024];
            loop {
                sock.write_all(&buf)?;
            }
        }
        _ => {}
    }
    sock.shutdown(Direction::Write)?;
    Ok(())
}

/// What `stop()` does with the end of a daemon's `run()`.
fn finish_run(who: &str, ended: std::thread::Result<io::Result<()>>) {
    if std::thread::panicking() {
        return;
    }
    match ended {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("the {who}'s run() failed: {e}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A running server daemon (in this process).
pub struct ServerHandle {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub threads: mtcp::util::thread::ThreadCount,
    pub monitor: mtcp::rt::monitor::Monitor,
    join: Option<JoinHandle<io::Result<()>>>,
}

impl ServerHandle {
    /// Shuts the daemon down and waits for `run()` to return; fails the
    /// test if `run()` returned an error or its thread panicked (unless the
    /// test is already failing: a second panic would abort the process).
    pub fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(j) = self.join.take() {
            finish_run("server", j.join());
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running client daemon (in this process).
pub struct ClientHandle {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub threads: mtcp::util::thread::ThreadCount,
    pub monitor: mtcp::rt::monitor::Monitor,
    join: Option<JoinHandle<io::Result<()>>>,
}

impl ClientHandle {
    /// Shuts the daemon down and waits for `run()` to return; fails the
    /// test if `run()` returned an error or its thread panicked (unless the
    /// test is already failing: a second panic would abort the process).
    pub fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(j) = self.join.take() {
            finish_run("client", j.join());
        }
    }

    /// Connects an application socket with test timeouts.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to client");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Server config text for `backend`, with `extra` keys appended to `[server]`.
pub fn server_toml(backend: SocketAddr, pool: usize, extra: &str) -> String {
    format!(
        "mode = \"server\"\n[server]\nlisten_ip = \"127.0.0.1\"\nlisten_port = 0\n\
         backend_ip = \"{}\"\nbackend_port = {}\nconnection_pool_size = {pool}\n\
         buffer_size = 65536\n{extra}\n",
        backend.ip(),
        backend.port()
    )
}

/// Client config text for `server`, with `extra` keys appended to `[client]`.
pub fn client_toml(server: SocketAddr, pool: usize, zero_rtt: bool, extra: &str) -> String {
    format!(
        "mode = \"client\"\n[client]\nlocal_listen_ip = \"127.0.0.1\"\nlocal_listen_port = 0\n\
         server_ip = \"{}\"\nserver_port = {}\nconnection_pool_size = {pool}\n\
         buffer_size = 65536\nenable_zero_rtt = {zero_rtt}\n{extra}\n",
        server.ip(),
        server.port()
    )
}

pub fn start_server_toml(text: &str) -> ServerHandle {
    init_logging();
    let Config::Server(cfg) =
        config::parse(text, Path::new("test-server.toml")).expect("server config")
    else {
        panic!("not a server config");
    };
    let server = Server::bind(cfg).expect("bind server");
    let addr = server.local_addr().expect("server addr");
    let threads = server.thread_count();
    let monitor = server.monitor();
    let shutdown = Shutdown::new();
    let sd = shutdown.clone();
    let join = std::thread::spawn(move || server.run(sd));
    ServerHandle {
        addr,
        shutdown,
        threads,
        monitor,
        join: Some(join),
    }
}

pub fn start_client_toml(text: &str) -> ClientHandle {
    init_logging();
    let Config::Client(cfg) =
        config::parse(text, Path::new("test-client.toml")).expect("client config")
    else {
        panic!("not a client config");
    };
    let client = Client::bind(cfg).expect("bind client");
    let addr = client.local_addr().expect("client addr");
    let threads = client.thread_count();
    let monitor = client.monitor();
    let shutdown = Shutdown::new();
    let sd = shutdown.clone();
    let join = std::thread::spawn(move || client.run(sd));
    ClientHandle {
        addr,
        shutdown,
        threads,
        monitor,
        join: Some(join),
    }
}

/// Backend, server and client wired together.
pub struct Tunnel {
    pub backend: Backend,
    pub server: ServerHandle,
    pub client: ClientHandle,
}

impl Tunnel {
    pub fn start(pool: usize, zero_rtt: bool) -> Tunnel {
        Tunnel::start_with(pool, zero_rtt, "", "")
    }

    pub fn start_with(
        pool: usize,
        zero_rtt: bool,
        server_extra: &str,
        client_extra: &str,
    ) -> Tunnel {
        init_logging();
        let backend = Backend::start();
        let server = start_server_toml(&server_toml(backend.addr, pool, server_extra));
        let client = start_client_toml(&client_toml(server.addr, pool, zero_rtt, client_extra));
        Tunnel {
            backend,
            server,
            client,
        }
    }
}

/// A TCP relay between the client and the server that counts connections and
/// can cut them, for observing and breaking links from outside the daemons.
pub struct Proxy {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    pub open: Arc<AtomicUsize>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (acc, op) = (accepted.clone(), open.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(inbound) = conn else { continue };
                acc.fetch_add(1, Ordering::SeqCst);
                let Ok(outbound) = TcpStream::connect(target) else {
                    continue;
                };
                op.fetch_add(1, Ordering::SeqCst);
                let op = op.clone();
                std::thread::spawn(move || {
                    relay(inbound, outbound);
                    op.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Proxy {
            addr,
            accepted,
            open,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Copies both ways between `a` and `b` until both directions end.
pub fn relay(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let t = std::thread::spawn(move || pipe(a2, b2));
    pipe(b, a);
    let _ = t.join();
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Direction::Write);
    let _ = from.shutdown(Direction::Read);
}

/// Resident memory of this process in KiB, from /proc.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Uploads `len` pattern bytes through the tunnel (`U` command), half-closes,
/// and checks the backend's checksum of what it received.
pub fn upload(client: &ClientHandle, seed: u64, len: u64) {
    let mut app = client.connect();
    app.write_all(b"U").expect("send command");
    let sent = send_pattern(&mut app, seed, len).expect("upload");
    app.shutdown(Direction::Write).expect("half-close");
    let mut reply = [0u8; 32];
    app.read_exact(&mut reply).expect("read checksum");
    assert_eq!(reply, sent, "backend received different bytes");
    assert_eq!(
        app.read(&mut [0u8; 1]).expect("read EOF"),
        0,
        "expected EOF after reply"
    );
}

/// Downloads `len` pattern bytes through the tunnel (`D` command) and checks
/// their checksum.
pub fn download(client: &ClientHandle, seed: u64, len: u64) {
    let mut app = client.connect();
    app.write_all(b"D").expect("send command");
    app.write_all(&len.to_be_bytes()).expect("send length");
    app.write_all(&seed.to_be_bytes()).expect("send seed");
    let (n, hash) = read_to_end_hash(&mut app).expect("download");
    assert_eq!(n, len, "download length");
    assert_eq!(
        hash,
        pattern_hash(seed, len),
        "application received different bytes"
    );
}

/// One relayed connection of a [`FaultProxy`].
struct Relayed {
    inbound: TcpStream,
    outbound: TcpStream,
    blackholed: std::sync::atomic::AtomicBool,
    /// Bytes per second each direction may carry; 0 = no limit.
    rate: std::sync::atomic::AtomicU64,
    /// What passed, both directions, up to `TAP_LIMIT` each.
    tap: Arc<Tap>,
}

/// Bytes a relayed connection carried: `[client→server, server→client]`.
#[derive(Default)]
struct Tap {
    seen: [std::sync::Mutex<Vec<u8>>; 2],
    /// Every byte relayed, beyond `TAP_LIMIT` too.
    count: [AtomicU64; 2],
}

/// Bytes per direction and connection a [`FaultProxy`] records.
const TAP_LIMIT: usize = 8 * 1024 * 1024;

/// A relay between client and server that injects faults from outside the
/// daemons: cut links with a TCP reset, blackhole them (bytes vanish, no FIN
/// or RST), swallow new connections (an outage: they are never answered,
/// as when the network is down — not refused, which means the server process
/// is gone), or point at another server.
pub struct FaultProxy {
    pub addr: SocketAddr,
    conns: Arc<std::sync::Mutex<Vec<Arc<Relayed>>>>,
    refusing: Arc<std::sync::atomic::AtomicBool>,
    /// Connections taken during an outage, held unanswered until it ends.
    held: Arc<std::sync::Mutex<Vec<TcpStream>>>,
    target: Arc<std::sync::Mutex<SocketAddr>>,
    pub accepted: Arc<AtomicUsize>,
    /// The taps of every connection ever relayed (not the sockets, which
    /// close with their connection), for inspection after it closed.
    history: Arc<std::sync::Mutex<Vec<Arc<Tap>>>>,
}

impl FaultProxy {
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let proxy = FaultProxy {
            addr,
            conns: Arc::default(),
            refusing: Arc::default(),
            held: Arc::default(),
            target: Arc::new(std::sync::Mutex::new(target)),
            accepted: Arc::default(),
            history: Arc::default(),
        };
        let (conns, refusing, held, target, accepted, history) = (
            proxy.conns.clone(),
            proxy.refusing.clone(),
            proxy.held.clone(),
            proxy.target.clone(),
            proxy.accepted.clone(),
            proxy.history.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(inbound) = conn else { continue };
                if refusing.load(Ordering::SeqCst) {
                    held.lock().unwrap().push(inbound);
                    continue;
                }
                let to = *target.lock().unwrap();
                let Ok(outbound) = TcpStream::connect(to) else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let r = Arc::new(Relayed {
                    inbound,
                    outbound,
                    blackholed: Default::default(),
                    rate: Default::default(),
                    tap: Arc::default(),
                });
                conns.lock().unwrap().push(r.clone());
                history.lock().unwrap().push(r.tap.clone());
                let conns = conns.clone();
                std::thread::spawn(move || {
                    let (r1, r2) = (r.clone(), r.clone());
                    let t =
                        std::thread::spawn(move || fault_pipe(&r1, 0, &r1.inbound, &r1.outbound));
                    fault_pipe(&r2, 1, &r2.outbound, &r2.inbound);
                    let _ = t.join();
                    conns.lock().unwrap().retain(|c| !Arc::ptr_eq(c, &r));
                });
            }
        });
        proxy
    }

    /// Links relayed now.
    pub fn open(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// Resets one relayed link (both sides see a TCP reset).
    pub fn cut_one(&self) -> bool {
        let c = self.conns.lock().unwrap().first().cloned();
        c.map(|c| cut(&c)).is_some()
    }

    /// Resets every relayed link.
    pub fn cut_all(&self) -> usize {
        let all: Vec<_> = self.conns.lock().unwrap().clone();
        all.iter().for_each(|c| cut(c));
        all.len()
    }

    /// Makes one link swallow every byte in both directions without closing.
    pub fn blackhole_one(&self) -> bool {
        let c = self.conns.lock().unwrap().first().cloned();
        c.map(|c| c.blackholed.store(true, Ordering::SeqCst))
            .is_some()
    }

    /// Slows one relayed link to `bytes_per_sec` each way: a link of a
    /// slower path.
    pub fn throttle_one(&self, bytes_per_sec: u64) -> bool {
        let c = self.conns.lock().unwrap().first().cloned();
        c.map(|c| c.rate.store(bytes_per_sec, Ordering::SeqCst))
            .is_some()
    }

    /// Bytes each relayed connection carried, in the order they were
    /// accepted (the first is the one `*_one` acts on); `downstream` picks
    /// server→client, else client→server.
    pub fn relayed_counts(&self, downstream: bool) -> Vec<u64> {
        let history = self.history.lock().unwrap();
        history
            .iter()
            .map(|tap| tap.count[usize::from(downstream)].load(Ordering::SeqCst))
            .collect()
    }

    /// While true, new connections are never answered (an outage); when it
    /// ends, those held are closed, as a network that comes back lets the
    /// next connect through.
    pub fn set_refusing(&self, on: bool) {
        self.refusing.store(on, Ordering::SeqCst);
        if !on {
            self.held.lock().unwrap().clear();
        }
    }

    /// Client-to-server bytes of the `i`-th relayed connection (0-based).
    pub fn tapped_upstream(&self, i: usize) -> Vec<u8> {
        let history = self.history.lock().unwrap();
        history
            .get(i)
            .map(|tap| tap.seen[0].lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// True if `needle` passed through any relayed connection, either way.
    pub fn saw(&self, needle: &[u8]) -> bool {
        let history = self.history.lock().unwrap();
        history.iter().any(|tap| {
            tap.seen
                .iter()
                .any(|t| t.lock().unwrap().windows(needle.len()).any(|w| w == needle))
        })
    }

    /// New connections go to `addr` (a restarted server elsewhere).
    pub fn set_target(&self, addr: SocketAddr) {
        *self.target.lock().unwrap() = addr;
    }
}

fn cut(c: &Relayed) {
    for s in [&c.inbound, &c.outbound] {
        let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        let _ = s.shutdown(Direction::Both);
    }
}

fn fault_pipe(r: &Relayed, dir: usize, mut from: &TcpStream, mut to: &TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut paced = (Instant::now(), 0u64);
    let clean = loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break true,
            Err(_) => break false,
            Ok(n) => n,
        };
        {
            let mut tap = r.tap.seen[dir].lock().unwrap();
            let room = TAP_LIMIT.saturating_sub(tap.len()).min(n);
            tap.extend_from_slice(&buf[..room]);
            r.tap.count[dir].fetch_add(n as u64, Ordering::SeqCst);
        }
        pace(r.rate.load(Ordering::SeqCst), &mut paced, n);
        if r.blackholed.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break false;
        }
    };
    if clean && !r.blackholed.load(Ordering::SeqCst) {
        let _ = to.shutdown(Direction::Write);
    } else {
        cut(r);
    }
}

/// Sleeps as long as `rate` bytes per second requires after `n` more bytes
/// (`paced` = since when, how many); a rate of 0 restarts the count.
pub fn pace(rate: u64, paced: &mut (Instant, u64), n: usize) {
    if rate == 0 {
        *paced = (Instant::now(), 0);
        return;
    }
    paced.1 += n as u64;
    let due = paced.0 + Duration::from_secs_f64(paced.1 as f64 / rate as f64);
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

/// A port on `ip` that nothing listens on, held for the whole test: bound
/// (with `SO_REUSEADDR`) but not listening, so connects to it are refused,
/// no parallel test can be given it (a port reserved and then freed can
/// be), and a daemon can still listen on it later (the daemons set
/// `SO_REUSEADDR` too, and the kernel lets a listener share a port with a
/// bound socket that does not listen).
pub struct HeldPort {
    _socket: socket2::Socket,
    pub addr: SocketAddr,
}

impl HeldPort {
    pub fn new(ip: &str) -> HeldPort {
        let ip: std::net::IpAddr = ip.parse().expect("an IP literal");
        let addr = SocketAddr::new(ip, 0);
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .expect("socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        socket.bind(&addr.into()).expect("bind held port");
        let addr = socket
            .local_addr()
            .expect("held addr")
            .as_socket()
            .expect("an IP address");
        HeldPort {
            _socket: socket,
            addr,
        }
    }
}

/// Runs `cmd` to its end with stdin empty and the output collected, like
/// `Command::output()`, but kills it and fails the test after `limit`.
pub fn output_within(cmd: &mut std::process::Command, limit: Duration) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let collect = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = collect(child.stdout.take().map(|p| Box::new(p) as _));
    let err = collect(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A fresh directory per call, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mtcp-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Writes `text` to `name` inside the directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
