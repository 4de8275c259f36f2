//! Backends and load generators for `bench/run`.
//!
//! One backend (`serve`) answers every client mode; the first byte a client
//! sends picks what the connection does:
//!
//! | byte | then                 | the backend                                        |
//! |------|----------------------|----------------------------------------------------|
//! | `S`  | bytes until EOF      | counts them, answers the count (u64 LE), closes     |
//! | `G`  | size (u64 LE)        | sends `size` bytes, closes                          |
//! | `E`  | bytes until EOF      | echoes every byte back, closes at EOF               |
//! | `Q`  | 63 more bytes        | answers 64 bytes at once (a tiny request/response)  |
//! | `R`  | seed, size (u64 LE)  | sends `size` bytes of the non-repeating stream `seed`, closes |
//! | `H`  | bytes until EOF      | answers count, longest gap, its start and sha256 of what came |
//!
//! Client modes print one line of JSON on stdout:
//!
//! ```text
//! loadgen serve LISTEN_ADDR
//! loadgen bulk ADDR up|down BYTES          # one transfer, timed by the receiver
//! loadgen pingpong ADDR COUNT SIZE         # SIZE-byte ping-pong on one connection
//! loadgen ttfb ADDR COUNT GAP_MS           # COUNT sequential connect+request+response
//! loadgen scale ADDR STREAMS BYTES         # STREAMS concurrent echo streams, crc32 checked
//! loadgen relay LISTEN_ADDR TARGET_ADDR    # the least a relay can do (see `relay`)
//! loadgen xfer ADDR up|down BYTES SEED     # one transfer, sha256 both ends, longest stall
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BULK_BUF: usize = 256 * 1024;
const ECHO_BUF: usize = 64 * 1024;
const SMALL_STACK: usize = 128 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| -> &str { args.get(i).map(String::as_str).unwrap_or_else(|| usage()) };
    let num = |i: usize| -> u64 { parse_size(a(i)).unwrap_or_else(|| usage()) };
    let result = match a(0) {
        "serve" => serve(addr(a(1))),
        "bulk" => bulk(addr(a(1)), a(2), num(3)),
        "pingpong" => pingpong(addr(a(1)), num(2) as usize, num(3) as usize),
        "ttfb" => ttfb(addr(a(1)), num(2) as usize, num(3)),
        "scale" => scale(addr(a(1)), num(2) as usize, num(3)),
        "rr" => rr(addr(a(1)), num(2) as usize, num(3), num(4) as usize),
        "relay" => relay(addr(a(1)), addr(a(2))),
        "xfer" => xfer(addr(a(1)), a(2), num(3), num(4)),
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("loadgen {}: {e}", a(0));
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen serve ADDR | bulk ADDR up|down BYTES | pingpong ADDR COUNT SIZE | \
         ttfb ADDR COUNT GAP_MS | scale ADDR STREAMS BYTES | rr ADDR CONNS SECS SIZE | \
         relay LISTEN TARGET | xfer ADDR up|down BYTES SEED \
         (sizes take K/M/G suffixes)"
    );
    std::process::exit(2);
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| {
        eprintln!("loadgen: bad address {s:?} (want IP:PORT)");
        std::process::exit(2)
    })
}

fn parse_size(s: &str) -> Option<u64> {
    let (digits, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * mult)
}

/// Deterministic, incompressible bytes: xorshift64* from a seed.
fn fill(seed: u64, buf: &mut [u8]) -> u64 {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    x
}

fn pattern() -> Arc<Vec<u8>> {
    let mut v = vec![0u8; 1 << 20];
    fill(0x9e37_79b9_7f4a_7c15, &mut v);
    Arc::new(v)
}

// ---------------------------------------------------------------- backend

