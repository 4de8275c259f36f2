//! A simulation harness for the protocol core (`mtcp::proto`), in the manner
//! of quinn-proto's test `Pair`: a client end and a server end, each built
//! from the core's pieces as the I/O layer builds them, exchange encoded
//! frames over an in-memory network of links on a fake clock.
//!
//! - [`util`]: the fake clock, the seeded generator, the byte patterns;
//! - [`network`]: links as ordered byte pipes with delay, jitter and rate,
//!   that can die;
//! - [`app`]: the applications at both ends (what they write, how they read);
//! - [`endpoint`]: one end: stream table, streams, scheduler, budget, re-send;
//! - [`driver`]: [`Sim`], which runs both ends from event to event;
//! - [`scenario`]: a random scenario, as the property test draws it.
//!
//! Every decision is made from the seed, so a failure replays exactly.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod driver;
pub mod endpoint;
pub mod network;
pub mod scenario;
pub mod util;

pub use app::{AppPlan, ReadPace};
pub use driver::{Sim, SimConfig};
pub use endpoint::{AckCause, AckLog, Endpoint};
pub use network::{FrameLog, LinkSpec, Side, Wire};
pub use scenario::{Case, CaseFault, CaseStream, run_case};
