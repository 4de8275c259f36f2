//! Log lines for failures that can repeat thousands of times a second
//! (descriptors exhausted, threads refused, a hostile peer): the first few
//! of each kind are logged, then none until the interval is over, when the
//! next one says how many were held back.
//!
//! Each daemon (each server registry, client pool, session, acceptor) keeps
//! its own throttles, so two daemons in one process (tests) or two sessions
//! do not hide each other's lines.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a throttled message is logged at most, by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Messages of one kind logged per interval before the rest are held back.
pub const DEFAULT_BURST: u32 = 5;

/// One interval's account for one kind of message.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    shown: u32,
    held: u64,
}

impl Window {
    /// `Some(n)` to log now (`n` held back before), `None` to hold back.
    fn allow(
        slot: &mut Option<Window>,
        now: Instant,
        interval: Duration,
        burst: u32,
    ) -> Option<u64> {
        match slot {
            Some(w) if now.duration_since(w.start) < interval => {
                if w.shown < burst {
                    w.shown += 1;
                    Some(0)
                } else {
                    w.held += 1;
                    None
                }
            }
            _ => {
                let held = slot.map_or(0, |w| w.held);
                *slot = Some(Window {
                    start: now,
                    shown: 1,
                    held: 0,
                });
                Some(held)
            }
        }
    }
}

/// One kind of repeated message.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    burst: u32,
    window: Mutex<Option<Window>>,
}

impl Throttle {
    /// A throttle that lets `burst` messages through per `interval`.
    pub const fn new(interval: Duration, burst: u32) -> Self {
        Throttle {
            interval,
            burst,
            window: Mutex::new(None),
        }
    }

    /// `Some(n)` when the caller should log now (`n` messages were held back
    /// since the last one), `None` when this one is held back.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        Window::allow(&mut window, now, self.interval, self.burst)
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(DEFAULT_INTERVAL, DEFAULT_BURST)
    }
}

/// Several kinds of one message, each throttled on its own (a refusal per
/// reason, say): a flood of one kind hides no other kind.
#[derive(Debug)]
pub struct Throttles {
    interval: Duration,
    burst: u32,
    /// Keys are a small fixed set of labels, so a list does.
    windows: Mutex<Vec<(&'static str, Option<Window>)>>,
}

impl Throttles {
    /// Throttles that let `burst` messages of each key through per
    /// `interval`.
    pub const fn new(interval: Duration, burst: u32) -> Self {
        Throttles {
            interval,
            burst,
            windows: Mutex::new(Vec::new()),
        }
    }

    /// As [`Throttle::allow`], for the messages of kind `key`.
    pub fn allow(&self, key: &'static str, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let i = match windows.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                windows.push((key, None));
                windows.len() - 1
            }
        };
        Window::allow(&mut windows[i].1, now, self.interval, self.burst)
    }
}

impl Default for Throttles {
    fn default() -> Self {
        Throttles::new(DEFAULT_INTERVAL, DEFAULT_BURST)
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

/// Logs a warning through a [`Throttle`]:
/// `warn_throttled!(throttle, "fmt", args)`.
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
/// `warn_throttled_by!(throttles, "key", "fmt", args)`.
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
    fn a_burst_per_interval_then_a_count() {
        let t = Throttle::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0));
        assert_eq!(t.allow(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(t.allow(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(t.allow(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(t.allow(t0 + Duration::from_secs(11)), Some(0));
        assert_eq!(t.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(
            held_back(5, Duration::from_secs(10)),
            " (5 more in the last 10 s)"
        );
        assert_eq!(held_back(0, Duration::from_secs(10)), "");
    }

    #[test]
    fn each_key_is_throttled_on_its_own() {
        let t = Throttles::new(Duration::from_secs(10), 1);
        let t0 = Instant::now();
        assert_eq!(t.allow("a", t0), Some(0));
        assert_eq!(t.allow("a", t0), None);
        assert_eq!(t.allow("b", t0), Some(0), "a flood of one kind hid another");
        assert_eq!(t.allow("a", t0 + Duration::from_secs(10)), Some(1));
    }
}
