//! Small frames on two links (`duplicate_small_frames`, decided by
//! `proto::scheduler::duplicates`): a request or an answer alone in flight
//! on its stream goes to a second, fine link too, so that a segment lost on
//! either link costs it nothing. The peer drops the copy that arrives
//! second by its offset; the copy is counted (`frames_duplicated`).

use super::Session;
use crate::proto::scheduler::{carriers, duplicates};
use crate::proto::send::{Payload, Sent};
use crate::rt::stream::Stream;
use crate::util::sync::lock;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Session {
    /// Sends `bytes` of `stream` at `offset`, which went to link `first`
    /// and are alone in flight on their stream, to a second fine link too,
    /// if the setting and the links' state say so. Never waits.
    pub(super) fn duplicate(&self, stream: &Arc<Stream>, offset: u64, bytes: Payload, first: u64) {
        // Most small frames go out on a clean path: decided without the
        // links' lock when no link lost anything lately.
        let lossy_now = self.links_lossy.load(Ordering::Relaxed);
        if !duplicates(self.tunnel.duplicate, bytes.len(), true, lossy_now) {
            return;
        }
        let spare = {
            let links = lock(&self.links);
            let count = carriers(links.primaries, links.live.len());
            let live = &links.live[..count];
            let lossy = live.iter().any(|l| l.load().tcp.is_some_and(|t| t.lossy));
            if !duplicates(self.tunnel.duplicate, bytes.len(), true, lossy) {
                return;
            }
            let avoid = live.iter().position(|l| l.id == first);
            let Some(i) = links.scheduler.pick_spare(count, |i| live[i].load(), avoid) else {
                return;
            };
            live[i].clone()
        };
        let len = bytes.len() as u64;
        if let Some(end) = spare.offer_data(stream.id, offset, bytes) {
            let at = Instant::now();
            stream.copied(
                offset,
                Sent {
                    link: spare.id,
                    at,
                    end,
                },
            );
            self.stats.frames_duplicated.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_duplicated
                .fetch_add(len, Ordering::Relaxed);
        }
    }
}
