//! Which link carries each frame: the scheduler's pick, the grace a
//! weighing scheduler gives it before handing the frame to another link,
//! the links' `TCP_INFO` samples and probes taken as frames are sent, and
//! the re-send, ahead of queued DATA, of what a lost link carried.

use super::{Links, Session, Wait};
use crate::proto::scheduler::{carriers, stall_grace_us};
use crate::proto::send::{Resend, Sent};
use crate::rt::link::{LinkHandle, Outbound};
use crate::rt::stream::Stream;
use crate::util::sync::lock;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Session {
    /// Re-sends on the live links what a lost link may have carried: the
    /// bytes no live link holds (`proto::send::SendState::resend`; see
    /// [`links_holding_their_bytes`](Self::links_holding_their_bytes)), the
    /// RSTs we told and every stream's OPEN, FIN and ACK.
    pub(super) fn reinject(&self) {
        let mut frames: Vec<Resend> = Vec::new();
        let live = self.links_holding_their_bytes();
        let streams: Vec<Arc<Stream>> = {
            let table = lock(&self.streams);
            frames.extend(table.repeats().map(Resend::Control));
            table.streams().cloned().collect()
        };
        for s in &streams {
            s.resend_frames(&mut frames, |link| !live.contains(&link));
        }
        if frames.is_empty() {
            return;
        }
        log::debug!(
            "session {:016x}: re-sending {} frames of {} streams",
            self.id,
            frames.len(),
            streams.len()
        );
        self.stats
            .frames_resent
            .fetch_add(frames.len() as u64, Ordering::Relaxed);
        for f in frames {
            match f {
                Resend::Control(c) => {
                    self.control(c, Wait::Yes);
                }
                Resend::Data(stream, offset, bytes) => {
                    // Counted for the session and the link that carries it.
                    let len = bytes.len() as u64;
                    let data = Outbound::Data {
                        stream,
                        offset,
                        bytes,
                    };
                    if let Some((link, sent)) = self.route_resent(data) {
                        link.stats.bytes_resent.fetch_add(len, Ordering::Relaxed);
                        link.stats.frames_resent.fetch_add(1, Ordering::Relaxed);
                        self.stats.bytes_resent.fetch_add(len, Ordering::Relaxed);
                        // The bytes ride a new link now: a stall is timed
                        // and judged there.
                        let s = lock(&self.streams).get(stream).cloned();
                        if let Some(s) = s
                            && s.sent_on(offset, sent, self.tunnel.reinject).watch
                        {
                            self.watch(&s);
                        }
                    }
                }
            }
        }
    }

    /// Hands a DATA frame to the link the scheduler picks, and says which
    /// one took it, and when and where in its byte stream. Without a live
    /// link the bytes stay in the stream's retransmission copy and go out
    /// when a link comes up.
    pub(super) fn route_data(&self, mut msg: Outbound) -> Option<(Arc<LinkHandle>, Sent)> {
        self.measure_links(true);
        loop {
            let Some(link) = self.pick_data_link() else {
                self.await_a_link();
                return None;
            };
            if self.tunnel.scheduler.waits_for_its_pick() {
                match link.send_data(msg) {
                    Ok(end) => return Some(sent_on(link, end)),
                    Err(back) => msg = back,
                }
                continue;
            }
            let grace = Duration::from_micros(stall_grace_us(link.load().srtt_us));
            msg = match link.send_data_within(msg, grace) {
                Ok(end) => return Some(sent_on(link, end)),
                Err(back) => back,
            };
            // The picked link took nothing for its grace (now marked
            // stalled) or died: any other carrier not stalled takes the
            // frame, the first to have room. An uplink gone silent fills its
            // queue long before its keepalive declares it dead, and must not
            // hold the others back meanwhile.
            let carriers = self.carrier_links();
            let moving: Vec<Arc<LinkHandle>> = carriers
                .iter()
                .filter(|l| !l.load().stalled)
                .cloned()
                .collect();
            let carriers = if moving.is_empty() { carriers } else { moving };
            if carriers.is_empty() {
                continue;
            }
            for other in carriers.iter().filter(|l| l.id != link.id) {
                msg = match other.try_send_data(msg) {
                    Ok(end) => return Some(sent_on(other.clone(), end)),
                    Err(back) => back,
                };
            }
            match LinkHandle::send_data_to_any(&carriers, msg) {
                Ok((taken, end)) => return Some(sent_on(taken, end)),
                Err(back) => msg = back,
            }
        }
    }

    /// The ids of the live links whose bytes are left to them when another
    /// link dies: all but the stalled ones (a frame waited its grace for
    /// room and they have written nothing since), unless every one is. A
    /// link of the same silent uplink as the dead one dies a moment later;
    /// re-sending its bytes now puts them in offset order with the dead
    /// link's, where its own death would queue them behind those (bench
    /// scenario B: two links of a blackholed uplink died 0.13 s apart, and
    /// the first missing bytes waited behind 0.9 MB re-sent for the
    /// first). Should the stalled link recover, the far end drops the
    /// second copy.
    fn links_holding_their_bytes(&self) -> Vec<u64> {
        let links = lock(&self.links);
        let moving: Vec<u64> = links
            .live
            .iter()
            .filter(|l| !l.load().stalled)
            .map(|l| l.id)
            .collect();
        if moving.is_empty() {
            links.live.iter().map(|l| l.id).collect()
        } else {
            moving
        }
    }

    /// Hands bytes re-sent after a link died to the link the scheduler
    /// picks, ahead of the DATA queued there (`LinkHandle::send_data_ahead`);
    /// `None`, as for [`route_data`](Self::route_data), when no link is up.
    pub(super) fn route_resent(&self, mut msg: Outbound) -> Option<(Arc<LinkHandle>, Sent)> {
        loop {
            let Some(link) = self.pick_data_link() else {
                self.await_a_link();
                return None;
            };
            match link.send_data_ahead(msg) {
                Ok(end) => return Some(sent_on(link, end)),
                Err(back) => msg = back,
            }
        }
    }

    /// No link can take a frame: everything is re-sent when one comes up.
    fn await_a_link(&self) {
        self.reinject_pending.store(true, Ordering::SeqCst);
        // A link may have come up between the pick and the flag.
        if self.link_count() > 0 && self.reinject_pending.swap(false, Ordering::SeqCst) {
            self.reinject();
        }
    }

    /// The links that may carry frames now (`proto::scheduler::carriers`).
    pub(super) fn carrier_links(&self) -> Vec<Arc<LinkHandle>> {
        let links = lock(&self.links);
        let count = carriers(links.primaries, links.live.len());
        links.live[..count].to_vec()
    }

    /// Takes a `TCP_INFO` sample of every link whose last one is old, and
    /// (`probe`, for a scheduler that measures links) PINGs those due for
    /// a measurement. The list is usually empty (a link is due every 10 ms
    /// at most), so this allocates nothing per frame; the system calls run
    /// with no lock held.
    pub(super) fn measure_links(&self, probe: bool) {
        let (due, probe): (Vec<Arc<LinkHandle>>, bool) = {
            let links = lock(&self.links);
            let probe = probe && links.scheduler.measures_links();
            let lossy = links.live.iter().any(|l| l.lossy());
            self.links_lossy.store(lossy, Ordering::Relaxed);
            let mss = links.live.iter().filter_map(|l| l.segment_size()).min();
            self.link_mss.store(mss.unwrap_or(0), Ordering::Relaxed);
            let due = links
                .live
                .iter()
                .filter(|l| l.tcp_sample_due() || (probe && l.probe_due()))
                .cloned()
                .collect();
            (due, probe)
        };
        for link in due {
            link.sample_tcp_if_due();
            if probe {
                link.probe_if_due();
            }
        }
    }

    /// The link for the next DATA frame, as the scheduler picks it.
    pub(super) fn pick_data_link(&self) -> Option<Arc<LinkHandle>> {
        let mut links = lock(&self.links);
        let Links {
            live,
            primaries,
            scheduler,
            ..
        } = &mut *links;
        let i = scheduler.pick(carriers(*primaries, live.len()), |i| live[i].load())?;
        Some(live[i].clone())
    }

    /// The least loaded link, for a control frame.
    pub(super) fn pick_control_link(&self) -> Option<Arc<LinkHandle>> {
        let links = lock(&self.links);
        let count = carriers(links.primaries, links.live.len());
        let i = links
            .scheduler
            .pick_control(count, |i| links.live[i].load())?;
        Some(links.live[i].clone())
    }
}

/// What the stream records of a frame `link` took, ending at `end` of the
/// link's byte stream (`proto::send::Sent`).
fn sent_on(link: Arc<LinkHandle>, end: u64) -> (Arc<LinkHandle>, Sent) {
    let sent = Sent {
        link: link.id,
        at: Instant::now(),
        end,
    };
    (link, sent)
}
