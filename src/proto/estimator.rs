//! What a link's PINGs measure: its round-trip time and the rate at which
//! it drains.
//!
//! A PING goes out behind whatever the link has queued, in its socket and on
//! the path, so its round trip is the delay a frame sent now would see; the
//! bytes the socket took meanwhile are the rate at which the link drains.
//! Times are microseconds on the caller's clock, never 0 (0 means "none").

/// Least time between two measuring PINGs of a busy link.
pub const PROBE_GAP_US: u64 = 10_000;
/// A PING unanswered this long no longer blocks the next one.
pub const PROBE_STALE_US: u64 = 1_000_000;

/// One link's measurements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Estimator {
    /// Token (send time) of the PING whose answer gives the next rate
    /// sample; 0 when none is out.
    token: u64,
    /// When the last PING was sent, to space them.
    sent_at: u64,
    /// Bytes written to the link when that PING was sent.
    bytes_at: u64,
    /// Last round-trip sample, µs (0 = none yet).
    last_rtt_us: u64,
    /// Smoothed round-trip time, µs (0 = not measured yet).
    srtt_us: u64,
    /// Bytes per second the socket took over the last round trip.
    rate: u64,
}

impl Estimator {
    /// Nothing measured yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Smoothed round-trip time in µs (0 = not measured yet).
    pub fn srtt_us(&self) -> u64 {
        self.srtt_us
    }

    /// The last round-trip sample in µs (0 = none yet).
    pub fn last_rtt_us(&self) -> u64 {
        self.last_rtt_us
    }

    /// Measured drain rate in bytes per second (0 = not measured yet).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// True when the link should be measured again at `now_us`: no PING is
    /// out and the last was a while ago (or the one out is stale).
    pub fn probe_due(&self, now_us: u64) -> bool {
        let wait = if self.token != 0 {
            PROBE_STALE_US
        } else {
            PROBE_GAP_US
        };
        now_us >= self.sent_at.saturating_add(wait)
    }

    /// Starts a measurement: returns the token for the PING to send now,
    /// when `bytes_out` bytes have been written to the link.
    pub fn start_probe(&mut self, now_us: u64, bytes_out: u64) -> u64 {
        let token = now_us.max(1);
        self.sent_at = token;
        self.bytes_at = bytes_out;
        self.token = token;
        token
    }

    /// Takes the answer to a PING: a round-trip sample, and a rate sample if
    /// it answers the measurement in progress. Returns the round trip.
    /// Tokens come back from the peer: a forged one only yields a sample
    /// clamped to what `now_us` allows.
    pub fn on_pong(&mut self, now_us: u64, token: u64, bytes_out: u64) -> u64 {
        let rtt = now_us.saturating_sub(token).max(1);
        self.last_rtt_us = rtt;
        // Halfway to each sample: a link that stopped being slow must be
        // seen at once, or it is never chosen again to show it.
        self.srtt_us = if self.srtt_us == 0 {
            rtt
        } else {
            self.srtt_us / 2 + rtt / 2
        };
        if token != 0 && token == self.token {
            self.token = 0;
            let bytes = bytes_out.saturating_sub(self.bytes_at);
            let sample = bytes.saturating_mul(1_000_000) / rtt;
            self.rate = if self.rate == 0 {
                sample
            } else {
                (self.rate / 4).saturating_mul(3).saturating_add(sample / 4)
            };
        }
        rtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_spaced_and_a_lost_one_expires() {
        let mut e = Estimator::new();
        assert!(e.probe_due(PROBE_GAP_US));
        let t = e.start_probe(PROBE_GAP_US, 0);
        assert!(!e.probe_due(t + PROBE_GAP_US), "one is out");
        assert!(e.probe_due(t + PROBE_STALE_US), "a lost PING expires");
        e.on_pong(t + 500, t, 0);
        assert!(!e.probe_due(t + PROBE_GAP_US - 1));
        assert!(e.probe_due(t + PROBE_GAP_US));
    }

    #[test]
    fn rtt_and_rate_follow_the_samples() {
        let mut e = Estimator::new();
        let t = e.start_probe(1_000, 0);
        assert_eq!(e.last_rtt_us(), 0, "nothing measured yet");
        assert_eq!(e.on_pong(11_000, t, 100_000), 10_000);
        assert_eq!(e.last_rtt_us(), 10_000);
        assert_eq!(e.srtt_us(), 10_000);
        assert_eq!(e.rate(), 10_000_000, "100 kB in 10 ms");
        let t = e.start_probe(20_000, 100_000);
        assert_eq!(e.on_pong(50_000, t, 400_000), 30_000);
        assert_eq!(e.srtt_us(), 20_000, "halfway to the new sample");
        assert_eq!(e.rate(), 10_000_000, "3/4 old + 1/4 of 10 MB/s");
    }

    #[test]
    fn a_pong_for_another_token_gives_no_rate() {
        let mut e = Estimator::new();
        let t = e.start_probe(1_000, 0);
        e.on_pong(2_000, 1_500, 1_000_000);
        assert_eq!(e.rate(), 0);
        assert!(
            !e.probe_due(t + PROBE_GAP_US),
            "the measurement is still out"
        );
    }

    #[test]
    fn forged_tokens_cannot_overflow() {
        let mut e = Estimator::new();
        assert_eq!(e.on_pong(5, u64::MAX, u64::MAX), 1);
        assert_eq!(e.on_pong(u64::MAX, 0, 0), u64::MAX);
        e.start_probe(1, u64::MAX);
        e.on_pong(u64::MAX, 1, 0);
        e.on_pong(u64::MAX, 1, u64::MAX);
    }
}
