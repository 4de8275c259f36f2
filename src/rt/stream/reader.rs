//! `stream-N-rx`: the local socket → DATA frames, within the peer's window
//! and the daemon's send budget.

use super::{IDLE_CHECK, Stream, StreamHost, sleep_until_rung};
use crate::proto::frame::{Frame, RstReason};
use crate::util::sync::lock;
use std::io::{self, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// First read size of a stream; doubles up to `buffer_size` while reads
/// fill it.
const INITIAL_READ: usize = 8 * 1024;

/// Reads the local socket until it ends, the stream is reset or the session
/// closes.
pub(super) fn run(host: &dyn StreamHost, stream: &Arc<Stream>, socket: Arc<TcpStream>) {
    // Starts small and doubles while reads fill it: a thousand idle or
    // chatty streams then hold kilobytes each, a bulk stream soon reads
    // `max` bytes per call. `max` follows the session's limit, which learns
    // the links' segment size once they carry data.
    let mut max = host.send_payload_limit();
    let mut size = max.min(INITIAL_READ);
    let mut buf = Vec::new();
    // The last read emptied the socket, so the next one would most likely
    // sleep. A bulk stream then gives its large buffer back and sleeps in a
    // one-byte peek instead: a thousand streams waiting for their
    // applications otherwise held a `buffer_size` buffer each.
    let mut drained = false;
    loop {
        if drained && size > INITIAL_READ {
            host.payloads().give_vec(std::mem::take(&mut buf));
            // The peek may be what reports a reset (once: the error is
            // consumed), so its error must count as the read's.
            if let Err(e) = wait_readable(&socket) {
                return local_read_failed(host, stream, &e);
            }
        }
        // Credit is looked at once there is something to send: what the
        // budget allowed before a long sleep may be spent by others since.
        let Some(credit) = wait_credit(host, stream) else {
            return;
        };
        if buf.len() < size {
            buf = host.payloads().take(size);
        }
        let want = credit.min(size);
        let n = match (&*socket).read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return local_read_failed(host, stream, &e),
        };
        if stream.is_reset() {
            return;
        }
        if n == 0 {
            if reset_by_local_peer(stream, &socket) {
                let e = io::Error::from(io::ErrorKind::ConnectionReset);
                return local_read_failed(host, stream, &e);
            }
            send_fin(host, stream);
            return;
        }
        drained = n < want;
        max = host.send_payload_limit();
        if n == size && size < max {
            size = (size * 2).min(max);
        }
        size = size.min(max);
        let bytes = Arc::new(take_payload(&mut buf, n));
        let offset = lock(&stream.send).push(bytes.clone());
        stream.budget.charge(n as u64);
        host.send_data(stream, offset, bytes);
    }
}

/// Sleeps until the local socket has a byte to read, an end or an error.
fn wait_readable(socket: &TcpStream) -> io::Result<()> {
    loop {
        match socket.peek(&mut [0u8; 1]) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other.map(drop),
        }
    }
}

/// The local socket failed (reset by the application or backend): the peer
/// must see a reset too, never a clean end of a stream that lost bytes.
fn local_read_failed(host: &dyn StreamHost, stream: &Arc<Stream>, e: &io::Error) {
    if !stream.is_reset() {
        log::debug!("stream {}: local read failed: {e}", stream.id);
        host.abort_stream(stream, RstReason::Reset, true, false);
    }
}

/// True when an end of file on the local socket was really a reset whose
/// error another call on the socket took first. A socket reports a reset's
/// error once, to whichever call comes first (a link reader's or the stream
/// writer's send, say); the reader then sees only an end of file, and used
/// to forward a reset as a clean FIN, cutting the stream short unnoticed.
/// After a genuine FIN the socket may still send (CLOSE_WAIT), so an empty
/// send succeeds; after a reset it fails. Our own half-close also makes it
/// fail, hence `write_shut`, which the writer sets before shutting.
fn reset_by_local_peer(stream: &Stream, socket: &TcpStream) -> bool {
    if stream.write_shut.load(Ordering::SeqCst) {
        return false;
    }
    let probe = socket2::SockRef::from(socket).send_with_flags(&[], libc::MSG_DONTWAIT);
    probe.is_err() && !stream.write_shut.load(Ordering::SeqCst)
}

/// The first `n` bytes of `buf` as a payload. A mostly full buffer is handed
/// over as it is (no copy; the caller takes a new one); a small read is
/// copied to a payload of its own size and the buffer kept for the next
/// read, so that bytes waiting for their ACK hold no slack — a thousand
/// chatty streams once held hundreds of MiB of mostly empty buffers.
fn take_payload(buf: &mut Vec<u8>, n: usize) -> Vec<u8> {
    if 2 * n >= buf.len() {
        let mut full = std::mem::take(buf);
        full.truncate(n);
        full
    } else {
        buf[..n].to_vec()
    }
}

/// Waits until the peer's window and the daemon's send budget allow
/// sending; `None` when the stream or session ends meanwhile.
fn wait_credit(host: &dyn StreamHost, stream: &Stream) -> Option<usize> {
    let window = host.peer_window();
    let budget = &stream.budget;
    loop {
        if stream.is_reset() || host.is_closed() {
            return None;
        }
        let own = lock(&stream.send).in_flight();
        let credit = budget.credit(own, window);
        if credit > 0 {
            return Some(credit as usize);
        }
        if own < window {
            // Short of budget, not of window: queue for it, and look once
            // more in case it came back before we were in the queue.
            budget.wait_turn(&stream.budget_waiter);
            if budget.credit(own, window) > 0 {
                continue;
            }
        }
        sleep_until_rung(&stream.send_bell, host, IDLE_CHECK);
    }
}

fn send_fin(host: &dyn StreamHost, stream: &Stream) {
    let offset = lock(&stream.send).close();
    log::debug!(
        "stream {}: local end closed at {offset}, sending FIN",
        stream.id
    );
    host.send_control(Frame::Fin {
        stream: stream.id,
        offset,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_reads_leave_no_slack_in_payloads() {
        let mut buf = vec![1u8; 64 * 1024];
        let small = take_payload(&mut buf, 100);
        assert_eq!(small.len(), 100);
        assert!(small.capacity() < 1024, "a small payload kept a big buffer");
        assert_eq!(
            buf.len(),
            64 * 1024,
            "the read buffer is kept for the next read"
        );
        let big = take_payload(&mut buf, 60 * 1024);
        assert_eq!(big.len(), 60 * 1024);
        assert!(buf.is_empty(), "a full buffer is handed over, not copied");
    }
}
