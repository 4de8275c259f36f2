//! A random scenario, as the property test draws it: streams of random
//! sizes opened at random times, links of random shapes, and faults (links
//! dying, with each end learning at its own time; links coming up; links
//! changing shape; links stalling one direction) at random times.
//! `run_case` plays it and checks that every byte arrived exactly and
//! nothing was left behind.

use crate::sim::app::{AppPlan, ReadPace};
use crate::sim::driver::{Fault, Sim, SimConfig};
use crate::sim::network::{LinkSpec, Side};
use crate::sim::util::Rng;
use mtcp::proto::scheduler::SchedulerKind;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);
const KIB: usize = 1024;
/// Simulated time a case may take before it fails.
const LIMIT: Duration = Duration::from_secs(30);

/// One stream of a property case.
#[derive(Debug, Clone)]
pub struct CaseStream {
    pub up: usize,
    pub down: usize,
    /// When the client's application connects, in ms from the start.
    pub open_at: u64,
    /// How long the server's backend takes to connect, in ms.
    pub connect_ms: u64,
}

/// What happens to the network in a property case.
#[derive(Debug, Clone, Copy)]
pub enum CaseFault {
    /// The n-th live link dies; each end learns after its delay (ms).
    Kill {
        n: usize,
        client_ms: u64,
        server_ms: u64,
    },
    /// A new link comes up.
    Up,
    /// The n-th of the first links gets a new delay, jitter and rate.
    Reshape { n: usize },
    /// The n-th live link holds what one end sends on it for `ms` (a loss
    /// being repaired).
    Stall {
        n: usize,
        from_client: bool,
        ms: u64,
    },
}

/// One case of the property below.
#[derive(Debug, Clone)]
pub struct Case {
    /// Seeds the links' shapes and the simulation's own choices.
    pub seed: u64,
    pub links: usize,
    pub streams: Vec<CaseStream>,
    /// (at ms, what).
    pub faults: Vec<(u64, CaseFault)>,
    pub scheduler: SchedulerKind,
    pub window_kib: u32,
    pub payload_kib: u32,
    pub budget_kib: u64,
    pub ack_queue_full_every: u64,
    pub paced_reader: bool,
}

pub fn run_case(c: &Case) -> Result<(), String> {
    let mut rng = Rng::new(c.seed);
    let mut shape = move || {
        let spec = LinkSpec::delay(Duration::from_micros(rng.below(10_000)))
            .jitter(Duration::from_micros(rng.below(3_000)));
        if rng.chance(0.5) {
            spec.rate(rng.range(5_000_000, 100_000_000))
        } else {
            spec
        }
    };
    let mut cfg = SimConfig::new(c.seed, c.links, LinkSpec::delay(MS));
    for l in &mut cfg.links {
        *l = shape();
    }
    for ep in [&mut cfg.client, &mut cfg.server] {
        ep.window = c.window_kib * KIB as u32;
        ep.max_payload = c.payload_kib * KIB as u32;
        ep.send_budget = c.budget_kib * KIB as u64;
        ep.ack_queue_full_every = c.ack_queue_full_every;
        ep.scheduler = c.scheduler;
    }
    cfg.max_steps = 500_000;
    let mut s = Sim::new(cfg);
    let ms = Duration::from_millis;
    let mut last = Duration::ZERO;
    for &(at, fault) in &c.faults {
        let fault = match fault {
            CaseFault::Kill {
                n,
                client_ms,
                server_ms,
            } => Fault::KillNth {
                n,
                client_learns: ms(client_ms),
                server_learns: ms(server_ms),
            },
            CaseFault::Up => Fault::Up(shape()),
            CaseFault::Reshape { n } => Fault::Set(n % c.links, shape()),
            CaseFault::Stall { n, from_client, ms } => Fault::StallNth {
                n,
                from: if from_client {
                    Side::Client
                } else {
                    Side::Server
                },
                hold: Duration::from_millis(ms),
            },
        };
        s.after(ms(at), fault);
        last = last.max(ms(at));
    }
    // However the faults fell, a link is up in the end.
    s.after(last + MS, Fault::EnsureUp(shape()));

    let read = if c.paced_reader {
        ReadPace::Paced {
            bytes: 16 * KIB,
            every: MS,
        }
    } else {
        ReadPace::Unlimited
    };
    let mut order: Vec<&CaseStream> = c.streams.iter().collect();
    order.sort_by_key(|st| st.open_at);
    let start = s.now();
    let mut ids = Vec::new();
    for st in &order {
        let at = start + ms(st.open_at);
        if at > s.now() {
            s.run_for(at - s.now())?;
        }
        let server = AppPlan::bulk(st.down)
            .read(read)
            .connect_delay(ms(st.connect_ms));
        ids.push(s.open(AppPlan::bulk(st.up).read(read), server));
    }
    s.run_until(|s| s.ended(&ids), LIMIT)?;
    for (&id, st) in ids.iter().zip(&order) {
        s.check_exact(id, st.up, st.down)?;
    }
    s.check_clean()?;
    let violations = (&s.client.stats.violations, &s.server.stats.violations);
    if !violations.0.is_empty() || !violations.1.is_empty() {
        return Err(format!("violations: {violations:?}"));
    }
    Ok(())
}
