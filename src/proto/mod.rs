//! The protocol core: every rule of MTCP's wire protocol, with no I/O.
//!
//! Nothing here touches a socket, a thread, a channel, a file or the clock:
//! time comes in as a parameter (`now: Instant`), and decisions come out as
//! values (bytes to deliver, an ACK to send now or later, a stream to open
//! or reset, the link for the next frame). The I/O layer (`rt`) holds these
//! states behind its own locks and does what they say; the simulation tests
//! (`tests/simulation.rs`) drive two cores over an in-memory network on a
//! fake clock.

pub mod cipher;
pub mod error;
pub mod estimator;
pub mod frame;
pub mod handshake;
pub mod preamble;
pub mod recv;
pub mod scheduler;
pub mod secret;
pub mod send;
pub mod table;

use std::fmt;

/// Which daemon a config file is for; chosen by the file's top-level `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Accepts links from clients and connects to the backend.
    Server,
    /// Accepts application connections and stripes them over links to a server.
    Client,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Server => "server",
            Role::Client => "client",
        })
    }
}
