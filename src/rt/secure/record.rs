//! The record layer of a secured link: the byte stream of frames cut into
//! records of at most 65,535 bytes (`u16 len | ciphertext | 16-byte tag`),
//! each sealed under an implicit per-direction counter with empty
//! associated data. With AES-256-GCM and ChaCha20-Poly1305 a record is
//! exactly a Noise transport message (the nonce is four zero bytes and the
//! counter, big-endian for AES-GCM, little-endian for ChaCha20-Poly1305);
//! with AEGIS-256X2, which Noise does not name, the 32-byte nonce is the
//! counter, little-endian, then zeros.
//!
//! The keys come from the Noise handshake's split (`snow`), but the records
//! are sealed and opened here, in place: `snow`'s transport API copies
//! every byte into a second buffer before it seals or opens it (and the
//! code around it zero-filled 128 KiB per read). What it would put on the
//! wire for its two ciphers and what this module puts there are the same
//! bytes (the tests seal with one and open with the other).

use super::Cipher;
use aegis::aegis256x2::{Aegis256X2, Encryptor};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use std::io::{self, Read, Write};

/// Largest record on the wire after its length, ciphertext and tag.
pub(super) const MAX_RECORD: usize = 65535;
pub(super) const TAG_LEN: usize = 16;
/// Largest plaintext one record carries.
pub const MAX_PLAIN: usize = MAX_RECORD - TAG_LEN;
/// Largest DATA payload on a sealed link: a whole DATA frame then fits in
/// one record, the sender starts a record at a frame that would not fit in
/// the current one ([`Sealer::push_frame`]), and the receiver decodes
/// frames where the records were opened, without copying them out.
pub const MAX_SEALED_PAYLOAD: usize = MAX_PLAIN - crate::proto::frame::DATA_OVERHEAD;
/// Bytes of a record's length prefix.
const LEN_BYTES: usize = 2;
/// Bytes a record adds to its plaintext on the wire.
pub const RECORD_OVERHEAD: usize = LEN_BYTES + TAG_LEN;
/// An opener reads into a buffer of four largest records, allocated once
/// per link. It moves the unopened tail to the front only when a largest
/// record would no longer fit behind it, so most reads move nothing.
const READ_BUF: usize = 4 * (LEN_BYTES + MAX_RECORD);

/// One direction's key and record counter.
pub(super) struct RecordKey {
    aead: Aead,
    next: u64,
}

/// The cipher of one direction, keyed. There is one per link direction, so
/// the size of ring's key schedule beside AEGIS's bare key does not matter.
#[allow(clippy::large_enum_variant)]
enum Aead {
    /// AES-256-GCM or ChaCha20-Poly1305 through ring, with the Noise
    /// nonce layout (big-endian counter for AES-GCM, little-endian for
    /// ChaCha20-Poly1305).
    Ring { key: LessSafeKey, big_endian: bool },
    /// AEGIS-256X2 (libaegis through the `aegis` crate). Its nonce is 32
    /// bytes: the counter little-endian, then zeros.
    Aegis { key: [u8; 32] },
}

