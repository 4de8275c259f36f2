//! Frames arriving from the links: which stream each is for (the proto
//! table decides), what the stream's state says about it, and what goes
//! back (ACKs, answers to late FINs, RSTs for violations and refusals).
//! Everything here runs on link reader threads, so nothing here waits.

use super::{Session, Wait};
use crate::proto::error::{FrameError, Violation};
use crate::proto::frame::{Frame, RstReason, StreamId};
use crate::proto::handshake::kind_name;
use crate::proto::table::{Lookup, Outcome, StreamTable};
use crate::rt::link::LinkHandle;
use crate::rt::stream::{self, Stream};
use crate::util::sync::lock;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Where a frame for a stream missing from the table goes.
enum Route {
    /// Another thread put the stream there meanwhile.
    Stream(Arc<Stream>),
    /// A stream the peer just opened.
    Opened(Arc<Stream>),
    /// Answer with an RST (limits, closing).
    Refuse,
    /// A stream that ended (or never may open): only a late FIN is answered.
    Unknown,
}

impl Session {
    /// Routes one frame from a link reader (`LinkHost::on_frame`); never
    /// blocks. An error closes the link.
    pub(super) fn route_frame(&self, link: &LinkHandle, f: Frame<'_>) -> Result<(), FrameError> {
        let id = match f {
            Frame::Data { stream, data, .. } => {
                let n = data.len() as u64;
                self.stats.bytes_received.fetch_add(n, Ordering::Relaxed);
                stream
            }
            Frame::Open { stream }
            | Frame::Fin { stream, .. }
            | Frame::Ack { stream, .. }
            | Frame::Rst { stream, .. } => stream,
            Frame::GoAway(reason) => {
                if !self.peer_goaway.swap(true, Ordering::SeqCst) {
                    log::info!(
                        "session {:016x}: peer going away ({reason}), said on link {}",
                        self.id,
                        link.id
                    );
                }
                return Ok(());
            }
            other => return Err(FrameError::Unexpected(kind_name(&other))),
        };
        let known = lock(&self.streams).get(id).cloned();
        match known {
            Some(s) => self.stream_frame(&s, f),
            None => self.unknown_stream_frame(id, f),
        }
        Ok(())
    }

