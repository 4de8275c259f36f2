//! An in-memory network of links between the client and the server end.
//!
//! Each link is two ordered byte pipes (one per direction), as a TCP
//! connection is: frames on one link arrive in the order they were sent,
//! each after the link's delay (plus random jitter, never overtaking the
//! frame before it). Frames on different links overtake each other freely,
//! which is where MTCP's reordering comes from. A link may also have a rate:
//! a frame then waits for the frames before it to be transmitted, and the
//! bytes waiting are the link's queue, which the schedulers weigh.
//!
//! The pipes carry encoded bytes, cut at random points now and then, so the
//! receiving end decodes the real wire format, partial frames included.
//! Killing a link loses whatever it still carries, in both directions, as a
//! TCP reset does; each end learns of it separately (the driver decides
//! when). Stalling one direction of a link holds everything it carries, and
//! everything sent on it meanwhile, until the stall ends, as TCP holds a
//! connection's bytes behind a lost segment until it is repaired; the
//! sender's TCP reports the link in loss recovery meanwhile
//! ([`Network::tcp_state`]).

use crate::sim::util::Rng;
use mtcp::proto::frame::{Frame, RstReason, StreamId};
use mtcp::proto::scheduler::{CaState, LOSS_MEMORY_US, TcpState};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A link's number; links are never reused, a revived link is a new one.
pub type LinkId = usize;

/// One end of the simulated session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

/// How a link behaves; both directions alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkSpec {
    /// One-way delay of every frame.
    pub delay: Duration,
    /// Extra random delay per frame, up to this (the link stays in order).
    pub jitter: Duration,
    /// Bytes per second the link transmits; `None`: instantly.
    pub rate: Option<u64>,
}

impl LinkSpec {
    /// A link with a fixed delay, no jitter and no rate limit.
    pub fn delay(delay: Duration) -> Self {
        LinkSpec {
            delay,
            jitter: Duration::ZERO,
            rate: None,
        }
    }

    /// The same link with random extra delay up to `jitter`.
    pub fn jitter(self, jitter: Duration) -> Self {
        LinkSpec { jitter, ..self }
    }

    /// The same link transmitting `bytes_per_sec`.
    pub fn rate(self, bytes_per_sec: u64) -> Self {
        LinkSpec {
            rate: Some(bytes_per_sec),
            ..self
        }
    }
}

/// What a frame on the wire was, without its payload: what tests assert on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Open(StreamId),
    Data {
        stream: StreamId,
        offset: u64,
        len: usize,
    },
    Fin {
        stream: StreamId,
        offset: u64,
    },
    Rst {
        stream: StreamId,
        reason: RstReason,
    },
    Ack {
        stream: StreamId,
        delivered: u64,
    },
    Ping(u64),
    Pong(u64),
    /// HELLO, WELCOME, REFUSE or GOAWAY: not expected after the handshake.
    Other,
}

impl Wire {
    pub fn of(f: &Frame<'_>) -> Wire {
        match *f {
            Frame::Open { stream } => Wire::Open(stream),
            Frame::Data {
                stream,
                offset,
                data,
            } => Wire::Data {
                stream,
                offset,
                len: data.len(),
            },
            Frame::Fin { stream, offset } => Wire::Fin { stream, offset },
            Frame::Rst { stream, reason } => Wire::Rst { stream, reason },
            Frame::Ack { stream, delivered } => Wire::Ack { stream, delivered },
            Frame::Ping { token } => Wire::Ping(token),
            Frame::Pong { token } => Wire::Pong(token),
            _ => Wire::Other,
        }
    }

    /// The stream the frame is for, if any.
    pub fn stream(&self) -> Option<StreamId> {
        match *self {
            Wire::Open(s) => Some(s),
            Wire::Data { stream, .. }
            | Wire::Fin { stream, .. }
            | Wire::Rst { stream, .. }
            | Wire::Ack { stream, .. } => Some(stream),
            _ => None,
        }
    }
}

/// A frame handed to a link: when, where, by whom, what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLog {
    pub at: Instant,
    pub link: LinkId,
    pub from: Side,
    pub wire: Wire,
}

/// Bytes in flight on one pipe; `frames` are those whose last byte they hold.
#[derive(Debug)]
struct Segment {
    at: Instant,
    bytes: Vec<u8>,
    frames: Vec<FrameLog>,
}

/// One direction of a link.
#[derive(Debug)]
struct Pipe {
    segments: VecDeque<Segment>,
    /// Arrival time of the last segment: later ones never arrive earlier.
    last_at: Instant,
    /// When the transmitter is free again (rate-limited links).
    busy_until: Instant,
    /// (transmitted by, bytes) of frames not yet transmitted.
    transmitting: VecDeque<(Instant, u64)>,
    /// Bytes ever handed to this pipe.
    handed: u64,
    /// DATA payload bytes ever handed to this pipe.
    data_bytes: u64,
    data_frames: u64,
    /// Held (a lost segment being repaired) from the first to the second.
    stalled: Option<(Instant, Instant)>,
}

