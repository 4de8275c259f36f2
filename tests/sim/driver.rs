//! The driver: two endpoints, the network between them, the fake clock and
//! the faults a test schedules. `run_until` moves the clock from one event
//! to the next (a segment arriving, a held-back ACK falling due, an
//! application reading, a backend connecting, a fault), lets both ends do
//! everything that is due, and checks the invariants after every step. A
//! step cap and a simulated-time limit turn a stuck protocol into an error
//! with both ends' state, never a hang.

use crate::sim::app::AppPlan;
use crate::sim::endpoint::{Endpoint, EndpointConfig};
use crate::sim::network::{FrameLog, LinkId, LinkSpec, Network, Side};
use crate::sim::util::{Clock, Rng, content, first_difference};
use mtcp::proto::frame::{self, Frame, StreamId};
use mtcp::proto::handshake;
use mtcp::proto::table::Outcome;
use std::time::{Duration, Instant};

/// Everything a simulation starts from.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seeds every random choice (jitter, cut points, test-chosen faults).
    pub seed: u64,
    /// The links up at the start.
    pub links: Vec<LinkSpec>,
    pub client: EndpointConfig,
    pub server: EndpointConfig,
    /// Chance that a frame travels as two segments.
    pub split_chance: f64,
    /// Most steps `run_until` takes in all.
    pub max_steps: u64,
}

impl SimConfig {
    /// `n` links of `spec`, default endpoints.
    pub fn new(seed: u64, n: usize, spec: LinkSpec) -> Self {
        SimConfig {
            seed,
            links: vec![spec; n],
            client: EndpointConfig::default(),
            server: EndpointConfig::default(),
            split_chance: 0.1,
            max_steps: 2_000_000,
        }
    }
}

/// Something that happens to the network at a chosen time.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The link dies; each end learns it after its delay.
    Kill {
        link: LinkId,
        client_learns: Duration,
        server_learns: Duration,
    },
    /// The `n`-th live link (modulo their number) dies, if any is alive.
    KillNth {
        n: usize,
        client_learns: Duration,
        server_learns: Duration,
    },
    /// One end learns that a link died.
    Learn(Side, LinkId),
    /// A new link comes up if none is alive.
    EnsureUp(LinkSpec),
    /// A new link comes up (the client reconnects a slot).
    Up(LinkSpec),
    /// A link's delay, jitter or rate changes.
    Set(LinkId, LinkSpec),
    /// One direction of a link holds everything it carries for this long
    /// (a lost segment that its TCP repairs).
    Stall {
        link: LinkId,
        from: Side,
        hold: Duration,
    },
    /// The same on the `n`-th live link (modulo their number), if any.
    StallNth {
        n: usize,
        from: Side,
        hold: Duration,
    },
}

