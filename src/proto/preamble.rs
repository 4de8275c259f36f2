//! The clear-text first bytes of a secured link.
//!
//! A load balancer in front of several servers must send every link of a
//! session to the same server, so it must see the session id without
//! terminating anything. On plain links the HELLO frame carries it at
//! [`SESSION_ID_OFFSET`]; on secured links HELLO is inside the encrypted
//! channel, so the link opens with this preamble, which puts the id at the
//! same offset (one balancer rule for both kinds of link):
//!
//! ```text
//! offset  size  field
//! 0       4     "MTCS"
//! 4       1     protocol version (3)
//! 5       1     record cipher (1 = ChaCha20-Poly1305, 2 = AES-256-GCM,
//!               3 = AEGIS-256X2)
//! 6       4     reserved, zero
//! 10      1     HELLO flags (bit 0: the link joins a known session)
//! 11      8     session id
//! ```
//!
//! The flags and the id are where a plain HELLO has them (offsets 10 and
//! 11), so one balancer rule serves both kinds of link.
//!
//! The whole preamble is the Noise prologue, so an attacker who changes any
//! byte of it breaks only that link's handshake; and the HELLO inside must
//! repeat the id and flags ([`check_hello`]), so the id a balancer saw is the
//! session the link really joins.

use crate::proto::frame::{self, FLAGS_OFFSET, Hello, SESSION_ID_OFFSET};
use crate::proto::handshake::HandshakeFault;

/// First bytes of a secured link of protocol version 2 and later.
pub const SECURE_MAGIC: [u8; 4] = *b"MTCS";
/// First bytes of a secured link of protocol version 1 (ChaCha20-Poly1305
/// only, no cipher byte): refused with a log line naming the version.
pub const SECURE_MAGIC_V1: [u8; 4] = *b"MTCN";
/// Bytes of the whole preamble.
pub const PREAMBLE_LEN: usize = SESSION_ID_OFFSET + 8;

const VERSION_AT: usize = 4;
const CIPHER_AT: usize = 5;
const RESERVED: std::ops::Range<usize> = 6..FLAGS_OFFSET;

/// What a secured link announces before its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preamble {
    /// The record cipher's code (`rt::secure::Cipher`).
    pub cipher: u8,
    /// The flags its HELLO will carry.
    pub flags: u8,
    pub session_id: u64,
}

impl Preamble {
    /// The preamble of a link that will send `hello` under `cipher`.
    pub fn for_hello(hello: &Hello, cipher: u8) -> Preamble {
        Preamble {
            cipher,
            flags: hello.flags,
            session_id: hello.session_id,
        }
    }

    /// The bytes on the wire, which are also the Noise prologue.
    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut out = [0u8; PREAMBLE_LEN];
        out[..VERSION_AT].copy_from_slice(&SECURE_MAGIC);
        out[VERSION_AT] = frame::VERSION;
        out[CIPHER_AT] = self.cipher;
        out[FLAGS_OFFSET] = self.flags;
        out[SESSION_ID_OFFSET..].copy_from_slice(&self.session_id.to_be_bytes());
        out
    }
}

/// Checks the byte after [`SECURE_MAGIC`]: the protocol version. Version 2
/// put its cipher code (1 or 2) there, so its links are recognised and
/// refused by name.
pub fn check_version(byte: u8) -> Result<(), HandshakeFault> {
    match byte {
        frame::VERSION => Ok(()),
        1 | 2 => Err(HandshakeFault::Version {
            ours: frame::VERSION,
            theirs: 2,
        }),
        theirs => Err(HandshakeFault::Version {
            ours: frame::VERSION,
            theirs,
        }),
    }
}