impl Pipe {
    fn new(now: Instant) -> Self {
        Pipe {
            segments: VecDeque::new(),
            last_at: now,
            busy_until: now,
            transmitting: VecDeque::new(),
            handed: 0,
            data_bytes: 0,
            data_frames: 0,
            stalled: None,
        }
    }

    fn queued(&self, now: Instant) -> u64 {
        self.transmitting
            .iter()
            .filter(|(done, _)| *done > now)
            .map(|(_, n)| n)
            .sum()
    }
}

#[derive(Debug)]
struct Link {
    spec: LinkSpec,
    alive: bool,
    pipes: [Pipe; 2],
}

/// Something a pipe delivers now.
#[derive(Debug)]
pub struct Arrival {
    pub link: LinkId,
    pub to: Side,
    pub bytes: Vec<u8>,
    pub frames: Vec<FrameLog>,
}

/// Every link ever made, dead or alive.
#[derive(Debug)]
pub struct Network {
    links: Vec<Link>,
    rng: Rng,
    /// Chance that a frame's bytes travel as two segments.
    pub split_chance: f64,
    /// Frames lost: in flight on a link that died, or sent on a dead one.
    pub lost: Vec<FrameLog>,
}

impl Network {
    pub fn new(rng: Rng) -> Self {
        Network {
            links: Vec::new(),
            rng,
            split_chance: 0.1,
            lost: Vec::new(),
        }
    }

    /// Brings up a new link.
    pub fn add_link(&mut self, spec: LinkSpec, now: Instant) -> LinkId {
        self.links.push(Link {
            spec,
            alive: true,
            pipes: [Pipe::new(now), Pipe::new(now)],
        });
        self.links.len() - 1
    }

    pub fn is_alive(&self, link: LinkId) -> bool {
        self.links[link].alive
    }

    /// Links alive now.
    pub fn alive(&self) -> Vec<LinkId> {
        (0..self.links.len())
            .filter(|&l| self.is_alive(l))
            .collect()
    }

    pub fn spec(&self, link: LinkId) -> LinkSpec {
        self.links[link].spec
    }

    /// Changes a link's delay, jitter or rate for frames sent from now on.
    pub fn set_spec(&mut self, link: LinkId, spec: LinkSpec) {
        self.links[link].spec = spec;
    }

    /// Hands encoded bytes to a link. Returns false when the link is dead
    /// (its sender has not heard yet): the bytes are lost.
    pub fn send(&mut self, log: FrameLog, bytes: Vec<u8>) -> bool {
        let now = log.at;
        let link = &mut self.links[log.link];
        if !link.alive {
            self.lost.push(log);
            return false;
        }
        let spec = link.spec;
        let pipe = &mut link.pipes[log.from.index()];
        let len = bytes.len() as u64;
        pipe.handed += len;
        if let Wire::Data { len, .. } = log.wire {
            pipe.data_bytes += len as u64;
            pipe.data_frames += 1;
        }
        while pipe.transmitting.front().is_some_and(|(t, _)| *t <= now) {
            pipe.transmitting.pop_front();
        }
        let sent = match spec.rate {
            Some(rate) => {
                let start = pipe.busy_until.max(now);
                let took = Duration::from_nanos(len.saturating_mul(1_000_000_000) / rate.max(1));
                pipe.busy_until = start + took;
                pipe.transmitting.push_back((pipe.busy_until, len));
                pipe.busy_until
            }
            None => now,
        };
        let jitter = self.rng.upto(spec.jitter);
        let at = (sent + spec.delay + jitter).max(pipe.last_at);
        pipe.last_at = at;
        if bytes.len() > 1 && self.rng.chance(self.split_chance) {
            let cut = self.rng.range(1, bytes.len() as u64 - 1) as usize;
            pipe.segments.push_back(Segment {
                at,
                bytes: bytes[..cut].to_vec(),
                frames: Vec::new(),
            });
            pipe.segments.push_back(Segment {
                at,
                bytes: bytes[cut..].to_vec(),
                frames: vec![log],
            });
        } else {
            pipe.segments.push_back(Segment {
                at,
                bytes,
                frames: vec![log],
            });
        }
        true
    }

    /// Holds what `link` carries from `from`, and what is sent on it
    /// meanwhile, until `until` (the bytes then arrive in order).
    pub fn stall(&mut self, link: LinkId, from: Side, now: Instant, until: Instant) {
        let pipe = &mut self.links[link].pipes[from.index()];
        for seg in &mut pipe.segments {
            seg.at = seg.at.max(until);
        }
        pipe.last_at = pipe.last_at.max(until);
        let start = pipe
            .stalled
            .map_or(now, |(s, e)| if e > now { s } else { now });
        pipe.stalled = Some((start, until));
    }

