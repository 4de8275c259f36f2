//! What can go wrong in the protocol, as types: callers, logs and counters
//! tell the cases apart by variant, never by parsing a message.

use crate::proto::frame::DecodeError;
use std::fmt;

/// A peer's frame broke a stream's rules; the stream is reset (the link
/// stays up: the frame itself was well formed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// `offset + length` of a DATA frame does not fit in 64 bits.
    OffsetOverflow { offset: u64, len: u64 },
    /// DATA reaching past the window we granted.
    BeyondWindow { end: u64, limit: u64 },
    /// DATA reaching past the FIN the peer sent.
    PastFin { end: u64, fin: u64 },
    /// A second FIN at another offset.
    FinMoved { first: u64, second: u64 },
    /// A FIN below data already received.
    FinBelowData { fin: u64, highest: u64 },
    /// A FIN at the largest offset, which leaves no room for the FIN's own
    /// byte in the ACK space.
    FinOverflow,
    /// An ACK for more than was sent (FIN counted as one byte).
    AckBeyondSent { ack: u64, sent: u64 },
    /// More pieces held ahead of a gap than an honest sender ever needs.
    TooManyPieces { limit: usize },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Violation::OffsetOverflow { offset, len } => {
                write!(f, "DATA at offset {offset} with {len} bytes overflows")
            }
            Violation::BeyondWindow { end, limit } => {
                write!(f, "DATA up to {end} beyond window (limit {limit})")
            }
            Violation::PastFin { end, fin } => write!(f, "DATA up to {end} past FIN {fin}"),
            Violation::FinMoved { first, second } => {
                write!(f, "FIN at {second} after FIN at {first}")
            }
            Violation::FinBelowData { fin, highest } => {
                write!(f, "FIN at {fin} below data at {highest}")
            }
            Violation::FinOverflow => write!(f, "FIN at the largest offset"),
            Violation::AckBeyondSent { ack, sent } => {
                write!(f, "ACK {ack} beyond what was sent ({sent})")
            }
            Violation::TooManyPieces { limit } => {
                write!(f, "more than {limit} out-of-order pieces")
            }
        }
    }
}

impl std::error::Error for Violation {}

/// Why a link was closed: the cases the logs and the counters distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkClose {
    /// The peer closed its end (end of file).
    PeerClosed,
    /// The peer or the network reset the connection.
    Reset,
    /// Nothing arrived for `keepalive_timeout_ms`.
    KeepaliveTimeout,
    /// Reading or writing the socket failed otherwise.
    IoError,
    /// Bytes that are not a frame (or a record that failed authentication).
    DecodeError,
    /// A well-formed frame that has no place after the handshake.
    ProtocolViolation,
    /// We closed it: the session ended or the daemon is shutting down.
    ClosedByUs,
}

impl LinkClose {
    /// Every kind, so that counters can report each one, zero included.
    pub const ALL: [LinkClose; 7] = [
        LinkClose::PeerClosed,
        LinkClose::Reset,
        LinkClose::KeepaliveTimeout,
        LinkClose::IoError,
        LinkClose::DecodeError,
        LinkClose::ProtocolViolation,
        LinkClose::ClosedByUs,
    ];

    /// A short stable name for counters and `key=value` log fields.
    pub fn label(self) -> &'static str {
        match self {
            LinkClose::PeerClosed => "peer_closed",
            LinkClose::Reset => "reset",
            LinkClose::KeepaliveTimeout => "keepalive_timeout",
            LinkClose::IoError => "io_error",
            LinkClose::DecodeError => "decode_error",
            LinkClose::ProtocolViolation => "protocol_violation",
            LinkClose::ClosedByUs => "closed_by_us",
        }
    }
}

/// A frame the link layer cannot accept: the link that carried it closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes do not decode.
    Decode(DecodeError),
    /// A handshake frame (HELLO, WELCOME, REFUSE) after the handshake.
    Unexpected(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Decode(e) => write!(f, "bad frame: {e}"),
            FrameError::Unexpected(kind) => {
                write!(f, "unexpected {kind} frame after the handshake")
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl From<DecodeError> for FrameError {
    fn from(e: DecodeError) -> Self {
        FrameError::Decode(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_and_frame_errors_read_as_words() {
        assert_eq!(
            Violation::BeyondWindow { end: 9, limit: 8 }.to_string(),
            "DATA up to 9 beyond window (limit 8)"
        );
        assert_eq!(
            Violation::AckBeyondSent { ack: 3, sent: 2 }.to_string(),
            "ACK 3 beyond what was sent (2)"
        );
        assert_eq!(
            FrameError::Unexpected("HELLO").to_string(),
            "unexpected HELLO frame after the handshake"
        );
        assert_eq!(
            FrameError::Decode(DecodeError::Empty).to_string(),
            "bad frame: frame length 0"
        );
    }

    #[test]
    fn link_close_labels_are_distinct_names() {
        let all = [
            LinkClose::PeerClosed,
            LinkClose::Reset,
            LinkClose::KeepaliveTimeout,
            LinkClose::IoError,
            LinkClose::DecodeError,
            LinkClose::ProtocolViolation,
            LinkClose::ClosedByUs,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(|c| c.label()).collect();
        assert_eq!(labels.len(), all.len());
        assert_eq!(LinkClose::KeepaliveTimeout.label(), "keepalive_timeout");
        assert!(
            labels
                .iter()
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
