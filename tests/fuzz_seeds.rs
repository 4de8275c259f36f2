//! The fuzz targets' checks (`tests/fuzz/harness.rs`), run by every
//! `cargo test` on a corpus of seeds: hand-made cases for each frame type,
//! each handshake path and each way to be wrong, then a few thousand
//! pseudo-random inputs and mutations of the seeds from a fixed seed. The
//! fuzzer itself needs nightly, which CI does not have; this keeps the
//! harness compiling and its checks exercised, and replays the cases that
//! matter on every change.

#[path = "fuzz/harness.rs"]
mod harness;

mod common;

use common::Pattern;
use mtcp::proto::frame::{self, Frame, Hello, LinkReason, RstReason, Welcome};
use mtcp::proto::secret::Secret;
use mtcp::rt::secure;
use std::io::{self, Read, Write};

/// Pseudo-random inputs (and mutations) per target.
const RANDOM_INPUTS: u64 = 5000;

fn encoded(frames: &[Frame<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        frame::encode(f, &mut out);
    }
    out
}

fn hello(version: u8) -> Frame<'static> {
    Frame::Hello(Hello {
        version,
        flags: frame::HELLO_JOIN,
        session_id: 0x0123_4567_89ab_cdef,
        link_index: 3,
        max_payload: 65536,
        window: 1 << 20,
    })
}

/// One of every frame, with edge values.
fn every_frame() -> Vec<Frame<'static>> {
    vec![
        hello(frame::VERSION),
        Frame::Welcome(Welcome {
            version: frame::VERSION,
            max_payload: u32::MAX,
            window: 0,
        }),
        Frame::Refuse(LinkReason::TooManySessions),
        Frame::Refuse(LinkReason::Other(200)),
        Frame::Open { stream: u32::MAX },
        Frame::Data {
            stream: 1,
            offset: u64::MAX - 4,
            data: b"bytes",
        },
        Frame::Data {
            stream: 2,
            offset: 0,
            data: b"",
        },
        Frame::Fin {
            stream: 7,
            offset: 1 << 40,
        },
        Frame::Rst {
            stream: 9,
            reason: RstReason::Protocol,
        },
        Frame::Rst {
            stream: 9,
            reason: RstReason::Other(0),
        },
        Frame::Ack {
            stream: 3,
            delivered: 12345,
        },
        Frame::Ping { token: 0 },
        Frame::Pong { token: u64::MAX },
        Frame::GoAway(LinkReason::ShuttingDown),
    ]
}

fn frame_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0, 0],
        vec![0, 0, 0, 0],
        vec![0, 0, 0, 0, 0x20],
        vec![0xff, 0xff, 0xff, 0xff, 0x11],
        vec![0, 0, 0, 1, 0x77],
        vec![0, 0, 0, 5, 0x11, 0, 0, 0, 1],
        // DATA whose data length disagrees with the frame length.
        vec![
            0, 0, 0, 18, 0x11, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, b'x',
        ],
        // HELLO without "MTCP".
        {
            let mut h = encoded(&[hello(frame::VERSION)]);
            h[5..9].copy_from_slice(b"XXXX");
            h
        },
    ];
    for f in every_frame() {
        let whole = encoded(&[f]);
        for cut in [1, 4, whole.len() - 1] {
            seeds.push(whole[..cut].to_vec());
        }
        seeds.push(whole);
    }
    // A link's worth: every frame back to back, then a torn one.
    let mut stream = encoded(&every_frame());
    seeds.push(stream.clone());
    stream.extend_from_slice(&[0, 0, 0, 40, 0x11, 0, 0]);
    seeds.push(stream);
    seeds
}

/// What a client writes, recorded; it reads nothing back.
#[derive(Default)]
struct Recorder(Vec<u8>);

impl Read for Recorder {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Ok(0)
    }
}

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A real client's first handshake message under `secret`.
fn noise_opening(secret: &str, encrypt: bool) -> Vec<u8> {
    let secret = Secret::from_text(secret).expect("secret");
    let mut rec = Recorder::default();
    // The server never answers, so the handshake fails after writing.
    let Frame::Hello(hello) = hello(frame::VERSION) else {
        unreachable!("hello() makes a HELLO")
    };
    let _ = secure::client_handshake(&mut rec, &secret, encrypt, &hello);
    assert!(rec.0.starts_with(&secure::SECURE_MAGIC), "{:?}", rec.0);
    rec.0
}

