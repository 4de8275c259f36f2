//! One end of a session, client or server, composed of the protocol core's
//! pieces the way `rt::session` and `rt::stream` compose them, but in one
//! thread on the fake clock: a stream table, a scheduler, per-link
//! estimators, a send budget, and the re-send after a link failure. The
//! streams themselves (their states, the frames for them and their two
//! tasks) are in [`stream`].

mod stall;
mod stream;

use crate::sim::app::AppPlan;
use crate::sim::network::{FrameLog, LinkId, Network, Side, Wire};
use mtcp::proto::Role;
use mtcp::proto::error::Violation;
use mtcp::proto::estimator::Estimator;
use mtcp::proto::frame::{self, Frame, StreamId};
use mtcp::proto::handshake::PeerLimits;
use mtcp::proto::scheduler::{DuplicateMode, LinkLoad, Scheduler, SchedulerKind};
use mtcp::proto::send::{Payload, Resend, STREAM_FLOOR, Sent};
use mtcp::proto::table::{Outcome, StreamTable};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use stream::SimStream;

/// One end's settings (what rt reads from `TunnelConfig`).
#[derive(Clone, Copy, Debug)]
pub struct EndpointConfig {
    /// Largest DATA payload we accept and read at once (`buffer_size`).
    pub max_payload: u32,
    /// What we grant the peer per stream (`stream_window`).
    pub window: u32,
    /// Bytes all our streams together may have unacknowledged.
    pub send_budget: u64,
    pub max_streams: usize,
    pub scheduler: SchedulerKind,
    /// Size of a local socket's receive buffer (paced or stalled apps).
    pub socket_buffer: usize,
    /// Every n-th ACK from the frame path finds the control queue full and
    /// is left to the writer (`owe_ack`); 0: never.
    pub ack_queue_full_every: u64,
    /// Bytes that hold a stream up are sent again on another link
    /// (`reinject`).
    pub reinject: bool,
    /// When a small frame alone in flight also goes to a second link
    /// (`duplicate_small_frames`).
    pub duplicate: DuplicateMode,
    /// The links' TCP state is known (`TCP_INFO`, Linux); `false` as where
    /// it cannot be read.
    pub tcp_info: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            max_payload: 16 * 1024,
            window: 256 * 1024,
            send_budget: 1024 * 1024,
            max_streams: 64,
            scheduler: SchedulerKind::RoundRobin,
            socket_buffer: 64 * 1024,
            ack_queue_full_every: 0,
            reinject: true,
            duplicate: DuplicateMode::OnLoss,
            tcp_info: true,
        }
    }
}

/// Why an ACK frame was sent, so tests can tell paced ACKs from repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckCause {
    /// Taken as a DATA frame was delivered (`recv::on_data`).
    Data,
    /// Taken as the writer finished a chunk (`writer_wrote`).
    Written,
    /// Held back, then sent by the writer when it fell due.
    Due,
    /// One the frame path could not queue, sent by the writer.
    Owed,
    /// The final ACK (the FIN counts as one byte).
    Final,
    /// Repeated after a link failure.
    Resent,
    /// The answer to a FIN for a stream that already ended.
    LateFin,
}

/// One ACK this end sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckLog {
    pub at: Instant,
    pub stream: StreamId,
    pub delivered: u64,
    pub cause: AckCause,
}

/// A stream that left the table, with what its application saw.
#[derive(Debug)]
pub struct Ended {
    pub outcome: Outcome,
    pub at: Instant,
    /// Every byte the local application received.
    pub received: Vec<u8>,
    /// Bytes of the local application the daemon read (and sent).
    pub sent: usize,
}

/// Counters and records for assertions.
#[derive(Debug, Default)]
pub struct Stats {
    /// Frames sent again after link failures.
    pub frames_resent: u64,
    /// Link failures (or link arrivals after an outage) that re-sent.
    pub reinjects: u64,
    /// DATA bytes that arrived and were already here.
    pub dup_bytes: u64,
    /// Streams opened (client: locally; server: by the peer).
    pub opened: u64,
    /// New streams refused (table limits).
    pub refused: u64,
    /// Peer's protocol violations, by stream.
    pub violations: Vec<(StreamId, Violation)>,
    /// FINs for ended streams that got their answer again.
    pub late_fin_replies: u64,
    pub acks: Vec<AckLog>,
    /// Sends of application bytes checked against their credit.
    pub credit_checks: u64,
    /// Longest time a stream with bytes to send waited for credit.
    pub longest_credit_wait: Duration,
    /// Frames handed to a link this end did not yet know was dead.
    pub sent_on_dead_link: u64,
    /// Frames that did not decode (the link is closed).
    pub decode_errors: u64,
    /// DATA frames sent again on another link because they held a
    /// stream's delivery up (rt: `frames_reinjected`), and their bytes.
    pub frames_reinjected: u64,
    pub bytes_reinjected: u64,
    /// Every such re-send: (when, stream, offset, from link, to link).
    pub reinjections: Vec<(Instant, StreamId, u64, LinkId, LinkId)>,
    /// Small DATA frames also sent on a second link, and their bytes.
    pub frames_duplicated: u64,
    pub bytes_duplicated: u64,
}

