//! Log lines for failures that can repeat thousands of times a second
//! (descriptors exhausted, threads refused, a hostile peer): the first is
//! logged, then at most one per interval, saying how many were not.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a throttled message is logged at most, by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// One kind of repeated message.
pub struct Throttle {
    interval: Duration,
    /// When the message was last logged, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// A throttle that lets one message through per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when the caller should log now (`n` messages were held back
    /// since the last one), `None` when this one is held back.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, held) = &mut *state;
        if last.is_some_and(|t| now.duration_since(t) < self.interval) {
            *held += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held))
    }
}

/// Several kinds of one message, each throttled on its own (a refusal per
/// reason, say): a flood of one kind hides no other kind.
pub struct Throttles {
    interval: Duration,
    /// Per key: when last logged, how many held back since. Keys are a
    /// small fixed set, so a list does.
    state: Mutex<Vec<(&'static str, Instant, u64)>>,
}

impl Throttles {
    /// Throttles that let one message of each key through per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Throttles {
            interval,
            state: Mutex::new(Vec::new()),
        }
    }

    /// As [`Throttle::allow`], for the messages of kind `key`.
    pub fn allow(&self, key: &'static str, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, last, held)) if now.duration_since(*last) < self.interval => {
                *held += 1;
                None
            }
            Some((_, last, held)) => {
                *last = now;
                Some(std::mem::take(held))
            }
            None => {
                state.push((key, now, 0));
                Some(0)
            }
        }
    }
}

/// ` (N more in the last S s)` after a throttled message, or nothing.
pub fn held_back(n: u64, interval: Duration) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more in the last {} s)", interval.as_secs())
    }
}

/// Logs a warning through a throttle: `warn_throttled!(THROTTLE, "fmt", args)`.
#[macro_export]
macro_rules! warn_throttled {
    ($throttle:expr, $($arg:tt)+) => {
        if let Some(n) = $throttle.allow(std::time::Instant::now()) {
            log::warn!(
                "{}{}",
                format_args!($($arg)+),
                $crate::util::throttle::held_back(n, $crate::util::throttle::DEFAULT_INTERVAL)
            );
        }
    };
}

/// The same for one key of [`Throttles`]:
/// `warn_throttled_by!(THROTTLES, "key", "fmt", args)`.
#[macro_export]
macro_rules! warn_throttled_by {
    ($throttles:expr, $key:expr, $($arg:tt)+) => {
        if let Some(n) = $throttles.allow($key, std::time::Instant::now()) {
            log::warn!(
                "{}{}",
                format_args!($($arg)+),
                $crate::util::throttle::held_back(n, $crate::util::throttle::DEFAULT_INTERVAL)
            );
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_interval_with_a_count() {
        let t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(t.allow(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(t.allow(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(t.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(
            held_back(5, Duration::from_secs(10)),
            " (5 more in the last 10 s)"
        );
        assert_eq!(held_back(0, Duration::from_secs(10)), "");
    }

    #[test]
    fn each_key_is_throttled_on_its_own() {
        let t = Throttles::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.allow("a", t0), Some(0));
        assert_eq!(t.allow("a", t0), None);
        assert_eq!(t.allow("b", t0), Some(0), "a flood of one kind hid another");
        assert_eq!(t.allow("a", t0 + Duration::from_secs(10)), Some(1));
    }
}