fn serve(listen: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    // std listens with a backlog of 128; the scale scenario connects a
    // thousand streams at once, so ask for the system's maximum instead.
    // LOADGEN_BACKLOG overrides it (to reproduce what a small backlog does).
    let backlog = std::env::var("LOADGEN_BACKLOG")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(libc::SOMAXCONN);
    // SAFETY: listen(2) on a socket we own, no memory is passed.
    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), backlog) };
    let pat = pattern();
    for conn in listener.incoming() {
        let Ok(sock) = conn else { continue };
        let pat = pat.clone();
        let spawned = thread::Builder::new()
            .stack_size(SMALL_STACK)
            .spawn(move || {
                let peer = sock.peer_addr().ok();
                if let Err(e) = handle(sock, &pat) {
                    eprintln!("loadgen serve: connection from {peer:?}: {e}");
                }
            });
        if let Err(e) = spawned {
            eprintln!("loadgen serve: cannot start thread: {e}");
        }
    }
    Ok(())
}

/// Reads `sock` to its end; returns how many bytes came.
fn drain(sock: &mut TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; BULK_BUF];
    let mut total = 0u64;
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn handle(mut sock: TcpStream, pat: &[u8]) -> io::Result<()> {
    sock.set_nodelay(true)?;
    let mut cmd = [0u8; 1];
    sock.read_exact(&mut cmd)?;
    match cmd[0] {
        b'S' => {
            let total = drain(&mut sock)?;
            sock.write_all(&total.to_le_bytes())
        }
        b'G' => {
            let mut size = [0u8; 8];
            sock.read_exact(&mut size)?;
            let mut left = u64::from_le_bytes(size);
            if left > 1 << 40 {
                return Err(io::Error::other(format!(
                    "asked for {left} bytes: corrupt request?"
                )));
            }
            let mut at = 0usize;
            while left > 0 {
                let n = (left as usize).min(BULK_BUF).min(pat.len() - at);
                sock.write_all(&pat[at..at + n])?;
                left -= n as u64;
                at = (at + n) % pat.len();
            }
            sock.shutdown(Shutdown::Write)?;
            // Wait for the client's close so our FIN is not followed by a RST.
            let _ = sock.read(&mut [0u8; 1]);
            Ok(())
        }
        b'E' => {
            let mut buf = vec![0u8; ECHO_BUF];
            loop {
                match sock.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => sock.write_all(&buf[..n])?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            sock.shutdown(Shutdown::Write)
        }
        b'Q' => {
            let mut req = [0u8; 63];
            sock.read_exact(&mut req)?;
            let mut resp = [b'r'; 64];
            resp[63] = b'\n';
            sock.write_all(&resp)?;
            let _ = sock.read(&mut [0u8; 1]);
            Ok(())
        }
        b'R' => {
            let mut hdr = [0u8; 16];
            sock.read_exact(&mut hdr)?;
            let seed = u64::from_le_bytes(hdr[..8].try_into().expect("8 bytes"));
            let size = u64::from_le_bytes(hdr[8..].try_into().expect("8 bytes"));
            if size > 1 << 40 {
                return Err(io::Error::other(format!(
                    "asked for {size} bytes: corrupt request?"
                )));
            }
            send_stream(&mut sock, seed, size)?;
            sock.shutdown(Shutdown::Write)?;
            let _ = sock.read(&mut [0u8; 1]);
            Ok(())
        }
        b'H' => {
            let r = receive_stream(&mut sock)?;
            let mut answer = Vec::with_capacity(56);
            answer.extend_from_slice(&r.bytes.to_le_bytes());
            answer.extend_from_slice(&r.max_gap_us.to_le_bytes());
            answer.extend_from_slice(&r.gap_start_unix_us.to_le_bytes());
            answer.extend_from_slice(&r.sha256);
            sock.write_all(&answer)
        }
        other => Err(io::Error::other(format!("unknown command byte {other}"))),
    }
}

// ---------------------------------------------------------------- clients

fn connect(a: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(a)?;
    s.set_nodelay(true)?;
    Ok(s)
}

fn mbit(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs / 1e6
}

/// One transfer of `bytes`: `down` = backend to us, `up` = us to backend.
/// Timed from connect to the receiver having every byte.
fn bulk(a: SocketAddr, dir: &str, bytes: u64) -> io::Result<()> {
    let t0 = Instant::now();
    let mut sock = connect(a)?;
    let got = match dir {
        "down" => {
            let mut req = vec![b'G'];
            req.extend_from_slice(&bytes.to_le_bytes());
            sock.write_all(&req)?;
            drain(&mut sock)?
        }
        "up" => {
            let pat = pattern();
            sock.write_all(b"S")?;
            let mut left = bytes;
            let mut at = 0usize;
            while left > 0 {
                let n = (left as usize).min(BULK_BUF).min(pat.len() - at);
                sock.write_all(&pat[at..at + n])?;
                left -= n as u64;
                at = (at + n) % pat.len();
            }
            sock.shutdown(Shutdown::Write)?;
            let mut count = [0u8; 8];
            sock.read_exact(&mut count)?;
            u64::from_le_bytes(count)
        }
        _ => usage(),
    };
    let secs = t0.elapsed().as_secs_f64();
    if got != bytes {
        return Err(io::Error::other(format!("moved {got} bytes of {bytes}")));
    }
    println!(
        "{{\"bytes\":{got},\"secs\":{secs:.4},\"mbit\":{:.1}}}",
        mbit(got, secs)
    );
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    format!(
        "\"n\":{},\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"max\":{:.1},\"mean\":{:.1}",
        v.len(),
        percentile(&v, 0.50),
        percentile(&v, 0.90),
        percentile(&v, 0.99),
        v[v.len() - 1],
        mean
    )
}

/// `count` round trips of `size` bytes on one connection (after 10 % warm-up);
/// prints microseconds.
fn pingpong(a: SocketAddr, count: usize, size: usize) -> io::Result<()> {
    let mut sock = connect(a)?;
    sock.write_all(b"E")?;
    let msg = vec![b'p'; size];
    let mut back = vec![0u8; size];
    let warm = count / 10 + 1;
    let mut rtts = Vec::with_capacity(count);
    for i in 0..warm + count {
        let t = Instant::now();
        sock.write_all(&msg)?;
        sock.read_exact(&mut back)?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        if i >= warm {
            rtts.push(us);
        }
    }
    sock.shutdown(Shutdown::Write)?;
    println!("{{\"unit\":\"us\",{}}}", summary(rtts));
    Ok(())
}

/// `count` sequential connections, each: connect, a 64-byte request, a
/// 64-byte response. Time to first byte is measured from the start of
/// `connect` to the first response byte; prints milliseconds.
fn ttfb(a: SocketAddr, count: usize, gap_ms: u64) -> io::Result<()> {
    let mut times = Vec::with_capacity(count);
    let mut connects = Vec::with_capacity(count);
    let mut req = [b'q'; 64];
    req[0] = b'Q';
    for _ in 0..count {
        let t0 = Instant::now();
        let mut sock = connect(a)?;
        connects.push(t0.elapsed().as_secs_f64() * 1e3);
        sock.write_all(&req)?;
        let mut first = [0u8; 1];
        sock.read_exact(&mut first)?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        let mut rest = [0u8; 63];
        sock.read_exact(&mut rest)?;
        sock.shutdown(Shutdown::Write)?;
        let _ = sock.read(&mut first);
        drop(sock);
        thread::sleep(Duration::from_millis(gap_ms));
    }
    connects.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{{\"unit\":\"ms\",{},\"connect_p50\":{:.2}}}",
        summary(times),
        percentile(&connects, 0.5)
    );
    Ok(())
}

/// `streams` concurrent connections each echo `bytes` of their own
/// pseudo-random data through the backend; every stream's crc32 of what came
/// back must equal the crc32 of what it sent.
fn scale(a: SocketAddr, streams: usize, bytes: u64) -> io::Result<()> {
    let t0 = Instant::now();
    // Streams open in steps of MAX_CONNECTING and then wait for each other
    // (see echo_stream), so that all are open at once before data moves.
    let gate = Arc::new(Gate::default());
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let moved = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(streams);
    for i in 0..streams {
        let (ok, bad, failed, moved) = (ok.clone(), bad.clone(), failed.clone(), moved.clone());
        let gate = gate.clone();
        let h = thread::Builder::new()
            .stack_size(SMALL_STACK)
            .spawn(
                move || match echo_stream(a, i as u64, bytes, &gate, streams as u64) {
                    Ok((sent, got, n)) => {
                        moved.fetch_add(n, Ordering::Relaxed);
                        if sent == got && n == bytes {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        eprintln!("loadgen scale: stream {i}: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                },
            )?;
        handles.push(h);
    }
    for h in handles {
        let _ = h.join();
    }
    let secs = t0.elapsed().as_secs_f64();
    let m = moved.load(Ordering::Relaxed);
    println!(
        "{{\"streams\":{streams},\"ok\":{},\"mismatch\":{},\"failed\":{},\"secs\":{secs:.2},\"echo_mbit\":{:.1}}}",
        ok.load(Ordering::Relaxed),
        bad.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        mbit(m, secs)
    );
    Ok(())
}

/// `rr`: `conns` echo connections open at once, each sending `size`-byte
/// requests and reading their `size`-byte answers back to back for `secs`
/// seconds once all are open; prints the requests per second of all.
fn rr(a: SocketAddr, conns: usize, secs: u64, size: usize) -> io::Result<()> {
    let gate = Arc::new(Gate::default());
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(conns);
    for i in 0..conns {
        let (gate, done, failed) = (gate.clone(), done.clone(), failed.clone());
        let h = thread::Builder::new()
            .stack_size(SMALL_STACK)
            .spawn(move || {
                let opened = {
                    let _slot = gate.enter();
                    open_echo(a, i as u64)
                };
                gate.arrive_and_wait(conns as u64, Duration::from_secs(120));
                let result = opened.and_then(|mut sock| {
                    let until = Instant::now() + Duration::from_secs(secs);
                    let req = vec![(i as u8) | 1; size];
                    let mut resp = vec![0u8; size];
                    let mut n = 0u64;
                    while Instant::now() < until {
                        sock.write_all(&req)?;
                        sock.read_exact(&mut resp)?;
                        if resp != req {
                            return Err(io::Error::other("answer differs"));
                        }
                        n += 1;
                    }
                    Ok(n)
                });
                match result {
                    Ok(n) => {
                        done.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("loadgen rr: connection {i}: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })?;
        handles.push(h);
    }
    for h in handles {
        let _ = h.join();
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "{{\"conns\":{conns},\"failed\":{},\"requests\":{n},\"secs\":{secs},\"rps\":{:.0}}}",
        failed.load(Ordering::Relaxed),
        n as f64 / secs.max(1) as f64
    );
    Ok(())
}

/// Connects, asks for echo, and checks that one byte comes back.
fn open_echo(a: SocketAddr, seed: u64) -> io::Result<TcpStream> {
    let mut sock = connect(a)?;
    sock.set_read_timeout(Some(Duration::from_secs(120)))?;
    let hello = (seed as u8) | 1;
    sock.write_all(&[b'E', hello])?;
    let mut back = [0u8; 1];
    sock.read_exact(&mut back)?;
    if back[0] != hello {
        return Err(io::Error::other("first echoed byte differs"));
    }
    Ok(sock)
}

/// At most MAX_CONNECTING streams between connect and their first echo,
/// and a barrier for all of them; both sleep on a condvar (a spinning wait
/// in a thousand threads would take the CPU the tunnel needs).
#[derive(Default)]
struct Gate {
    state: Mutex<(u64, u64)>, // (opening now, arrived at the barrier)
    cv: Condvar,
}

const MAX_CONNECTING: u64 = 32;

struct Slot<'a>(&'a Gate);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().0 -= 1;
        self.0.cv.notify_all();
    }
}

impl Gate {
    fn enter(&self) -> Slot<'_> {
        let mut st = self.state.lock().unwrap();
        while st.0 >= MAX_CONNECTING {
            st = self.cv.wait(st).unwrap();
        }
        st.0 += 1;
        Slot(self)
    }

    fn arrive_and_wait(&self, all: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut st = self.state.lock().unwrap();
        st.1 += 1;
        self.cv.notify_all();
        while st.1 < all {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            st = self.cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

fn echo_stream(
    a: SocketAddr,
    seed: u64,
    bytes: u64,
    gate: &Gate,
    all: u64,
) -> io::Result<(u32, u32, u64)> {
    // Open in steps: at most MAX_CONNECTING streams between connect and the
    // echo of a first byte (the proof that the far end has the stream). A
    // burst of a thousand connects would overflow the tunnel's accept queue
    // (std listens with a backlog of 128), and what follows then (SYN
    // cookies, SYN retransmits) tests the kernel, not the tunnel.
    let opened = {
        let _slot = gate.enter();
        open_echo(a, seed)
    };
    // Then wait until every stream is open, so that all are open at once.
    gate.arrive_and_wait(all, Duration::from_secs(60));
    let mut sock = opened?;
    let mut wsock = sock.try_clone()?;
    let writer =
        thread::Builder::new()
            .stack_size(SMALL_STACK)
            .spawn(move || -> io::Result<u32> {
                let mut h = crc32fast::Hasher::new();
                let mut buf = vec![0u8; 64 * 1024];
                let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xabcdef;
                let mut left = bytes;
                while left > 0 {
                    let n = (left as usize).min(buf.len());
                    x = fill(x, &mut buf[..n]);
                    h.update(&buf[..n]);
                    wsock.write_all(&buf[..n])?;
                    left -= n as u64;
                }
                wsock.shutdown(Shutdown::Write)?;
                Ok(h.finalize())
            })?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                got += n as u64;
                if got > bytes {
                    // More than was sent: corrupt; stop rather than read forever.
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // Normally the writer is done by now (the echo ends after our FIN); if
    // not, this unblocks it.
    let _ = sock.shutdown(Shutdown::Both);
    let sent = writer
        .join()
        .map_err(|_| io::Error::other("writer panicked"))??;
    Ok((sent, h.finalize(), got))
}

/// The least any relay can do: per connection, one thread per direction,
/// each a blocking `read` into a 64 KiB buffer and a `write` of what it got,
/// `TCP_NODELAY` on both sockets. Two of these chained are the floor of what
/// a client + server relay pair such as MTCP adds to a round trip: four more
/// socket hops, each waking the thread blocked on the receiving socket.
fn relay(listen: SocketAddr, target: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    for conn in listener.incoming() {
        let near = conn?;
        let far = TcpStream::connect(target)?;
        near.set_nodelay(true)?;
        far.set_nodelay(true)?;
        let (near2, far2) = (near.try_clone()?, far.try_clone()?);
        thread::spawn(move || copy_until_eof(near, far));
        thread::spawn(move || copy_until_eof(far2, near2));
    }
    Ok(())
}

fn copy_until_eof(mut from: TcpStream, mut to: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; ECHO_BUF];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return to.shutdown(Shutdown::Write),
            Ok(n) => to.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

// ---------------------------------------------------------------- xfer

/// The non-repeating byte stream `seed` (xorshift64*, one state for the
/// whole stream, so no two places of a long transfer look alike and a
/// misplaced block changes the sha256).
struct Stream {
    x: u64,
}

impl Stream {
    fn new(seed: u64) -> Stream {
        Stream { x: seed | 1 }
    }
    /// Fills `buf` (a multiple of 8 bytes, except for the stream's last piece).
    fn fill(&mut self, buf: &mut [u8]) {
        self.x = fill(self.x, buf);
    }
}

fn send_stream(sock: &mut TcpStream, seed: u64, size: u64) -> io::Result<()> {
    let mut g = Stream::new(seed);
    let mut buf = vec![0u8; BULK_BUF];
    let mut left = size;
    while left > 0 {
        let n = (left as usize).min(BULK_BUF);
        g.fill(&mut buf[..n]);
        sock.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn stream_sha256(seed: u64, size: u64) -> [u8; 32] {
    use sha2::Digest;
    let mut g = Stream::new(seed);
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; BULK_BUF];
    let mut left = size;
    while left > 0 {
        let n = (left as usize).min(BULK_BUF);
        g.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        left -= n as u64;
    }
    h.finalize().into()
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Received {
    bytes: u64,
    /// Longest time between two reads that brought data, from the first byte
    /// to the last (a stall of the transfer as its receiver sees it).
    max_gap_us: u64,
    /// When that gap began (wall clock, µs since the epoch).
    gap_start_unix_us: u64,
    sha256: [u8; 32],
}

/// Reads to EOF, hashing and timing the gaps between arrivals.
fn receive_stream(sock: &mut TcpStream) -> io::Result<Received> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; BULK_BUF];
    let mut total = 0u64;
    let (mut last, mut last_unix) = (None::<Instant>, 0u64);
    let (mut max_gap_us, mut gap_start_unix_us) = (0u64, 0u64);
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let now = Instant::now();
                if let Some(prev) = last {
                    let gap = now.duration_since(prev).as_micros() as u64;
                    if gap > max_gap_us {
                        max_gap_us = gap;
                        gap_start_unix_us = last_unix;
                    }
                }
                last = Some(now);
                last_unix = unix_us();
                total += n as u64;
                h.update(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Received {
        bytes: total,
        max_gap_us,
        gap_start_unix_us,
        sha256: h.finalize().into(),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One transfer of `bytes` of the stream `seed`, `down` (backend to us) or
/// `up`; the receiver hashes what came and times its longest stall, the
/// sender's hash is that of the stream it wrote. Prints JSON with both
/// hashes, `intact`, and the stall (`max_gap_ms`, starting at `gap_start`,
/// seconds since the epoch).
fn xfer(a: SocketAddr, dir: &str, bytes: u64, seed: u64) -> io::Result<()> {
    let t0 = Instant::now();
    let start_unix = unix_us();
    let mut sock = connect(a)?;
    let mut req = Vec::with_capacity(17);
    let r = match dir {
        "down" => {
            req.push(b'R');
            req.extend_from_slice(&seed.to_le_bytes());
            req.extend_from_slice(&bytes.to_le_bytes());
            sock.write_all(&req)?;
            receive_stream(&mut sock)?
        }
        "up" => {
            sock.write_all(b"H")?;
            send_stream(&mut sock, seed, bytes)?;
            sock.shutdown(Shutdown::Write)?;
            let mut answer = [0u8; 56];
            sock.read_exact(&mut answer)?;
            let u = |i: usize| u64::from_le_bytes(answer[i..i + 8].try_into().expect("8 bytes"));
            Received {
                bytes: u(0),
                max_gap_us: u(8),
                gap_start_unix_us: u(16),
                sha256: answer[24..56].try_into().expect("32 bytes"),
            }
        }
        _ => usage(),
    };
    let secs = t0.elapsed().as_secs_f64();
    let sent = stream_sha256(seed, bytes);
    println!(
        "{{\"bytes\":{},\"expected\":{bytes},\"secs\":{secs:.4},\"mbit\":{:.1},\
         \"sha_sent\":\"{}\",\"sha_recv\":\"{}\",\"intact\":{},\"max_gap_ms\":{:.1},\
         \"gap_start\":{:.6},\"start\":{:.6}}}",
        r.bytes,
        mbit(r.bytes, secs),
        hex(&sent),
        hex(&r.sha256),
        r.bytes == bytes && r.sha256 == sent,
        r.max_gap_us as f64 / 1e3,
        r.gap_start_unix_us as f64 / 1e6,
        start_unix as f64 / 1e6,
    );
    Ok(())
}
