//! The wire protocol: a pure frame codec, bytes in and frames out, no I/O.
//!
//! Every frame is `u32 len | u8 type | body`, big-endian, where `len` counts
//! the type byte and the body. The decoder checks `len` against the caller's
//! limit before it looks at (or waits for) the body, so a peer can never make
//! us buffer more than one maximum-sized frame. DATA borrows its payload from
//! the input buffer: the link reader copies it once, straight into the
//! stream's reorder buffer.

use byteorder::{BigEndian, ByteOrder};
use std::fmt;

/// Magic bytes that open every HELLO, so a stray client (an HTTP request, a
/// port scanner) is recognised and refused at its first frame.
pub const MAGIC: [u8; 4] = *b"MTCP";
/// Protocol version spoken by this build; a peer with another version is
/// refused with a clear reason instead of misreading frames. Version 2
/// added the record cipher choice to secured links (`rt::secure`); version
/// 3 put the session id in the clear at offset 11 of secured links too, for
/// load balancers. Plain frames are as in version 1, but one number names
/// the whole protocol.
pub const VERSION: u8 = 3;
/// Where the session id sits in the first bytes of every link, plain or
/// secured: a load balancer hashes or sticks on these 8 bytes.
pub const SESSION_ID_OFFSET: usize = 11;
/// Where the HELLO flags sit in the first bytes of every link, plain or
/// secured: a load balancer learns a session's server only from a link
/// that starts it (no [`HELLO_JOIN`]), never from one sent astray.
pub const FLAGS_OFFSET: usize = 10;
/// Bytes before the body: `u32 len` + `u8 type`.
pub const HEADER_LEN: usize = 5;
/// Bytes a DATA frame adds to its payload: header, stream id, offset, length.
pub const DATA_OVERHEAD: usize = HEADER_LEN + 4 + 8 + 4;
/// Largest body of any non-DATA frame; used to size limits.
pub const MAX_CONTROL_BODY: usize = 32;
/// HELLO flag: the link joins a session the server already holds (another
/// link started it). A server that does not know the session refuses the
/// link instead of starting a second half of it, which is what happens when
/// a load balancer sends one link astray.
pub const HELLO_JOIN: u8 = 0x01;
/// HELLO flag: the link belongs to a backup path. It carries no data while
/// the session has a link without this flag (both ends follow the rule).
pub const HELLO_BACKUP: u8 = 0x02;
/// HELLO flag: the client's links take different paths (uplinks of unequal
/// rate and round trip), so the server schedules this session's data by
/// measurement (`adaptive`), whatever its own `scheduler` says.
pub const HELLO_PATHS: u8 = 0x04;

const T_HELLO: u8 = 0x01;
const T_WELCOME: u8 = 0x02;
const T_REFUSE: u8 = 0x03;
const T_OPEN: u8 = 0x10;
const T_DATA: u8 = 0x11;
const T_FIN: u8 = 0x12;
const T_RST: u8 = 0x13;
const T_ACK: u8 = 0x14;
const T_PING: u8 = 0x20;
const T_PONG: u8 = 0x21;
const T_GOAWAY: u8 = 0x22;

/// Stream identifier: chosen by the client, unique in a session, never reused.
pub type StreamId = u32;

/// First frame of every link: names the session so links can be grouped, and
/// carries the client's receive limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub version: u8,
    pub flags: u8,
    pub session_id: u64,
    pub link_index: u16,
    /// Largest DATA payload the client accepts.
    pub max_payload: u32,
    /// Bytes the client buffers per stream beyond what it has delivered.
    pub window: u32,
}

/// The server's acceptance of a link, with its own receive limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    pub version: u8,
    pub max_payload: u32,
    pub window: u32,
}

/// Why a link is refused or a peer is going away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkReason {
    BadMagic,
    Version,
    /// The server does not know the session the link wants to join.
    UnknownSession,
    TooManyLinks,
    TooManySessions,
    Auth,
    ShuttingDown,
    Protocol,
    Other(u8),
}