impl RecordKey {
    /// The key of one direction, from the handshake's split.
    pub(super) fn new(cipher: Cipher, raw: &[u8; 32]) -> io::Result<RecordKey> {
        let ring_key = |algorithm: &'static aead::Algorithm| {
            UnboundKey::new(algorithm, raw)
                .map(LessSafeKey::new)
                .map_err(|_| io::Error::other("record key of the wrong length"))
        };
        let aead = match cipher {
            Cipher::AesGcm => Aead::Ring {
                key: ring_key(&aead::AES_256_GCM)?,
                big_endian: true,
            },
            Cipher::ChaChaPoly => Aead::Ring {
                key: ring_key(&aead::CHACHA20_POLY1305)?,
                big_endian: false,
            },
            Cipher::Aegis256X2 => Aead::Aegis { key: *raw },
        };
        Ok(RecordKey { aead, next: 0 })
    }

    /// The next record's counter. Noise reserves the counter's last value,
    /// and a counter never repeats under one key: a link that reached it
    /// (2^64 records) fails rather than wrap.
    fn next_counter(&mut self) -> io::Result<u64> {
        let n = self.next;
        if n == u64::MAX {
            return Err(io::Error::other("record counter exhausted"));
        }
        self.next = n + 1;
        Ok(n)
    }

    /// For AEGIS, the state that seals the next record as its plaintext is
    /// appended (under the next counter); `None` for ring's ciphers, which
    /// seal a whole record in place ([`RecordKey::seal`]).
    fn stream_sealer(&mut self) -> io::Result<Option<Encryptor<TAG_LEN>>> {
        let Aead::Aegis { key } = self.aead else {
            return Ok(None);
        };
        let n = self.next_counter()?;
        Ok(Some(
            Aegis256X2::<TAG_LEN>::new(&key, &aegis_nonce(n)).encryptor(&[]),
        ))
    }

    /// Seals `text` where it lies under the next counter; returns the tag.
    fn seal(&mut self, text: &mut [u8]) -> io::Result<[u8; TAG_LEN]> {
        let n = self.next_counter()?;
        match &self.aead {
            Aead::Ring { key, big_endian } => {
                let tag = key
                    .seal_in_place_separate_tag(ring_nonce(n, *big_endian), Aad::empty(), text)
                    .map_err(|_| io::Error::other("seal failed"))?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }
            Aead::Aegis { key } => {
                Ok(Aegis256X2::<TAG_LEN>::new(key, &aegis_nonce(n)).encrypt_in_place(text, &[]))
            }
        }
    }

    /// Opens a record's ciphertext and tag where they lie under the next
    /// counter; returns the plaintext.
    fn open<'a>(&mut self, record: &'a mut [u8]) -> io::Result<&'a [u8]> {
        let n = self.next_counter()?;
        let failed = || io::Error::new(io::ErrorKind::InvalidData, "record failed authentication");
        match &self.aead {
            Aead::Ring { key, big_endian } => key
                .open_in_place(ring_nonce(n, *big_endian), Aad::empty(), record)
                .map(|text| &*text)
                .map_err(|_| failed()),
            Aead::Aegis { key } => {
                let text_len = record.len().checked_sub(TAG_LEN).ok_or_else(failed)?;
                let (text, tag) = record.split_at_mut(text_len);
                let tag: &[u8; TAG_LEN] = (&*tag).try_into().map_err(|_| failed())?;
                Aegis256X2::<TAG_LEN>::new(key, &aegis_nonce(n))
                    .decrypt_in_place(text, tag, &[])
                    .map_err(|_| failed())?;
                Ok(text)
            }
        }
    }
}

/// The 12-byte Noise nonce: four zero bytes and the counter.
fn ring_nonce(n: u64, big_endian: bool) -> Nonce {
    let mut bytes = [0u8; 12];
    if big_endian {
        bytes[4..].copy_from_slice(&n.to_be_bytes());
    } else {
        bytes[4..].copy_from_slice(&n.to_le_bytes());
    }
    Nonce::assume_unique_for_key(bytes)
}

/// AEGIS-256X2's 32-byte nonce: the counter, little-endian, then zeros.
fn aegis_nonce(n: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes
}

/// The sending half of a link's channel (owned by whoever holds the link's
/// `Wire`). Plaintext goes straight into the outgoing records: AEGIS seals
/// it on the way in (one pass over the bytes), ring's ciphers where it lies
/// once the record is full.
pub struct Sealer {
    key: Option<RecordKey>,
    wire: OutBuf,
    /// Where the record being filled starts (its length prefix).
    open: Option<usize>,
    /// The AEGIS state of the record being filled.
    stream: Option<Encryptor<TAG_LEN>>,
}

impl Sealer {
    pub(super) fn new(key: Option<RecordKey>) -> Sealer {
        Sealer {
            key,
            wire: OutBuf::default(),
            open: None,
            stream: None,
        }
    }

    /// True when the channel neither encrypts nor authenticates: the link
    /// writer can then hand payloads to the kernel without copying them.
    pub fn is_plain(&self) -> bool {
        self.key.is_none()
    }

