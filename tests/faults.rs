//! Streams survive link failures, outages and restarts. Faults are injected
//! from outside the daemons by a relay between client and server. Tests run
//! one at a time (they compare thread and descriptor counts of the process).

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown as Direction, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fast failure detection and reconnection, so tests are quick.
const FAST: &str = "keepalive_interval_ms = 100\nkeepalive_timeout_ms = 1000";

struct Bed {
    backend: Backend,
    server: ServerHandle,
    proxy: FaultProxy,
    client: ClientHandle,
    pool: usize,
}

impl Bed {
    fn start(pool: usize, server_extra: &str, client_extra: &str) -> Bed {
        init_logging();
        let backend = Backend::start();
        let server = start_server_toml(&server_toml(
            backend.addr,
            pool,
            &format!("{FAST}\n{server_extra}"),
        ));
        let proxy = FaultProxy::start(server.addr);
        let client = start_client_toml(&client_toml(
            proxy.addr,
            pool,
            true,
            &format!("{FAST}\nreconnect_min_ms = 20\nreconnect_max_ms = 200\n{client_extra}"),
        ));
        let bed = Bed {
            backend,
            server,
            proxy,
            client,
            pool,
        };
        assert!(bed.pool_restored(), "pool did not come up");
        bed
    }

    /// True once both daemons have the whole pool joined to their session
    /// (not just connected: the threads of every link are running).
    fn pool_restored(&self) -> bool {
        wait_until(Duration::from_secs(10), || {
            self.proxy.open() == self.pool
                && self.client.monitor.snapshot().link_count() == self.pool
                && self.server.monitor.snapshot().link_count() == self.pool
        })
    }

    /// Thread and descriptor counts once the bed is idle.
    fn census(&self) -> (usize, usize, usize) {
        (
            self.client.threads.live(),
            self.server.threads.live(),
            fd_count(),
        )
    }
}

/// A transfer running on its own thread, reporting progress.
struct Transfer {
    progress: Arc<AtomicU64>,
    join: JoinHandle<()>,
}

impl Transfer {
    fn download(client: &ClientHandle, seed: u64, len: u64) -> Transfer {
        let progress = Arc::new(AtomicU64::new(0));
        let p = progress.clone();
        let mut app = client.connect();
        let join = std::thread::spawn(move || {
            app.write_all(b"D").unwrap();
            app.write_all(&len.to_be_bytes()).unwrap();
            app.write_all(&seed.to_be_bytes()).unwrap();
            let mut counted = Counted {
                inner: &mut app,
                n: &p,
            };
            let (n, hash) = read_to_end_hash(&mut counted).expect("download failed");
            assert_eq!(n, len, "download length");
            assert_eq!(hash, pattern_hash(seed, len), "download checksum");
        });
        Transfer { progress, join }
    }

    fn upload(client: &ClientHandle, seed: u64, len: u64) -> Transfer {
        let progress = Arc::new(AtomicU64::new(0));
        let p = progress.clone();
        let mut app = client.connect();
        let join = std::thread::spawn(move || {
            app.write_all(b"U").unwrap();
            let sent = {
                let mut counted = Counted {
                    inner: &mut app,
                    n: &p,
                };
                send_pattern(&mut counted, seed, len).expect("upload failed")
            };
            app.shutdown(Direction::Write).unwrap();
            let mut reply = [0u8; 32];
            app.read_exact(&mut reply).expect("upload reply");
            assert_eq!(reply, sent, "upload checksum");
        });
        Transfer { progress, join }
    }

    fn wait_progress(&self, at_least: u64) {
        assert!(
            wait_until(Duration::from_secs(60), || self
                .progress
                .load(Ordering::SeqCst)
                >= at_least),
            "transfer stuck at {} bytes",
            self.progress.load(Ordering::SeqCst)
        );
    }

    fn finish(self) {
        if let Err(p) = self.join.join() {
            std::panic::resume_unwind(p);
        }
    }
}

struct Counted<'a> {
    inner: &'a mut TcpStream,
    n: &'a AtomicU64,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// One line per fault test for the README's reliability table; printed
/// only after every byte was compared, so a line means "lost 0".
fn report(test: &str, faults: &str, bytes: u64) {
    eprintln!(
        "RELIABILITY | {test} | {faults} | {} MiB | 0 |",
        bytes / MIB
    );
}

fn assert_back_to(bed: &Bed, baseline: (usize, usize, usize)) {
    let settled = wait_until(Duration::from_secs(10), || {
        let now = bed.census();
        now.0 <= baseline.0 && now.1 <= baseline.1 && now.2 <= baseline.2
    });
    assert!(
        settled,
        "leak: baseline {baseline:?} (client threads, server threads, fds), now {:?}",
        bed.census()
    );
}

