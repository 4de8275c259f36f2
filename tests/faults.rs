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
    /// Descriptors the process had before the bed started.
    fds_before: usize,
}

impl Bed {
    fn start(pool: usize, server_extra: &str, client_extra: &str) -> Bed {
        init_logging();
        let fds_before = fd_count();
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
            fds_before,
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

    /// Thread and descriptor counts now.
    fn census(&self) -> (usize, usize, usize) {
        (
            self.client.threads.live(),
            self.server.threads.live(),
            fd_count(),
        )
    }

    /// The census once it holds still (two looks 100 ms apart agree), so
    /// that a baseline does not include sockets on their way out, which
    /// would hide as many leaked ones later.
    fn settled_census(&self) -> (usize, usize, usize) {
        let mut last = self.census();
        for _ in 0..30 {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.census();
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("the bed never settled: {last:?}")
    }

    /// Stops both daemons and checks that nothing of them is left: no
    /// thread, and no descriptor beyond the backend's and the relay's
    /// listeners (test fixtures that live as long as the process).
    fn assert_all_closed(mut self) {
        self.client.stop();
        self.server.stop();
        assert_eq!(self.client.threads.live(), 0, "client threads left");
        assert_eq!(self.server.threads.live(), 0, "server threads left");
        let allowed = self.fds_before + 2;
        assert!(
            wait_until(Duration::from_secs(10), || fd_count() <= allowed),
            "descriptors leaked: {} open, {allowed} expected",
            fd_count()
        );
    }
}

/// A transfer running on its own thread, reporting progress.
struct Transfer {
    progress: Arc<AtomicU64>,
    join: JoinHandle<()>,
}

impl Transfer {
    fn download(client: &ClientHandle, seed: u64, len: u64) -> Transfer {
        Transfer::download_at(client, seed, len, 0)
    }

    /// A download the application reads at `rate` bytes per second at most
    /// (0 = as fast as it comes), so that faults can land in its middle.
    fn download_at(client: &ClientHandle, seed: u64, len: u64, rate: u64) -> Transfer {
        let progress = Arc::new(AtomicU64::new(0));
        let p = progress.clone();
        let mut app = client.connect();
        let join = std::thread::spawn(move || {
            app.write_all(b"D").unwrap();
            app.write_all(&len.to_be_bytes()).unwrap();
            app.write_all(&seed.to_be_bytes()).unwrap();
            let mut counted = Counted::new(&mut app, &p, rate);
            let (n, hash) = read_to_end_hash(&mut counted).expect("download failed");
            assert_eq!(n, len, "download length");
            assert_eq!(hash, pattern_hash(seed, len), "download checksum");
        });
        Transfer { progress, join }
    }

    fn upload(client: &ClientHandle, seed: u64, len: u64) -> Transfer {
        Transfer::upload_at(client, seed, len, 0)
    }

    /// An upload the application writes at `rate` bytes per second at most.
    fn upload_at(client: &ClientHandle, seed: u64, len: u64, rate: u64) -> Transfer {
        let progress = Arc::new(AtomicU64::new(0));
        let p = progress.clone();
        let mut app = client.connect();
        let join = std::thread::spawn(move || {
            app.write_all(b"U").unwrap();
            let sent = {
                let mut counted = Counted::new(&mut app, &p, rate);
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

    /// True while the transfer has not ended (it still has bytes to move).
    fn running(&self) -> bool {
        !self.join.is_finished()
    }

    fn finish(self) {
        if let Err(p) = self.join.join() {
            std::panic::resume_unwind(p);
        }
    }
}

/// A socket that counts what passes, at `rate` bytes per second at most.
struct Counted<'a> {
    inner: &'a mut TcpStream,
    n: &'a AtomicU64,
    rate: u64,
    paced: (Instant, u64),
}

impl<'a> Counted<'a> {
    fn new(inner: &'a mut TcpStream, n: &'a AtomicU64, rate: u64) -> Self {
        Counted {
            inner,
            n,
            rate,
            paced: (Instant::now(), 0),
        }
    }
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.fetch_add(n as u64, Ordering::SeqCst);
        pace(self.rate, &mut self.paced, n);
        Ok(n)
    }
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n.fetch_add(n as u64, Ordering::SeqCst);
        pace(self.rate, &mut self.paced, n);
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

/// Frames re-sent after link failures, as the stats report them: (client,
/// server).
fn resent(bed: &Bed) -> (u64, u64) {
    let sum = |m: &mtcp::rt::monitor::Monitor| -> u64 {
        m.snapshot().sessions.iter().map(|s| s.frames_resent).sum()
    };
    (sum(&bed.client.monitor), sum(&bed.server.monitor))
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
        let baseline = bed.settled_census();
        let len = 256 * MIB;
        let down = Transfer::download(&bed.client, 41, len);
        let up = Transfer::upload(&bed.client, 42, len);
        down.wait_progress(len / 4);
        up.wait_progress(len / 4);
        assert_eq!(resent(&bed), (0, 0), "frames re-sent before any fault");
        assert!(bed.proxy.cut_one(), "no link to cut");
        assert!(bed.pool_restored(), "pool not back to {} links", bed.pool);
        // Both ends re-sent what the dead link carried, and count it.
        assert!(
            wait_until(Duration::from_secs(10), || {
                let (client, server) = resent(&bed);
                client > 0 && server > 0
            }),
            "frames re-sent (client, server): {:?}",
            resent(&bed)
        );
        down.finish();
        up.finish();
        assert!(bed.pool_restored());
        assert_back_to(&bed, baseline);
        bed.assert_all_closed();
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
        let baseline = bed.settled_census();
        let len = 128 * MIB;
        // Paced by the applications (about 3 s each way), so that every cut
        // lands in the middle of both transfers.
        let rate = 48 * MIB;
        let down = Transfer::download_at(&bed.client, 51, len, rate);
        let up = Transfer::upload_at(&bed.client, 52, len, rate);
        let mut resets = 0;
        for k in 1..=5u64 {
            down.wait_progress(len * k / 7);
            up.wait_progress(len * k / 7);
            assert!(
                down.running() && up.running(),
                "a transfer ended before cut {k}"
            );
            // A link may have failed on its own just before (a busy
            // machine missing the 1 s keepalive); count what was cut.
            let cut = bed.proxy.cut_all();
            assert!(cut > 0, "cut {k} found no link");
            resets += cut;
            assert!(bed.pool_restored(), "pool not back after cut {k}");
        }
        down.finish();
        up.finish();
        assert_back_to(&bed, baseline);
        bed.assert_all_closed();
        report(
            "all links killed at once, 5 times (4 links)",
            &format!("{resets} link resets"),
            2 * len,
        );
    });
}

#[test]
fn blackholed_link_is_detected_and_transfer_completes() {
    let _g = serial();
    within(Duration::from_secs(240), || {
        let bed = Bed::start(4, "", "");
        let baseline = bed.settled_census();
        let len = 128 * MIB;
        let down = Transfer::download(&bed.client, 61, len);
        down.wait_progress(len / 4);
        let before = bed.proxy.accepted.load(Ordering::SeqCst);
        let start = Instant::now();
        assert!(bed.proxy.blackhole_one());
        // Detection (keepalive timeout 1 s) and a replacement link.
        assert!(
            wait_until(Duration::from_secs(10), || bed
                .proxy
                .accepted
                .load(Ordering::SeqCst)
                > before),
            "blackholed link not replaced within 10 s"
        );
        eprintln!(
            "blackhole detected and replaced after {:?}",
            start.elapsed()
        );
        down.finish();
        assert!(bed.pool_restored());
        assert_back_to(&bed, baseline);
        bed.assert_all_closed();
        report("one link blackholed (4 links)", "1 silent link", len);
    });
}

#[test]
fn outage_shorter_than_grace_is_survived() {
    let _g = serial();
    within(Duration::from_secs(240), || {
        let bed = Bed::start(4, "session_grace_ms = 10000", "session_grace_ms = 10000");
        let baseline = bed.settled_census();
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
        bed.assert_all_closed();
        report(
            "total outage of 1.5 s (grace 10 s)",
            "4 link resets + 1.5 s refused",
            2 * len,
        );
    });
}

/// Expects `app` to end in a reset within `limit`; returns how long it took.
fn expect_reset(app: &mut TcpStream, limit: Duration) -> Duration {
    app.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match app.read(&mut buf) {
            Ok(0) => panic!("expected a reset, got EOF after {:?}", start.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("expected a reset, got {e} after {:?}", start.elapsed()),
        }
    }
}

#[test]
fn outage_longer_than_grace_resets_streams() {
    let _g = serial();
    within(Duration::from_secs(60), || {
        let bed = Bed::start(2, "session_grace_ms = 500", "session_grace_ms = 500");
        let baseline = bed.settled_census();
        let mut app = bed.client.connect();
        app.write_all(b"Eping").unwrap();
        let mut four = [0u8; 4];
        app.read_exact(&mut four).unwrap();
        bed.proxy.set_refusing(true);
        bed.proxy.cut_all();
        expect_reset(&mut app, Duration::from_secs(10));
        bed.proxy.set_refusing(false);
        // New connections work again once the server is reachable.
        assert!(bed.pool_restored());
        upload(&bed.client, 73, MIB);
        assert!(wait_until(Duration::from_secs(10), || bed
            .backend
            .open
            .load(Ordering::SeqCst)
            == 0));
        drop(app);
        // The lost session's threads and sockets are gone on both sides.
        assert_back_to(&bed, baseline);
        bed.assert_all_closed();
    });
}

#[test]
fn server_restart_resets_old_streams_and_serves_new_ones() {
    let _g = serial();
    within(Duration::from_secs(60), || {
        // The old server forgets its orphaned session soon, so that the
        // census below can come back to its baseline.
        let bed = Bed::start(2, "session_grace_ms = 500", "");
        // A new server process that knows nothing of the session, started
        // before the baseline so that its own threads and sockets count.
        let mut fresh = start_server_toml(&server_toml(bed.backend.addr, 2, FAST));
        let baseline = bed.settled_census();
        let mut app = bed.client.connect();
        app.write_all(b"Eping").unwrap();
        let mut four = [0u8; 4];
        app.read_exact(&mut four).unwrap();
        bed.proxy.set_target(fresh.addr);
        bed.proxy.cut_all();
        let took = expect_reset(&mut app, Duration::from_secs(10));
        // At once, far below the grace periods (30 s on the client).
        assert!(took < Duration::from_secs(5), "reset after {took:?}");
        let ok = wait_until(Duration::from_secs(10), || {
            try_upload(&bed.client, 74, 64 * 1024).unwrap_or(false)
        });
        assert!(
            ok,
            "new connections did not work within 10 s of the restart"
        );
        drop(app);
        assert!(
            wait_until(Duration::from_secs(10), || {
                bed.proxy.open() == bed.pool
                    && bed.client.monitor.snapshot().link_count() == bed.pool
                    && fresh.monitor.snapshot().link_count() == bed.pool
            }),
            "pool not back on the new server"
        );
        assert!(
            wait_until(Duration::from_secs(10), || bed
                .server
                .monitor
                .snapshot()
                .sessions
                .is_empty()),
            "the old server kept the orphaned session"
        );
        // The new server holds the links the old one held: the client and
        // the old server are back to their baseline, and so are the
        // process's descriptors.
        assert_back_to(&bed, baseline);
        fresh.stop();
        assert_eq!(fresh.threads.live(), 0, "new server threads left");
        bed.assert_all_closed();
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
        let baseline = bed.settled_census();
        let mut app = bed.client.connect();
        app.write_all(b"Eping").unwrap();
        let mut four = [0u8; 4];
        app.read_exact(&mut four).unwrap();
        assert_eq!(bed.backend.open.load(Ordering::SeqCst), 1);
        bed.proxy.set_refusing(true);
        bed.proxy.cut_all();
        let start = Instant::now();
        assert!(
            wait_until(Duration::from_secs(10), || bed
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
        assert!(bed.server.monitor.snapshot().sessions.is_empty());
        // The client comes back: the server no longer knows its session,
        // so its stream is reset at once and a new session serves.
        bed.proxy.set_refusing(false);
        expect_reset(&mut app, Duration::from_secs(10));
        drop(app);
        assert!(bed.pool_restored());
        upload(&bed.client, 75, MIB);
        assert_back_to(&bed, baseline);
        bed.assert_all_closed();
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
            start.elapsed() < Duration::from_secs(10),
            "server took {:?} to stop after draining",
            start.elapsed()
        );
        assert_eq!(
            bed.server.threads.live(),
            0,
            "server threads left after stop"
        );
        bed.assert_all_closed();
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
            start.elapsed() < Duration::from_secs(10),
            "client took {:?} to stop after draining",
            start.elapsed()
        );
        assert_eq!(
            bed.client.threads.live(),
            0,
            "client threads left after stop"
        );
        // The server forgets the session at once (GOAWAY), not after its
        // grace period (30 s).
        assert!(
            wait_until(Duration::from_secs(10), || bed
                .server
                .monitor
                .snapshot()
                .sessions
                .is_empty()),
            "the server still holds the session of a client that said GOAWAY"
        );
        assert_eq!(bed.backend.open.load(Ordering::SeqCst), 0);
        bed.assert_all_closed();
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
        // The drain limit (300 ms), not the stream, ended the stop: the
        // echo stream never ends by itself.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "stop took {:?}",
            start.elapsed()
        );
        expect_reset(&mut app, Duration::from_secs(10));
        drop(app);
        bed.assert_all_closed();
    });
}
