//! The rules of a link's handshake: what HELLO and WELCOME must carry, and
//! whether a link may join a session.
//!
//! The client sends HELLO (its session id, its slot, its receive limits) and
//! waits for WELCOME or REFUSE before anything else. The checks here decide;
//! the I/O layer (`rt::secure`, `server`, `client`) reads and writes.

use crate::proto::frame::{self, DecodeError, Frame, Hello, LinkReason, Welcome};
use std::fmt;
use std::io;

/// Largest frame accepted during a handshake: no handshake frame is larger,
/// so a stranger cannot make us buffer more.
pub const HANDSHAKE_MAX_LEN: u32 = 64;
/// Room for one whole handshake frame, length field included.
pub const HANDSHAKE_BUF_LEN: usize = HANDSHAKE_MAX_LEN as usize + 4;
/// Smallest payload and window a peer may announce: below this, frames
/// would be mostly header and streams would crawl.
pub const MIN_PEER_LIMIT: u32 = 512;

/// Limits the peer announced in its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLimits {
    /// Largest DATA payload the peer accepts.
    pub max_payload: u32,
    /// Bytes the peer buffers per stream beyond what it has delivered.
    pub window: u32,
}

/// What was wrong with a handshake, beyond the network failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeFault {
    /// A handshake frame's length field is 0 or above the handshake limit.
    FrameLength(u32),
    /// A secured handshake record of a size no handshake frame has.
    RecordLength(usize),
    /// The bytes do not decode as a frame.
    Malformed(DecodeError),
    /// The frame decoded but did not fill its record exactly.
    Trailing,
    /// Another frame than the one the handshake expects here.
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    /// The peer announced a payload or window below [`MIN_PEER_LIMIT`].
    LimitsTooSmall(PeerLimits),
    /// The peer speaks another protocol version.
    Version { ours: u8, theirs: u8 },
    /// The server closed our secure handshake: its secret differs.
    SecretDiffers,
    /// The server refused our secure handshake in plain text: no secret.
    ServerHasNoSecret,
    /// A plain HELLO reached a server that requires a secret.
    PeerHasNoSecret,
    /// A secure handshake reached a server without a secret.
    PeerHasSecret,
    /// The two ends disagree on `encrypt`.
    EncryptMismatch,
    /// A secured link names a record cipher this build does not know.
    UnknownCipher(u8),
    /// The server refused, in plain text, the record cipher we proposed
    /// (named): it runs an MTCP older than that cipher, or its `cipher`
    /// setting names another.
    CipherRefused(&'static str),
    /// A client proposed another record cipher than the one our `cipher`
    /// setting accepts.
    CipherNotAccepted {
        proposed: &'static str,
        accepted: &'static str,
    },
    /// A secured link's clear preamble has non-zero reserved bytes.
    Preamble,
    /// A secured link's HELLO names another session or other flags than its
    /// clear preamble (which a load balancer routed it by).
    HelloMismatch,
    /// The Noise state machine failed (it names why).
    Noise(String),
    /// Our own session closed while the link shook hands.
    SessionClosed,
}

impl HandshakeFault {
    /// A short stable name for counters and throttled log lines.
    pub fn label(&self) -> &'static str {
        match self {
            HandshakeFault::FrameLength(_) => "frame_length",
            HandshakeFault::RecordLength(_) => "record_length",
            HandshakeFault::Malformed(_) => "malformed",
            HandshakeFault::Trailing => "trailing",
            HandshakeFault::Unexpected { .. } => "unexpected_frame",
            HandshakeFault::LimitsTooSmall(_) => "limits",
            HandshakeFault::Version { .. } => "version",
            HandshakeFault::SecretDiffers => "secret_differs",
            HandshakeFault::ServerHasNoSecret => "server_has_no_secret",
            HandshakeFault::PeerHasNoSecret => "peer_has_no_secret",
            HandshakeFault::PeerHasSecret => "peer_has_secret",
            HandshakeFault::EncryptMismatch => "encrypt_mismatch",
            HandshakeFault::UnknownCipher(_) => "unknown_cipher",
            HandshakeFault::CipherRefused(_) => "cipher_refused",
            HandshakeFault::CipherNotAccepted { .. } => "cipher_not_accepted",
            HandshakeFault::Preamble => "preamble",
            HandshakeFault::HelloMismatch => "hello_mismatch",
            HandshakeFault::Noise(_) => "noise",
            HandshakeFault::SessionClosed => "session_closed",
        }
    }
}

