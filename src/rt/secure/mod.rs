//! Link authentication and encryption with the Noise protocol framework.
//!
//! With a pre-shared secret configured, every link starts with a
//! `Noise_NNpsk0_25519_{AESGCM,ChaChaPoly}_BLAKE2s` handshake before any
//! MTCP frame:
//! both sides contribute a fresh ephemeral key, and the secret is mixed into
//! the keys, so each side proves it knows the secret, a recorded handshake
//! cannot be replayed into a working link, and an attacker without the
//! secret never reaches HELLO (so never opens a stream to the backend).
//!
//! After the handshake the byte stream of frames is cut into records of at
//! most 65,535 bytes (`u16 len | ciphertext`), each sealed with the cipher
//! the client chose ([`Cipher`]) under an implicit per-direction counter
//! (`record`). The link's writer side owns the sending direction's key and
//! counter, its reader the receiving one's.
//!
//! The secret is hashed into the 32-byte Noise PSK; it must be long and
//! random (generate it with `head -c 32 /dev/urandom | base64`), because an
//! observer of one handshake can test guesses of a weak secret offline.

use crate::proto::frame::{self, Frame, Hello};
use crate::proto::handshake::{
    self, HANDSHAKE_BUF_LEN, HandshakeError, HandshakeFault, check_frame_len, kind_name,
};
use crate::proto::preamble::{self, PREAMBLE_LEN, Preamble};
use crate::proto::secret::Secret;
use std::io::{self, Read, Write};

mod record;

pub use crate::proto::cipher::Cipher;
pub use crate::proto::preamble::{SECURE_MAGIC, SECURE_MAGIC_V1};
use record::RecordKey;
pub use record::{MAX_PLAIN, MAX_SEALED_PAYLOAD, Opener, RECORD_OVERHEAD, Sealer};
/// Payload of the first handshake message: protocol version and whether the
/// initiator wants encryption, so a mismatch is refused by name.
const HS_VERSION: u8 = frame::VERSION;

/// What this machine's links propose: AEGIS-256X2 where the CPU has AES
/// instructions (on loopback its links cost about 1.15x the CPU per GiB
/// of plain ones, AES-256-GCM's about 1.3x: it spends less than half of
/// AES-GCM's time per byte and is sealed as it is copied into the
/// record), ChaCha20-Poly1305 elsewhere, where table-free AES would be
/// slow.
pub fn preferred_cipher() -> Cipher {
    if aes_accelerated() {
        Cipher::Aegis256X2
    } else {
        Cipher::ChaChaPoly
    }
}

#[cfg(target_arch = "x86_64")]
fn aes_accelerated() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn aes_accelerated() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn aes_accelerated() -> bool {
    false
}
const HS_OK: u8 = 0;
const HS_MISMATCH: u8 = 1;

/// A plain (unauthenticated, unencrypted) channel.
pub fn plain() -> (Sealer, Opener) {
    (Sealer::new(None), Opener::new(None))
}

/// Two ends of an encrypted channel under fixed keys, each end's sealer
/// matching the other's opener (tests of what reads sealed links).
#[cfg(test)]
pub fn sealed_pair(cipher: Cipher) -> ((Sealer, Opener), (Sealer, Opener)) {
    let key = |k: u8| Some(RecordKey::new(cipher, &[k; 32]).expect("a 32-byte key"));
    (
        (Sealer::new(key(1)), Opener::new(key(2))),
        (Sealer::new(key(2)), Opener::new(key(1))),
    )
}

fn noise_err(e: snow::Error) -> HandshakeError {
    HandshakeFault::Noise(e.to_string()).into()
}

impl Sealer {
    /// Encodes and writes one frame (handshake phase).
    pub fn send_frame(&mut self, out: &mut impl Write, f: &Frame<'_>) -> io::Result<()> {
        let mut buf = Vec::with_capacity(64);
        frame::encode(f, &mut buf);
        self.write_all(out, &buf)
    }
}

