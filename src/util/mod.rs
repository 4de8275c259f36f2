//! Small utilities with no knowledge of the protocol: thread spawning,
//! doorbells and locks, the shutdown signal, socket helpers, randomness.

pub mod accept;
pub mod net;
pub mod random;
pub mod shutdown;
pub mod sync;
pub mod tcpinfo;
pub mod thread;
pub mod throttle;
