//! Feeds arbitrary bytes to `mtcp::proto::frame::decode` under several limits.
//!
//! Checks: no panic; a decoded frame never uses more bytes than it was given
//! nor more than the limit allows; re-encoding a decoded frame gives back
//! exactly the consumed bytes and decodes to the same frame; a strict prefix
//! of a decoded frame is "partial" (Ok(None)); and a buffer is walked frame by
//! frame the way a link reader does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtcp::proto::frame::{DecodeError, MAX_CONTROL_BODY, decode, encode, max_frame_len};

fn check(data: &[u8], max_len: u32) {
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

fuzz_target!(|data: &[u8]| {
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
        check(data, max_len);
    }
});