impl Opener {
    /// Reads exactly one handshake-phase frame (no bytes beyond it).
    /// `prefix` holds its first four bytes when the caller already read them
    /// (the server peeks to tell a plain HELLO from a Noise handshake).
    pub fn recv_frame<'b>(
        &mut self,
        socket: &mut impl Read,
        prefix: Option<[u8; 4]>,
        buf: &'b mut [u8; HANDSHAKE_BUF_LEN],
    ) -> Result<Frame<'b>, HandshakeError> {
        let total = if self.is_sealed() {
            let mut record = read_record(socket)?;
            let plain = self
                .open_one(&mut record)
                .map_err(|_| HandshakeError::Refused(frame::LinkReason::Auth))?;
            let n = plain.len();
            if !(4..=buf.len()).contains(&n) {
                return Err(HandshakeFault::RecordLength(n).into());
            }
            buf[..n].copy_from_slice(plain);
            n
        } else {
            match prefix {
                Some(p) => buf[..4].copy_from_slice(&p),
                None => socket.read_exact(&mut buf[..4])?,
            }
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            check_frame_len(len)?;
            let total = 4 + len as usize;
            socket.read_exact(&mut buf[4..total])?;
            total
        };
        handshake::decode_frame(&buf[..total])
    }
}

fn read_record(socket: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    socket.read_exact(&mut len)?;
    let len = u16::from_be_bytes(len) as usize;
    let mut record = vec![0u8; len];
    socket.read_exact(&mut record)?;
    Ok(record)
}

fn write_record(socket: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    socket.write_all(&out)
}

fn builder<'a>(
    secret: &'a Secret,
    prologue: &'a [u8],
    cipher: Cipher,
) -> Result<snow::Builder<'a>, HandshakeError> {
    let params = cipher
        .noise_params()
        .parse()
        .map_err(|e: snow::Error| HandshakeFault::Noise(e.to_string()))?;
    snow::Builder::new(params)
        .psk(0, secret.psk())
        .and_then(|b| b.prologue(prologue))
        .map_err(noise_err)
}

/// Runs the client side for a link that will send `hello`: the clear
/// preamble, `-> psk, e`, `<- e, ee`. Returns the channel halves; with
/// `encrypt` false the link is authenticated but plain.
pub fn client_handshake(
    socket: &mut (impl Read + Write),
    secret: &Secret,
    encrypt: bool,
    hello: &Hello,
) -> Result<(Sealer, Opener), HandshakeError> {
    client_handshake_with(socket, secret, encrypt, hello, preferred_cipher())
}

/// [`client_handshake`] with a given cipher.
pub fn client_handshake_with(
    socket: &mut (impl Read + Write),
    secret: &Secret,
    encrypt: bool,
    hello: &Hello,
    cipher: Cipher,
) -> Result<(Sealer, Opener), HandshakeError> {
    let prologue = Preamble::for_hello(hello, cipher.code()).encode();
    let mut hs = builder(secret, &prologue, cipher)?
        .build_initiator()
        .map_err(noise_err)?;
    let mut msg = [0u8; 256];
    let n = hs
        .write_message(&[HS_VERSION, u8::from(encrypt)], &mut msg)
        .map_err(noise_err)?;
    let mut first = prologue.to_vec();
    first.extend_from_slice(&(n as u16).to_be_bytes());
    first.extend_from_slice(&msg[..n]);
    socket.write_all(&first)?;
    let reply = match read_record(socket) {
        Ok(reply) => reply,
        // A server whose secret differs cannot even read our message, and
        // closes without a word (it has no key to say anything with).
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(HandshakeFault::SecretDiffers.into());
        }
        Err(e) => return Err(e.into()),
    };
    // A server that refuses us before the handshake (no secret, an older
    // protocol version, a cipher it does not know) answers with a plain
    // REFUSE frame, whose first two bytes (a frame length below 64 KiB)
    // read as an empty record; a Noise reply is never empty.
    if reply.is_empty() {
        return Err(plain_refusal(socket, cipher));
    }
    let mut payload = [0u8; 64];
    let n = hs
        .read_message(&reply, &mut payload)
        .map_err(|_| HandshakeError::Refused(frame::LinkReason::Auth))?;
    if n != 1 || payload[0] != HS_OK {
        return Err(HandshakeFault::EncryptMismatch.into());
    }
    finish(hs, encrypt, cipher)
}

