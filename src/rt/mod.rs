//! The I/O layer: the threads that own sockets and drive the protocol core.
//!
//! A link's two threads live in `link`, a stream's in `stream`; the session
//! ties them together and implements what each of them calls (`LinkHost`,
//! `StreamHost`), so neither needs to know the session's type.

pub mod backend;
pub mod budget;
pub mod counters;
pub mod link;
pub mod monitor;
pub mod path_stats;
pub mod pool;
pub mod proxy_header;
pub mod secure;
pub mod session;
pub mod stream;
pub mod wire;
