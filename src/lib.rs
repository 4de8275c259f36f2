//! MTCP: one TCP connection striped over a pool of pre-connected TCP links.
//!
//! The library holds both daemons so that tests can run a server and a client
//! in one process against real sockets; `main.rs` only parses the command
//! line, sets up logging and signals, and maps errors to exit codes.
//!
//! Layers, bottom to top; each imports only from those before it:
//!
//! - [`util`]: threads, doorbells, the shutdown signal, socket helpers;
//! - [`proto`]: the protocol core, with no I/O;
//! - [`config`]: the config file, read and checked into typed settings;
//! - [`rt`]: links, streams and sessions, the threads that drive the core;
//! - [`server`], [`client`]: the two daemons;
//! - [`ops`], [`metrics`], [`status`], [`systemd`], [`cli`]: reloads, stats reports,
//!   the Prometheus endpoint and `mtcp status`, the service manager, the
//!   command line.
// `deny`, not `forbid`: `util::tcpinfo` holds the one justified exception
// (a `getsockopt(TCP_INFO)` no maintained crate offers safely), allowed
// there and nowhere else.
#![deny(unsafe_code)]

pub mod util;

pub mod proto;

pub mod config;

pub mod rt;

pub mod client;
pub mod server;

pub mod cli;
pub mod metrics;
pub mod ops;
pub mod status;
pub mod systemd;
