//! A stream of one end: its two directions' states, the application on
//! either side, and what rt's threads do with them. Where rt runs a thread,
//! this runs a step of `Endpoint::poll`: the stream reader (`read_loop`:
//! application bytes into DATA within the credit, FIN at the end) and the
//! stream writer (`write_loop`: `writer_step`, held-back and owed ACKs, the
//! final ACK). Where rt's link reader routes a frame (`Session::on_frame`),
//! `Endpoint::on_frame` does the same.

use super::{AckCause, Ended, Endpoint};
use crate::sim::app::{AppPlan, AppReader, AppWriter};
use crate::sim::network::{Arrival, FrameLog, LinkId, Network, Side, Wire};
use crate::sim::util::content;
use mtcp::proto::error::Violation;
use mtcp::proto::frame::{self, Frame, RstReason, StreamId};
use mtcp::proto::recv::{self, Deliverer, RecvState, WriterStep};
use mtcp::proto::send::{self, Payload, STREAM_FLOOR, SendState};
use mtcp::proto::table::{Lookup, Outcome};
use std::sync::Arc;
use std::time::Instant;

/// The stream writer's state between steps (rt's `stream-N-tx`).
#[derive(Debug, Default)]
pub(super) struct Writer {
    /// Bytes taken by `writer_step` and being written.
    pub(super) chunk: Vec<u8>,
    pub(super) written: usize,
    pub(super) active: bool,
    /// Its bell rang.
    pub(super) wake: bool,
    /// A held-back ACK falls due then.
    pub(super) due: Option<Instant>,
}

/// One stream at one end: the core's two states, the local application's
/// two sides, and the writer task.
#[derive(Debug)]
pub(super) struct SimStream {
    pub(super) send: SendState,
    pub(super) recv: RecvState,
    /// The local application's bytes towards the peer.
    pub(super) out: AppWriter,
    /// The local socket the peer's bytes are written to.
    pub(super) inp: AppReader,
    pub(super) writer: Writer,
    /// Server: the backend connects then; `None` once connected.
    pub(super) connect_at: Option<Instant>,
    pub(super) send_done: bool,
    pub(super) recv_done: bool,
    /// Since when the reader has had bytes (or its FIN) but no credit.
    pub(super) waiting_credit_since: Option<Instant>,
    /// When the stall check is due again (rt: the session's stall thread).
    pub(super) stall_due: Option<Instant>,
}

/// The receive path's view of one stream and its socket.
struct Delivery<'a> {
    recv: &'a mut RecvState,
    app: &'a mut AppReader,
    socket: bool,
    now: Instant,
}

impl Deliverer for Delivery<'_> {
    fn state(&mut self) -> &mut RecvState {
        self.recv
    }
    fn write_unlocked(&mut self, bytes: &[u8]) -> usize {
        self.app.take(bytes, self.now)
    }
    fn has_socket(&self) -> bool {
        self.socket
    }
    fn copy_piece(&mut self, bytes: &[u8]) -> Vec<u8> {
        bytes.to_vec()
    }
    fn recycle(&mut self, _: Vec<u8>) {}
}

impl Endpoint {
    // ---- streams -------------------------------------------------------

    fn new_stream(&self, id: StreamId, plan: &AppPlan, now: Instant) -> SimStream {
        let from_client = self.side == Side::Client;
        SimStream {
            send: if from_client {
                SendState::new()
            } else {
                SendState::opened_by_peer()
            },
            recv: RecvState::new(u64::from(self.cfg.window), now),
            out: AppWriter::new(
                content(id, from_client, plan.send),
                plan.close,
                plan.write_pace,
                now,
            ),
            inp: AppReader::new(plan.read, self.cfg.socket_buffer),
            writer: Writer::default(),
            connect_at: (self.side == Side::Server).then_some(now + plan.connect_delay),
            send_done: false,
            recv_done: false,
            waiting_credit_since: None,
            stall_due: None,
        }
    }

    /// The client's application connects: a new stream, announced by OPEN.
    pub fn open(&mut self, plan: &AppPlan, net: &mut Network, now: Instant) -> StreamId {
        let (id, _) = self
            .table
            .open_local(|id| id)
            .expect("the client opens a stream");
        let st = self.new_stream(id, plan, now);
        self.streams.insert(id, st);
        self.stats.opened += 1;
        self.send_control(Frame::Open { stream: id }, net, now);
        id
    }