fn handshake_seeds() -> Vec<Vec<u8>> {
    let plain_hello = encoded(&[hello(frame::VERSION)]);
    let mut seeds = Vec::new();
    for mode in 0..3u8 {
        let with = |bytes: &[u8]| [&[mode][..], bytes].concat();
        seeds.push(vec![mode]);
        seeds.push(with(&plain_hello));
        seeds.push(with(&plain_hello[..plain_hello.len() - 1]));
        seeds.push(with(&encoded(&[hello(frame::VERSION + 1)])));
        seeds.push(with(&encoded(&[Frame::Ping { token: 1 }])));
        seeds.push(with(&[0xff, 0xff, 0xff, 0xff]));
        seeds.push(with(&[0, 0, 0, 0]));
        seeds.push(with(b"MTCN"));
        seeds.push(with(b"MTCN\xff\xff"));
        seeds.push(with(b"MTCN\x00\x00"));
        seeds.push(with(
            b"MTCN\x00\x30garbage-that-is-no-noise-message-at-all-0123456",
        ));
        for encrypt in [true, false] {
            // A genuine opening under the right secret, alone, then with
            // records that cannot be opened, or with a plain HELLO.
            let opening = noise_opening(harness::HANDSHAKE_SECRET, encrypt);
            seeds.push(with(&opening));
            seeds.push(with(
                &[&opening[..], b"\x00\x20record-that-fails-authentication"].concat(),
            ));
            seeds.push(with(&[&opening[..], &plain_hello[..]].concat()));
            // The same under another secret.
            seeds.push(with(&noise_opening("another-secret-0123456789", encrypt)));
        }
    }
    seeds
}

/// Bytes from the corpus with a few of them changed, or fresh ones.
fn random_inputs(seeds: &[Vec<u8>], salt: u64) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..RANDOM_INPUTS).map(move |i| {
        let mut r = [0u8; 8];
        Pattern::new(salt ^ i).fill(&mut r);
        let r = u64::from_le_bytes(r);
        if i % 3 == 0 {
            let mut fresh = vec![0u8; (r % 300) as usize];
            Pattern::new(r).fill(&mut fresh);
            return fresh;
        }
        let mut input = seeds[(r % seeds.len() as u64) as usize].clone();
        let mut noise = [0u8; 16];
        Pattern::new(r ^ 0x5eed).fill(&mut noise);
        for pair in noise.chunks(2).take(1 + (r >> 40) as usize % 8) {
            if input.is_empty() {
                break;
            }
            let at = pair[0] as usize % input.len();
            input[at] = pair[1];
        }
        if r & (1 << 20) != 0 {
            input.truncate((r >> 24) as usize % (input.len() + 1));
        }
        input
    })
}

#[test]
fn frame_decode_target_holds_on_seeds_and_random_inputs() {
    let seeds = frame_seeds();
    for s in &seeds {
        harness::frame_decode(s);
    }
    for input in random_inputs(&seeds, 0xf4a3e) {
        harness::frame_decode(&input);
    }
}

#[test]
fn handshake_target_holds_on_seeds_and_random_inputs() {
    let seeds = handshake_seeds();
    let plain_hello = encoded(&[hello(frame::VERSION)]);
    // The corpus reaches the end of both paths: a plain HELLO gets through
    // a server without a secret, and through one with a secret (no
    // encryption) after a genuine handshake; but not without one.
    assert!(
        harness::handshake(&[&[0][..], &plain_hello].concat()),
        "plain HELLO refused"
    );
    let opened = [
        &[2][..],
        &noise_opening(harness::HANDSHAKE_SECRET, false),
        &plain_hello,
    ]
    .concat();
    assert!(
        harness::handshake(&opened),
        "HELLO after the handshake refused"
    );
    assert!(
        !harness::handshake(&[&[2][..], &plain_hello].concat()),
        "a plain HELLO got past a server with a secret"
    );
    for s in &seeds {
        harness::handshake(s);
    }
    for input in random_inputs(&seeds, 0x4a5d) {
        harness::handshake(&input);
    }
}
