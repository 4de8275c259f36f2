//! Property tests for the pure frame codec (`mtcp::proto::frame`).
//!
//! They pin down the wire-protocol contract the link readers and writers rely
//! on: every frame round-trips, a partial frame is "read more" and never an
//! error, frames decode back to back from one buffer, no input makes `decode`
//! panic or claim more bytes than it was given, a hostile length is refused
//! after its 4 bytes, and the vectored DATA header matches the full encoding.
//!
//! Case counts are chosen so the whole file runs in a few seconds in a debug
//! build; set `PROPTEST_CASES` to run more.

use mtcp::proto::frame::*;
use proptest::prelude::*;

/// Payload limit used by most properties; DATA payloads are drawn below it.
const MAX_PAYLOAD: u32 = 4096;
/// Largest DATA payload the strategies generate (keeps prefix checks cheap).
const GEN_PAYLOAD: usize = 512;

fn limit() -> u32 {
    max_frame_len(MAX_PAYLOAD)
}

/// A generated frame that owns its DATA payload, so the strategy can return it.
#[derive(Debug, Clone)]
enum Owned {
    /// Any frame but DATA (these borrow nothing).
    Ctrl(Frame<'static>),
    Data {
        stream: StreamId,
        offset: u64,
        data: Vec<u8>,
    },
}

impl Owned {
    fn frame(&self) -> Frame<'_> {
        match self {
            Owned::Ctrl(f) => *f,
            Owned::Data {
                stream,
                offset,
                data,
            } => Frame::Data {
                stream: *stream,
                offset: *offset,
                data,
            },
        }
    }

    fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&self.frame(), &mut out);
        out
    }
}

/// Every `LinkReason`; `Other` only with codes that do not name a variant
/// (`Other(3)` is decoded as `UnknownSession`, by design).
fn link_reason() -> impl Strategy<Value = LinkReason> {
    prop_oneof![
        Just(LinkReason::BadMagic),
        Just(LinkReason::Version),
        Just(LinkReason::UnknownSession),
        Just(LinkReason::TooManyLinks),
        Just(LinkReason::TooManySessions),
        Just(LinkReason::Auth),
        Just(LinkReason::ShuttingDown),
        Just(LinkReason::Protocol),
        prop_oneof![Just(0u8), 9u8..=255].prop_map(LinkReason::Other),
    ]
}

/// Every `RstReason`; `Other` only with unmapped codes.
fn rst_reason() -> impl Strategy<Value = RstReason> {
    prop_oneof![
        Just(RstReason::Reset),
        Just(RstReason::ConnectFailed),
        Just(RstReason::Protocol),
        Just(RstReason::Refused),
        Just(RstReason::Shutdown),
        Just(RstReason::SessionLost),
        prop_oneof![Just(0u8), 7u8..=255].prop_map(RstReason::Other),
    ]
}

/// Stream ids, offsets and tokens: edge values often, anything otherwise.
fn any_u32() -> impl Strategy<Value = u32> {
    prop_oneof![1 => Just(0u32), 1 => Just(u32::MAX), 4 => any::<u32>()]
}

fn any_u64() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 1 => Just(u64::MAX), 4 => any::<u64>()]
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        any::<u8>(),
        any::<u8>(),
        any_u64(),
        any::<u16>(),
        any_u32(),
        any_u32(),
    )
        .prop_map(
            |(version, flags, session_id, link_index, max_payload, window)| Hello {
                version,
                flags,
                session_id,
                link_index,
                max_payload,
                window,
            },
        )
}

fn welcome() -> impl Strategy<Value = Welcome> {
    (any::<u8>(), any_u32(), any_u32()).prop_map(|(version, max_payload, window)| Welcome {
        version,
        max_payload,
        window,
    })
}

/// An arbitrary frame of any of the eleven types.
fn owned_frame() -> impl Strategy<Value = Owned> {
    prop_oneof![
        1 => hello().prop_map(|h| Owned::Ctrl(Frame::Hello(h))),
        1 => welcome().prop_map(|w| Owned::Ctrl(Frame::Welcome(w))),
        1 => link_reason().prop_map(|r| Owned::Ctrl(Frame::Refuse(r))),
        1 => any_u32().prop_map(|stream| Owned::Ctrl(Frame::Open { stream })),
        3 => (
            any_u32(),
            any_u64(),
            proptest::collection::vec(any::<u8>(), 0..=GEN_PAYLOAD)
        )
            .prop_map(|(stream, offset, data)| Owned::Data {
                stream,
                offset,
                data
            }),
        1 => (any_u32(), any_u64()).prop_map(|(stream, offset)| Owned::Ctrl(Frame::Fin {
            stream,
            offset
        })),
        1 => (any_u32(), rst_reason())
            .prop_map(|(stream, reason)| Owned::Ctrl(Frame::Rst { stream, reason })),
        1 => (any_u32(), any_u64()).prop_map(|(stream, delivered)| Owned::Ctrl(Frame::Ack {
            stream,
            delivered
        })),
        1 => any_u64().prop_map(|token| Owned::Ctrl(Frame::Ping { token })),
        1 => any_u64().prop_map(|token| Owned::Ctrl(Frame::Pong { token })),
        1 => link_reason().prop_map(|r| Owned::Ctrl(Frame::GoAway(r))),
    ]
}