/// What a plain REFUSE frame, whose first two bytes were already read as
/// an empty record, says about our secure handshake.
fn plain_refusal(socket: &mut impl Read, cipher: Cipher) -> HandshakeError {
    let mut rest = [0u8; 4];
    let reason = match socket.read_exact(&mut rest) {
        Ok(()) => {
            let bytes = [0, 0, rest[0], rest[1], rest[2], rest[3]];
            match frame::decode(&bytes, frame::MAX_CONTROL_BODY as u32) {
                Ok(Some((Frame::Refuse(reason), _))) => Some(reason),
                _ => None,
            }
        }
        Err(_) => None,
    };
    match reason {
        // Only the cipher byte of our preamble can be news to a server of
        // our protocol version: an older one refuses a cipher it lacks.
        Some(frame::LinkReason::Protocol) => HandshakeFault::CipherRefused(cipher.name()).into(),
        Some(frame::LinkReason::Version) => HandshakeError::Refused(frame::LinkReason::Version),
        _ => HandshakeFault::ServerHasNoSecret.into(),
    }
}

/// Runs the server side after the clear preamble was read. A wrong secret,
/// a changed preamble or a replayed message fails here, before any MTCP
/// frame is read.
pub fn server_handshake(
    socket: &mut (impl Read + Write),
    secret: &Secret,
    encrypt: bool,
    preamble: &Preamble,
    cipher: Cipher,
) -> Result<(Sealer, Opener), HandshakeError> {
    let prologue = preamble.encode();
    let mut hs = builder(secret, &prologue, cipher)?
        .build_responder()
        .map_err(noise_err)?;
    let first = read_record(socket)?;
    let mut payload = [0u8; 64];
    let n = hs
        .read_message(&first, &mut payload)
        .map_err(|_| HandshakeError::Refused(frame::LinkReason::Auth))?;
    if n != 2 || payload[0] != HS_VERSION {
        return Err(HandshakeError::Refused(frame::LinkReason::Version));
    }
    let agree = (payload[1] != 0) == encrypt;
    let mut msg = [0u8; 256];
    let n = hs
        .write_message(&[if agree { HS_OK } else { HS_MISMATCH }], &mut msg)
        .map_err(noise_err)?;
    write_record(socket, &msg[..n])?;
    if !agree {
        return Err(HandshakeFault::EncryptMismatch.into());
    }
    finish(hs, encrypt, cipher)
}

/// The channel halves after a completed handshake: the two directions'
/// keys from the handshake's split (the initiator sends with the first),
/// each sealing records as a Noise transport message would.
fn finish(
    mut hs: snow::HandshakeState,
    encrypt: bool,
    cipher: Cipher,
) -> Result<(Sealer, Opener), HandshakeError> {
    if !encrypt {
        return Ok(plain());
    }
    if !hs.is_handshake_finished() {
        return Err(HandshakeFault::Noise("handshake not finished".into()).into());
    }
    let (first, second) = hs.dangerously_get_raw_split();
    let (send, recv) = if hs.is_initiator() {
        (first, second)
    } else {
        (second, first)
    };
    let sealer = Sealer::new(Some(RecordKey::new(cipher, &send)?));
    let opener = Opener::new(Some(RecordKey::new(cipher, &recv)?));
    Ok((sealer, opener))
}

/// How a link began, which the server needs to read and check its HELLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkStart {
    /// A plain link: the first four bytes of its HELLO, already read while
    /// telling plain from secured links.
    Plain([u8; 4]),
    /// A secured link and the clear preamble its HELLO must match.
    Secured(Preamble),
}

/// A link's channel halves and how it began.
pub type Channel = (Sealer, Opener, LinkStart);

