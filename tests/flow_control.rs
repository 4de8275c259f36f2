//! Per-stream flow control and the daemon-wide send budget. What the
//! daemons hold is read from their own counters (the monitor's
//! unacknowledged bytes), so other tests running in this process cannot
//! disturb the measurement.

mod common;

use common::*;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// Samples `f` every few milliseconds on a thread until the returned
/// handle is finished; keeps the largest value.
struct Peak {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Peak {
    fn watch(f: impl Fn() -> u64 + Send + 'static) -> Peak {
        let stop: Arc<AtomicBool> = Arc::default();
        let most: Arc<AtomicU64> = Arc::default();
        let (done, top) = (stop.clone(), most.clone());
        let thread = std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                top.fetch_max(f(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Peak { stop, most, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        self.most.load(Ordering::SeqCst)
    }
}

#[test]
fn stalled_reader_does_not_block_other_streams_and_its_window_bounds_what_it_holds() {
    within(Duration::from_secs(120), || {
        const WINDOW: u64 = MIB;
        let t = Tunnel::start_with(
            2,
            true,
            "stream_window = 1048576",
            "stream_window = 1048576",
        );
        let mut stalled = t.client.connect();
        stalled.write_all(b"S").unwrap();
        // The stalled stream fills its window: the server holds a window
        // of its bytes unacknowledged (the rest of the path is the kernel's).
        let server = t.server.monitor.clone();
        let unacked = move || server.snapshot().unacked_bytes;
        assert!(
            wait_until(Duration::from_secs(30), || unacked() >= WINDOW - 64 * 1024),
            "the stalled stream never filled its window: {}",
            unacked()
        );
        // Meanwhile other streams move, and the server never holds more than
        // the stalled window plus the moving stream's window (and one read
        // each beyond the credit check).
        let client = t.client.monitor.clone();
        let (server_peak, client_peak) = (
            Peak::watch(unacked.clone()),
            Peak::watch(move || client.snapshot().unacked_bytes),
        );
        download(&t.client, 11, 32 * MIB);
        upload(&t.client, 12, 8 * MIB);
        let (server_most, client_most) = (server_peak.finish(), client_peak.finish());
        let bound = 2 * (WINDOW + 64 * 1024);
        assert!(
            server_most <= bound,
            "the server held {server_most} bytes unacknowledged (bound {bound})"
        );
        assert!(
            client_most <= WINDOW + 64 * 1024,
            "the client held {client_most} bytes unacknowledged"
        );
        // The stalled stream is alive: still open on both ends, and its
        // bytes are still there to read.
        assert_eq!(t.server.monitor.snapshot().stream_count(), 1);
        assert_eq!(t.client.monitor.snapshot().stream_count(), 1);
        stalled
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut first = vec![0u8; 256 * 1024];
        stalled
            .read_exact(&mut first)
            .expect("the stalled stream died");
        assert!(
            first.iter().all(|&b| b == 0x5a),
            "the stalled stream's bytes changed"
        );
        drop(stalled);
    });
}

/// Unacknowledged bytes the server holds, as its stats report them.
fn server_unacked(t: &Tunnel) -> u64 {
    t.server.monitor.snapshot().unacked_bytes
}

#[test]
fn send_budget_bounds_bytes_in_flight_and_stalled_streams_keep_a_floor() {
    within(Duration::from_secs(120), || {
        const BUDGET: u64 = MIB;
        const STALLED: u64 = 16;
        let t = Tunnel::start_with(
            2,
            true,
            "send_budget = 1048576\nstream_window = 4194304",
            "stream_window = 4194304",
        );
        // Applications that never read, behind a backend that never stops
        // sending: without the budget, each would hold a 4 MiB window on
        // the server (64 MiB in all).
        let stalled: Vec<_> = (0..STALLED)
            .map(|_| {
                let mut app = t.client.connect();
                app.write_all(b"S").unwrap();
                app
            })
            .collect();
        assert!(
            wait_until(Duration::from_secs(30), || server_unacked(&t) >= BUDGET),
            "the stalled streams never used the budget: {}",
            server_unacked(&t)
        );
        // The budget is spent, yet a new stream moves data on its floor;
        // and while it does, each stream (the new one too) may pass the
        // budget by its floor and one read, no more.
        let bound = BUDGET + (STALLED + 1) * (16 * 1024 + 64 * 1024);
        let server = t.server.monitor.clone();
        let peak = Peak::watch(move || server.snapshot().unacked_bytes);
        download(&t.client, 21, 8 * MIB);
        let most = peak.finish();
        assert!(
            most <= bound,
            "{most} bytes unacknowledged, more than the budget allows ({bound})"
        );
        drop(stalled);
        assert!(
            wait_until(Duration::from_secs(30), || server_unacked(&t) == 0),
            "budget not returned after the streams ended: {}",
            server_unacked(&t)
        );
        upload(&t.client, 22, 8 * MIB);
        assert!(
            wait_until(Duration::from_secs(10), || {
                t.client.monitor.snapshot().unacked_bytes == 0
            }),
            "the client kept budget after its upload finished"
        );
    });
}