/// Picks the link for a frame before the scheduler does (tests that need a
/// frame on a given link); `None` leaves it to the scheduler.
pub type Route = Box<dyn FnMut(&Wire, &[LinkId]) -> Option<LinkId>>;

/// One end of the session.
pub struct Endpoint {
    pub side: Side,
    pub cfg: EndpointConfig,
    base: Instant,
    table: StreamTable<StreamId>,
    streams: BTreeMap<StreamId, SimStream>,
    /// Streams that left the table, and how.
    pub ended: BTreeMap<StreamId, Ended>,
    scheduler: Scheduler,
    /// Live links as this end knows them, in the order they came up.
    links: Vec<LinkId>,
    estimators: BTreeMap<LinkId, Estimator>,
    /// Bytes of a frame not yet complete, per link.
    rx: BTreeMap<LinkId, Vec<u8>>,
    /// What the peer announced in the handshake.
    peer: PeerLimits,
    /// A misbehaving sender: ignores the peer's window and uses this one.
    pub window_override: Option<u64>,
    budget_used: u64,
    reinject_pending: bool,
    /// What the server's backend does on each stream the client opens.
    pub plans: BTreeMap<StreamId, AppPlan>,
    /// What it does on a stream without a plan.
    pub default_plan: AppPlan,
    pub route: Option<Route>,
    pub stats: Stats,
    /// Every frame handed to a link, and every frame decoded from one.
    pub sent: Vec<FrameLog>,
    pub received: Vec<FrameLog>,
    /// Links whose bytes did not decode; the driver closes them.
    pub broken: Vec<LinkId>,
    frame_acks: u64,
}

impl Endpoint {
    pub fn new(side: Side, cfg: EndpointConfig, base: Instant) -> Self {
        let role = match side {
            Side::Client => Role::Client,
            Side::Server => Role::Server,
        };
        Endpoint {
            side,
            cfg,
            base,
            table: StreamTable::new(role, cfg.max_streams),
            streams: BTreeMap::new(),
            ended: BTreeMap::new(),
            scheduler: Scheduler::new(cfg.scheduler),
            links: Vec::new(),
            estimators: BTreeMap::new(),
            rx: BTreeMap::new(),
            peer: PeerLimits {
                max_payload: cfg.max_payload,
                window: cfg.window,
            },
            window_override: None,
            budget_used: 0,
            reinject_pending: false,
            plans: BTreeMap::new(),
            default_plan: AppPlan::bulk(0),
            route: None,
            stats: Stats::default(),
            sent: Vec::new(),
            received: Vec::new(),
            broken: Vec::new(),
            frame_acks: 0,
        }
    }

    /// Our receive limits, for the handshake.
    pub fn limits(&self) -> PeerLimits {
        PeerLimits {
            max_payload: self.cfg.max_payload,
            window: self.cfg.window,
        }
    }

    /// Records the limits the peer announced in its handshake.
    pub fn set_peer_limits(&mut self, peer: PeerLimits) {
        self.peer = peer;
    }

    /// The window we may fill per stream towards the peer.
    pub fn peer_window(&self) -> u64 {
        self.window_override.unwrap_or(u64::from(self.peer.window))
    }

    /// Largest DATA payload we send: ours to read, the peer's to accept.
    fn payload_limit(&self) -> usize {
        self.cfg.max_payload.min(self.peer.max_payload) as usize
    }

    /// Bytes all our streams have unacknowledged (the budget in use).
    pub fn budget_used(&self) -> u64 {
        self.budget_used
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.table.len()
    }

    pub fn is_open(&self, id: StreamId) -> bool {
        self.streams.contains_key(&id)
    }

    /// (acknowledged, sent) of a live stream's sending side.
    pub fn send_progress(&self, id: StreamId) -> Option<(u64, u64)> {
        self.streams.get(&id).map(|s| s.send.progress())
    }

    /// Bytes sent and not yet acknowledged on a live stream.
    pub fn in_flight(&self, id: StreamId) -> u64 {
        self.streams.get(&id).map_or(0, |s| s.send.in_flight())
    }

    /// Bytes a live stream's local application received so far.
    pub fn received_by_app(&self, id: StreamId) -> usize {
        self.streams.get(&id).map_or(0, |s| s.inp.got.len())
    }

