//! What the kernel knows about a TCP socket (`TCP_INFO`): its congestion
//! state and window, what it holds unsent and unacknowledged, and how often
//! it retransmitted — for the schedulers (a link in loss recovery or with a
//! full window is avoided), the re-sending of what holds a stream up, and
//! the metrics endpoint.
//!
//! This is the crate's one `unsafe` block. No maintained crate exposes
//! `TCP_INFO` safely: `socket2`, `nix` and `rustix` have no getter for it,
//! and `tcp-info-sys` generates its binding with `bindgen` at build time
//! (libclang on every build machine). The call below is the whole of it: one
//! `getsockopt` into a byte buffer we own, whose length the kernel is told
//! and whose used length it reports back; the fields are then read from the
//! bytes by their offsets in `libc::tcp_info`, with no pointer cast. The
//! layout is the kernel's stable ABI (fields are only ever appended), and a
//! field beyond what an older kernel returned reads as absent, not as zero.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsFd;

/// The `TCP_INFO` fields MTCP reads; each `None` when the running kernel's
/// `tcp_info` is too short to have it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// Congestion-avoidance state (`tcpi_ca_state`): 0 Open, 1 Disorder,
    /// 2 CWR, 3 Recovery, 4 Loss.
    pub ca_state: Option<u8>,
    /// Retransmission timeouts in a row for the oldest unacknowledged
    /// segment (`tcpi_retransmits`); 0 while ACKs come back.
    pub retransmits: Option<u8>,
    /// Congestion window, in segments (`tcpi_snd_cwnd`).
    pub cwnd: Option<u32>,
    /// Sending segment size in bytes (`tcpi_snd_mss`).
    pub mss: Option<u32>,
    /// Segments sent and not yet acknowledged (`tcpi_unacked`).
    pub unacked: Option<u32>,
    /// Milliseconds since the last ACK arrived (`tcpi_last_ack_recv`).
    pub last_ack_recv_ms: Option<u32>,
    /// TCP's smoothed round-trip time in µs (`tcpi_rtt`).
    pub rtt_us: Option<u32>,
    /// Bytes in the socket's send queue that TCP has not sent yet
    /// (`tcpi_notsent_bytes`, Linux 4.6 and later).
    pub notsent_bytes: Option<u32>,
    /// Segments retransmitted over the connection's life
    /// (`tcpi_total_retrans`).
    pub total_retrans: Option<u32>,
}

/// Reads `TCP_INFO` of a connected TCP socket.
#[cfg(target_os = "linux")]
pub fn read(socket: &impl AsFd) -> io::Result<TcpInfo> {
    use std::mem::{offset_of, size_of};
    use std::os::fd::AsRawFd;

    const LEN: usize = size_of::<libc::tcp_info>();
    let mut buf = [0u8; LEN];
    let mut len = LEN as libc::socklen_t;
    let fd = socket.as_fd().as_raw_fd();
    // SAFETY: `fd` is borrowed from a live socket for the whole call; the
    // kernel writes at most `len` bytes to `buf`, which is exactly `len`
    // bytes long and exclusively borrowed; `len` is a valid `socklen_t` the
    // kernel updates to the number of bytes it wrote. Nothing is read from
    // `buf` by type: the fields are decoded from bytes below.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let filled = &buf[..(len as usize).min(LEN)];
    let u32_at = |offset| field_u32(filled, offset);
    Ok(TcpInfo {
        ca_state: filled
            .get(offset_of!(libc::tcp_info, tcpi_ca_state))
            .copied(),
        retransmits: filled
            .get(offset_of!(libc::tcp_info, tcpi_retransmits))
            .copied(),
        cwnd: u32_at(offset_of!(libc::tcp_info, tcpi_snd_cwnd)),
        mss: u32_at(offset_of!(libc::tcp_info, tcpi_snd_mss)),
        unacked: u32_at(offset_of!(libc::tcp_info, tcpi_unacked)),
        last_ack_recv_ms: u32_at(offset_of!(libc::tcp_info, tcpi_last_ack_recv)),
        rtt_us: u32_at(offset_of!(libc::tcp_info, tcpi_rtt)),
        notsent_bytes: u32_at(offset_of!(libc::tcp_info, tcpi_notsent_bytes)),
        total_retrans: u32_at(offset_of!(libc::tcp_info, tcpi_total_retrans)),
    })
}

/// `TCP_INFO` is Linux's; elsewhere links are scheduled as before and the
/// metrics series are not reported.
#[cfg(not(target_os = "linux"))]
pub fn read(_socket: &impl AsFd) -> io::Result<TcpInfo> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// The native-endian `u32` at `offset`, if the kernel filled that far.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn field_u32(filled: &[u8], offset: usize) -> Option<u32> {
    let bytes = filled.get(offset..offset + 4)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn short_buffers_read_as_absent() {
        assert_eq!(
            field_u32(&[1, 0, 0, 0], 0),
            Some(u32::from_ne_bytes([1, 0, 0, 0]))
        );
        assert_eq!(field_u32(&[1, 0, 0], 0), None);
        assert_eq!(field_u32(&[0; 8], 6), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_a_live_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut a = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut b, _) = listener.accept().expect("accept");
        a.write_all(b"hello").expect("write");
        let mut got = [0u8; 5];
        b.read_exact(&mut got).expect("read");
        let info = read(&a).expect("TCP_INFO");
        // Loopback loses nothing, and the 5 bytes were sent and read.
        assert_eq!(info.total_retrans, Some(0));
        assert_eq!(info.notsent_bytes, Some(0));
        assert_eq!(info.ca_state, Some(0), "Open");
        assert_eq!(info.retransmits, Some(0));
        assert!(info.cwnd.is_some_and(|c| c >= 2), "{info:?}");
        assert!(info.mss.is_some_and(|m| m > 0), "{info:?}");
        assert!(info.rtt_us.is_some_and(|r| r > 0), "{info:?}");
        assert!(info.last_ack_recv_ms.is_some(), "{info:?}");
        // A socket that is not TCP is an error, not a panic.
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        assert!(read(&udp).is_err());
    }
}
