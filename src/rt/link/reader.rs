//! `link-N-rx`: reads the link, decodes frames, answers PINGs and hands every
//! other frame to the host; when the link ends, tells the host so that it
//! re-sends what the link may have lost.

use super::{LinkError, LinkHandle, LinkHost, LinkSettings};
use crate::proto::frame::{self, Frame};
use crate::rt::secure::Opener;
use crate::util::net::is_timeout;
use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

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
    keepalive_timeout: Duration,
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
        if self.opener.is_sealed() {
            self.pump_records()
        } else {
            self.pump_plain()
        }
    }

    /// An encrypted link: frames are decoded where their record was opened.
    /// Our sender never lets a frame straddle two records; a frame that does
    /// (another sender's layout) is put together in `carry`.
    fn pump_records(&mut self) -> Result<(), LinkError> {
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let text = match self.opener.next_record(&mut &*self.socket) {
                Ok([]) => return Ok(()),
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_failed(e, self.keepalive_timeout)),
            };
            if self.link.is_dead() {
                return Ok(());
            }
            let frames = Frames {
                link: &self.link,
                host: &*self.host,
                max_len: self.max_len,
            };
            frames.count_in(text.len());
            if carry.is_empty() {
                let used = frames.deliver(text)?;
                carry.extend_from_slice(&text[used..]);
            } else {
                carry.extend_from_slice(text);
                let used = frames.deliver(&carry)?;
                carry.drain(..used);
            }
        }
    }

    /// A plain link: bytes are read into one buffer, frames decoded there.
    fn pump_plain(&mut self) -> Result<(), LinkError> {
        // Room for a whole frame.
        let room = self.max_len as usize + 4;
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
                Err(e) => return Err(read_failed(e, self.keepalive_timeout)),
            };
            if self.link.is_dead() {
                return Ok(());
            }
            end += n;
            let frames = Frames {
                link: &self.link,
                host: &*self.host,
                max_len: self.max_len,
            };
            frames.count_in(n);
            start += frames.deliver(&buf[start..end])?;
            if start == end {
                start = 0;
                end = 0;
            }
        }
    }
}

/// Decodes frames and hands them on: a PING is answered, a PONG measures
/// the link, everything else goes to the host.
struct Frames<'a> {
    link: &'a LinkHandle,
    host: &'a dyn LinkHost,
    max_len: u32,
}

impl Frames<'_> {
    fn count_in(&self, bytes: usize) {
        self.link
            .stats
            .bytes_in
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Delivers every whole frame at the front of `bytes`; returns how many
    /// bytes they took (the rest is the start of a frame).
    fn deliver(&self, bytes: &[u8]) -> Result<usize, LinkError> {
        let mut used = 0;
        while let Some((f, n)) =
            frame::decode(&bytes[used..], self.max_len).map_err(|e| LinkError::Frame(e.into()))?
        {
            self.link.stats.frames_in.fetch_add(1, Ordering::Relaxed);
            self.handle(f)?;
            used += n;
        }
        Ok(used)
    }

    fn handle(&self, f: Frame<'_>) -> Result<(), LinkError> {
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
                .on_frame(self.link, other)
                .map_err(LinkError::Frame),
        }
    }
}

/// What a failed read means for the link.
fn read_failed(e: io::Error, keepalive_timeout: Duration) -> LinkError {
    if is_timeout(&e) {
        LinkError::KeepaliveTimeout(keepalive_timeout)
    } else {
        LinkError::Read(e)
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
