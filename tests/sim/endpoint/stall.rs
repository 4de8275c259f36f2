//! The session's stall thread (rt: `rt::session::stall`): for every stream
//! with bytes in flight, asks the proto core whether the bytes at its ACK
//! point are held up on a link repairing a loss (`SendState::check_stall`),
//! and sends them again on a spare link when it says so. And small frames
//! on two links (rt: `rt::session::duplicate`).

use super::Endpoint;
use crate::sim::network::{LinkId, Network};
use mtcp::proto::frame::{Frame, StreamId};
use mtcp::proto::scheduler::{LinkLoad, duplicates};
use mtcp::proto::send::{Payload, Sent, StallCheck, worth_watching};
use std::time::{Duration, Instant};

/// How soon the stall thread looks again after a re-send, or after finding
/// no spare link (rt: `RETRY`).
const RETRY: Duration = Duration::from_millis(10);

impl Endpoint {
    /// A small frame alone in flight on its stream, which went to `first`,
    /// goes to a second fine link too if the setting and the links' state
    /// say so (rt: `Session::duplicate`).
    pub(super) fn duplicate(
        &mut self,
        id: StreamId,
        offset: u64,
        bytes: Payload,
        first: LinkId,
        net: &mut Network,
        now: Instant,
    ) {
        let links: Vec<LinkId> = self.links.clone();
        let loads: Vec<LinkLoad> = links.iter().map(|&l| self.load(l, net, now)).collect();
        let lossy = loads.iter().any(|l| l.tcp.is_some_and(|t| t.lossy));
        if !duplicates(self.cfg.duplicate, bytes.len(), true, lossy) {
            return;
        }
        let avoid = links.iter().position(|&l| l == first);
        let Some(i) = self.scheduler.pick_spare(links.len(), |i| loads[i], avoid) else {
            return;
        };
        let copy = self.send_again(links[i], id, offset, &bytes, net, now);
        if let Some(st) = self.streams.get_mut(&id) {
            st.send.copied(offset, copy);
        }
        self.stats.frames_duplicated += 1;
        self.stats.bytes_duplicated += bytes.len() as u64;
    }

    /// Sends `bytes` of stream `id` at `offset` once more on `link` (a copy
    /// or a re-send); returns where they went, as rt's `Sent`.
    fn send_again(
        &mut self,
        link: LinkId,
        id: StreamId,
        offset: u64,
        bytes: &[u8],
        net: &mut Network,
        now: Instant,
    ) -> Sent {
        let f = Frame::Data {
            stream: id,
            offset,
            data: bytes,
        };
        self.send_on(link, f, net, now);
        Sent {
            link: link as u64,
            at: now,
            end: net.handed(link, self.side),
        }
    }

    /// Looks at every stream with bytes in flight at `now`; rt's thread
    /// looks at the watched ones when the earliest is due, which the
    /// decision itself answers with a `Wait` when asked early.
    pub(super) fn check_stalls(&mut self, net: &mut Network, now: Instant) {
        let links: Vec<LinkId> = self.links.clone();
        let loads: Vec<LinkLoad> = links.iter().map(|&l| self.load(l, net, now)).collect();
        let lossy = loads.iter().any(|l| l.tcp.is_some_and(|t| t.lossy));
        if !worth_watching(self.cfg.reinject, lossy) {
            // Nothing watched: no look falls due.
            for st in self.streams.values_mut() {
                st.stall_due = None;
            }
            return;
        }
        let index_of = |id: u64| links.iter().position(|&l| l as u64 == id);
        let window = self.peer_window();
        let mut resends: Vec<(StreamId, u64, Payload, u64)> = Vec::new();
        for (&id, st) in &mut self.streams {
            let check = st
                .send
                .check_stall(now, window, |l| index_of(l).map(|i| loads[i]));
            st.stall_due = match check {
                StallCheck::Idle => None,
                StallCheck::Wait(t) => Some(t),
                StallCheck::Resend {
                    offset,
                    bytes,
                    avoid,
                } => {
                    resends.push((id, offset, bytes, avoid));
                    Some(now + RETRY)
                }
            };
        }
        for (id, offset, bytes, avoid) in resends {
            let Some(i) = self
                .scheduler
                .pick_spare(links.len(), |i| loads[i], index_of(avoid))
            else {
                continue;
            };
            let copy = self.send_again(links[i], id, offset, &bytes, net, now);
            if let Some(st) = self.streams.get_mut(&id) {
                st.send.resent(offset, copy);
            }
            self.stats.frames_reinjected += 1;
            self.stats.bytes_reinjected += bytes.len() as u64;
            let from = index_of(avoid).map_or(usize::MAX, |j| links[j]);
            self.stats
                .reinjections
                .push((now, id, offset, from, links[i]));
        }
    }
}