    /// The stream a frame is for (rt: `stream_for`): a live one, a new one
    /// the client opens (server), or none.
    fn stream_for(
        &mut self,
        id: StreamId,
        create: bool,
        net: &mut Network,
        now: Instant,
    ) -> Option<StreamId> {
        match self.table.lookup(id, create) {
            Lookup::Known(id) => Some(id),
            Lookup::Candidate(id) => {
                let plan = self
                    .plans
                    .remove(&id)
                    .unwrap_or_else(|| self.default_plan.clone());
                let st = self.new_stream(id, &plan, now);
                self.streams.insert(id, st);
                self.table.insert(id, id);
                self.stats.opened += 1;
                Some(id)
            }
            Lookup::Refused(id) => {
                self.stats.refused += 1;
                self.send_control(
                    Frame::Rst {
                        stream: id,
                        reason: RstReason::Refused,
                    },
                    net,
                    now,
                );
                None
            }
            Lookup::Unknown => None,
        }
    }

    /// Resets a stream (rt: `abort_stream`): tells the peer if asked, gives
    /// back its budget, and forgets it.
    pub fn abort(
        &mut self,
        id: StreamId,
        reason: RstReason,
        tell: bool,
        net: &mut Network,
        now: Instant,
    ) {
        if !self.streams.contains_key(&id) {
            return;
        }
        if tell {
            self.send_control(Frame::Rst { stream: id, reason }, net, now);
        }
        let Some(mut st) = self.streams.remove(&id) else {
            return;
        };
        let freed = st.send.abandon(drop);
        self.release(freed);
        let outcome = Outcome::Reset { reason, told: tell };
        self.table.remove(id, outcome);
        self.ended.insert(
            id,
            Ended {
                outcome,
                at: now,
                received: std::mem::take(&mut st.inp.got),
                sent: st.out.taken(),
            },
        );
    }

    fn violation(&mut self, id: StreamId, v: Violation, net: &mut Network, now: Instant) {
        self.stats.violations.push((id, v));
        self.abort(id, RstReason::Protocol, true, net, now);
    }

    fn release(&mut self, freed: u64) {
        self.budget_used = self
            .budget_used
            .checked_sub(freed)
            .expect("the budget got back more than was charged");
    }

    /// Drops a stream whose both directions finished.
    fn finish_if_done(&mut self, id: StreamId, now: Instant) {
        let done = self
            .streams
            .get(&id)
            .is_some_and(|s| s.send_done && s.recv_done);
        if !done {
            return;
        }
        let Some(mut st) = self.streams.remove(&id) else {
            return;
        };
        let outcome = Outcome::Finished {
            final_ack: st.recv.ack_sent(),
        };
        self.table.remove(id, outcome);
        self.ended.insert(
            id,
            Ended {
                outcome,
                at: now,
                received: std::mem::take(&mut st.inp.got),
                sent: st.out.taken(),
            },
        );
    }

    // ---- receiving frames ------------------------------------------------

    /// Bytes a link delivers: decodes every whole frame and routes it.
    pub fn on_arrival(&mut self, a: Arrival, net: &mut Network, now: Instant) {
        let mut buf = self.rx.remove(&a.link).unwrap_or_default();
        buf.extend_from_slice(&a.bytes);
        let limit = frame::max_frame_len(self.cfg.max_payload);
        let mut used = 0;
        loop {
            match frame::decode(&buf[used..], limit) {
                Ok(Some((f, n))) => {
                    used += n;
                    self.received.push(FrameLog {
                        at: now,
                        link: a.link,
                        from: self.side.peer(),
                        wire: Wire::of(&f),
                    });
                    self.on_frame(a.link, f, net, now);
                }
                Ok(None) => break,
                Err(_) => {
                    self.stats.decode_errors += 1;
                    self.broken.push(a.link);
                    return;
                }
            }
        }
        buf.drain(..used);
        self.rx.insert(a.link, buf);
    }

