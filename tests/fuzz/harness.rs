//! The bodies of the fuzz targets, shared by `fuzz_targets/*.rs` (cargo-fuzz,
//! nightly) and `tests/fuzz_seeds.rs` (a normal test that CI runs on a
//! corpus of seeds), so the code CI exercises is the code the fuzzer runs.

use mtcp::proto::frame::{DecodeError, MAX_CONTROL_BODY, decode, encode, max_frame_len};
use mtcp::proto::secret::Secret;
use mtcp::rt::secure;
use std::io::{self, Read, Write};

/// The secret the `handshake` target's server holds; a seed that knows it
/// can get past the Noise handshake.
pub const HANDSHAKE_SECRET: &str = "fuzzing-secret-0123456789";

/// `frame_decode`: arbitrary bytes into `mtcp::proto::frame::decode` under
/// several limits.
///
/// Checks: no panic; a decoded frame never uses more bytes than it was
/// given nor more than the limit allows; re-encoding a decoded frame gives
/// back exactly the consumed bytes and decodes to the same frame; a strict
/// prefix of a decoded frame is "partial" (Ok(None)); and a buffer is
/// walked frame by frame the way a link reader does.
pub fn frame_decode(data: &[u8]) {
    let limits = [
        0,
        8,
        MAX_CONTROL_BODY as u32 + 1,
        max_frame_len(0),
        max_frame_len(1024),
        max_frame_len(1 << 20),
        u32::MAX,
    ];
    for max_len in limits {
        check_frames(data, max_len);
    }
}

fn check_frames(data: &[u8], max_len: u32) {
    let mut pos = 0;
    // Walk the buffer like a link reader: decode, advance, repeat.
    while pos < data.len() {
        let buf = &data[pos..];
        match decode(buf, max_len) {
            Ok(Some((frame, used))) => {
                assert!(used <= buf.len(), "used {used} of {} bytes", buf.len());
                assert!(used >= 5, "frame of {used} bytes");
                assert!(
                    (used - 4) as u64 <= max_len as u64,
                    "used {used} > limit {max_len}"
                );

                let mut again = Vec::new();
                encode(&frame, &mut again);
                assert_eq!(
                    &again[..],
                    &buf[..used],
                    "re-encoding differs for {frame:?}"
                );
                let (back, used2) = decode(&again, max_len)
                    .expect("re-encoding must decode")
                    .expect("re-encoding must be whole");
                assert_eq!(back, frame);
                assert_eq!(used2, again.len());

                // One byte short of the frame is only a partial frame.
                assert_eq!(decode(&buf[..used - 1], max_len), Ok(None));
                pos += used;
            }
            Ok(None) => {
                if buf.len() >= 4 {
                    let len = u32::from_be_bytes(buf[..4].try_into().unwrap());
                    assert!(len > 0 && len <= max_len, "partial with len {len}");
                    assert!(buf.len() < 4 + len as usize);
                }
                break;
            }
            Err(DecodeError::TooLong { len, max }) => {
                assert_eq!(max, max_len);
                assert!(len > max_len);
                break;
            }
            Err(e) => {
                // Errors must render (the link logs them) without panicking.
                let _ = e.to_string();
                break;
            }
        }
    }
}

/// The peer's bytes as input, the server's answers collected.
struct Peer<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl Read for Peer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Peer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `handshake`: a stranger's first bytes against the server's handshake
/// (`mtcp::rt::secure::server_accept`): plain HELLO parsing, and the Noise
/// handshake and first sealed record when a secret is set. The first byte
/// picks the server (mod 3: no secret; secret with encryption; secret,
/// authentication only). Whatever the bytes, the server must answer with
/// an error or a HELLO, never panic, and never write more than a
/// handshake's worth. Returns whether a HELLO came through.
pub fn handshake(data: &[u8]) -> bool {
    let Some((&mode, bytes)) = data.split_first() else {
        return false;
    };
    let secret = Secret::from_text(HANDSHAKE_SECRET).ok();
    let (secret, encrypt) = match mode % 3 {
        0 => (None, false),
        1 => (secret.as_ref(), true),
        _ => (secret.as_ref(), false),
    };
    let mut peer = Peer {
        input: bytes,
        output: Vec::new(),
    };
    let hello = secure::server_accept(&mut peer, secret, encrypt);
    assert!(
        peer.output.len() <= 512,
        "server wrote {} bytes",
        peer.output.len()
    );
    hello.is_ok()
}