    /// Starts the bytes of one write: what [`push`] appends until
    /// [`finish`].
    ///
    /// [`push`]: Sealer::push
    /// [`finish`]: Sealer::finish
    pub fn begin(&mut self) {
        self.wire.used = 0;
        self.open = None;
        self.stream = None;
    }

    /// Appends plaintext, sealing each record as it fills.
    pub fn push(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.key.is_none() {
            self.wire.room(bytes.len()).copy_from_slice(bytes);
            return Ok(());
        }
        while !bytes.is_empty() {
            let start = match self.open {
                Some(start) => start,
                None => self.open_record()?,
            };
            let filled = self.wire.used - start - LEN_BYTES;
            let n = (MAX_PLAIN - filled).min(bytes.len());
            let (now, later) = bytes.split_at(n);
            let into = self.wire.room(n);
            match self.stream.as_mut() {
                Some(stream) => stream.update(now, into),
                None => into.copy_from_slice(now),
            }
            bytes = later;
            if filled + n == MAX_PLAIN {
                self.close_record()?;
            }
        }
        Ok(())
    }

    /// Appends one frame (its encoded head and payload), starting a new
    /// record when the open one has no room for all of it but an empty one
    /// would: frames then do not straddle records.
    pub fn push_frame(&mut self, head: &[u8], payload: &[u8]) -> io::Result<()> {
        let len = head.len() + payload.len();
        if let Some(start) = self.open {
            let filled = self.wire.used - start - LEN_BYTES;
            if filled + len > MAX_PLAIN && len <= MAX_PLAIN {
                self.close_record()?;
            }
        }
        self.push(head)?;
        self.push(payload)
    }

    /// Seals the last record and returns the bytes to put on the wire
    /// (valid until the next [`begin`]). Once sealed they must be sent:
    /// their counters are spent.
    ///
    /// [`begin`]: Sealer::begin
    pub fn finish(&mut self) -> io::Result<&[u8]> {
        self.close_record()?;
        Ok(&self.wire.bytes[..self.wire.used])
    }

    /// Starts a record (its length prefix, filled in when it closes);
    /// returns where it starts.
    fn open_record(&mut self) -> io::Result<usize> {
        let start = self.wire.used;
        if let Some(key) = self.key.as_mut() {
            self.stream = key.stream_sealer()?;
        }
        self.wire.room(LEN_BYTES);
        self.open = Some(start);
        Ok(start)
    }