/// Why a stream is aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RstReason {
    /// The application or backend reset its socket.
    Reset,
    /// The server could not connect to the backend.
    ConnectFailed,
    /// The peer broke the protocol on this stream (e.g. exceeded the window).
    Protocol,
    /// The stream could not be accepted (stream limit).
    Refused,
    /// The daemon is shutting down and the drain time ran out.
    Shutdown,
    /// The session the stream belonged to is gone.
    SessionLost,
    Other(u8),
}

/// One decoded (or to-be-encoded) frame. DATA borrows its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Hello(Hello),
    Welcome(Welcome),
    Refuse(LinkReason),
    Open {
        stream: StreamId,
    },
    Data {
        stream: StreamId,
        offset: u64,
        data: &'a [u8],
    },
    /// The sender writes nothing at or past `offset` (half-close).
    Fin {
        stream: StreamId,
        offset: u64,
    },
    Rst {
        stream: StreamId,
        reason: RstReason,
    },
    /// Cumulative: the receiver has handled every byte below `delivered`; a
    /// FIN counts as one byte after the last data byte, as in TCP.
    Ack {
        stream: StreamId,
        delivered: u64,
    },
    Ping {
        token: u64,
    },
    Pong {
        token: u64,
    },
    GoAway(LinkReason),
}

/// Why bytes could not be decoded; the link that sent them is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The length field exceeds the negotiated limit.
    TooLong {
        len: u32,
        max: u32,
    },
    /// A length of zero leaves no room for the type byte.
    Empty,
    UnknownType(u8),
    /// The body length does not fit the frame type.
    BadLength {
        kind: u8,
        len: u32,
    },
    /// DATA's own length field disagrees with the frame length.
    DataLength {
        declared: u32,
        actual: u32,
    },
    /// A HELLO without the MTCP magic: not an MTCP peer at all.
    BadMagic,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLong { len, max } => {
                write!(f, "frame length {len} exceeds limit {max}")
            }
            DecodeError::Empty => write!(f, "frame length 0"),
            DecodeError::UnknownType(t) => write!(f, "unknown frame type 0x{t:02x}"),
            DecodeError::BadLength { kind, len } => {
                write!(f, "frame type 0x{kind:02x} with bad length {len}")
            }
            DecodeError::DataLength { declared, actual } => {
                write!(f, "DATA declares {declared} bytes but carries {actual}")
            }
            DecodeError::BadMagic => write!(f, "HELLO without MTCP magic"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl LinkReason {
    fn code(self) -> u8 {
        match self {
            LinkReason::BadMagic => 1,
            LinkReason::Version => 2,
            LinkReason::UnknownSession => 3,
            LinkReason::TooManyLinks => 4,
            LinkReason::TooManySessions => 5,
            LinkReason::Auth => 6,
            LinkReason::ShuttingDown => 7,
            LinkReason::Protocol => 8,
            LinkReason::Other(c) => c,
        }
    }

    fn from_code(c: u8) -> Self {
        match c {
            1 => LinkReason::BadMagic,
            2 => LinkReason::Version,
            3 => LinkReason::UnknownSession,
            4 => LinkReason::TooManyLinks,
            5 => LinkReason::TooManySessions,
            6 => LinkReason::Auth,
            7 => LinkReason::ShuttingDown,
            8 => LinkReason::Protocol,
            c => LinkReason::Other(c),
        }
    }
}

impl LinkReason {
    /// A short stable name for counters and throttled log lines.
    pub fn label(self) -> &'static str {
        match self {
            LinkReason::BadMagic => "not_mtcp",
            LinkReason::Version => "version",
            LinkReason::UnknownSession => "unknown_session",
            LinkReason::TooManyLinks => "too_many_links",
            LinkReason::TooManySessions => "too_many_sessions",
            LinkReason::Auth => "auth",
            LinkReason::ShuttingDown => "shutting_down",
            LinkReason::Protocol => "protocol",
            LinkReason::Other(_) => "other",
        }
    }
}