/// The server's first step on a new connection: reads four bytes, and when
/// they are [`SECURE_MAGIC`] the rest of the preamble and the Noise
/// handshake. Refuses (with a plain REFUSE frame) a peer whose use of a
/// secret does not match ours, that speaks an older protocol version, or
/// that proposes another record cipher than `only` (when it is set).
pub fn open_server_channel(
    io: &mut (impl Read + Write),
    secret: Option<&Secret>,
    encrypt: bool,
    only: Option<Cipher>,
) -> Result<Channel, HandshakeError> {
    let mut first = [0u8; 4];
    io.read_exact(&mut first)?;
    let secured = first == SECURE_MAGIC || first == SECURE_MAGIC_V1;
    let refusal = match (secret, secured) {
        (Some(secret), true) if first == SECURE_MAGIC => {
            match open_secured(io, secret, encrypt, only, first) {
                Ok(channel) => return Ok(channel),
                Err(Refusal::Now(reason, fault)) => (reason, fault),
                Err(Refusal::Done(e)) => return Err(e),
            }
        }
        (Some(_), true) => (
            frame::LinkReason::Version,
            HandshakeFault::Version {
                ours: HS_VERSION,
                theirs: 1,
            },
        ),
        (None, false) => {
            let (sealer, opener) = plain();
            return Ok((sealer, opener, LinkStart::Plain(first)));
        }
        (Some(_), false) => (frame::LinkReason::Auth, HandshakeFault::PeerHasNoSecret),
        (None, true) => (frame::LinkReason::Auth, HandshakeFault::PeerHasSecret),
    };
    let _ = plain().0.send_frame(io, &Frame::Refuse(refusal.0));
    Err(refusal.1.into())
}

/// How a secured link's opening failed: with a REFUSE still to send in
/// plain, or already answered (or past answering).
enum Refusal {
    Now(frame::LinkReason, HandshakeFault),
    Done(HandshakeError),
}

fn open_secured(
    io: &mut (impl Read + Write),
    secret: &Secret,
    encrypt: bool,
    only: Option<Cipher>,
    magic: [u8; 4],
) -> Result<Channel, Refusal> {
    let mut bytes = [0u8; PREAMBLE_LEN];
    bytes[..4].copy_from_slice(&magic);
    // The version byte alone first: a version-2 client sent its cipher code
    // there and then its Noise message, not the rest of a preamble.
    io.read_exact(&mut bytes[4..5])
        .map_err(|e| Refusal::Done(e.into()))?;
    preamble::check_version(bytes[4]).map_err(|f| Refusal::Now(frame::LinkReason::Version, f))?;
    io.read_exact(&mut bytes[5..])
        .map_err(|e| Refusal::Done(e.into()))?;
    let pre = preamble::decode(&bytes).map_err(|f| Refusal::Now(frame::LinkReason::Protocol, f))?;
    let Some(cipher) = Cipher::from_code(pre.cipher) else {
        return Err(Refusal::Now(
            frame::LinkReason::Protocol,
            HandshakeFault::UnknownCipher(pre.cipher),
        ));
    };
    if let Some(only) = only.filter(|&only| only != cipher) {
        return Err(Refusal::Now(
            frame::LinkReason::Protocol,
            HandshakeFault::CipherNotAccepted {
                proposed: cipher.name(),
                accepted: only.name(),
            },
        ));
    }
    let (sealer, opener) =
        server_handshake(io, secret, encrypt, &pre, cipher).map_err(Refusal::Done)?;
    Ok((sealer, opener, LinkStart::Secured(pre)))
}

/// Reads a new link's HELLO on the channel [`open_server_channel`] opened
/// and checks it against the link's preamble.
pub fn recv_hello(
    io: &mut impl Read,
    opener: &mut Opener,
    start: LinkStart,
) -> Result<Hello, HandshakeError> {
    let prefix = match start {
        LinkStart::Plain(first) => Some(first),
        LinkStart::Secured(_) => None,
    };
    let mut buf = [0u8; HANDSHAKE_BUF_LEN];
    let hello = match opener.recv_frame(io, prefix, &mut buf)? {
        Frame::Hello(h) => h,
        other => {
            return Err(HandshakeFault::Unexpected {
                expected: "HELLO",
                got: kind_name(&other),
            }
            .into());
        }
    };
    if let LinkStart::Secured(pre) = start {
        preamble::check_hello(&hello, &pre)?;
    }
    Ok(hello)
}

