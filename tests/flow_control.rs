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