    /// Seals the record being filled, if any: finishes its AEGIS state, or
    /// seals its plaintext in place with ring.
    fn close_record(&mut self) -> io::Result<()> {
        let (Some(start), Some(key)) = (self.open.take(), self.key.as_mut()) else {
            return Ok(());
        };
        let body = start + LEN_BYTES;
        let tag = match self.stream.take() {
            Some(stream) => stream.finalize(),
            None => key.seal(&mut self.wire.bytes[body..self.wire.used])?,
        };
        self.wire.room(TAG_LEN).copy_from_slice(&tag);
        let len = self.wire.used - body;
        let len = u16::try_from(len).map_err(|_| io::Error::other("record too long"))?;
        self.wire.bytes[start..body].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Seals `plain` into records and returns the bytes to put on the wire;
    /// on a plain channel that is `plain` itself, copied.
    pub fn seal(&mut self, plain: &[u8]) -> io::Result<&[u8]> {
        self.begin();
        self.push(plain)?;
        self.finish()
    }

    /// Writes `plain` to `out`, sealed when the channel is encrypted.
    pub fn write_all(&mut self, out: &mut impl Write, plain: &[u8]) -> io::Result<()> {
        if self.key.is_none() {
            return out.write_all(plain);
        }
        let wire = self.seal(plain)?;
        out.write_all(wire)
    }
}

/// A sealer's outgoing bytes, `bytes[..used]`; the rest is room kept from
/// earlier writes, so that the buffer is zero-filled once, not per write.
#[derive(Default)]
struct OutBuf {
    bytes: Vec<u8>,
    used: usize,
}

impl OutBuf {
    /// The next `n` bytes, counted as used.
    fn room(&mut self, n: usize) -> &mut [u8] {
        let start = self.used;
        self.used += n;
        if self.bytes.len() < self.used {
            self.bytes.resize(self.used, 0);
        }
        &mut self.bytes[start..self.used]
    }
}

/// The receiving half of a link's channel (owned by the link reader).
/// Ciphertext is read into one buffer, allocated once, and opened there.
pub struct Opener {
    key: Option<RecordKey>,
    wire: Vec<u8>,
    /// Unread bytes are `wire[start..end]`.
    start: usize,
    end: usize,
}

impl Opener {
    pub(super) fn new(key: Option<RecordKey>) -> Opener {
        Opener {
            key,
            wire: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// True when the channel is encrypted (records, not plain bytes).
    pub fn is_sealed(&self) -> bool {
        self.key.is_some()
    }

    /// Reads from `socket` and puts plaintext into `plain`, returning how
    /// many bytes (0 = the peer closed). `plain` must hold at least
    /// [`MAX_PLAIN`] bytes when the channel is encrypted.
    pub fn read(&mut self, socket: &mut impl Read, plain: &mut [u8]) -> io::Result<usize> {
        if self.key.is_none() {
            return socket.read(plain);
        }
        let text = self.next_record(socket)?;
        let into = plain
            .get_mut(..text.len())
            .ok_or_else(|| io::Error::other("plaintext buffer smaller than a record"))?;
        into.copy_from_slice(text);
        Ok(text.len())
    }

    /// Reads until the next record is whole and opens it where it lies;
    /// returns its plaintext, valid until the next call (empty: the peer
    /// closed). Only for an encrypted channel.
    pub fn next_record(&mut self, socket: &mut impl Read) -> io::Result<&[u8]> {
        if self.wire.is_empty() {
            self.wire = vec![0; READ_BUF];
        }
        loop {
            if let Some((body, len)) = self.whole_record()? {
                let n = open_record(&mut self.key, &mut self.wire[body..body + len])?.len();
                // An empty record (a tag alone) carries nothing; returned,
                // it would read as the end of the link.
                if n > 0 {
                    return Ok(&self.wire[body..body + n]);
                }
                continue;
            }
            if self.start == self.end {
                (self.start, self.end) = (0, 0);
            } else if self.wire.len() - self.start < LEN_BYTES + MAX_RECORD {
                self.wire.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match socket.read(&mut self.wire[self.end..])? {
                0 => return Ok(&[]),
                n => self.end += n,
            }
        }
    }

    /// Opens one whole record's ciphertext and tag (handshake phase, where
    /// records are read one at a time); returns its plaintext.
    pub(super) fn open_one<'a>(&mut self, record: &'a mut [u8]) -> io::Result<&'a [u8]> {
        open_record(&mut self.key, record)
    }

    /// Where the first buffered record's ciphertext starts and its length
    /// (tag included), once it is all here; consumes it.
    fn whole_record(&mut self) -> io::Result<Option<(usize, usize)>> {
        let avail = &self.wire[self.start..self.end];
        if avail.len() < LEN_BYTES {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([avail[0], avail[1]]));
        if len < TAG_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "record too short",
            ));
        }
        if avail.len() < LEN_BYTES + len {
            return Ok(None);
        }
        let body = self.start + LEN_BYTES;
        self.start = body + len;
        Ok(Some((body, len)))
    }
}