impl fmt::Display for LinkReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            LinkReason::BadMagic => "not an MTCP peer",
            LinkReason::Version => "protocol version mismatch",
            LinkReason::UnknownSession => "unknown session",
            LinkReason::TooManyLinks => "too many links in session",
            LinkReason::TooManySessions => "too many sessions",
            LinkReason::Auth => "authentication failed",
            LinkReason::ShuttingDown => "shutting down",
            LinkReason::Protocol => "protocol error",
            LinkReason::Other(c) => return write!(f, "reason {c}"),
        };
        f.write_str(text)
    }
}

impl RstReason {
    fn code(self) -> u8 {
        match self {
            RstReason::Reset => 1,
            RstReason::ConnectFailed => 2,
            RstReason::Protocol => 3,
            RstReason::Refused => 4,
            RstReason::Shutdown => 5,
            RstReason::SessionLost => 6,
            RstReason::Other(c) => c,
        }
    }

    fn from_code(c: u8) -> Self {
        match c {
            1 => RstReason::Reset,
            2 => RstReason::ConnectFailed,
            3 => RstReason::Protocol,
            4 => RstReason::Refused,
            5 => RstReason::Shutdown,
            6 => RstReason::SessionLost,
            c => RstReason::Other(c),
        }
    }
}

impl fmt::Display for RstReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            RstReason::Reset => "reset by peer socket",
            RstReason::ConnectFailed => "backend connect failed",
            RstReason::Protocol => "protocol error",
            RstReason::Refused => "refused",
            RstReason::Shutdown => "shutdown",
            RstReason::SessionLost => "session lost",
            RstReason::Other(c) => return write!(f, "reason {c}"),
        };
        f.write_str(text)
    }
}

/// The largest DATA payload, at most `limit`, whose frame (with `overhead`
/// bytes around the payload: the frame's own, and a record's on a sealed
/// link) fills whole TCP segments of `mss` bytes. Links and local sockets
/// use `TCP_NODELAY`, so a write's last partial segment leaves at once: a
/// 64 KiB frame on loopback (MSS 65,483) went out as a full segment and a
/// 74-byte one, on the link and again on the far socket, and trimming the
/// payload to one segment cut the daemons' CPU per GiB by 12 %. `limit`
/// itself when `mss` is unknown (0) or aligning would cost more than half.
pub fn segment_aligned_payload(limit: usize, mss: usize, overhead: usize) -> usize {
    if mss == 0 {
        return limit;
    }
    let segments = limit.saturating_add(overhead) / mss;
    let aligned = (segments * mss).saturating_sub(overhead);
    if aligned == 0 || 2 * aligned < limit {
        limit
    } else {
        aligned
    }
}

/// Largest `len` field a DATA frame with `max_payload` bytes can carry; the
/// limit to pass to [`decode`].
pub fn max_frame_len(max_payload: u32) -> u32 {
    max_payload.saturating_add((DATA_OVERHEAD - 4) as u32)
}

/// Appends the encoding of `frame` to `out`. Encoding cannot fail.
pub fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    let kind = encode_body(frame, out);
    let len = (out.len() - start - 4) as u32;
    BigEndian::write_u32(&mut out[start..start + 4], len);
    out[start + 4] = kind;
}