/// Two ends of a session over a simulated network on a fake clock.
pub struct Sim {
    pub clock: Clock,
    pub net: Network,
    pub client: Endpoint,
    pub server: Endpoint,
    pub rng: Rng,
    faults: Vec<(Instant, u64, Fault)>,
    fault_seq: u64,
    pub steps: u64,
    pub max_steps: u64,
    session_id: u64,
    /// Every link killed, with the frames it had in flight.
    pub kills: Vec<(LinkId, Vec<FrameLog>)>,
    /// Links brought up after the start.
    pub revived: Vec<LinkId>,
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Self {
        let clock = Clock::new();
        let mut rng = Rng::new(cfg.seed);
        let mut net = Network::new(rng.fork());
        net.split_chance = cfg.split_chance;
        let base = clock.base();
        let mut sim = Sim {
            client: Endpoint::new(Side::Client, cfg.client, base),
            server: Endpoint::new(Side::Server, cfg.server, base),
            session_id: rng.next_u64(),
            clock,
            net,
            rng,
            faults: Vec::new(),
            fault_seq: 0,
            steps: 0,
            max_steps: cfg.max_steps,
            kills: Vec::new(),
            revived: Vec::new(),
        };
        for spec in cfg.links {
            sim.add_link(spec);
        }
        sim
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    // ---- links -------------------------------------------------------

    /// Brings a link up at both ends after a real handshake exchange
    /// (HELLO and WELCOME encoded, decoded and checked by `proto`).
    fn add_link(&mut self, spec: LinkSpec) -> LinkId {
        let now = self.now();
        let link = self.net.add_link(spec, now);
        let join = link > 0;
        let role = handshake::LinkRole {
            join,
            ..Default::default()
        };
        let hello = handshake::hello(self.session_id, role, link as u16, self.client.limits());
        let Frame::Hello(h) = decode_handshake(&Frame::Hello(hello)) else {
            panic!("HELLO decoded as another frame");
        };
        let client_limits = handshake::check_hello(&h).expect("the server accepts the HELLO");
        let welcome = handshake::welcome(self.server.limits());
        let server_limits = handshake::check_answer(decode_handshake(&welcome))
            .expect("the client accepts the WELCOME");
        self.server.set_peer_limits(client_limits);
        self.client.set_peer_limits(server_limits);
        // The server has the link once it answered; the client right after.
        self.server.add_link(link, &mut self.net, now);
        self.client.add_link(link, &mut self.net, now);
        link
    }

    /// Brings a new link up now.
    pub fn link_up(&mut self, spec: LinkSpec) -> LinkId {
        let link = self.add_link(spec);
        self.revived.push(link);
        link
    }

    /// Kills a link now; both ends learn at once.
    pub fn kill_link(&mut self, link: LinkId) -> Vec<FrameLog> {
        self.kill_link_learning(link, Duration::ZERO, Duration::ZERO)
    }

    /// Kills a link now; each end learns after its own delay. Returns the
    /// frames that were in flight on it.
    pub fn kill_link_learning(
        &mut self,
        link: LinkId,
        client_learns: Duration,
        server_learns: Duration,
    ) -> Vec<FrameLog> {
        let lost = self.net.kill(link);
        self.kills.push((link, lost.clone()));
        let now = self.now();
        self.schedule(now + client_learns, Fault::Learn(Side::Client, link));
        self.schedule(now + server_learns, Fault::Learn(Side::Server, link));
        self.apply_due_faults(now);
        lost
    }

    /// Schedules a fault at `at`.
    pub fn schedule(&mut self, at: Instant, fault: Fault) {
        self.fault_seq += 1;
        self.faults.push((at, self.fault_seq, fault));
        self.faults.sort_by_key(|(t, seq, _)| (*t, *seq));
    }

    /// Schedules a fault `after` from now.
    pub fn after(&mut self, after: Duration, fault: Fault) {
        let at = self.now() + after;
        self.schedule(at, fault);
    }

    fn apply_due_faults(&mut self, now: Instant) {
        while self.faults.first().is_some_and(|(t, _, _)| *t <= now) {
            let (_, _, fault) = self.faults.remove(0);
            match fault {
                Fault::Kill {
                    link,
                    client_learns,
                    server_learns,
                } => {
                    if self.net.is_alive(link) {
                        self.kill_link_learning(link, client_learns, server_learns);
                    }
                }
                Fault::KillNth {
                    n,
                    client_learns,
                    server_learns,
                } => {
                    let alive = self.net.alive();
                    if !alive.is_empty() {
                        let link = alive[n % alive.len()];
                        self.kill_link_learning(link, client_learns, server_learns);
                    }
                }
                Fault::EnsureUp(spec) => {
                    if self.net.alive().is_empty() {
                        self.link_up(spec);
                    }
                }
                Fault::Learn(side, link) => match side {
                    Side::Client => self.client.link_down(link, &mut self.net, now),
                    Side::Server => self.server.link_down(link, &mut self.net, now),
                },
                Fault::Up(spec) => {
                    self.link_up(spec);
                }
                Fault::Set(link, spec) => self.net.set_spec(link, spec),
                Fault::Stall { link, from, hold } => self.net.stall(link, from, now, now + hold),
                Fault::StallNth { n, from, hold } => {
                    let alive = self.net.alive();
                    if !alive.is_empty() {
                        self.net
                            .stall(alive[n % alive.len()], from, now, now + hold);
                    }
                }
            }
        }
    }

    // ---- streams -----------------------------------------------------

    /// The client's application connects: the client opens a stream and
    /// the server's backend will follow `server`.
    pub fn open(&mut self, client: AppPlan, server: AppPlan) -> StreamId {
        let now = self.now();
        let id = self.client.open(&client, &mut self.net, now);
        self.server.plans.insert(id, server);
        id
    }

    /// Encodes a frame onto `link` as if `from` had sent it, bypassing
    /// every rule (a duplicate, a hostile peer).
    pub fn inject(&mut self, link: LinkId, from: Side, f: Frame<'_>) {
        let now = self.now();
        let Sim {
            client,
            server,
            net,
            ..
        } = self;
        let ep = if from == Side::Client { client } else { server };
        ep.send_raw(link, f, net, now);
    }

    // ---- running -----------------------------------------------------

    /// Does everything due at `now`: faults, arrivals, both ends' streams.
    fn process(&mut self, now: Instant) -> Result<(), String> {
        self.apply_due_faults(now);
        while let Some(a) = self.net.pop_due(now) {
            self.steps += 1;
            if self.steps > self.max_steps {
                return Err(self.report("step cap reached while delivering"));
            }
            match a.to {
                Side::Client => self.client.on_arrival(a, &mut self.net, now),
                Side::Server => self.server.on_arrival(a, &mut self.net, now),
            }
        }
        let broken: Vec<LinkId> = self
            .client
            .broken
            .drain(..)
            .chain(self.server.broken.drain(..))
            .collect();
        for link in broken {
            if self.net.is_alive(link) {
                self.kill_link(link);
            }
        }
        self.client.poll(&mut self.net, now);
        self.server.poll(&mut self.net, now);
        Ok(())
    }

    /// When the next thing happens, if anything ever will.
    fn next_event(&self) -> Option<Instant> {
        [
            self.net.next_arrival(),
            self.client.next_timer(),
            self.server.next_timer(),
            self.faults.first().map(|(t, _, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Checks what must hold after every step, at both ends.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.client.check_invariants()?;
        self.server.check_invariants()
    }

    /// Runs until `done` holds, checking the invariants after every step.
    /// Fails when `limit` of simulated time passes, the step cap is hit,
    /// or nothing is left to happen while `done` is still false.
    pub fn run_until(
        &mut self,
        mut done: impl FnMut(&Sim) -> bool,
        limit: Duration,
    ) -> Result<(), String> {
        let deadline = self.now() + limit;
        loop {
            let now = self.now();
            self.process(now)?;
            self.check_invariants().map_err(|e| self.report(&e))?;
            if done(self) {
                return Ok(());
            }
            self.steps += 1;
            if self.steps > self.max_steps {
                return Err(self.report("step cap reached"));
            }
            match self.next_event() {
                None => return Err(self.report("stuck: nothing left to happen")),
                Some(t) if t > deadline => {
                    return Err(self.report(&format!("time limit of {limit:?} reached")));
                }
                Some(t) if t > now => self.clock.advance_to(t),
                Some(_) => {}
            }
        }
    }

    /// Runs for `d` of simulated time, whatever happens.
    pub fn run_for(&mut self, d: Duration) -> Result<(), String> {
        let end = self.now() + d;
        loop {
            let now = self.now();
            self.process(now)?;
            self.check_invariants().map_err(|e| self.report(&e))?;
            self.steps += 1;
            if self.steps > self.max_steps {
                return Err(self.report("step cap reached"));
            }
            match self.next_event() {
                Some(t) if t <= now => {}
                Some(t) if t <= end => self.clock.advance_to(t),
                _ => {
                    if now < end {
                        self.clock.advance_to(end);
                        self.process(end)?;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// True once both ends have closed every stream in `ids`.
    pub fn ended(&self, ids: &[StreamId]) -> bool {
        ids.iter()
            .all(|id| self.client.ended.contains_key(id) && self.server.ended.contains_key(id))
    }

    /// Checks that stream `id` finished cleanly at both ends and that each
    /// application received exactly the bytes the other wrote: `up` from
    /// the client, `down` from the server.
    pub fn check_exact(&self, id: StreamId, up: usize, down: usize) -> Result<(), String> {
        for (ep, len, from_client) in [(&self.server, up, true), (&self.client, down, false)] {
            let side = ep.side;
            let ended = ep
                .ended
                .get(&id)
                .ok_or_else(|| self.report(&format!("{side:?}: stream {id} has not ended")))?;
            if !matches!(ended.outcome, Outcome::Finished { .. }) {
                return Err(format!(
                    "{side:?}: stream {id} ended {:?}, not finished",
                    ended.outcome
                ));
            }
            let want = content(id, from_client, len);
            if let Some(at) = first_difference(&ended.received, &want) {
                return Err(format!(
                    "{side:?}: stream {id} received {} bytes of {len}, first wrong at {at}",
                    ended.received.len()
                ));
            }
        }
        Ok(())
    }

    /// Checks that nothing is left behind: no stream, no budget in use.
    pub fn check_clean(&self) -> Result<(), String> {
        for ep in [&self.client, &self.server] {
            if ep.open_streams() != 0 || ep.budget_used() != 0 {
                return Err(self.report(&format!(
                    "{:?} not clean: {} streams, budget {}",
                    ep.side,
                    ep.open_streams(),
                    ep.budget_used()
                )));
            }
        }
        Ok(())
    }

    /// Both ends' state, for failure messages.
    pub fn report(&self, why: &str) -> String {
        format!(
            "{why} at {:?} after {} steps; links alive {:?}, next arrival in {:?}\n{}{}",
            self.clock.elapsed(),
            self.steps,
            self.net.alive(),
            self.net
                .next_arrival()
                .map(|t| t.saturating_duration_since(self.now())),
            self.client.describe(),
            self.server.describe()
        )
    }
}

/// Encodes a handshake frame and decodes it back as the peer would.
fn decode_handshake(f: &Frame<'_>) -> Frame<'static> {
    let mut buf = Vec::new();
    frame::encode(f, &mut buf);
    let back = handshake::decode_frame(&buf).expect("a handshake frame decodes");
    match back {
        Frame::Hello(h) => Frame::Hello(h),
        Frame::Welcome(w) => Frame::Welcome(w),
        other => panic!("unexpected handshake frame {other:?}"),
    }
}