/// Opens one record's ciphertext and tag where they lie; returns the
/// plaintext (the record itself on a plain channel).
fn open_record<'a>(key: &mut Option<RecordKey>, record: &'a mut [u8]) -> io::Result<&'a [u8]> {
    let Some(key) = key.as_mut() else {
        return Ok(record);
    };
    key.open(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use snow::{HandshakeState, StatelessTransportState};

    /// A finished NNpsk0 handshake between two in-memory parties.
    fn handshake(cipher: Cipher) -> (HandshakeState, HandshakeState) {
        let psk = [7u8; 32];
        let build = |initiator: bool| {
            let b = snow::Builder::new(cipher.noise_params().parse().unwrap())
                .psk(0, &psk)
                .unwrap();
            if initiator {
                b.build_initiator().unwrap()
            } else {
                b.build_responder().unwrap()
            }
        };
        let (mut i, mut r) = (build(true), build(false));
        let (mut msg, mut out) = ([0u8; 256], [0u8; 256]);
        let n = i.write_message(&[], &mut msg).unwrap();
        r.read_message(&msg[..n], &mut out).unwrap();
        let n = r.write_message(&[], &mut msg).unwrap();
        i.read_message(&msg[..n], &mut out).unwrap();
        (i, r)
    }

    /// Our sealer for the initiator's direction, and snow's own transport
    /// state for the responder.
    fn ours_and_snows(cipher: Cipher) -> (Sealer, Opener, StatelessTransportState) {
        let (mut i, r) = handshake(cipher);
        let (first, second) = i.dangerously_get_raw_split();
        let sealer = Sealer::new(Some(RecordKey::new(cipher, &first).unwrap()));
        let opener = Opener::new(Some(RecordKey::new(cipher, &second).unwrap()));
        (sealer, opener, r.into_stateless_transport_mode().unwrap())
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// Splits a sealed byte stream into its records' ciphertexts.
    fn records(mut wire: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while !wire.is_empty() {
            let len = usize::from(u16::from_be_bytes([wire[0], wire[1]]));
            out.push(&wire[2..2 + len]);
            wire = &wire[2 + len..];
        }
        out
    }

    #[test]
    fn our_records_are_the_noise_transport_messages_snow_would_send() {
        for cipher in [Cipher::AesGcm, Cipher::ChaChaPoly] {
            let (mut sealer, mut opener, snow) = ours_and_snows(cipher);
            // Three records from pieces that cross the record boundary.
            let text = data(2 * MAX_PLAIN + 1000);
            sealer.begin();
            for piece in text.chunks(10_000) {
                sealer.push(piece).unwrap();
            }
            let wire = sealer.finish().unwrap().to_vec();
            let mut got = Vec::new();
            for (n, record) in records(&wire).into_iter().enumerate() {
                let mut out = vec![0u8; MAX_PLAIN];
                let len = snow.read_message(n as u64, record, &mut out).unwrap();
                got.extend_from_slice(&out[..len]);
            }
            assert_eq!(got, text, "{cipher:?}: snow read something else");
            // And what snow seals, we open.
            let mut wire = Vec::new();
            for (n, piece) in text.chunks(MAX_PLAIN).enumerate() {
                let mut msg = vec![0u8; MAX_RECORD];
                let len = snow.write_message(n as u64, piece, &mut msg).unwrap();
                wire.extend_from_slice(&(len as u16).to_be_bytes());
                wire.extend_from_slice(&msg[..len]);
            }
            let mut src = &wire[..];
            let mut got = Vec::new();
            let mut buf = vec![0u8; MAX_PLAIN];
            loop {
                let n = opener.read(&mut src, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, text, "{cipher:?}: we read something else");
        }
    }

    /// AEGIS records, sealed as their plaintext is appended piece by
    /// piece, are what libaegis seals in one call under the counter nonce
    /// (the layout the README gives), and open again.
    #[test]
    fn aegis_records_are_libaegis_messages_under_the_counter_nonce() {
        let key = [9u8; 32];
        let mut sealer = Sealer::new(Some(RecordKey::new(Cipher::Aegis256X2, &key).unwrap()));
        let text = data(2 * MAX_PLAIN + 1000);
        sealer.begin();
        sealer.push_frame(&text[..21], &text[21..30_000]).unwrap();
        for piece in text[30_000..].chunks(7_777) {
            sealer.push(piece).unwrap();
        }
        let wire = sealer.finish().unwrap().to_vec();
        let mut got = Vec::new();
        for (n, record) in records(&wire).into_iter().enumerate() {
            let mut nonce = [0u8; 32];
            nonce[..8].copy_from_slice(&(n as u64).to_le_bytes());
            let (ciphertext, tag) = record.split_at(record.len() - TAG_LEN);
            let tag: [u8; TAG_LEN] = tag.try_into().unwrap();
            let plain = Aegis256X2::<TAG_LEN>::new(&key, &nonce)
                .decrypt(ciphertext, &tag, &[])
                .expect("libaegis opens our record");
            got.extend_from_slice(&plain);
        }
        assert_eq!(got, text);
        let (_, mut opener) = one_direction_with(Cipher::Aegis256X2, key);
        assert_eq!(read_all(&mut opener, &mut &wire[..]).unwrap(), text);
    }

    /// A sealer and an opener of one direction under one key.
    fn one_direction(cipher: Cipher) -> (Sealer, Opener) {
        one_direction_with(cipher, [42u8; 32])
    }

    fn one_direction_with(cipher: Cipher, key: [u8; 32]) -> (Sealer, Opener) {
        (
            Sealer::new(Some(RecordKey::new(cipher, &key).unwrap())),
            Opener::new(Some(RecordKey::new(cipher, &key).unwrap())),
        )
    }

    /// Hands out its bytes one at a time, as a slow socket might.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((&first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            buf[0] = first;
            self.0 = rest;
            Ok(1)
        }
    }

    fn read_all(opener: &mut Opener, src: &mut impl Read) -> io::Result<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; MAX_PLAIN];
        loop {
            match opener.read(src, &mut buf)? {
                0 => return Ok(got),
                n => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[test]
    fn records_trickling_in_a_byte_at_a_time_open_whole() {
        let (mut sealer, mut opener) = one_direction(Cipher::ChaChaPoly);
        let text = data(MAX_PLAIN + 5);
        let wire = sealer.seal(&text).unwrap().to_vec();
        assert_eq!(records(&wire).len(), 2);
        assert!(!wire.windows(64).any(|w| w == &text[1000..1064]));
        let got = read_all(&mut opener, &mut Trickle(&wire)).unwrap();
        assert_eq!(got, text);
    }

    const ALL: [Cipher; 3] = [Cipher::AesGcm, Cipher::ChaChaPoly, Cipher::Aegis256X2];

    #[test]
    fn a_changed_byte_fails_authentication() {
        for cipher in ALL {
            // In the ciphertext (bytes 2..14), and in the tag (14..30).
            for at in [2, 5, 29] {
                let (mut sealer, mut opener) = one_direction(cipher);
                let mut wire = sealer.seal(b"hello, world").unwrap().to_vec();
                wire[at] ^= 1;
                let e = read_all(&mut opener, &mut &wire[..]).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{cipher:?}");
                assert_eq!(e.to_string(), "record failed authentication");
            }
        }
    }

    #[test]
    fn a_replayed_record_fails_authentication() {
        for cipher in ALL {
            let (mut sealer, mut opener) = one_direction(cipher);
            let once = sealer.seal(b"pay 100").unwrap().to_vec();
            let twice = [once.clone(), once].concat();
            let e = read_all(&mut opener, &mut &twice[..]).unwrap_err();
            assert_eq!(e.to_string(), "record failed authentication", "{cipher:?}");
        }
    }

    #[test]
    fn a_record_shorter_than_its_tag_is_refused() {
        let (_, mut opener) = one_direction(Cipher::AesGcm);
        let e = read_all(&mut opener, &mut &[0u8, 3, 1, 2, 3][..]).unwrap_err();
        assert_eq!(e.to_string(), "record too short");
    }

    #[test]
    fn the_counter_never_wraps() {
        for cipher in ALL {
            let (mut sealer, _) = one_direction(cipher);
            if let Some(key) = sealer.key.as_mut() {
                key.next = u64::MAX - 1;
            }
            assert!(sealer.seal(b"last").is_ok());
            let e = sealer.seal(b"one too many").unwrap_err();
            assert_eq!(e.to_string(), "record counter exhausted", "{cipher:?}");
        }
    }

    #[test]
    fn a_plain_channel_passes_bytes_as_they_are() {
        let mut sealer = Sealer::new(None);
        assert!(sealer.is_plain());
        assert_eq!(sealer.seal(b"clear").unwrap(), b"clear");
    }
}