/// The server's whole handshake over any byte stream, up to HELLO. Exists so
/// the fuzz target drives exactly the code a stranger's bytes reach.
pub fn server_accept(
    io: &mut (impl Read + Write),
    secret: Option<&Secret>,
    encrypt: bool,
) -> Result<Hello, HandshakeError> {
    let (_, mut opener, start) = open_server_channel(io, secret, encrypt, None)?;
    recv_hello(io, &mut opener, start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::{self, PeerLimits};
    use std::net::{TcpListener, TcpStream};

    fn hello(session_id: u64, join: bool) -> Hello {
        let limits = PeerLimits {
            max_payload: 65536,
            window: 1 << 20,
        };
        let role = handshake::LinkRole {
            join,
            ..Default::default()
        };
        handshake::hello(session_id, role, 0, limits)
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    fn server_side(
        mut s: TcpStream,
        secret: Secret,
        encrypt: bool,
    ) -> Result<(Sealer, Opener, TcpStream), HandshakeError> {
        let (sealer, opener, start) = open_server_channel(&mut s, Some(&secret), encrypt, None)?;
        assert!(
            matches!(start, LinkStart::Secured(_)),
            "a secured link read as a plain one"
        );
        Ok((sealer, opener, s))
    }

    #[test]
    fn sealed_bytes_round_trip_and_hide_the_plaintext_with_either_cipher() {
        for cipher in [Cipher::AesGcm, Cipher::ChaChaPoly, Cipher::Aegis256X2] {
            sealed_round_trip(cipher);
        }
    }

    /// What a server that knows the protocol version but not the cipher a
    /// client proposes does: REFUSE(protocol) in plain text, then close.
    fn refused_in_plain_text(reason: frame::LinkReason) -> HandshakeError {
        let (mut c, mut s) = pair();
        let server = std::thread::spawn(move || {
            let mut preamble = [0u8; PREAMBLE_LEN];
            s.read_exact(&mut preamble).unwrap();
            plain()
                .0
                .send_frame(&mut s, &Frame::Refuse(reason))
                .unwrap();
            preamble[5]
        });
        let secret = Secret::from_text("0123456789abcdef0123").unwrap();
        let e = client_handshake_with(&mut c, &secret, true, &hello(1, false), Cipher::Aegis256X2)
            .err()
            .expect("handshake succeeded");
        assert_eq!(server.join().unwrap(), 3, "the cipher byte of AEGIS-256X2");
        e
    }

    #[test]
    fn a_server_that_refuses_the_cipher_is_told_from_one_without_a_secret() {
        let e = refused_in_plain_text(frame::LinkReason::Protocol);
        assert!(
            matches!(
                e,
                HandshakeError::Fault(HandshakeFault::CipherRefused("aegis-256x2"))
            ),
            "{e}"
        );
        assert_eq!(Cipher::Aegis256X2.fallback(), Some(Cipher::AesGcm));
        assert_eq!(Cipher::AesGcm.fallback(), Some(Cipher::ChaChaPoly));
        assert_eq!(Cipher::ChaChaPoly.fallback(), None);
        let e = refused_in_plain_text(frame::LinkReason::Auth);
        assert!(
            matches!(e, HandshakeError::Fault(HandshakeFault::ServerHasNoSecret)),
            "{e}"
        );
        let e = refused_in_plain_text(frame::LinkReason::Version);
        assert!(
            matches!(e, HandshakeError::Refused(frame::LinkReason::Version)),
            "{e}"
        );
    }

    fn sealed_round_trip(cipher: Cipher) {
        let (mut c, s) = pair();
        let secret = Secret::from_text("0123456789abcdef0123").unwrap();
        let sec2 = secret.clone();
        let server = std::thread::spawn(move || server_side(s, sec2, true));
        let (mut seal, _) =
            client_handshake_with(&mut c, &secret, true, &hello(1, false), cipher).unwrap();
        let (_, mut open, mut s) = server.join().unwrap().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        seal.write_all(&mut wire, &data).unwrap();
        assert!(!wire.windows(64).any(|w| w == &data[1000..1064]));
        c.write_all(&wire).unwrap();
        drop(c);
        let mut got = Vec::new();
        let mut buf = vec![0u8; MAX_PLAIN];
        loop {
            let n = open.read(&mut s, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, data);
    }

    /// What a client of protocol version 1 sent: the old magic and its
    /// first Noise message, with no cipher byte.
    fn version_1_hello(secret: &Secret) -> Vec<u8> {
        let params = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s".parse().unwrap();
        let mut hs = snow::Builder::new(params)
            .psk(0, secret.psk())
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut msg = [0u8; 256];
        let n = hs.write_message(&[1, 1], &mut msg).unwrap();
        let mut out = SECURE_MAGIC_V1.to_vec();
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&msg[..n]);
        out
    }

    #[test]
    fn a_version_1_client_is_refused_by_version_at_once() {
        let (mut c, s) = pair();
        let secret = Secret::from_text("0123456789abcdef0123").unwrap();
        c.write_all(&version_1_hello(&secret)).unwrap();
        let e = server_side(s, secret, true).err().expect("accepted");
        assert!(
            matches!(
                e,
                HandshakeError::Fault(HandshakeFault::Version { ours: 3, theirs: 1 })
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "protocol error: peer speaks protocol version 1, we speak 3"
        );
        let mut refuse = [0u8; 6];
        c.read_exact(&mut refuse).unwrap();
        let mut want = Vec::new();
        frame::encode(&Frame::Refuse(frame::LinkReason::Version), &mut want);
        assert_eq!(
            refuse[..],
            want[..],
            "the old client gets a REFUSE, not silence"
        );
    }

    /// What a client of protocol version 2 sent: the magic, its cipher code
    /// and its first Noise message, with no session id.
    fn version_2_hello(secret: &Secret) -> Vec<u8> {
        let params = "Noise_NNpsk0_25519_AESGCM_BLAKE2s".parse().unwrap();
        let mut hs = snow::Builder::new(params)
            .psk(0, secret.psk())
            .unwrap()
            .prologue(b"MTCS\x02")
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut msg = [0u8; 256];
        let n = hs.write_message(&[2, 1], &mut msg).unwrap();
        let mut out = b"MTCS\x02".to_vec();
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&msg[..n]);
        out
    }

    #[test]
    fn a_version_2_client_is_refused_by_version_at_once() {
        let (mut c, s) = pair();
        let secret = Secret::from_text("0123456789abcdef0123").unwrap();
        c.write_all(&version_2_hello(&secret)).unwrap();
        let e = server_side(s, secret, true).err().expect("accepted");
        assert_eq!(
            e.to_string(),
            "protocol error: peer speaks protocol version 2, we speak 3"
        );
        let mut refuse = [0u8; 6];
        c.read_exact(&mut refuse).unwrap();
        let mut want = Vec::new();
        frame::encode(&Frame::Refuse(frame::LinkReason::Version), &mut want);
        assert_eq!(refuse[..], want[..]);
    }

    #[test]
    fn an_unknown_cipher_is_refused() {
        let (mut c, s) = pair();
        let secret = Secret::from_text("0123456789abcdef0123").unwrap();
        let pre = Preamble::for_hello(&hello(5, false), 9);
        c.write_all(&pre.encode()).unwrap();
        let e = server_side(s, secret, true).err().expect("accepted");
        assert!(
            matches!(e, HandshakeError::Fault(HandshakeFault::UnknownCipher(9))),
            "{e}"
        );
    }

    /// A man in the middle changes one field of the clear preamble (the
    /// cipher, the session id a balancer routes by, the flags): the Noise
    /// handshake, whose prologue it is, fails on both sides.
    fn tamper_with_preamble(change: fn(&mut Preamble)) {
        let (mut c, mut s) = pair();
        let secret = Secret::from_text("0123456789abcdef0123").unwrap();
        let sec2 = secret.clone();
        let server = std::thread::spawn(move || {
            let mut head = [0u8; PREAMBLE_LEN];
            s.read_exact(&mut head).unwrap();
            let mut pre = preamble::decode(&head).unwrap();
            assert_eq!(pre.cipher, Cipher::AesGcm.code());
            change(&mut pre);
            let cipher = Cipher::from_code(pre.cipher).unwrap();
            server_handshake(&mut s, &sec2, true, &pre, cipher)
        });
        let client = client_handshake_with(&mut c, &secret, true, &hello(7, true), Cipher::AesGcm);
        assert!(
            matches!(
                server.join().unwrap(),
                Err(HandshakeError::Refused(frame::LinkReason::Auth))
            ),
            "the server took a tampered preamble"
        );
        assert!(client.is_err());
    }

    #[test]
    fn a_preamble_changed_on_the_way_breaks_the_handshake() {
        tamper_with_preamble(|p| p.cipher = Cipher::ChaChaPoly.code());
        tamper_with_preamble(|p| p.session_id ^= 1);
        tamper_with_preamble(|p| p.flags = 0);
    }

    #[test]
    fn a_hello_must_name_the_session_of_its_preamble() {
        let (mut c, mut s) = pair();
        let secret = Secret::from_text("0123456789abcdef0123").unwrap();
        let sec2 = secret.clone();
        let server = std::thread::spawn(move || server_accept(&mut s, Some(&sec2), true));
        let announced = hello(7, false);
        let (mut sealer, _) = client_handshake(&mut c, &secret, true, &announced).unwrap();
        let other = Hello {
            session_id: 8,
            ..announced
        };
        sealer.send_frame(&mut c, &Frame::Hello(other)).unwrap();
        let e = server.join().unwrap().expect_err("accepted");
        assert!(
            matches!(e, HandshakeError::Fault(HandshakeFault::HelloMismatch)),
            "{e}"
        );
    }

    #[test]
    fn a_matching_hello_is_accepted() {
        let (mut c, mut s) = pair();
        let secret = Secret::from_text("0123456789abcdef0123").unwrap();
        let sec2 = secret.clone();
        let server = std::thread::spawn(move || server_accept(&mut s, Some(&sec2), true));
        let announced = hello(7, true);
        let (mut sealer, _) = client_handshake(&mut c, &secret, true, &announced).unwrap();
        sealer.send_frame(&mut c, &Frame::Hello(announced)).unwrap();
        assert_eq!(server.join().unwrap().unwrap(), announced);
    }

    #[test]
    fn wrong_secret_is_refused_on_both_sides() {
        let (mut c, s) = pair();
        let good = Secret::from_text("0123456789abcdef0123").unwrap();
        let bad = Secret::from_text("fedcba9876543210fedc").unwrap();
        let server = std::thread::spawn(move || server_side(s, good, true));
        let client = client_handshake(&mut c, &bad, true, &hello(1, false));
        assert!(
            server.join().unwrap().is_err(),
            "server accepted a wrong secret"
        );
        let e = client
            .err()
            .expect("client accepted a server with another secret");
        assert!(e.to_string().contains("secret differs"), "{e}");
    }

    #[test]
    fn a_server_without_a_secret_is_named_as_such() {
        let (mut c, mut s) = pair();
        let secret = Secret::from_text("0123456789abcdef0123").unwrap();
        // What a server without a secret does with a secured hello.
        let server = std::thread::spawn(move || {
            let mut first = [0u8; 64];
            let _ = s.read(&mut first);
            let mut refuse = Vec::new();
            frame::encode(&frame::Frame::Refuse(frame::LinkReason::Auth), &mut refuse);
            s.write_all(&refuse).unwrap();
        });
        let e = client_handshake(&mut c, &secret, true, &hello(1, false))
            .err()
            .expect("accepted");
        server.join().unwrap();
        assert!(e.to_string().contains("server has no secret"), "{e}");
    }
}