    /// What the sending end's TCP would say of `link` now: in loss recovery
    /// while stalled, else open, and lossy up to ten seconds after a stall; a window of one bandwidth-delay product
    /// (at least ten segments) on a rate-limited link, unlimited otherwise;
    /// the bytes transmitted and not yet arrived unacknowledged; the round
    /// trip of the delay. What waits to be transmitted is the link's queue
    /// (`queued`), so nothing counts as unsent in the socket.
    pub fn tcp_state(&self, link: LinkId, from: Side, now: Instant) -> TcpState {
        const MSS: u64 = 1448;
        let l = &self.links[link];
        let pipe = &l.pipes[from.index()];
        let rtt = 2 * l.spec.delay;
        let stall = pipe.stalled.filter(|&(_, end)| end > now);
        let in_pipe: u64 = pipe.segments.iter().map(|s| s.bytes.len() as u64).sum();
        let unacked = in_pipe.saturating_sub(pipe.queued(now));
        TcpState {
            ca_state: if stall.is_some() {
                CaState::Recovery
            } else {
                CaState::Open
            },
            retransmits: 0,
            cwnd_bytes: l.spec.rate.map_or(u64::MAX, |r| {
                (r.saturating_mul(rtt.as_micros() as u64) / 1_000_000).max(10 * MSS)
            }),
            notsent_bytes: 0,
            unacked_bytes: unacked,
            since_ack_us: stall.map_or(0, |(start, _)| (now - start).as_micros() as u64),
            rtt_us: rtt.as_micros() as u64,
            lossy: pipe.stalled.is_some_and(|(start, end)| {
                now >= start && now < end + Duration::from_micros(LOSS_MEMORY_US)
            }),
            at: now,
        }
    }

    /// Bytes waiting to be transmitted on `link` from `from`.
    pub fn queued(&self, link: LinkId, from: Side, now: Instant) -> u64 {
        self.links[link].pipes[from.index()].queued(now)
    }

    /// Bytes ever handed to `link` from `from` (rt: `LinkLoad::handed`).
    pub fn handed(&self, link: LinkId, from: Side) -> u64 {
        self.links[link].pipes[from.index()].handed
    }

    /// Bytes `link` has transmitted from `from` (the link's `bytes_out`).
    pub fn bytes_out(&self, link: LinkId, from: Side, now: Instant) -> u64 {
        let pipe = &self.links[link].pipes[from.index()];
        pipe.handed - pipe.queued(now)
    }

    /// DATA payload bytes and frames ever handed to `link` from `from`.
    pub fn data_carried(&self, link: LinkId, from: Side) -> (u64, u64) {
        let pipe = &self.links[link].pipes[from.index()];
        (pipe.data_bytes, pipe.data_frames)
    }

    /// Kills a link: everything in flight on it is lost, in both
    /// directions. Returns what was lost.
    pub fn kill(&mut self, link: LinkId) -> Vec<FrameLog> {
        let l = &mut self.links[link];
        l.alive = false;
        let mut lost = Vec::new();
        for pipe in &mut l.pipes {
            for seg in pipe.segments.drain(..) {
                lost.extend(seg.frames);
            }
            pipe.transmitting.clear();
        }
        self.lost.extend(&lost);
        lost
    }

    /// Frames in flight on `link` now.
    pub fn in_flight(&self, link: LinkId) -> Vec<FrameLog> {
        self.links[link]
            .pipes
            .iter()
            .flat_map(|p| p.segments.iter().flat_map(|s| s.frames.iter().copied()))
            .collect()
    }

    /// When the next segment arrives anywhere.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.links
            .iter()
            .flat_map(|l| l.pipes.iter())
            .filter_map(|p| p.segments.front().map(|s| s.at))
            .min()
    }

    /// The next segment due by `now`, earliest first (ties: lowest link,
    /// client's bytes first), or `None`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Arrival> {
        let mut best: Option<(Instant, LinkId, usize)> = None;
        for (id, l) in self.links.iter().enumerate() {
            for (dir, p) in l.pipes.iter().enumerate() {
                if let Some(s) = p.segments.front()
                    && s.at <= now
                    && best.is_none_or(|(t, _, _)| s.at < t)
                {
                    best = Some((s.at, id, dir));
                }
            }
        }
        let (_, link, dir) = best?;
        let seg = self.links[link].pipes[dir].segments.pop_front()?;
        Some(Arrival {
            link,
            to: if dir == 0 { Side::Server } else { Side::Client },
            bytes: seg.bytes,
            frames: seg.frames,
        })
    }
}
