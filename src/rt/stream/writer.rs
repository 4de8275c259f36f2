//! `stream-N-tx`: the reorder buffer → the local socket, returning credit
//! (ACK) as bytes leave, and the end of the stream after the peer's FIN.

use super::{IDLE_CHECK, RECV_DONE, Stream, StreamHost, sleep_until_rung};
use crate::proto::frame::{Frame, RstReason};
use crate::proto::recv::{KEEP_CAPACITY, WriterStep};
use crate::util::sync::lock;
use std::io::Write;
use std::net::{Shutdown as Direction, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Writes what link readers could not write themselves, until the stream
/// ends, is reset or the session closes.
pub(super) fn run(host: &dyn StreamHost, stream: &Arc<Stream>, socket: Arc<TcpStream>) {
    let mut chunk = Vec::new();
    loop {
        if stream.is_reset() {
            return;
        }
        let step = lock(&stream.recv).writer_step(&mut chunk, Instant::now());
        match step {
            WriterStep::Wait { ack, ack_due } => {
                if let Some(delivered) = ack {
                    send_ack(host, stream, delivered);
                }
                if host.is_closed() {
                    return;
                }
                sleep_until_rung(&stream.recv_bell, host, ack_due.unwrap_or(IDLE_CHECK));
            }
            WriterStep::Write => {
                stream.writer_busy.store(true, Ordering::SeqCst);
                let result = (&*socket).write_all(&chunk);
                stream.writer_busy.store(false, Ordering::SeqCst);
                if let Err(e) = result {
                    if !stream.is_reset() {
                        log::debug!("stream {}: local write failed: {e}", stream.id);
                        host.abort_stream(stream, RstReason::Reset, true, false);
                    }
                    return;
                }
                chunk.clear();
                if chunk.capacity() > KEEP_CAPACITY {
                    // A burst grew it; do not keep a burst's worth per stream.
                    chunk = Vec::new();
                }
                let ack = lock(&stream.recv).writer_wrote(Instant::now());
                if let Some(delivered) = ack {
                    send_ack(host, stream, delivered);
                }
            }
            WriterStep::Finish(fin) => {
                stream.write_shut.store(true, Ordering::SeqCst);
                let _ = socket.shutdown(Direction::Write);
                log::debug!(
                    "stream {}: peer finished at {fin}, local write side shut",
                    stream.id
                );
                let ack = lock(&stream.recv).finish(fin);
                send_ack(host, stream, ack);
                if stream.mark_done(RECV_DONE) {
                    host.stream_finished(stream.id, ack);
                }
                return;
            }
        }
    }
}

fn send_ack(host: &dyn StreamHost, stream: &Stream, delivered: u64) {
    host.send_control(Frame::Ack {
        stream: stream.id,
        delivered,
    });
}