impl fmt::Display for HandshakeFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeFault::FrameLength(n) => write!(f, "handshake frame length {n}"),
            HandshakeFault::RecordLength(n) => write!(f, "handshake record of {n} bytes"),
            HandshakeFault::Malformed(e) => write!(f, "{e}"),
            HandshakeFault::Trailing => write!(f, "malformed handshake frame"),
            HandshakeFault::Unexpected { expected, got } => {
                write!(f, "expected {expected}, got {got}")
            }
            HandshakeFault::LimitsTooSmall(l) => write!(
                f,
                "peer limits too small (payload {}, window {}; at least {MIN_PEER_LIMIT})",
                l.max_payload, l.window
            ),
            HandshakeFault::Version { ours, theirs } => {
                write!(f, "peer speaks protocol version {theirs}, we speak {ours}")
            }
            HandshakeFault::SecretDiffers => write!(
                f,
                "the server closed the secure handshake: its secret differs from ours"
            ),
            HandshakeFault::ServerHasNoSecret => write!(
                f,
                "the server has no secret (or speaks an older protocol version): it refused our \
                 secure handshake in plain text"
            ),
            HandshakeFault::PeerHasNoSecret => {
                write!(f, "peer has no secret, this server requires one")
            }
            HandshakeFault::PeerHasSecret => write!(f, "peer uses a secret, this server has none"),
            HandshakeFault::EncryptMismatch => {
                write!(f, "server and client disagree on `encrypt`")
            }
            HandshakeFault::UnknownCipher(c) => write!(f, "unknown record cipher {c}"),
            HandshakeFault::CipherRefused(name) => write!(
                f,
                "the server refused the record cipher {name}: it runs an older MTCP, or its \
                 `cipher` setting names another"
            ),
            HandshakeFault::CipherNotAccepted { proposed, accepted } => write!(
                f,
                "the client proposes the record cipher {proposed}; `cipher` here accepts only \
                 {accepted}"
            ),
            HandshakeFault::Preamble => write!(f, "malformed secure preamble"),
            HandshakeFault::HelloMismatch => write!(
                f,
                "HELLO names another session or flags than the link's clear preamble"
            ),
            HandshakeFault::Noise(e) => write!(f, "noise: {e}"),
            HandshakeFault::SessionClosed => write!(f, "session closed during handshake"),
        }
    }
}