/// Decodes a whole preamble whose magic and version were checked.
pub fn decode(bytes: &[u8; PREAMBLE_LEN]) -> Result<Preamble, HandshakeFault> {
    check_version(bytes[VERSION_AT])?;
    if bytes[RESERVED].iter().any(|&b| b != 0) {
        return Err(HandshakeFault::Preamble);
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[SESSION_ID_OFFSET..]);
    Ok(Preamble {
        cipher: bytes[CIPHER_AT],
        flags: bytes[FLAGS_OFFSET],
        session_id: u64::from_be_bytes(id),
    })
}

/// The HELLO of a secured link must name the session and flags its
/// preamble announced: otherwise a balancer may have routed the link by an
/// id it does not belong to.
pub fn check_hello(hello: &Hello, preamble: &Preamble) -> Result<(), HandshakeFault> {
    if hello.session_id != preamble.session_id || hello.flags != preamble.flags {
        return Err(HandshakeFault::HelloMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::{Frame, HELLO_JOIN};
    use crate::proto::handshake::{self, PeerLimits};

    const LIMITS: PeerLimits = PeerLimits {
        max_payload: 65536,
        window: 1 << 20,
    };

    fn hello(id: u64, join: bool) -> Hello {
        let role = handshake::LinkRole {
            join,
            ..Default::default()
        };
        handshake::hello(id, role, 1, LIMITS)
    }

    #[test]
    fn the_flags_and_session_id_sit_where_a_plain_hello_has_them() {
        let h = hello(0x0102_0304_0506_0708, true);
        let secured = Preamble::for_hello(&h, 2).encode();
        let mut plain = Vec::new();
        frame::encode(&Frame::Hello(h), &mut plain);
        let at = SESSION_ID_OFFSET..SESSION_ID_OFFSET + 8;
        assert_eq!(secured[at.clone()], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(plain[at.clone()], secured[at]);
        assert_eq!(plain[FLAGS_OFFSET], HELLO_JOIN);
        assert_eq!(secured[FLAGS_OFFSET], HELLO_JOIN);
        assert_eq!(&secured[..4], b"MTCS");
        assert_eq!(secured[4], frame::VERSION);
        assert_eq!(secured[5], 2);
        assert_eq!(secured[6..10], [0, 0, 0, 0]);
    }

    #[test]
    fn a_preamble_round_trips() {
        let p = Preamble::for_hello(&hello(u64::MAX, false), 1);
        assert_eq!(decode(&p.encode()), Ok(p));
    }

    #[test]
    fn reserved_bytes_must_be_zero() {
        for at in RESERVED {
            let mut bytes = Preamble::for_hello(&hello(9, false), 1).encode();
            bytes[at] = 1;
            assert_eq!(decode(&bytes), Err(HandshakeFault::Preamble), "byte {at}");
        }
    }

    #[test]
    fn older_and_newer_versions_are_named() {
        assert_eq!(check_version(frame::VERSION), Ok(()));
        for cipher_code_of_v2 in [1, 2] {
            assert_eq!(
                check_version(cipher_code_of_v2),
                Err(HandshakeFault::Version {
                    ours: frame::VERSION,
                    theirs: 2
                })
            );
        }
        assert_eq!(
            check_version(9),
            Err(HandshakeFault::Version {
                ours: frame::VERSION,
                theirs: 9
            })
        );
        let mut bytes = Preamble::for_hello(&hello(9, false), 1).encode();
        bytes[VERSION_AT] = 2;
        assert!(matches!(
            decode(&bytes),
            Err(HandshakeFault::Version { theirs: 2, .. })
        ));
    }

    #[test]
    fn hello_must_repeat_the_preamble() {
        let h = hello(7, true);
        let p = Preamble::for_hello(&h, 2);
        assert_eq!(check_hello(&h, &p), Ok(()));
        let other_session = Hello { session_id: 8, ..h };
        assert_eq!(
            check_hello(&other_session, &p),
            Err(HandshakeFault::HelloMismatch)
        );
        let starts_instead = Hello { flags: 0, ..h };
        assert_eq!(
            check_hello(&starts_instead, &p),
            Err(HandshakeFault::HelloMismatch)
        );
    }
}
