//! The sending end of one link's socket: queued frames in, bytes on the wire.
//!
//! A link's [`Wire`] sits behind a mutex in its `LinkHandle`. The link
//! writer thread (`link-N-tx`) takes it to write whole batches, blocking as
//! long as the socket needs. Any other thread (a stream reader with DATA, a
//! stream writer with an ACK) may take it with `try_lock` when the link's
//! queues are empty and write its one frame itself: that saves a thread
//! hand-off (a futex wake and a context switch) per frame, which is most of
//! what a relay hop costs on a fast path. That fast path never blocks: when
//! the socket has no room the frame goes to the queue after all, and a frame
//! the socket took only in part is left `pending` for the writer thread,
//! which finishes it before anything else, so frames never interleave.
//!
//! On a plain channel payloads go to the kernel straight from the stream's
//! retransmission copy (`writev`); an encrypted channel copies them into
//! its records and seals them there, which is the one copy encryption needs
//! anyway.

use crate::proto::frame::{self, Frame, StreamId};
use crate::proto::send::Payload;
use crate::rt::secure::Sealer;
use crate::util::net::{is_would_block as is_full, send_now};
use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::ops::Range;
use std::sync::Arc;

/// Frames queued for a link.
pub enum Outbound {
    Control(Frame<'static>),
    Data {
        stream: StreamId,
        offset: u64,
        bytes: Payload,
    },
    /// Write everything queued before this, then close the link.
    Finish,
    /// Nothing to write; wakes the writer to finish a pending frame.
    Flush,
}

/// What a non-blocking write did with a frame.
pub enum Attempt {
    /// All of it is in the socket.
    Sent(usize),
    /// None of it: the socket is full. The caller queues the frame instead.
    Refused,
    /// Part of it (this many bytes); the rest is pending for the writer
    /// thread, which counts those when it writes them.
    Partial(usize),
}

/// One piece of a frame list laid out for `writev`.
enum Piece<'a> {
    Head(Range<usize>),
    Payload(&'a [u8]),
}

/// The socket's sending half and the channel's sealing state.
pub struct Wire {
    sealer: Sealer,
    socket: Arc<TcpStream>,
    /// Scratch: encoded control frames and DATA headers of one write.
    heads: Vec<u8>,
    /// The unwritten tail of a frame the fast path could write only in part.
    pending: Vec<u8>,
    /// The queue load the pending frame was counted with.
    pending_load: usize,
}

impl Wire {
    /// A wire that writes to `socket` through `sealer`.
    pub fn new(sealer: Sealer, socket: Arc<TcpStream>) -> Wire {
        Wire {
            sealer,
            socket,
            heads: Vec::with_capacity(4096),
            pending: Vec::new(),
            pending_load: 0,
        }
    }

    /// True while a partly written frame waits for the writer thread; no
    /// other frame may be written before it.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the pending tail, if any (blocking). Returns the queue load to
    /// uncount and the bytes written.
    pub fn finish_pending(&mut self) -> io::Result<(usize, usize)> {
        if self.pending.is_empty() {
            return Ok((0, 0));
        }
        (&*self.socket).write_all(&self.pending)?;
        let written = self.pending.len();
        self.pending.clear();
        Ok((std::mem::take(&mut self.pending_load), written))
    }

    /// Writes `frames` in order, blocking until the socket took them all.
    /// Returns the bytes written. Call [`finish_pending`] first.
    ///
    /// [`finish_pending`]: Wire::finish_pending
    pub fn write_batch(&mut self, frames: &[Outbound]) -> io::Result<usize> {
        if self.sealer.is_plain() {
            let pieces = self.lay_out(frames);
            let mut slices = slices(&self.heads, &pieces);
            write_all_vectored(&self.socket, &mut slices)
        } else {
            let wire = seal_frames(&mut self.sealer, &mut self.heads, frames)?;
            (&*self.socket).write_all(wire)?;
            Ok(wire.len())
        }
    }