#[test]
fn one_link_killed_mid_transfer_loses_nothing() {
    let _g = serial();
    within(Duration::from_secs(240), || {
        let bed = Bed::start(4, "", "");
        let baseline = bed.census();
        let len = 256 * MIB;
        let down = Transfer::download(&bed.client, 41, len);
        let up = Transfer::upload(&bed.client, 42, len);
        down.wait_progress(len / 4);
        up.wait_progress(len / 4);
        assert!(bed.proxy.cut_one(), "no link to cut");
        assert!(bed.pool_restored(), "pool not back to {} links", bed.pool);
        down.finish();
        up.finish();
        assert!(bed.pool_restored());
        assert_back_to(&bed, baseline);
        report(
            "one link killed mid-transfer (4 links)",
            "1 link reset",
            2 * len,
        );
    });
}

#[test]
fn all_links_killed_repeatedly_loses_nothing() {
    let _g = serial();
    within(Duration::from_secs(240), || {
        let bed = Bed::start(4, "", "");
        let baseline = bed.census();
        let len = 128 * MIB;
        let down = Transfer::download(&bed.client, 51, len);
        let up = Transfer::upload(&bed.client, 52, len);
        for k in 1..=5u64 {
            down.wait_progress(len * k / 7);
            bed.proxy.cut_all();
            assert!(bed.pool_restored(), "pool not back after cut {k}");
        }
        down.finish();
        up.finish();
        assert_back_to(&bed, baseline);
        report(
            "all links killed at once, 5 times (4 links)",
            "20 link resets",
            2 * len,
        );
    });
}

#[test]
fn blackholed_link_is_detected_and_transfer_completes() {
    let _g = serial();
    within(Duration::from_secs(240), || {
        let bed = Bed::start(4, "", "");
        let baseline = bed.census();
        let len = 128 * MIB;
        let down = Transfer::download(&bed.client, 61, len);
        down.wait_progress(len / 4);
        let before = bed.proxy.accepted.load(Ordering::SeqCst);
        let start = Instant::now();
        assert!(bed.proxy.blackhole_one());
        // Detection (keepalive timeout 1 s) and a replacement link.
        assert!(
            wait_until(Duration::from_secs(4), || bed
                .proxy
                .accepted
                .load(Ordering::SeqCst)
                > before),
            "blackholed link not replaced within 4 s"
        );
        eprintln!(
            "blackhole detected and replaced after {:?}",
            start.elapsed()
        );
        down.finish();
        assert!(bed.pool_restored());
        assert_back_to(&bed, baseline);
        report("one link blackholed (4 links)", "1 silent link", len);
    });
}

#[test]
fn outage_shorter_than_grace_is_survived() {
    let _g = serial();
    within(Duration::from_secs(240), || {
        let bed = Bed::start(4, "session_grace_ms = 10000", "session_grace_ms = 10000");
        let baseline = bed.census();
        let len = 128 * MIB;
        let down = Transfer::download(&bed.client, 71, len);
        let up = Transfer::upload(&bed.client, 72, len);
        down.wait_progress(len / 3);
        bed.proxy.set_refusing(true);
        bed.proxy.cut_all();
        // The outage itself: a fixed span of time is the point here.
        std::thread::sleep(Duration::from_millis(1500));
        bed.proxy.set_refusing(false);
        down.finish();
        up.finish();
        assert!(bed.pool_restored());
        assert_back_to(&bed, baseline);
        report(
            "total outage of 1.5 s (grace 10 s)",
            "4 link resets + 1.5 s refused",
            2 * len,
        );
    });
}

fn expect_reset(app: &mut TcpStream, limit: Duration) {
    app.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match app.read(&mut buf) {
            Ok(0) => panic!("expected a reset, got EOF after {:?}", start.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("expected a reset, got {e} after {:?}", start.elapsed()),
        }
    }
}

#[test]
fn outage_longer_than_grace_resets_streams() {
    let _g = serial();
    within(Duration::from_secs(60), || {
        let bed = Bed::start(2, "session_grace_ms = 500", "session_grace_ms = 500");
        let baseline = bed.census();
        let mut app = bed.client.connect();
        app.write_all(b"Eping").unwrap();
        let mut four = [0u8; 4];
        app.read_exact(&mut four).unwrap();
        bed.proxy.set_refusing(true);
        bed.proxy.cut_all();
        expect_reset(&mut app, Duration::from_secs(5));
        bed.proxy.set_refusing(false);
        // New connections work again once the server is reachable.
        assert!(bed.pool_restored());
        upload(&bed.client, 73, MIB);
        assert!(wait_until(Duration::from_secs(5), || bed
            .backend
            .open
            .load(Ordering::SeqCst)
            == 0));
        drop(app);
        // The lost session's threads and sockets are gone on both sides.
        assert_back_to(&bed, baseline);
    });
}

