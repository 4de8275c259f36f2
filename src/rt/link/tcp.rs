//! A link's last `TCP_INFO` sample, for the schedulers and the re-sending
//! of what holds a stream up (`proto::scheduler::TcpState`).
//!
//! Reading `TCP_INFO` is a system call that takes the socket's lock, so it
//! is done at most every [`SAMPLE_EVERY_US`] per link, by whichever thread
//! finds the sample old (one at a time), and never under the session's
//! locks; the values are kept in atomics, so the scheduler reads them per
//! frame without a lock or a system call. A reader may see fields of two
//! samples mixed: they only steer choices that the next sample corrects.

use crate::proto::scheduler::{CaState, LOSS_MEMORY_US, TcpState};
use crate::util::tcpinfo;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Least time between two samples of one link: a loss recovery lasts at
/// least a round trip (milliseconds on a WAN), so this sees it in time, at
/// a system call per 10 ms per busy link.
pub const SAMPLE_EVERY_US: u64 = 10_000;
/// A sample older than this is not used (the link was idle meanwhile and
/// nobody looked): it says nothing about now.
const STALE_US: u64 = 1_000_000;

/// The last sample, in atomics.
#[derive(Default)]
pub(super) struct TcpSample {
    /// Link clock (µs since the link was born) of the sample; 0 = none.
    at_us: AtomicU64,
    /// A thread is taking a sample; others keep using the last one.
    taking: AtomicBool,
    /// `TCP_INFO` cannot be read here (not Linux): never try again.
    unavailable: AtomicBool,
    /// The link's `bytes_out` when sampled: what was written since is
    /// counted as unsent until the next sample.
    bytes_out: AtomicU64,
    ca_state: AtomicU8,
    retransmits: AtomicU8,
    cwnd_bytes: AtomicU64,
    notsent: AtomicU32,
    unacked_bytes: AtomicU64,
    since_ack_ms: AtomicU32,
    rtt_us: AtomicU32,
    /// TCP's retransmissions over the link's life, at the last sample.
    total_retrans: AtomicU32,
    /// Link clock of the last sample that saw the count grow; 0 = never.
    loss_at_us: AtomicU64,
    /// TCP's sending segment size (`tcpi_snd_mss`); 0 = not known yet.
    snd_mss: AtomicU32,
}

impl TcpSample {
    /// True when a new sample should be taken at `now_us`.
    pub(super) fn due(&self, now_us: u64) -> bool {
        let at = self.at_us.load(Ordering::Relaxed);
        !self.unavailable.load(Ordering::Relaxed) && (at == 0 || now_us >= at + SAMPLE_EVERY_US)
    }

    /// Takes a sample of `socket` at `now_us`, when `bytes_out` bytes have
    /// been written to it, unless another thread is taking one.
    pub(super) fn take(&self, socket: &TcpStream, now_us: u64, bytes_out: u64) {
        if self.taking.swap(true, Ordering::Acquire) {
            return;
        }
        match tcpinfo::read(socket) {
            Ok(info) => {
                self.bytes_out.store(bytes_out, Ordering::Relaxed);
                self.snd_mss.store(info.mss.unwrap_or(0), Ordering::Relaxed);
                let mss = u64::from(info.mss.unwrap_or(0).max(1));
                // Without a window reading the link never counts as full.
                let cwnd = info
                    .cwnd
                    .map_or(u64::MAX, |c| u64::from(c).saturating_mul(mss));
                self.ca_state
                    .store(info.ca_state.unwrap_or(0), Ordering::Relaxed);
                self.retransmits
                    .store(info.retransmits.unwrap_or(0), Ordering::Relaxed);
                self.cwnd_bytes.store(cwnd, Ordering::Relaxed);
                self.notsent
                    .store(info.notsent_bytes.unwrap_or(0), Ordering::Relaxed);
                let unacked = u64::from(info.unacked.unwrap_or(0)).saturating_mul(mss);
                self.unacked_bytes.store(unacked, Ordering::Relaxed);
                self.since_ack_ms
                    .store(info.last_ack_recv_ms.unwrap_or(0), Ordering::Relaxed);
                self.rtt_us
                    .store(info.rtt_us.unwrap_or(0), Ordering::Relaxed);
                let retrans = info.total_retrans.unwrap_or(0);
                let before = self.total_retrans.swap(retrans, Ordering::Relaxed);
                // The first sample is the baseline: a handshake's lost SYN
                // says little about the path now.
                if retrans > before && self.at_us.load(Ordering::Relaxed) != 0 {
                    self.loss_at_us.store(now_us.max(1), Ordering::Relaxed);
                }
                self.at_us.store(now_us.max(1), Ordering::Release);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                self.unavailable.store(true, Ordering::Relaxed);
            }
            // A socket that is closing: the link is about to go.
            Err(_) => {}
        }
        self.taking.store(false, Ordering::Release);
    }