/// Bytes that look like a frame header (plausible length, known or unknown
/// type) followed by random body bytes, so the fuzz-style properties reach
/// the body decoders instead of failing on the length almost every time.
fn framish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let kind = prop_oneof![
        prop::sample::select(vec![
            0x01u8, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x20, 0x21, 0x22
        ]),
        any::<u8>(),
    ];
    (
        0u32..64,
        kind,
        proptest::collection::vec(any::<u8>(), 0..80),
        any::<bool>(),
    )
        .prop_map(|(len, kind, mut body, magic)| {
            let mut out = len.to_be_bytes().to_vec();
            out.push(kind);
            if magic && kind == 0x01 && body.len() >= 4 {
                body[..4].copy_from_slice(&MAGIC);
            }
            out.extend_from_slice(&body);
            out
        })
}

/// Limits for the no-panic properties: tiny, realistic, and the extremes.
fn any_limit() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(u32::MAX),
        Just(limit()),
        0u32..=64,
        any::<u32>(),
    ]
}

/// Checks what every successful decode must satisfy, whatever the input.
fn check_decode_contract(buf: &[u8], max_len: u32) -> Result<(), TestCaseError> {
    match decode(buf, max_len) {
        Ok(Some((frame, used))) => {
            prop_assert!(used <= buf.len(), "used {} of {} bytes", used, buf.len());
            prop_assert!(used >= HEADER_LEN);
            prop_assert!((used - 4) as u64 <= max_len as u64);
            // Decoding is canonical: re-encoding gives back exactly the bytes
            // that were consumed (every reason code maps back to itself).
            let mut again = Vec::new();
            encode(&frame, &mut again);
            prop_assert_eq!(&again[..], &buf[..used]);
        }
        Ok(None) => {
            // Only a buffer too short for its declared length is "partial".
            if buf.len() >= 4 {
                let len = u32::from_be_bytes(buf[..4].try_into().unwrap());
                prop_assert!(len <= max_len && len > 0);
                prop_assert!(buf.len() < 4 + len as usize);
            }
        }
        Err(DecodeError::TooLong { len, max }) => {
            prop_assert_eq!(max, max_len);
            prop_assert!(len > max_len);
        }
        Err(_) => {}
    }
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    // Respect PROPTEST_CASES when set, otherwise use the given count.
    let mut c = ProptestConfig::with_cases(cases);
    if let Ok(n) = std::env::var("PROPTEST_CASES")
        && let Ok(n) = n.parse()
    {
        c.cases = n;
    }
    c
}