/// Why a link handshake failed; the client branches on `Refused` to start a
/// new session when the server has forgotten the old one.
#[derive(Debug)]
pub enum HandshakeError {
    /// The socket failed or timed out.
    Io(io::Error),
    /// The peer refused the link, or we refuse it, for this reason.
    Refused(LinkReason),
    /// The peer broke the handshake's rules.
    Fault(HandshakeFault),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "{e}"),
            HandshakeError::Refused(r) => write!(f, "refused by server: {r}"),
            HandshakeError::Fault(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

impl From<HandshakeFault> for HandshakeError {
    fn from(e: HandshakeFault) -> Self {
        HandshakeError::Fault(e)
    }
}

/// The name of a frame's type, for messages.
pub fn kind_name(f: &Frame<'_>) -> &'static str {
    match f {
        Frame::Hello(_) => "HELLO",
        Frame::Welcome(_) => "WELCOME",
        Frame::Refuse(_) => "REFUSE",
        Frame::Open { .. } => "OPEN",
        Frame::Data { .. } => "DATA",
        Frame::Fin { .. } => "FIN",
        Frame::Rst { .. } => "RST",
        Frame::Ack { .. } => "ACK",
        Frame::Ping { .. } => "PING",
        Frame::Pong { .. } => "PONG",
        Frame::GoAway(_) => "GOAWAY",
    }
}

/// Checks a handshake frame's length field before its body is read.
pub fn check_frame_len(len: u32) -> Result<(), HandshakeFault> {
    if len == 0 || len > HANDSHAKE_MAX_LEN {
        return Err(HandshakeFault::FrameLength(len));
    }
    Ok(())
}

/// Decodes exactly one handshake frame that fills `buf`.
pub fn decode_frame(buf: &[u8]) -> Result<Frame<'_>, HandshakeError> {
    match frame::decode(buf, HANDSHAKE_MAX_LEN) {
        Ok(Some((f, used))) if used == buf.len() => Ok(f),
        Ok(_) => Err(HandshakeFault::Trailing.into()),
        Err(DecodeError::BadMagic) => Err(HandshakeError::Refused(LinkReason::BadMagic)),
        Err(e) => Err(HandshakeFault::Malformed(e).into()),
    }
}

fn limits_ok(l: PeerLimits) -> bool {
    l.max_payload >= MIN_PEER_LIMIT && l.window >= MIN_PEER_LIMIT
}

/// What a link says of itself in its HELLO's flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkRole {
    /// The session has had a link: the server must know it (only a
    /// session's first link may start it).
    pub join: bool,
    /// The link's path is a backup: no data while a non-backup link is up.
    pub backup: bool,
    /// The client's links take different paths: schedule by measurement.
    pub paths: bool,
}

impl LinkRole {
    /// The HELLO flag bits.
    pub fn flags(self) -> u8 {
        let bit = |on: bool, flag: u8| if on { flag } else { 0 };
        bit(self.join, frame::HELLO_JOIN)
            | bit(self.backup, frame::HELLO_BACKUP)
            | bit(self.paths, frame::HELLO_PATHS)
    }

    /// The role a HELLO's flags announce (unknown bits are ignored).
    pub fn of(hello: &Hello) -> LinkRole {
        LinkRole {
            join: hello.flags & frame::HELLO_JOIN != 0,
            backup: hello.flags & frame::HELLO_BACKUP != 0,
            paths: hello.flags & frame::HELLO_PATHS != 0,
        }
    }
}

/// The client's HELLO for slot `link_index` of session `session_id`.
pub fn hello(session_id: u64, role: LinkRole, link_index: u16, ours: PeerLimits) -> Hello {
    Hello {
        version: frame::VERSION,
        flags: role.flags(),
        session_id,
        link_index,
        max_payload: ours.max_payload,
        window: ours.window,
    }
}

/// The server's check of a HELLO: the reason to refuse it, or the client's
/// limits.
pub fn check_hello(h: &Hello) -> Result<PeerLimits, LinkReason> {
    if h.version != frame::VERSION {
        return Err(LinkReason::Version);
    }
    let limits = PeerLimits {
        max_payload: h.max_payload,
        window: h.window,
    };
    if !limits_ok(limits) {
        return Err(LinkReason::Protocol);
    }
    Ok(limits)
}

/// The server's WELCOME with its own limits.
pub fn welcome(ours: PeerLimits) -> Frame<'static> {
    Frame::Welcome(Welcome {
        version: frame::VERSION,
        max_payload: ours.max_payload,
        window: ours.window,
    })
}

