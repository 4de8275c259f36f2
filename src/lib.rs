//! MTCP: one TCP connection striped over a pool of pre-connected TCP links.
//!
//! The library holds both daemons so that tests can run a server and a client
//! in one process against real sockets; `main.rs` only parses the command
//! line, sets up logging and signals, and maps errors to exit codes.
#![forbid(unsafe_code)]

pub mod budget;
pub mod cli;
pub mod client;
pub mod config;
pub mod frame;
pub mod link;
pub mod ops;
pub mod scheduler;
pub mod secure;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod stats;
pub mod stream;
pub mod systemd;
pub mod thread;
pub mod wire;