    /// Routes one frame (rt: `Session::on_frame`).
    pub fn on_frame(&mut self, link: LinkId, f: Frame<'_>, net: &mut Network, now: Instant) {
        match f {
            Frame::Open { stream } => {
                self.stream_for(stream, true, net, now);
            }
            Frame::Data {
                stream,
                offset,
                data,
            } => {
                if let Some(id) = self.stream_for(stream, true, net, now) {
                    self.on_data(id, offset, data, net, now);
                }
            }
            Frame::Fin { stream, offset } => match self.stream_for(stream, true, net, now) {
                Some(id) => {
                    let st = self.streams.get_mut(&id).expect("live stream");
                    match st.recv.on_fin(offset) {
                        // rt rings the writer's bell after every FIN: the
                        // writer ends the stream once every byte is written.
                        Ok(again) => {
                            st.writer.wake = true;
                            if let Some(delivered) = again {
                                self.send_ack(id, delivered, AckCause::Resent, net, now);
                            }
                        }
                        Err(v) => self.violation(id, v, net, now),
                    }
                }
                None => self.late_fin(stream, net, now),
            },
            Frame::Ack { stream, delivered } => {
                if let Some(id) = self.stream_for(stream, false, net, now) {
                    self.on_ack(id, delivered, net, now);
                }
            }
            Frame::Rst { stream, reason } => match self.stream_for(stream, false, net, now) {
                Some(id) => self.abort(id, reason, false, net, now),
                None => self.table.reset_unknown(stream),
            },
            Frame::Ping { token } => self.send_on(link, Frame::Pong { token }, net, now),
            Frame::Pong { token } => {
                let now_us = self.micros(now);
                let out = net.bytes_out(link, self.side, now);
                if let Some(est) = self.estimators.get_mut(&link) {
                    est.on_pong(now_us, token, out);
                }
            }
            Frame::GoAway(_) => {}
            // HELLO, WELCOME, REFUSE after the handshake close the link.
            _ => self.broken.push(link),
        }
    }

    fn on_data(&mut self, id: StreamId, offset: u64, data: &[u8], net: &mut Network, now: Instant) {
        let st = self.streams.get_mut(&id).expect("live stream");
        match st.recv.arrival(offset, data.len()) {
            Ok(recv::Arrival::Stale) => self.stats.dup_bytes += data.len() as u64,
            Ok(recv::Arrival::Next { skip }) => self.stats.dup_bytes += skip as u64,
            Ok(recv::Arrival::Ahead) if !st.recv.wants_piece(offset, data.len()) => {
                self.stats.dup_bytes += data.len() as u64
            }
            _ => {}
        }
        let mut d = Delivery {
            recv: &mut st.recv,
            app: &mut st.inp,
            socket: st.connect_at.is_none(),
            now,
        };
        let ack = match recv::on_data(&mut d, offset, data, now) {
            Ok(out) => {
                st.writer.wake |= out.wake_writer;
                out.ack
            }
            Err(v) => return self.violation(id, v, net, now),
        };
        let Some(delivered) = ack else {
            return;
        };
        self.frame_acks += 1;
        let k = self.cfg.ack_queue_full_every;
        if k > 0 && self.frame_acks.is_multiple_of(k) {
            // rt: the control queue was full; the writer sends it.
            let st = self.streams.get_mut(&id).expect("live stream");
            st.recv.owe_ack();
            st.writer.wake = true;
        } else {
            self.send_ack(id, delivered, AckCause::Data, net, now);
        }
    }

    fn on_ack(&mut self, id: StreamId, delivered: u64, net: &mut Network, now: Instant) {
        let st = self.streams.get_mut(&id).expect("live stream");
        match st.send.on_ack(delivered, now, drop) {
            Ok(out) => {
                if out.finished {
                    st.send_done = true;
                }
                self.release(out.freed);
                self.finish_if_done(id, now);
            }
            Err(v) => self.violation(id, v, net, now),
        }
    }

    /// A FIN for a stream that is not in the table (rt: `answer_late_fin`).
    fn late_fin(&mut self, id: StreamId, net: &mut Network, now: Instant) {
        match self.table.late_fin_reply(id) {
            Some(Frame::Ack { stream, delivered }) => {
                self.stats.late_fin_replies += 1;
                self.send_ack(stream, delivered, AckCause::LateFin, net, now);
            }
            Some(reply) => {
                self.stats.late_fin_replies += 1;
                self.send_control(reply, net, now);
            }
            None => {}
        }
    }

    // ---- the stream threads --------------------------------------------