    /// Handles one frame for an established stream (link reader).
    fn stream_frame(&self, s: &Arc<Stream>, f: Frame<'_>) {
        let result = match f {
            Frame::Data { offset, data, .. } => s.on_data(offset, data).map(|ack| {
                if let Some(delivered) = ack {
                    let ack = Frame::Ack {
                        stream: s.id,
                        delivered,
                    };
                    if !self.control(ack, Wait::No) {
                        s.owe_ack();
                    }
                }
            }),
            Frame::Fin { offset, .. } => s.on_fin(offset).map(|again| {
                if let Some(delivered) = again {
                    let ack = Frame::Ack {
                        stream: s.id,
                        delivered,
                    };
                    self.control(ack, Wait::No);
                }
            }),
            Frame::Ack { delivered, .. } => s.on_ack(delivered).map(|finished| {
                if finished {
                    let final_ack = s.ack_sent();
                    self.drop_stream(s.id, Outcome::Finished { final_ack });
                } else if self.stalls_matter() && s.claim_watch() {
                    // The ACK moved to bytes that may be held up.
                    self.watch(s);
                }
            }),
            Frame::Rst { reason, .. } => {
                log::debug!(
                    "session {:016x} stream {}: reset by peer: {reason}",
                    self.id,
                    s.id
                );
                self.abort(s, reason, false, true, Wait::No);
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(v) = result {
            self.violation(s, &v);
        }
    }

    fn violation(&self, s: &Arc<Stream>, v: &Violation) {
        crate::warn_throttled!(
            self.throttles.violation,
            "session {:016x} stream {}: peer broke protocol: {v}",
            self.id,
            s.id
        );
        self.abort(s, RstReason::Protocol, true, true, Wait::No);
    }

    /// A frame for a stream that is not in the table: opens it (server, a
    /// new id within the limits), answers a late FIN, or is dropped.
    fn unknown_stream_frame(&self, id: StreamId, f: Frame<'_>) {
        let may_open = matches!(
            f,
            Frame::Open { .. } | Frame::Data { .. } | Frame::Fin { .. }
        );
        // Looked up and admitted under one lock: another link reader with a
        // frame for the same new stream must find it in the table, not
        // merely "seen" (it would drop its frame).
        let mut table = lock(&self.streams);
        let next = match table.lookup(id, may_open) {
            Lookup::Known(s) => Route::Stream(s),
            Lookup::Candidate(id) => match self.admit(&mut table, id) {
                Some(s) => Route::Opened(s),
                None => {
                    table.refuse(id);
                    Route::Refuse
                }
            },
            Lookup::Refused(_) => Route::Refuse,
            Lookup::Unknown => {
                if matches!(f, Frame::Rst { .. }) {
                    table.reset_unknown(id);
                }
                Route::Unknown
            }
        };
        drop(table);
        match next {
            Route::Stream(s) => self.stream_frame(&s, f),
            Route::Opened(s) => {
                if self.start_backend(&s) {
                    self.stream_frame(&s, f);
                }
            }
            Route::Refuse => self.refuse(id),
            Route::Unknown => {
                if let Frame::Fin { .. } = f {
                    self.answer_late_fin(id);
                }
            }
        }
    }

    /// A FIN for a stream that already left the table: its final ACK (or
    /// our RST) was lost with a link, and the peer is asking again.
    fn answer_late_fin(&self, id: StreamId) {
        let reply = lock(&self.streams).late_fin_reply(id);
        if let Some(frame) = reply {
            self.control(frame, Wait::No);
        }
    }

    /// Opens a stream the peer asked for (server), unless the session is
    /// closing or the server-wide stream limit is reached. Called with the
    /// table locked, so the stream is in it before any other frame looks.
    fn admit(&self, table: &mut StreamTable<Arc<Stream>>, id: StreamId) -> Option<Arc<Stream>> {
        let budget = self.backend.as_ref().map(|b| &b.budget);
        let closing =
            self.is_closed() || self.peer_going_away() || self.goaway_sent.load(Ordering::SeqCst);
        if closing || budget.is_some_and(|b| !b.try_take()) {
            return None;
        }
        let s = Stream::new(
            id,
            self.tunnel.stream_window,
            true,
            self.payloads.clone(),
            self.send_budget.clone(),
        );
        table.insert(id, s.clone());
        self.stats.streams_opened.fetch_add(1, Ordering::Relaxed);
        log::debug!("session {:016x} stream {id}: opened by peer", self.id);
        Some(s)
    }

    /// Starts the thread that connects the backend of a stream the peer
    /// opened; resets the stream if it cannot.
    fn start_backend(&self, s: &Arc<Stream>) -> bool {
        let started = match self.me() {
            Some(me) => stream::start_backend(me, s, &self.threads),
            None => Err(io::Error::other("session gone")),
        };
        if let Err(e) = started {
            crate::warn_throttled!(
                self.throttles.no_thread,
                "session {:016x} stream {}: cannot start thread: {e}",
                self.id,
                s.id
            );
            self.abort(s, RstReason::Refused, true, true, Wait::No);
            return false;
        }
        true
    }

    /// Refuses a stream the peer opened, with an RST.
    fn refuse(&self, id: StreamId) {
        let open = self.stream_count();
        let total = self
            .backend
            .as_ref()
            .map(|b| format!(", server-wide {} of {}", b.budget.used(), b.budget.limit));
        let closing =
            self.peer_going_away() || self.is_closed() || self.goaway_sent.load(Ordering::SeqCst);
        crate::warn_throttled!(
            self.throttles.refused,
            "session {:016x} stream {id}: refused ({open} of {} streams open in session{}{})",
            self.id,
            self.tunnel.max_streams,
            total.unwrap_or_default(),
            if closing { ", closing" } else { "" }
        );
        self.control(
            Frame::Rst {
                stream: id,
                reason: RstReason::Refused,
            },
            Wait::No,
        );
    }
}