    /// Writes one frame without blocking (the fast path). `load` is what the
    /// frame counts towards the link's queue load while it is pending.
    pub fn try_write(&mut self, msg: &Outbound, load: usize) -> io::Result<Attempt> {
        let frames = std::slice::from_ref(msg);
        let (sent, total) = if self.sealer.is_plain() {
            // One frame: header and payload as two slices on the stack, no
            // allocation per frame on this path.
            self.heads.clear();
            let payload = encode_head(msg, &mut self.heads).unwrap_or_default();
            let slices = [IoSlice::new(&self.heads), IoSlice::new(payload)];
            let total = self.heads.len() + payload.len();
            let sent = match send_now(&self.socket, &slices) {
                Ok(0) => return Ok(Attempt::Refused),
                Ok(n) => n,
                Err(e) if is_full(&e) => return Ok(Attempt::Refused),
                Err(e) => return Err(e),
            };
            if sent < total {
                self.pending = flat_tail(&slices, sent);
            }
            (sent, total)
        } else {
            // Once sealed the records must go out: their nonces are spent.
            let wire = seal_frames(&mut self.sealer, &mut self.heads, frames)?;
            let total = wire.len();
            let sent = match send_now(&self.socket, &[IoSlice::new(wire)]) {
                Ok(n) => n,
                Err(e) if is_full(&e) => 0,
                Err(e) => return Err(e),
            };
            if sent < total {
                self.pending = wire[sent..].to_vec();
            }
            (sent, total)
        };
        if sent == total {
            return Ok(Attempt::Sent(total));
        }
        self.pending_load = load;
        Ok(Attempt::Partial(sent))
    }

    /// Encodes the frames' headers (and whole control frames) into `heads`
    /// and lists what to write, merging neighbouring header bytes.
    fn lay_out<'a>(&mut self, frames: &'a [Outbound]) -> Vec<Piece<'a>> {
        self.heads.clear();
        let mut pieces = Vec::with_capacity(2 * frames.len());
        for msg in frames {
            let start = self.heads.len();
            let payload = encode_head(msg, &mut self.heads);
            let end = self.heads.len();
            if end > start {
                match pieces.last_mut() {
                    Some(Piece::Head(r)) if r.end == start => r.end = end,
                    _ => pieces.push(Piece::Head(start..end)),
                }
            }
            if let Some(p) = payload {
                pieces.push(Piece::Payload(p));
            }
        }
        pieces
    }
}

/// Encodes a control frame, or a DATA frame's header (returning the payload
/// that follows it).
fn encode_head<'a>(msg: &'a Outbound, out: &mut Vec<u8>) -> Option<&'a [u8]> {
    match msg {
        Outbound::Control(f) => {
            frame::encode(f, out);
            None
        }
        Outbound::Data {
            stream,
            offset,
            bytes,
        } => {
            frame::encode_data_header(*stream, *offset, bytes.len() as u32, out);
            Some(bytes)
        }
        Outbound::Finish | Outbound::Flush => None,
    }
}

fn slices<'a>(heads: &'a [u8], pieces: &[Piece<'a>]) -> Vec<IoSlice<'a>> {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Head(r) => IoSlice::new(&heads[r.clone()]),
            Piece::Payload(b) => IoSlice::new(b),
        })
        .collect()
}

/// The bytes of `slices` after the first `skip`.
fn flat_tail(slices: &[IoSlice<'_>], mut skip: usize) -> Vec<u8> {
    let mut tail = Vec::new();
    for s in slices {
        if skip >= s.len() {
            skip -= s.len();
            continue;
        }
        tail.extend_from_slice(&s[skip..]);
        skip = 0;
    }
    tail
}

/// `write_all` for a list of slices (std's is not stable yet).
fn write_all_vectored(mut socket: &TcpStream, mut slices: &mut [IoSlice<'_>]) -> io::Result<usize> {
    let mut written = 0;
    while !slices.is_empty() {
        match socket.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written += n;
                IoSlice::advance_slices(&mut slices, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

/// Encodes `frames` straight into sealed records (`heads` is scratch for
/// their headers); returns the bytes to write.
fn seal_frames<'a>(
    sealer: &'a mut Sealer,
    heads: &mut Vec<u8>,
    frames: &[Outbound],
) -> io::Result<&'a [u8]> {
    sealer.begin();
    for msg in frames {
        heads.clear();
        let payload = encode_head(msg, heads).unwrap_or_default();
        sealer.push_frame(heads, payload)?;
    }
    sealer.finish()
}
