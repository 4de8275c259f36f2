//! `link-N-tx`: writes what had to be queued for the link, control before
//! data, batched into one `writev`; finishes a frame the fast path wrote
//! only in part; PINGs when idle.

use super::{LinkError, LinkHandle, LinkSettings, Outbound, load_of, trace_out};
use crate::util::sync::lock;
use crossbeam_channel::{Receiver, TryRecvError, select};
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub(super) struct Writer {
    link: Arc<LinkHandle>,
    control: Receiver<Outbound>,
    data: Receiver<Outbound>,
    interval: Duration,
}

impl Writer {
    pub(super) fn new(
        link: Arc<LinkHandle>,
        control: Receiver<Outbound>,
        data: Receiver<Outbound>,
        settings: LinkSettings,
    ) -> Self {
        Writer {
            link,
            control,
            data,
            interval: settings.keepalive_interval,
        }
    }

    /// Writes until the link dies or is closed; a failure kills the link.
    pub(super) fn run(self) {
        if let Err(e) = self.pump() {
            self.link.kill(e);
        }
    }

    fn pump(&self) -> Result<(), LinkError> {
        let kill = self.link.kill.receiver().clone();
        let mut batch = Vec::new();
        loop {
            // Control first: `select!` picks at random among ready queues,
            // so an ACK (or bytes re-sent after a failover) would wait
            // behind a batch of DATA every other time.
            let first = match self.control.try_recv() {
                Ok(m) => Some(m),
                Err(_) => select! {
                    recv(self.control) -> m => m.ok(),
                    recv(self.data) -> m => m.ok(),
                    recv(kill) -> _ => return Ok(()),
                    default(self.interval) => {
                        let ping = Outbound::Control(self.link.probe_frame());
                        self.link.hand(&ping);
                        Some(ping)
                    }
                },
            };
            let Some(first) = first else {
                return Ok(());
            };
            let finish = self.collect(first, &mut batch);
            let load: usize = batch.iter().map(load_of).sum();
            let written = self.write(&batch);
            let frames = batch.len() as u64;
            batch.clear();
            match written {
                Ok((pending_load, bytes)) => {
                    self.link
                        .queued
                        .fetch_sub(load + pending_load, Ordering::Relaxed);
                    self.link.count_out(frames, bytes);
                    self.link.stalled.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    self.link.queued.fetch_sub(load, Ordering::Relaxed);
                    return Err(LinkError::Write(e));
                }
            }
            if finish {
                self.link.kill(LinkError::ClosedByUs);
                return Ok(());
            }
        }
    }

    /// Gathers `first` and whatever else is queued, control first, up to
    /// one batch (`LinkLoad::batch_bytes`: what the link drains in 10 ms);
    /// true when the batch ends with `Finish`.
    fn collect(&self, first: Outbound, batch: &mut Vec<Outbound>) -> bool {
        let mut finish = matches!(first, Outbound::Finish);
        let mut bytes = load_of(&first);
        batch.push(first);
        let limit = self.link.load().batch_bytes();
        while bytes < limit && !finish {
            let next = match self.control.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => match self.data.try_recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
                Err(TryRecvError::Disconnected) => break,
            };
            finish = matches!(next, Outbound::Finish);
            bytes += load_of(&next);
            batch.push(next);
        }
        finish
    }

    /// Writes a frame left pending by the fast path, then the batch.
    /// Returns the pending frame's load and the bytes written.
    fn write(&self, batch: &[Outbound]) -> io::Result<(usize, usize)> {
        for msg in batch {
            trace_out(self.link.id, msg);
        }
        let mut wire = lock(&self.link.wire);
        let (pending_load, mut bytes) = wire.finish_pending()?;
        bytes += wire.write_batch(batch)?;
        Ok((pending_load, bytes))
    }
}
