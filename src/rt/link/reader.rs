//! `link-N-rx`: reads the link, decodes frames, answers PINGs and hands every
//! other frame to the host; when the link ends, tells the host so that it
//! re-sends what the link may have lost.

use super::{LinkError, LinkHandle, LinkHost, LinkSettings};
use crate::proto::frame::{self, Frame};
use crate::rt::secure::{self, Opener};
use crate::util::net::is_timeout;
use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

pub(super) struct Reader {
    /// Joined before the link leaves the session: once the writer is gone,
    /// nothing can be queued on this link any more, so the re-send that
    /// follows sees every byte the link may have stranded.
    writer: Option<JoinHandle<()>>,
    link: Arc<LinkHandle>,
    host: Arc<dyn LinkHost>,
    opener: Opener,
    socket: Arc<TcpStream>,
    max_len: u32,
    keepalive_timeout: std::time::Duration,
}

impl Reader {
    pub(super) fn new(
        writer: JoinHandle<()>,
        link: Arc<LinkHandle>,
        host: Arc<dyn LinkHost>,
        opener: Opener,
        socket: Arc<TcpStream>,
        settings: LinkSettings,
    ) -> Self {
        Reader {
            writer: Some(writer),
            link,
            host,
            opener,
            socket,
            max_len: frame::max_frame_len(settings.max_payload),
            keepalive_timeout: settings.keepalive_timeout,
        }
    }

    /// Reads until the link ends, then takes it out of its session.
    pub(super) fn run(mut self) {
        let why = self.pump().err().unwrap_or(LinkError::PeerClosed);
        self.link.kill(why);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let why = self.link.take_reason();
        self.host.link_down(&self.link, &why);
    }

    fn pump(&mut self) -> Result<(), LinkError> {
        // Room for a whole frame, and for a whole decrypted record.
        let room = (self.max_len as usize + 4).max(secure::MAX_PLAIN);
        let cap = 4 * room;
        let mut buf = vec![0u8; cap];
        let (mut start, mut end) = (0usize, 0usize);
        loop {
            if cap - end < room {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            let n = match self.opener.read(&mut &*self.socket, &mut buf[end..]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => {
                    return Err(LinkError::KeepaliveTimeout(self.keepalive_timeout));
                }
                Err(e) => return Err(LinkError::Read(e)),
            };
            if self.link.is_dead() {
                return Ok(());
            }
            end += n;
            self.link
                .stats
                .bytes_in
                .fetch_add(n as u64, Ordering::Relaxed);
            while let Some((f, used)) = frame::decode(&buf[start..end], self.max_len)
                .map_err(|e| LinkError::Frame(e.into()))?
            {
                self.link.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                self.handle(f)?;
                start += used;
            }
            if start == end {
                start = 0;
                end = 0;
            }
        }
    }

    fn handle(&mut self, f: Frame<'_>) -> Result<(), LinkError> {
        log::trace!("link {} rx {:?}", self.link.id, TraceFrame(&f));
        match f {
            Frame::Ping { token } => {
                self.link.send_control(Frame::Pong { token }, false);
                Ok(())
            }
            Frame::Pong { token } => {
                self.link.on_pong(token);
                Ok(())
            }
            other => self
                .host
                .on_frame(&self.link, other)
                .map_err(LinkError::Frame),
        }
    }
}

/// Shows DATA without dumping its payload into the trace log.
struct TraceFrame<'a, 'b>(&'a Frame<'b>);

impl std::fmt::Debug for TraceFrame<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Frame::Data {
                stream,
                offset,
                data,
            } => write!(f, "DATA stream {stream} offset {offset} len {}", data.len()),
            other => write!(f, "{other:?}"),
        }
    }
}
