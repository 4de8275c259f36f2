//! Randomness for session ids and backoff jitter.

use std::time::Duration;

/// A random 64-bit number. Session ids come from here and must not repeat
/// across restarts, or a restarted client could resume a stale session on
/// the server; without the OS generator, time and pid stand in.
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return t ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_be_bytes(b)
}

/// `base` scaled by a random factor in [0.5, 1.5), so a pool of slots that
/// failed together does not reconnect in lockstep.
pub fn jitter(base: Duration) -> Duration {
    let r = (random_u64() % 1000) as f64 / 1000.0;
    base.mul_f64(0.5 + r)
}