/// The client's check of the server's answer to HELLO.
pub fn check_answer(f: Frame<'_>) -> Result<PeerLimits, HandshakeError> {
    match f {
        Frame::Welcome(w) => {
            if w.version != frame::VERSION {
                return Err(HandshakeFault::Version {
                    ours: frame::VERSION,
                    theirs: w.version,
                }
                .into());
            }
            let limits = PeerLimits {
                max_payload: w.max_payload,
                window: w.window,
            };
            if !limits_ok(limits) {
                return Err(HandshakeFault::LimitsTooSmall(limits).into());
            }
            Ok(limits)
        }
        Frame::Refuse(r) => Err(HandshakeError::Refused(r)),
        other => Err(HandshakeFault::Unexpected {
            expected: "WELCOME",
            got: kind_name(&other),
        }
        .into()),
    }
}

/// What the server knows of the session a HELLO names, if it has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownSession {
    /// The session is closing: no link may join it.
    pub closed: bool,
    /// Links it has now.
    pub links: usize,
}

/// The server's limits on sessions and links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinLimits {
    pub max_links_per_session: usize,
    pub max_sessions: usize,
}

/// Where a link that passed its HELLO goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// Into the session the server has.
    Existing,
    /// Into a new session, which the server creates.
    New,
}

/// Whether the link of `hello` may join: `known` is the session the server
/// has under its id, `sessions` how many it has in all.
pub fn join(
    hello: &Hello,
    known: Option<KnownSession>,
    sessions: usize,
    limits: JoinLimits,
    shutting_down: bool,
) -> Result<Join, LinkReason> {
    if shutting_down {
        return Err(LinkReason::ShuttingDown);
    }
    if let Some(s) = known {
        if s.closed {
            return Err(LinkReason::UnknownSession);
        }
        if s.links >= limits.max_links_per_session {
            return Err(LinkReason::TooManyLinks);
        }
        return Ok(Join::Existing);
    }
    if LinkRole::of(hello).join {
        return Err(LinkReason::UnknownSession);
    }
    if sessions >= limits.max_sessions {
        return Err(LinkReason::TooManySessions);
    }
    Ok(Join::New)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: PeerLimits = PeerLimits {
        max_payload: 65536,
        window: 1 << 20,
    };
    const JOIN: LinkRole = LinkRole {
        join: true,
        backup: false,
        paths: false,
    };
    const LIMITS: JoinLimits = JoinLimits {
        max_links_per_session: 4,
        max_sessions: 2,
    };

    #[test]
    fn hello_checks_version_and_limits() {
        let h = hello(7, LinkRole::default(), 0, OURS);
        assert_eq!(check_hello(&h), Ok(OURS));
        let old = Hello { version: 0, ..h };
        assert_eq!(check_hello(&old), Err(LinkReason::Version));
        let tiny = Hello { window: 511, ..h };
        assert_eq!(check_hello(&tiny), Err(LinkReason::Protocol));
    }

    #[test]
    fn answers_are_checked() {
        assert_eq!(check_answer(welcome(OURS)).unwrap(), OURS);
        assert!(matches!(
            check_answer(Frame::Refuse(LinkReason::UnknownSession)),
            Err(HandshakeError::Refused(LinkReason::UnknownSession))
        ));
        let small = welcome(PeerLimits {
            max_payload: 100,
            window: 1 << 20,
        });
        assert!(matches!(
            check_answer(small),
            Err(HandshakeError::Fault(HandshakeFault::LimitsTooSmall(_)))
        ));
        let other = check_answer(Frame::Ping { token: 1 }).unwrap_err();
        assert_eq!(
            other.to_string(),
            "protocol error: expected WELCOME, got PING"
        );
    }

    #[test]
    fn links_join_known_sessions_within_limits() {
        let h = hello(7, LinkRole::default(), 0, OURS);
        let joining = hello(7, JOIN, 1, OURS);
        let open = KnownSession {
            closed: false,
            links: 3,
        };
        assert_eq!(join(&h, Some(open), 1, LIMITS, false), Ok(Join::Existing));
        let full = KnownSession { links: 4, ..open };
        assert_eq!(
            join(&h, Some(full), 1, LIMITS, false),
            Err(LinkReason::TooManyLinks)
        );
        let closed = KnownSession {
            closed: true,
            ..open
        };
        assert_eq!(
            join(&h, Some(closed), 1, LIMITS, false),
            Err(LinkReason::UnknownSession)
        );
        assert_eq!(
            join(&joining, None, 1, LIMITS, false),
            Err(LinkReason::UnknownSession),
            "a link joining a session the server does not know starts no session"
        );
        assert_eq!(
            join(&joining, Some(open), 1, LIMITS, false),
            Ok(Join::Existing)
        );
        assert_eq!(join(&h, None, 1, LIMITS, false), Ok(Join::New));
        assert_eq!(
            join(&h, None, 2, LIMITS, false),
            Err(LinkReason::TooManySessions)
        );
        assert_eq!(
            join(&h, Some(open), 1, LIMITS, true),
            Err(LinkReason::ShuttingDown)
        );
    }

    #[test]
    fn every_fault_has_its_own_label() {
        let faults = [
            HandshakeFault::FrameLength(0),
            HandshakeFault::RecordLength(0),
            HandshakeFault::Malformed(DecodeError::BadMagic),
            HandshakeFault::Trailing,
            HandshakeFault::Unexpected {
                expected: "HELLO",
                got: "PING",
            },
            HandshakeFault::LimitsTooSmall(OURS),
            HandshakeFault::Version { ours: 3, theirs: 2 },
            HandshakeFault::SecretDiffers,
            HandshakeFault::ServerHasNoSecret,
            HandshakeFault::PeerHasNoSecret,
            HandshakeFault::PeerHasSecret,
            HandshakeFault::EncryptMismatch,
            HandshakeFault::UnknownCipher(9),
            HandshakeFault::CipherRefused("aegis-256x2"),
            HandshakeFault::CipherNotAccepted {
                proposed: "aegis-256x2",
                accepted: "aes-256-gcm",
            },
            HandshakeFault::Preamble,
            HandshakeFault::HelloMismatch,
            HandshakeFault::Noise(String::new()),
            HandshakeFault::SessionClosed,
        ];
        let labels: std::collections::BTreeSet<&str> = faults.iter().map(|f| f.label()).collect();
        assert_eq!(labels.len(), faults.len(), "{labels:?}");
        assert_eq!(HandshakeFault::HelloMismatch.label(), "hello_mismatch");
        assert_eq!(
            HandshakeFault::Version { ours: 3, theirs: 2 }.label(),
            "version"
        );
        assert!(
            labels
                .iter()
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }

    #[test]
    fn a_links_role_round_trips_through_its_flags() {
        for bits in 0..8u8 {
            let role = LinkRole {
                join: bits & 1 != 0,
                backup: bits & 2 != 0,
                paths: bits & 4 != 0,
            };
            let h = hello(7, role, 0, OURS);
            assert_eq!(h.flags, bits);
            assert_eq!(LinkRole::of(&h), role);
        }
        let h = Hello {
            flags: 0xf8,
            ..hello(7, LinkRole::default(), 0, OURS)
        };
        assert_eq!(LinkRole::of(&h), LinkRole::default(), "unknown bits");
    }

    #[test]
    fn handshake_frames_must_fill_their_bytes() {
        let mut buf = Vec::new();
        frame::encode(&welcome(OURS), &mut buf);
        assert!(decode_frame(&buf).is_ok());
        buf.push(0);
        assert!(matches!(
            decode_frame(&buf),
            Err(HandshakeError::Fault(HandshakeFault::Trailing))
        ));
        assert_eq!(check_frame_len(0), Err(HandshakeFault::FrameLength(0)));
        assert_eq!(check_frame_len(65), Err(HandshakeFault::FrameLength(65)));
        assert_eq!(check_frame_len(64), Ok(()));
    }
}