proptest! {
    #![proptest_config(config(512))]

    /// Any frame encodes and decodes back to itself, using exactly the
    /// encoded bytes, also when the limit is exactly the frame's length.
    #[test]
    fn frame_round_trips(f in owned_frame(), tail in proptest::collection::vec(any::<u8>(), 0..16)) {
        let frame = f.frame();
        let enc = f.encoded();
        let len = u32::from_be_bytes(enc[..4].try_into().unwrap());
        prop_assert_eq!(len as usize, enc.len() - 4);

        let (back, used) = decode(&enc, limit()).unwrap().unwrap();
        prop_assert_eq!(used, enc.len());
        prop_assert_eq!(back, frame);

        // Trailing bytes (the next frame) are left alone.
        let mut more = enc.clone();
        more.extend_from_slice(&tail);
        let (back, used) = decode(&more, limit()).unwrap().unwrap();
        prop_assert_eq!(used, enc.len());
        prop_assert_eq!(back, frame);

        // The limit is inclusive: exactly `len` passes, one less is TooLong.
        let (back, _) = decode(&enc, len).unwrap().unwrap();
        prop_assert_eq!(back, frame);
        prop_assert_eq!(
            decode(&enc, len - 1),
            Err(DecodeError::TooLong { len, max: len - 1 })
        );

        // encode appends: existing bytes in `out` are kept.
        let mut out = b"prefix".to_vec();
        encode(&frame, &mut out);
        prop_assert_eq!(&out[..6], b"prefix");
        prop_assert_eq!(&out[6..], &enc[..]);
    }

    /// Every strict prefix of an encoding is a partial frame: Ok(None).
    #[test]
    fn strict_prefixes_are_partial(f in owned_frame()) {
        let enc = f.encoded();
        for cut in 0..enc.len() {
            prop_assert_eq!(decode(&enc[..cut], limit()), Ok(None), "cut at {}", cut);
        }
    }

    /// Several frames in one buffer decode in order, each consuming exactly
    /// its own encoding; a partial frame at the end is Ok(None).
    #[test]
    fn concatenated_frames_decode_in_sequence(
        frames in proptest::collection::vec(owned_frame(), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        for f in &frames {
            encode(&f.frame(), &mut buf);
            ends.push(buf.len());
        }
        let mut pos = 0;
        for (f, end) in frames.iter().zip(&ends) {
            let (back, used) = decode(&buf[pos..], limit()).unwrap().unwrap();
            prop_assert_eq!(back, f.frame());
            pos += used;
            prop_assert_eq!(pos, *end);
        }
        prop_assert_eq!(pos, buf.len());
        prop_assert_eq!(decode(&buf[pos..], limit()), Ok(None));

        // Cut the buffer inside the last frame: all whole frames still decode,
        // then the remainder is partial.
        let last_start = if ends.len() > 1 { ends[ends.len() - 2] } else { 0 };
        let last_len = buf.len() - last_start;
        let cut_at = last_start + cut.index(last_len);
        let short = &buf[..cut_at];
        let mut pos = 0;
        for f in &frames[..frames.len() - 1] {
            let (back, used) = decode(&short[pos..], limit()).unwrap().unwrap();
            prop_assert_eq!(back, f.frame());
            pos += used;
        }
        prop_assert_eq!(decode(&short[pos..], limit()), Ok(None));
    }

    /// Arbitrary bytes never panic the decoder, and a decoded frame never
    /// claims more bytes than it was given.
    #[test]
    fn arbitrary_bytes_never_panic(
        buf in proptest::collection::vec(any::<u8>(), 0..256),
        max_len in any_limit(),
    ) {
        check_decode_contract(&buf, max_len)?;
    }

    /// Same, with inputs shaped like frames so the body decoders are reached.
    #[test]
    fn framish_bytes_never_panic(buf in framish_bytes(), max_len in any_limit()) {
        check_decode_contract(&buf, max_len)?;
        // Every prefix too: the decoder sees all of them as data trickles in.
        for cut in 0..buf.len() {
            check_decode_contract(&buf[..cut], max_len)?;
        }
    }

    /// A length field above the limit is refused after only its 4 bytes,
    /// whatever follows (nothing, or anything).
    #[test]
    fn too_long_after_four_bytes(
        max_len in prop_oneof![Just(0u32), 0u32..=64, Just(limit()), any::<u32>()],
        excess in prop_oneof![Just(1u32), any::<u32>()],
        rest in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        prop_assume!(max_len < u32::MAX);
        let len = max_len.saturating_add(excess.max(1));
        let mut buf = len.to_be_bytes().to_vec();
        let want = Err(DecodeError::TooLong { len, max: max_len });
        prop_assert_eq!(decode(&buf, max_len), want.clone());
        buf.extend_from_slice(&rest);
        prop_assert_eq!(decode(&buf, max_len), want);
    }

    /// Fewer than 4 bytes is always partial; a zero length is always Empty.
    #[test]
    fn short_and_empty(
        head in proptest::collection::vec(any::<u8>(), 0..4),
        rest in proptest::collection::vec(any::<u8>(), 0..32),
        max_len in any_limit(),
    ) {
        prop_assert_eq!(decode(&head, max_len), Ok(None));
        let mut buf = vec![0u8; 4];
        buf.extend_from_slice(&rest);
        prop_assert_eq!(decode(&buf, max_len), Err(DecodeError::Empty));
    }

    /// The vectored DATA header plus the payload is byte-for-byte the full
    /// DATA encoding, and its length is DATA_OVERHEAD.
    #[test]
    fn data_header_plus_payload_equals_encode(
        stream in any_u32(),
        offset in any_u64(),
        data in proptest::collection::vec(any::<u8>(), 0..=GEN_PAYLOAD),
    ) {
        let mut full = Vec::new();
        encode(&Frame::Data { stream, offset, data: &data }, &mut full);

        let mut split = b"x".to_vec();
        encode_data_header(stream, offset, data.len() as u32, &mut split);
        prop_assert_eq!(split.len() - 1, DATA_OVERHEAD);
        split.extend_from_slice(&data);
        prop_assert_eq!(&split[1..], &full[..]);

        // A full-size payload is exactly at the limit max_frame_len gives.
        let len = u32::from_be_bytes(full[..4].try_into().unwrap());
        prop_assert_eq!(len, max_frame_len(data.len() as u32));
    }
}

/// Every control frame fits the documented body bound.
#[test]
fn control_bodies_fit_max_control_body() {
    let frames = [
        Frame::Hello(Hello {
            version: 1,
            flags: 0,
            session_id: 0,
            link_index: 0,
            max_payload: 0,
            window: 0,
        }),
        Frame::Welcome(Welcome {
            version: 1,
            max_payload: 0,
            window: 0,
        }),
        Frame::Refuse(LinkReason::Auth),
        Frame::Open { stream: 0 },
        Frame::Fin {
            stream: 0,
            offset: 0,
        },
        Frame::Rst {
            stream: 0,
            reason: RstReason::Reset,
        },
        Frame::Ack {
            stream: 0,
            delivered: 0,
        },
        Frame::Ping { token: 0 },
        Frame::Pong { token: 0 },
        Frame::GoAway(LinkReason::Protocol),
    ];
    for f in frames {
        let mut out = Vec::new();
        encode(&f, &mut out);
        assert!(out.len() - HEADER_LEN <= MAX_CONTROL_BODY, "{f:?}");
    }
}