    /// Runs every stream's writer and reader as far as they can go now,
    /// then looks for stalls.
    pub fn poll(&mut self, net: &mut Network, now: Instant) {
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            if let Some(st) = self.streams.get_mut(&id) {
                st.inp.advance(now);
                st.out.advance(now);
                if st.connect_at.is_some_and(|t| t <= now) {
                    st.connect_at = None;
                    st.writer.wake = true;
                }
            }
            self.run_writer(id, net, now);
            self.run_reader(id, net, now);
        }
        self.check_stalls(net, now);
    }

    /// The stream writer (rt: `write_loop`): writes what `writer_step`
    /// hands it, sends the ACKs it is given, ends the receiving side.
    fn run_writer(&mut self, id: StreamId, net: &mut Network, now: Instant) {
        let mut look = false;
        // A writer makes at most a chunk, a finish and a wait per step.
        for _ in 0..8 {
            let Some(st) = self.streams.get_mut(&id) else {
                return;
            };
            if st.connect_at.is_some() || st.recv_done {
                return;
            }
            let w = &mut st.writer;
            if w.active {
                let n = st.inp.take(&w.chunk[w.written..], now);
                w.written += n;
                if w.written < w.chunk.len() {
                    return;
                }
                w.active = false;
                w.chunk.clear();
                if let Some(delivered) = st.recv.writer_wrote(now) {
                    self.send_ack(id, delivered, AckCause::Written, net, now);
                }
                look = true;
                continue;
            }
            let due = w.due.is_some_and(|t| t <= now);
            if !(look || w.wake || due) {
                return;
            }
            look = false;
            w.wake = false;
            w.due = None;
            let before = st.recv.ack_sent();
            match st.recv.writer_step(&mut w.chunk, now) {
                WriterStep::Write => {
                    w.active = true;
                    w.written = 0;
                }
                WriterStep::Finish(fin) => {
                    let ack = st.recv.finish(fin);
                    st.recv_done = true;
                    self.send_ack(id, ack, AckCause::Final, net, now);
                    self.finish_if_done(id, now);
                    return;
                }
                WriterStep::Wait { ack, ack_due } => {
                    w.due = ack_due.map(|d| now + d);
                    if let Some(delivered) = ack {
                        let cause = if delivered > before {
                            AckCause::Due
                        } else {
                            AckCause::Owed
                        };
                        self.send_ack(id, delivered, cause, net, now);
                    }
                    return;
                }
            }
        }
        panic!("stream {id}: the writer did not settle");
    }

    /// The stream reader (rt: `read_loop`): application bytes into DATA
    /// frames while the credit allows, FIN once the application closed.
    fn run_reader(&mut self, id: StreamId, net: &mut Network, now: Instant) {
        let window = self.peer_window();
        let limit = self.payload_limit();
        loop {
            let used = self.budget_used;
            let Some(st) = self.streams.get_mut(&id) else {
                return;
            };
            if st.connect_at.is_some() || st.out.fin_sent {
                return;
            }
            let wants = st.out.available() > 0 || st.out.ends();
            if !wants {
                return;
            }
            // rt waits for credit before it reads, even to find the end.
            let in_flight = st.send.in_flight();
            let credit = send::credit(in_flight, window, self.cfg.send_budget, used);
            if credit == 0 {
                st.waiting_credit_since.get_or_insert(now);
                return;
            }
            if let Some(since) = st.waiting_credit_since.take() {
                let waited = now - since;
                self.stats.longest_credit_wait = self.stats.longest_credit_wait.max(waited);
            }
            let n = st.out.available().min(limit).min(credit as usize);
            if n == 0 {
                let offset = st.send.close();
                st.out.fin_sent = true;
                self.send_control(Frame::Fin { stream: id, offset }, net, now);
                return;
            }
            // What `credit` promises: never past the window, and past the
            // budget only up to the stream's floor.
            let after = in_flight + n as u64;
            assert!(
                after <= window,
                "stream {id}: {after} in flight, window {window}"
            );
            assert!(
                after <= STREAM_FLOOR.min(window) || used + n as u64 <= self.cfg.send_budget,
                "stream {id}: past both its floor and the budget"
            );
            self.stats.credit_checks += 1;
            let bytes: Payload = Arc::new(st.out.take(n));
            let offset = st.send.push(bytes.clone());
            self.budget_used += n as u64;
            if let Some((first, true)) = self.send_data(id, offset, bytes.clone(), net, now) {
                self.duplicate(id, offset, bytes, first, net, now);
            }
        }
    }
}
