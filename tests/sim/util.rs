//! The simulation's two sources of everything that varies: a fake clock and
//! a seeded random number generator. Nothing in the harness reads the real
//! clock for a decision or draws randomness from anywhere else, so a failing
//! seed replays exactly.

use mtcp::proto::frame::StreamId;
use std::time::{Duration, Instant};

/// Simulated time: an origin captured once, plus an offset that only the
/// driver moves forward. The origin is a real `Instant` only because the
/// protocol core takes `Instant`s; its value never matters.
#[derive(Debug, Clone)]
pub struct Clock {
    base: Instant,
    offset: Duration,
}

impl Clock {
    /// A clock at simulated time zero.
    pub fn new() -> Self {
        Clock {
            base: Instant::now(),
            offset: Duration::ZERO,
        }
    }

    /// The origin, for converting instants to microseconds.
    pub fn base(&self) -> Instant {
        self.base
    }

    /// The current simulated instant.
    pub fn now(&self) -> Instant {
        self.base + self.offset
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.offset
    }

    /// Moves the clock forward to `t` (never backwards).
    pub fn advance_to(&mut self, t: Instant) {
        let target = t.duration_since(self.base);
        assert!(target >= self.offset, "the clock never runs backwards");
        self.offset = target;
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// SplitMix64: a tiny, fast, seedable generator; plenty for picking delays,
/// jitter, cut points and fault times.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A duration in `0..=max`, in whole nanoseconds.
    pub fn upto(&mut self, max: Duration) -> Duration {
        Duration::from_nanos(self.below(max.as_nanos() as u64 + 1))
    }

    /// An independent generator derived from this one.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

/// The bytes an application writes on stream `stream` in direction
/// `from_client`: a pseudo-random pattern, so that a byte delivered at the
/// wrong offset (or twice, or never) shows in a plain comparison.
pub fn content(stream: StreamId, from_client: bool, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(u64::from(stream) << 1 | u64::from(from_client));
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Where two byte strings first differ, for readable failure messages.
pub fn first_difference(got: &[u8], want: &[u8]) -> Option<usize> {
    got.iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .or((got.len() != want.len()).then(|| got.len().min(want.len())))
}