#[test]
fn server_restart_resets_old_streams_and_serves_new_ones() {
    let _g = serial();
    within(Duration::from_secs(60), || {
        let bed = Bed::start(2, "", "");
        let mut app = bed.client.connect();
        app.write_all(b"Eping").unwrap();
        let mut four = [0u8; 4];
        app.read_exact(&mut four).unwrap();
        // A new server process that knows nothing of the session.
        let fresh = start_server_toml(&server_toml(bed.backend.addr, 2, FAST));
        bed.proxy.set_target(fresh.addr);
        bed.proxy.cut_all();
        let start = Instant::now();
        expect_reset(&mut app, Duration::from_secs(2));
        assert!(start.elapsed() < Duration::from_secs(2));
        let ok = wait_until(Duration::from_secs(5), || {
            try_upload(&bed.client, 74, 64 * 1024).unwrap_or(false)
        });
        assert!(ok, "new connections did not work within 5 s of the restart");
    });
}

/// An upload that reports failure instead of panicking, for retry loops.
fn try_upload(client: &ClientHandle, seed: u64, len: u64) -> std::io::Result<bool> {
    let mut app = client.connect();
    app.write_all(b"U")?;
    let sent = send_pattern(&mut app, seed, len)?;
    app.shutdown(Direction::Write)?;
    let mut reply = [0u8; 32];
    app.read_exact(&mut reply)?;
    Ok(reply == sent)
}

#[test]
fn orphaned_session_is_reaped_after_grace() {
    let _g = serial();
    within(Duration::from_secs(60), || {
        // The client vanishes (crash, cable): the server must free the
        // session and its backend connections once the grace period is over.
        let bed = Bed::start(2, "session_grace_ms = 500", "session_grace_ms = 60000");
        let mut app = bed.client.connect();
        app.write_all(b"Eping").unwrap();
        let mut four = [0u8; 4];
        app.read_exact(&mut four).unwrap();
        assert_eq!(bed.backend.open.load(Ordering::SeqCst), 1);
        bed.proxy.set_refusing(true);
        bed.proxy.cut_all();
        let start = Instant::now();
        assert!(
            wait_until(Duration::from_secs(5), || bed
                .backend
                .open
                .load(Ordering::SeqCst)
                == 0),
            "backend connection of the orphaned session still open"
        );
        eprintln!("orphaned session reaped after {:?}", start.elapsed());
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "reaped before the grace period"
        );
    });
}

#[test]
fn server_shutdown_drains_in_flight_streams() {
    let _g = serial();
    within(Duration::from_secs(120), || {
        let mut bed = Bed::start(4, "", "");
        let len = 128 * MIB;
        let down = Transfer::download(&bed.client, 81, len);
        let up = Transfer::upload(&bed.client, 82, len);
        down.wait_progress(len / 4);
        bed.server.shutdown.trigger();
        down.finish();
        up.finish();
        report(
            "server SIGTERM-style drain mid-transfer",
            "server shutdown",
            2 * len,
        );
        let start = Instant::now();
        bed.server.stop();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "server took {:?} to stop after draining",
            start.elapsed()
        );
        assert_eq!(
            bed.server.threads.live(),
            0,
            "server threads left after stop"
        );
    });
}

#[test]
fn client_shutdown_drains_in_flight_streams() {
    let _g = serial();
    within(Duration::from_secs(120), || {
        let mut bed = Bed::start(4, "", "");
        let len = 128 * MIB;
        let down = Transfer::download(&bed.client, 91, len);
        let up = Transfer::upload(&bed.client, 92, len);
        down.wait_progress(len / 4);
        bed.client.shutdown.trigger();
        down.finish();
        up.finish();
        report(
            "client SIGTERM-style drain mid-transfer",
            "client shutdown",
            2 * len,
        );
        let start = Instant::now();
        bed.client.stop();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "client took {:?} to stop after draining",
            start.elapsed()
        );
        assert_eq!(
            bed.client.threads.live(),
            0,
            "client threads left after stop"
        );
        // The server forgets the session at once (GOAWAY), not after the grace.
        assert!(wait_until(Duration::from_secs(3), || bed
            .backend
            .open
            .load(Ordering::SeqCst)
            == 0));
    });
}

#[test]
fn drain_timeout_cuts_streams_that_do_not_finish() {
    let _g = serial();
    within(Duration::from_secs(60), || {
        let mut bed = Bed::start(2, "drain_timeout_ms = 300", "");
        let mut app = bed.client.connect();
        app.write_all(b"Eping").unwrap();
        let mut four = [0u8; 4];
        app.read_exact(&mut four).unwrap();
        let start = Instant::now();
        bed.server.stop();
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "stop took {:?}",
            start.elapsed()
        );
        expect_reset(&mut app, Duration::from_secs(3));
    });
}
