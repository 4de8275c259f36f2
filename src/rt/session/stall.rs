//! Re-sending what holds a stream up (`proto::send::stall` decides; this
//! does it): the session's `stalls-XXXXXXXX` thread looks at every stream
//! with bytes in flight when its stall limit falls due, and sends the bytes
//! at its ACK point again on a spare link when the proto core says so.
//!
//! A stream is watched from the moment it has bytes in flight (a stream
//! reader hands a frame to a link, or an ACK moves with bytes still out)
//! until the proto core finds nothing to watch. Watched streams wait in a
//! queue ordered by when each is due; a look takes only the due ones, so
//! ten thousand streams in flight cost no more per look than one. The
//! thread sleeps until the earliest is due (at most [`MAX_NAP`], so that a
//! stream just watched is looked at in time), and parks when none is
//! watched: an idle session costs no wake-up, a busy one a few per round
//! trip, never one per frame.

use super::Session;
use crate::proto::frame::StreamId;
use crate::proto::scheduler::{LinkLoad, carriers};
use crate::proto::send::{FIRST_LOOK, Payload, Sent, StallCheck, worth_watching};
use crate::rt::link::LinkHandle;
use crate::rt::stream::{Stream, StreamHost};
use crate::util::sync::{Bell, lock};
use crate::util::thread::{self, ThreadCount};
use crossbeam_channel::{Receiver, select};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Least sleep between two looks (a due time already past, a re-send that
/// found no spare link).
const MIN_NAP: Duration = Duration::from_millis(1);
/// Longest sleep while streams are watched: a stream watched meanwhile is
/// looked at this soon (its stall limit is at least 10 ms anyway).
const MAX_NAP: Duration = Duration::from_millis(10);
/// How soon to look again after a stream could not be re-sent for want of
/// a spare link (the links are sampled every 10 ms).
const RETRY: Duration = Duration::from_millis(10);

/// The streams a session watches, and the doorbell of its thread.
#[derive(Default)]
pub(super) struct Watch {
    watched: Mutex<Watched>,
    bell: Bell,
    /// The thread sleeps until rung: nothing was watched at its last look.
    parked: AtomicBool,
}

/// The watched streams and when each is due for a look. Held weakly: a
/// stream that ended is freed (and its socket closed) at once, not when its
/// next look comes up.
#[derive(Default)]
struct Watched {
    streams: BTreeMap<StreamId, Weak<Stream>>,
    /// Earliest first. A stream may be listed more than once (watched
    /// again before an old entry came up); entries of streams no longer
    /// watched are dropped when they come up.
    due: BinaryHeap<Reverse<(Instant, StreamId)>>,
}

impl Watched {
    /// The watched streams due at `now`, taken off the queue.
    fn take_due(&mut self, now: Instant) -> Vec<Arc<Stream>> {
        let mut out: BTreeMap<StreamId, Arc<Stream>> = BTreeMap::new();
        while let Some(Reverse((at, id))) = self.due.peek().copied() {
            if at > now {
                break;
            }
            self.due.pop();
            match self.streams.get(&id).map(Weak::upgrade) {
                Some(Some(s)) => {
                    out.insert(id, s);
                }
                Some(None) => {
                    self.streams.remove(&id);
                }
                None => {}
            }
        }
        out.into_values().collect()
    }
}

impl Session {
    /// Starts the session's stall thread (if re-sending is on). It ends
    /// when the session closes or is gone.
    pub(super) fn start_stall_thread(self: &Arc<Session>, threads: &ThreadCount) {
        if !self.tunnel.reinject {
            return;
        }
        let me: Weak<Session> = Arc::downgrade(self);
        let closed: Receiver<()> = self.closed.receiver().clone();
        let bell = self.watch.bell.receiver().clone();
        let name = format!("stalls-{:08x}", self.id as u32);
        let spawned = thread::spawn_task(threads, name, move || {
            stall_loop(&me, &closed, &bell);
        });
        if let Err(e) = spawned {
            log::warn!(
                "session {:016x}: cannot start its stall thread ({e}); bytes held up on a link are not sent again",
                self.id
            );
        }
    }

    /// True when a stream's bytes sent now should be watched for a stall
    /// (`proto::send::worth_watching`).
    pub(super) fn stalls_matter(&self) -> bool {
        worth_watching(
            self.tunnel.reinject,
            self.links_lossy.load(Ordering::Relaxed),
        )
    }

    /// Watches `stream` for a stall from now on (it has bytes in flight
    /// and was not watched).
    pub(super) fn watch(&self, stream: &Arc<Stream>) {
        if !self.tunnel.reinject {
            return;
        }
        {
            let mut w = lock(&self.watch.watched);
            w.streams.insert(stream.id, Arc::downgrade(stream));
            w.due
                .push(Reverse((Instant::now() + FIRST_LOOK, stream.id)));
        }
        if self.watch.parked.swap(false, Ordering::SeqCst) {
            self.watch.bell.ring();
        }
    }

    /// Looks at the watched streams due at `now`: re-sends what the proto
    /// core says, forgets streams with nothing to watch, queues the others
    /// for when they are due again. Returns when to look next; `None` (and
    /// parked) when nothing is watched.
    fn look_for_stalls(&self, now: Instant) -> Option<Instant> {
        let streams = lock(&self.watch.watched).take_due(now);
        let mut again: Vec<(Instant, StreamId)> = Vec::with_capacity(streams.len());
        let mut idle: Vec<StreamId> = Vec::new();
        if !streams.is_empty() {
            // Fresh TCP_INFO samples: a stall is judged on what the
            // carrier's TCP said after the bytes were sent.
            self.measure_links(false);
            // Every live link, carriers first: bytes may have ridden a
            // backup link, but only a carrier is a spare.
            let (links, count): (Vec<(Arc<LinkHandle>, LinkLoad)>, usize) = {
                let links = lock(&self.links);
                let count = carriers(links.primaries, links.live.len());
                let loads = links.live.iter().map(|l| (l.clone(), l.load())).collect();
                (loads, count)
            };
            let window = StreamHost::peer_window(self);
            for s in &streams {
                let carrier = |id: u64| links.iter().find(|(l, _)| l.id == id).map(|(_, ld)| *ld);
                match s.check_stall(now, window, carrier) {
                    StallCheck::Idle => idle.push(s.id),
                    StallCheck::Wait(t) => again.push((t, s.id)),
                    StallCheck::Resend {
                        offset,
                        bytes,
                        avoid,
                    } => {
                        let t = self.resend_held(s, offset, bytes, avoid, &links[..count], now);
                        again.push((t, s.id));
                    }
                }
            }
        }
        let mut w = lock(&self.watch.watched);
        for id in idle {
            // Unless it was watched again meanwhile (its flag is set again).
            let gone = w
                .streams
                .get(&id)
                .is_some_and(|s| s.upgrade().is_none_or(|s| !s.is_watched()));
            if gone {
                w.streams.remove(&id);
            }
        }
        w.due.extend(again.into_iter().map(Reverse));
        if w.streams.is_empty() {
            w.due.clear();
            self.watch.parked.store(true, Ordering::SeqCst);
            return None;
        }
        let next = w.due.peek().map_or(now + MAX_NAP, |Reverse((t, _))| *t);
        Some(next.min(now + MAX_NAP))
    }

    /// Sends the bytes at `offset` of `s` again on a spare link (fine, not
    /// `avoid`); returns when to look at the stream again.
    fn resend_held(
        &self,
        s: &Arc<Stream>,
        offset: u64,
        bytes: Payload,
        avoid: u64,
        links: &[(Arc<LinkHandle>, LinkLoad)],
        now: Instant,
    ) -> Instant {
        let avoid = links.iter().position(|(l, _)| l.id == avoid);
        let spare = lock(&self.links)
            .scheduler
            .pick_spare(links.len(), |i| links[i].1, avoid);
        let Some(i) = spare else {
            return now + RETRY;
        };
        let link = &links[i].0;
        let len = bytes.len() as u64;
        let Some(end) = link.offer_data(s.id, offset, bytes) else {
            return now + RETRY;
        };
        s.resent(
            offset,
            Sent {
                link: link.id,
                at: now,
                end,
            },
        );
        self.stats.frames_reinjected.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_reinjected
            .fetch_add(len, Ordering::Relaxed);
        log::debug!(
            "session {:016x} stream {}: {len} bytes at {offset} held up, sent again on link {}",
            self.id,
            s.id,
            link.id
        );
        now + RETRY
    }
}

/// The stall thread: looks, sleeps until the next due time (or a ring when
/// parked), until the session closes or is gone.
fn stall_loop(me: &Weak<Session>, closed: &Receiver<()>, bell: &Receiver<()>) {
    loop {
        let now = Instant::now();
        let look = match me.upgrade() {
            Some(s) if !s.is_closed() => s.look_for_stalls(now),
            _ => return,
        };
        match look {
            None => select! {
                recv(bell) -> _ => {},
                recv(closed) -> _ => return,
            },
            Some(t) => {
                let nap = t.saturating_duration_since(now).clamp(MIN_NAP, MAX_NAP);
                select! {
                    recv(bell) -> _ => {},
                    recv(closed) -> _ => return,
                    default(nap) => {},
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::budget::SendBudget;
    use crate::rt::pool::PayloadPool;

    fn stream(id: StreamId) -> Arc<Stream> {
        let budget = Arc::new(SendBudget::new(1 << 20));
        Stream::new(id, 1 << 16, false, Arc::new(PayloadPool::new(16)), budget)
    }

    #[test]
    fn a_look_takes_only_the_due_streams_once_each_and_skips_forgotten_or_ended_ones() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Watched::default();
        let kept: Vec<Arc<Stream>> = [1, 2, 3].map(stream).into();
        for s in &kept {
            w.streams.insert(s.id, Arc::downgrade(s));
        }
        // A stream that ended meanwhile: its entry goes when it comes up.
        let ended = stream(5);
        w.streams.insert(5, Arc::downgrade(&ended));
        drop(ended);
        w.due.extend(
            [
                (t + ms(5), 1),
                (t, 2),
                (t + ms(1), 2),
                (t + ms(9), 3),
                (t, 4),
                (t, 5),
            ]
            .map(Reverse),
        );
        let ids = |v: Vec<Arc<Stream>>| v.iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(w.take_due(t)), [2], "4 is no longer watched, 5 ended");
        assert!(!w.streams.contains_key(&5), "forgotten");
        assert_eq!(
            ids(w.take_due(t + ms(5))),
            [1, 2],
            "2 listed twice, taken once"
        );
        assert_eq!(w.due.len(), 1, "3 waits");
        assert!(w.take_due(t + ms(8)).is_empty());
        assert_eq!(ids(w.take_due(t + ms(9))), [3]);
    }
}