/// The number of bytes [`encode`] writes for `frame`, without encoding it
/// (what a link counts as handed to it, to tell which bytes its TCP has
/// acknowledged).
pub fn encoded_len(frame: &Frame<'_>) -> usize {
    HEADER_LEN
        + match *frame {
            Frame::Hello(_) => 24,
            Frame::Welcome(_) => 9,
            Frame::Refuse(_) | Frame::GoAway(_) => 1,
            Frame::Open { .. } => 4,
            Frame::Data { data, .. } => DATA_OVERHEAD - HEADER_LEN + data.len(),
            Frame::Fin { .. } | Frame::Ack { .. } => 12,
            Frame::Rst { .. } => 5,
            Frame::Ping { .. } | Frame::Pong { .. } => 8,
        }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn encode_body(frame: &Frame<'_>, out: &mut Vec<u8>) -> u8 {
    match *frame {
        Frame::Hello(h) => {
            out.extend_from_slice(&MAGIC);
            out.push(h.version);
            out.push(h.flags);
            put_u64(out, h.session_id);
            put_u16(out, h.link_index);
            put_u32(out, h.max_payload);
            put_u32(out, h.window);
            T_HELLO
        }
        Frame::Welcome(w) => {
            out.push(w.version);
            put_u32(out, w.max_payload);
            put_u32(out, w.window);
            T_WELCOME
        }
        Frame::Refuse(r) => {
            out.push(r.code());
            T_REFUSE
        }
        Frame::Open { stream } => {
            put_u32(out, stream);
            T_OPEN
        }
        Frame::Data {
            stream,
            offset,
            data,
        } => {
            put_u32(out, stream);
            put_u64(out, offset);
            put_u32(out, data.len() as u32);
            out.extend_from_slice(data);
            T_DATA
        }
        Frame::Fin { stream, offset } => {
            put_u32(out, stream);
            put_u64(out, offset);
            T_FIN
        }
        Frame::Rst { stream, reason } => {
            put_u32(out, stream);
            out.push(reason.code());
            T_RST
        }
        Frame::Ack { stream, delivered } => {
            put_u32(out, stream);
            put_u64(out, delivered);
            T_ACK
        }
        Frame::Ping { token } => {
            put_u64(out, token);
            T_PING
        }
        Frame::Pong { token } => {
            put_u64(out, token);
            T_PONG
        }
        Frame::GoAway(r) => {
            out.push(r.code());
            T_GOAWAY
        }
    }
}

/// Writes only the header of a DATA frame, so a caller holding the payload
/// elsewhere can send it without copying (vectored write).
pub fn encode_data_header(stream: StreamId, offset: u64, payload_len: u32, out: &mut Vec<u8>) {
    put_u32(out, payload_len + (DATA_OVERHEAD - 4) as u32);
    out.push(T_DATA);
    put_u32(out, stream);
    put_u64(out, offset);
    put_u32(out, payload_len);
}

/// Decodes one frame from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more and
/// call again), or the frame and the number of bytes it used. `max_len` is
/// checked against the length field before anything else, so a hostile
/// length is rejected after 4 bytes.
pub fn decode(buf: &[u8], max_len: u32) -> Result<Option<(Frame<'_>, usize)>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = BigEndian::read_u32(&buf[..4]);
    if len > max_len {
        return Err(DecodeError::TooLong { len, max: max_len });
    }
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let kind = buf[4];
    let body = &buf[HEADER_LEN..total];
    let frame = decode_body(kind, body)?;
    Ok(Some((frame, total)))
}

fn exact(kind: u8, body: &[u8], want: usize) -> Result<(), DecodeError> {
    if body.len() == want {
        Ok(())
    } else {
        Err(DecodeError::BadLength {
            kind,
            len: (body.len() + 1) as u32,
        })
    }
}

fn decode_body(kind: u8, b: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let frame = match kind {
        T_HELLO => {
            exact(kind, b, 24)?;
            if b[..4] != MAGIC {
                return Err(DecodeError::BadMagic);
            }
            Frame::Hello(Hello {
                version: b[4],
                flags: b[5],
                session_id: BigEndian::read_u64(&b[6..14]),
                link_index: BigEndian::read_u16(&b[14..16]),
                max_payload: BigEndian::read_u32(&b[16..20]),
                window: BigEndian::read_u32(&b[20..24]),
            })
        }
        T_WELCOME => {
            exact(kind, b, 9)?;
            Frame::Welcome(Welcome {
                version: b[0],
                max_payload: BigEndian::read_u32(&b[1..5]),
                window: BigEndian::read_u32(&b[5..9]),
            })
        }
        T_REFUSE => {
            exact(kind, b, 1)?;
            Frame::Refuse(LinkReason::from_code(b[0]))
        }
        T_OPEN => {
            exact(kind, b, 4)?;
            Frame::Open {
                stream: BigEndian::read_u32(b),
            }
        }
        T_DATA => return decode_data(b),
        T_FIN => {
            exact(kind, b, 12)?;
            Frame::Fin {
                stream: BigEndian::read_u32(&b[..4]),
                offset: BigEndian::read_u64(&b[4..12]),
            }
        }
        T_RST => {
            exact(kind, b, 5)?;
            Frame::Rst {
                stream: BigEndian::read_u32(&b[..4]),
                reason: RstReason::from_code(b[4]),
            }
        }
        T_ACK => {
            exact(kind, b, 12)?;
            Frame::Ack {
                stream: BigEndian::read_u32(&b[..4]),
                delivered: BigEndian::read_u64(&b[4..12]),
            }
        }
        T_PING => {
            exact(kind, b, 8)?;
            Frame::Ping {
                token: BigEndian::read_u64(b),
            }
        }
        T_PONG => {
            exact(kind, b, 8)?;
            Frame::Pong {
                token: BigEndian::read_u64(b),
            }
        }
        T_GOAWAY => {
            exact(kind, b, 1)?;
            Frame::GoAway(LinkReason::from_code(b[0]))
        }
        other => return Err(DecodeError::UnknownType(other)),
    };
    Ok(frame)
}

fn decode_data(b: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if b.len() < 16 {
        return Err(DecodeError::BadLength {
            kind: T_DATA,
            len: (b.len() + 1) as u32,
        });
    }
    let declared = BigEndian::read_u32(&b[12..16]);
    let data = &b[16..];
    if declared as usize != data.len() {
        return Err(DecodeError::DataLength {
            declared,
            actual: data.len() as u32,
        });
    }
    Ok(Frame::Data {
        stream: BigEndian::read_u32(&b[..4]),
        offset: BigEndian::read_u64(&b[4..12]),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_fill_whole_segments_when_that_costs_little() {
        // Loopback at link start reports half its 65,483-byte MSS.
        assert_eq!(
            segment_aligned_payload(65536, 32741, DATA_OVERHEAD),
            2 * 32741 - 21
        );
        assert_eq!(
            segment_aligned_payload(65536, 65483, DATA_OVERHEAD),
            65483 - 21
        );
        // A WAN: 45 segments of 1,448 bytes; sealed, 18 more bytes a record.
        assert_eq!(
            segment_aligned_payload(65536, 1448, DATA_OVERHEAD),
            45 * 1448 - 21
        );
        assert_eq!(
            segment_aligned_payload(65498, 1448, DATA_OVERHEAD + 18),
            45 * 1448 - 39
        );
        // Unknown MSS, or a segment larger than the frame: as configured.
        assert_eq!(segment_aligned_payload(65536, 0, DATA_OVERHEAD), 65536);
        assert_eq!(segment_aligned_payload(4096, 65483, DATA_OVERHEAD), 4096);
        assert_eq!(
            segment_aligned_payload(40_000, 30_000, DATA_OVERHEAD),
            29_979
        );
        // Never below half the limit.
        assert_eq!(segment_aligned_payload(10, 12, DATA_OVERHEAD), 10);
    }

    fn round_trip(frame: Frame<'_>) {
        let mut buf = Vec::new();
        encode(&frame, &mut buf);
        let (back, used) = decode(&buf, max_frame_len(1 << 20)).unwrap().unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(encoded_len(&frame), buf.len(), "{frame:?}");
        assert_eq!(back, frame);
        for cut in 0..buf.len() {
            assert_eq!(decode(&buf[..cut], max_frame_len(1 << 20)), Ok(None));
        }
    }

    #[test]
    fn every_frame_type_round_trips() {
        round_trip(Frame::Hello(Hello {
            version: VERSION,
            flags: HELLO_JOIN,
            session_id: 0x0102_0304_0506_0708,
            link_index: 3,
            max_payload: 65536,
            window: 1 << 22,
        }));
        round_trip(Frame::Welcome(Welcome {
            version: VERSION,
            max_payload: 1024,
            window: 99,
        }));
        round_trip(Frame::Refuse(LinkReason::UnknownSession));
        round_trip(Frame::Refuse(LinkReason::Other(200)));
        round_trip(Frame::Open { stream: 7 });
        round_trip(Frame::Data {
            stream: 9,
            offset: u64::MAX - 5,
            data: b"hello",
        });
        round_trip(Frame::Data {
            stream: 9,
            offset: 0,
            data: b"",
        });
        round_trip(Frame::Fin {
            stream: 1,
            offset: 12345,
        });
        round_trip(Frame::Rst {
            stream: 1,
            reason: RstReason::ConnectFailed,
        });
        round_trip(Frame::Ack {
            stream: 2,
            delivered: 77,
        });
        round_trip(Frame::Ping { token: 5 });
        round_trip(Frame::Pong { token: 6 });
        round_trip(Frame::GoAway(LinkReason::ShuttingDown));
    }

    #[test]
    fn data_header_matches_full_encoding() {
        let mut full = Vec::new();
        encode(
            &Frame::Data {
                stream: 4,
                offset: 10,
                data: b"abc",
            },
            &mut full,
        );
        let mut split = Vec::new();
        encode_data_header(4, 10, 3, &mut split);
        split.extend_from_slice(b"abc");
        assert_eq!(full, split);
    }

    #[test]
    fn oversized_length_is_rejected_before_body() {
        let buf = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode(&buf, 1000),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn wrong_magic_is_its_own_error() {
        let mut buf = Vec::new();
        encode(
            &Frame::Hello(Hello {
                version: 1,
                flags: 0,
                session_id: 1,
                link_index: 0,
                max_payload: 1,
                window: 1,
            }),
            &mut buf,
        );
        buf[5] = b'X';
        assert_eq!(decode(&buf, 100), Err(DecodeError::BadMagic));
    }

    #[test]
    fn bad_lengths_name_the_frame_length_as_on_the_wire() {
        // A PING with a 3-byte body: the length field said 4 (type + body).
        let ping = [0, 0, 0, 4, T_PING, 1, 2, 3];
        assert_eq!(
            decode(&ping, 100),
            Err(DecodeError::BadLength {
                kind: T_PING,
                len: 4
            })
        );
        // A DATA too short for its own header.
        let data = [0, 0, 0, 3, T_DATA, 0, 0];
        assert_eq!(
            decode(&data, 100),
            Err(DecodeError::BadLength {
                kind: T_DATA,
                len: 3
            })
        );
    }

    #[test]
    fn errors_and_reasons_read_as_words() {
        let texts = [
            DecodeError::TooLong { len: 9, max: 8 }.to_string(),
            DecodeError::Empty.to_string(),
            DecodeError::UnknownType(0x7f).to_string(),
            DecodeError::BadLength { kind: 0x20, len: 4 }.to_string(),
            DecodeError::DataLength {
                declared: 5,
                actual: 4,
            }
            .to_string(),
            DecodeError::BadMagic.to_string(),
            LinkReason::TooManyLinks.to_string(),
            LinkReason::Other(99).to_string(),
            RstReason::ConnectFailed.to_string(),
            RstReason::Other(42).to_string(),
        ];
        assert_eq!(
            texts,
            [
                "frame length 9 exceeds limit 8",
                "frame length 0",
                "unknown frame type 0x7f",
                "frame type 0x20 with bad length 4",
                "DATA declares 5 bytes but carries 4",
                "HELLO without MTCP magic",
                "too many links in session",
                "reason 99",
                "backend connect failed",
                "reason 42",
            ]
        );
        assert_eq!(LinkReason::UnknownSession.label(), "unknown_session");
    }
}
