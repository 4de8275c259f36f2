//! Per-stream flow control, in its own test binary so that the memory it
//! measures is not disturbed by other tests moving data in parallel.

mod common;

use common::*;
use std::io::Write;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

#[test]
fn stalled_reader_does_not_block_other_streams_and_memory_stays_bounded() {
    within(Duration::from_secs(120), || {
        let t = Tunnel::start_with(
            2,
            true,
            "stream_window = 1048576",
            "stream_window = 1048576",
        );
        let mut stalled = t.client.connect();
        stalled.write_all(b"S").unwrap();
        // Let the stalled stream fill every buffer on its path.
        std::thread::sleep(Duration::from_millis(300));
        let before = rss_kib();
        download(&t.client, 11, 32 * MIB);
        upload(&t.client, 12, 8 * MIB);
        let grown_mib = rss_kib().saturating_sub(before) / 1024;
        assert!(
            grown_mib < 64,
            "memory grew by {grown_mib} MiB while one stream was stalled"
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
        // Each stream may pass the budget by its floor and one read.
        let bound = BUDGET + STALLED * (16 * 1024 + 64 * 1024);
        let mut most = 0;
        let watch = std::time::Instant::now();
        while watch.elapsed() < Duration::from_millis(500) {
            most = most.max(server_unacked(&t));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            most <= bound,
            "{most} bytes unacknowledged, more than the budget allows ({bound})"
        );
        // The budget is spent, yet a new stream moves data on its floor.
        download(&t.client, 21, 8 * MIB);
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