    /// Changes how a live stream's application reads.
    pub fn set_read_pace(&mut self, id: StreamId, pace: crate::sim::app::ReadPace, now: Instant) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.inp.set_pace(pace, now);
        }
    }

    /// Live links as this end knows them.
    pub fn links(&self) -> &[LinkId] {
        &self.links
    }

    fn micros(&self, now: Instant) -> u64 {
        now.duration_since(self.base).as_micros() as u64
    }

    // ---- links -------------------------------------------------------

    /// A link finished its handshake (rt: `Session::add_link`); re-sends
    /// what earlier links may have lost if none was there to take it.
    pub fn add_link(&mut self, link: LinkId, net: &mut Network, now: Instant) {
        self.links.push(link);
        self.estimators.insert(link, Estimator::new());
        if std::mem::take(&mut self.reinject_pending) {
            self.reinject(net, now);
        }
    }

    /// This end learns that a link died (rt: `Session::remove_link`).
    pub fn link_down(&mut self, link: LinkId, net: &mut Network, now: Instant) {
        let Some(i) = self.links.iter().position(|&l| l == link) else {
            return;
        };
        self.links.remove(i);
        self.estimators.remove(&link);
        self.rx.remove(&link);
        if self.links.is_empty() {
            self.reinject_pending = true;
        } else {
            self.reinject(net, now);
        }
    }

    /// Re-sends what a lost link may have carried, exactly as rt's
    /// `Session::reinject`: RSTs we told, then per live stream its
    /// `SendState::resend` frames and its current ACK.
    fn reinject(&mut self, net: &mut Network, now: Instant) {
        let mut frames: Vec<Resend> = self.table.repeats().map(Resend::Control).collect();
        for (&id, st) in &self.streams {
            st.send.resend(id, &mut frames, |link| {
                !self.links.contains(&(link as LinkId))
            });
            let ack = st.recv.ack_sent();
            if ack > 0 {
                frames.push(Resend::Control(Frame::Ack {
                    stream: id,
                    delivered: ack,
                }));
            }
        }
        if frames.is_empty() {
            return;
        }
        self.stats.reinjects += 1;
        self.stats.frames_resent += frames.len() as u64;
        for f in frames {
            match f {
                Resend::Control(Frame::Ack { stream, delivered }) => {
                    self.send_ack(stream, delivered, AckCause::Resent, net, now)
                }
                Resend::Control(c) => self.send_control(c, net, now),
                Resend::Data(id, offset, bytes) => {
                    self.send_data(id, offset, bytes, net, now);
                }
            }
        }
    }

    // ---- sending frames ------------------------------------------------

    fn load(&self, link: LinkId, net: &Network, now: Instant) -> LinkLoad {
        let est = &self.estimators[&link];
        LinkLoad {
            queued_bytes: net.queued(link, self.side, now),
            srtt_us: est.srtt_us(),
            rate: est.rate(),
            tcp: self
                .cfg
                .tcp_info
                .then(|| net.tcp_state(link, self.side, now)),
            handed: net.handed(link, self.side),
            stalled: false,
        }
    }

    fn routed(&mut self, wire: &Wire) -> Option<LinkId> {
        let route = self.route.as_mut()?;
        route(wire, &self.links).filter(|l| self.links.contains(l))
    }

    /// Encodes `f` onto `link`.
    fn send_on(&mut self, link: LinkId, f: Frame<'_>, net: &mut Network, now: Instant) {
        let mut bytes = Vec::new();
        frame::encode(&f, &mut bytes);
        let log = FrameLog {
            at: now,
            link,
            from: self.side,
            wire: Wire::of(&f),
        };
        self.sent.push(log);
        if !net.send(log, bytes) {
            self.stats.sent_on_dead_link += 1;
        }
    }

    /// A control frame on the least loaded link (rt: `send_control`);
    /// without a link it is dropped, and the re-send when one comes up
    /// covers it.
    pub fn send_control(&mut self, f: Frame<'_>, net: &mut Network, now: Instant) {
        let pick = match self.routed(&Wire::of(&f)) {
            Some(l) => Some(l),
            None => {
                let loads: Vec<LinkLoad> =
                    self.links.iter().map(|&l| self.load(l, net, now)).collect();
                self.scheduler
                    .pick_control(loads.len(), |i| loads[i])
                    .map(|i| self.links[i])
            }
        };
        match pick {
            Some(link) => self.send_on(link, f, net, now),
            None => self.reinject_pending = true,
        }
    }

    fn send_ack(
        &mut self,
        stream: StreamId,
        delivered: u64,
        cause: AckCause,
        net: &mut Network,
        now: Instant,
    ) {
        self.stats.acks.push(AckLog {
            at: now,
            stream,
            delivered,
            cause,
        });
        self.send_control(Frame::Ack { stream, delivered }, net, now);
    }

    /// A DATA frame on the link the scheduler picks (rt: `send_data`),
    /// measuring links first when the scheduler weighs them. Returns the
    /// link, and whether nothing else of the stream is in flight.
    fn send_data(
        &mut self,
        stream: StreamId,
        offset: u64,
        bytes: Payload,
        net: &mut Network,
        now: Instant,
    ) -> Option<(LinkId, bool)> {
        if self.scheduler.measures_links() {
            let now_us = self.micros(now);
            for link in self.links.clone() {
                let out = net.bytes_out(link, self.side, now);
                let est = self.estimators.get_mut(&link).expect("estimator per link");
                if est.probe_due(now_us) {
                    let token = est.start_probe(now_us, out);
                    self.send_on(link, Frame::Ping { token }, net, now);
                }
            }
        }
        let f = Frame::Data {
            stream,
            offset,
            data: &bytes,
        };
        let pick = match self.routed(&Wire::of(&f)) {
            Some(l) => Some(l),
            None => {
                let loads: Vec<LinkLoad> =
                    self.links.iter().map(|&l| self.load(l, net, now)).collect();
                self.scheduler
                    .pick(loads.len(), |i| loads[i])
                    .map(|i| self.links[i])
            }
        };
        match pick {
            Some(link) => {
                self.send_on(link, f, net, now);
                // rt: `Stream::sent_on`, for the stall check.
                let sent = Sent {
                    link: link as u64,
                    at: now,
                    end: net.handed(link, self.side),
                };
                let alone = self
                    .streams
                    .get_mut(&stream)
                    .is_some_and(|st| st.send.sent_on(offset, sent));
                Some((link, alone))
            }
            None => {
                self.reinject_pending = true;
                None
            }
        }
    }

    /// Encodes any frame onto a given link, bypassing every rule: a test's
    /// hostile or duplicated frame.
    pub fn send_raw(&mut self, link: LinkId, f: Frame<'_>, net: &mut Network, now: Instant) {
        self.send_on(link, f, net, now);
    }

    // ---- the driver's view -----------------------------------------------

    /// The earliest time something here is due: a held-back ACK, a backend
    /// connecting, an application reading or writing, a stall check.
    pub fn next_timer(&self) -> Option<Instant> {
        self.streams
            .values()
            .flat_map(|s| {
                [
                    s.writer.due,
                    s.connect_at,
                    s.inp.next_read(),
                    s.out.next_write(),
                    s.stall_due,
                ]
            })
            .flatten()
            .min()
    }

    /// What must hold after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        let side = self.side;
        let in_flight: u64 = self.streams.values().map(|s| s.send.in_flight()).sum();
        if in_flight != self.budget_used {
            return Err(format!(
                "{side:?}: budget in use {} but {in_flight} bytes unacknowledged",
                self.budget_used
            ));
        }
        let floors = self.streams.len() as u64 * STREAM_FLOOR;
        if self.budget_used > self.cfg.send_budget + floors {
            return Err(format!(
                "{side:?}: {} bytes unacknowledged, beyond budget {} plus floors {floors}",
                self.budget_used, self.cfg.send_budget
            ));
        }
        let window = self.peer_window();
        for (id, s) in &self.streams {
            if s.send.in_flight() > window {
                return Err(format!(
                    "{side:?} stream {id}: more in flight than the window"
                ));
            }
            if s.recv.buffered() as u64 > u64::from(self.cfg.window) {
                return Err(format!(
                    "{side:?} stream {id}: buffers more than the window"
                ));
            }
        }
        if self.table.len() != self.streams.len() {
            return Err(format!("{side:?}: table and streams disagree"));
        }
        Ok(())
    }

    /// One line per live stream, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{:?}: links {:?}, budget {}, reinject pending {}, {} ended\n",
            self.side,
            self.links,
            self.budget_used,
            self.reinject_pending,
            self.ended.len()
        );
        for (id, st) in &self.streams {
            s += &format!(
                "  stream {id}: send {:?} fin_sent {} done {} | recv delivered {} ack_sent {} fin {:?} buffered {} done {} | app taken {}/{} got {} | writer active {} due {:?} | connect {:?}\n",
                st.send.progress(),
                st.out.fin_sent,
                st.send_done,
                st.recv.delivered(),
                st.recv.ack_sent(),
                st.recv.fin(),
                st.recv.buffered(),
                st.recv_done,
                st.out.taken(),
                st.out.taken() + st.out.available(),
                st.inp.got.len(),
                st.writer.active,
                st.writer.due,
                st.connect_at,
            );
        }
        s
    }
}