    /// TCP's sending segment size at the last sample (0: not known).
    pub(super) fn snd_mss(&self) -> u32 {
        self.snd_mss.load(Ordering::Relaxed)
    }

    /// True when a sample saw TCP retransmit within [`LOSS_MEMORY_US`]
    /// before `now_us`.
    pub(super) fn lossy(&self, now_us: u64) -> bool {
        let loss = self.loss_at_us.load(Ordering::Relaxed);
        loss != 0 && now_us.saturating_sub(loss) < LOSS_MEMORY_US
    }

    /// The last sample as the scheduler sees it at `now_us` (link clock of
    /// a link born at `born`), with `bytes_out` written to the link by now;
    /// `None` when there is none recent.
    pub(super) fn state(&self, born: Instant, now_us: u64, bytes_out: u64) -> Option<TcpState> {
        let at_us = self.at_us.load(Ordering::Acquire);
        if at_us == 0 || now_us.saturating_sub(at_us) > STALE_US {
            return None;
        }
        // Unsent now: what was unsent then, plus what was written since,
        // less what the window let TCP send since (a window per round
        // trip). Without the first correction a scheduler would pile frames
        // on the link that looked emptiest for up to a sample period; without
        // the second a fast link would look full after a few frames.
        let written_since = bytes_out.saturating_sub(self.bytes_out.load(Ordering::Relaxed));
        let cwnd_bytes = self.cwnd_bytes.load(Ordering::Relaxed);
        let rtt_us = u64::from(self.rtt_us.load(Ordering::Relaxed)).max(1);
        let sendable = cwnd_bytes.saturating_mul(now_us.saturating_sub(at_us)) / rtt_us;
        let notsent = u64::from(self.notsent.load(Ordering::Relaxed))
            .saturating_add(written_since)
            .saturating_sub(sendable);
        Some(TcpState {
            ca_state: CaState::from_raw(self.ca_state.load(Ordering::Relaxed)),
            retransmits: self.retransmits.load(Ordering::Relaxed),
            cwnd_bytes,
            notsent_bytes: notsent,
            unacked_bytes: self.unacked_bytes.load(Ordering::Relaxed),
            since_ack_us: u64::from(self.since_ack_ms.load(Ordering::Relaxed)) * 1000,
            rtt_us: u64::from(self.rtt_us.load(Ordering::Relaxed)),
            lossy: self.lossy(now_us),
            at: born + Duration::from_micros(at_us),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[cfg(target_os = "linux")]
    #[test]
    fn samples_a_live_socket_and_counts_bytes_written_since_as_unsent() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut a = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut b, _) = listener.accept().expect("accept");
        a.write_all(b"hello").expect("write");
        let mut got = [0u8; 5];
        b.read_exact(&mut got).expect("read");
        let born = Instant::now();
        let sample = TcpSample::default();
        assert!(sample.due(1), "never sampled");
        assert_eq!(sample.state(born, 1, 0), None);
        sample.take(&a, 5_000, 100);
        assert!(!sample.due(5_000 + SAMPLE_EVERY_US - 1));
        assert!(sample.due(5_000 + SAMPLE_EVERY_US));
        let st = sample.state(born, 6_000, 100).expect("a sample");
        assert_eq!(st.ca_state, CaState::Open);
        assert!(!st.lossy, "loopback loses nothing");
        assert_eq!(st.notsent_bytes, 0);
        assert!(st.cwnd_bytes >= 2 * 1024, "{st:?}");
        assert_eq!(st.at, born + Duration::from_micros(5_000));
        let st = sample.state(born, 5_000, 150).expect("a sample");
        assert_eq!(st.notsent_bytes, 50, "written since the sample");
        // A millisecond later loopback's window has sent them many times
        // over (its round trip is microseconds).
        let st = sample.state(born, 6_000, 150).expect("a sample");
        assert_eq!(
            st.notsent_bytes, 0,
            "sent since, as far as the window tells"
        );
        assert_eq!(sample.state(born, 5_000 + STALE_US + 1, 150), None, "stale");
    }
}
