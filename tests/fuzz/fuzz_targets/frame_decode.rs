//! Feeds arbitrary bytes to `mtcp::proto::frame::decode` under several
//! limits; the checks are in `../harness.rs` (`frame_decode`), which
//! `tests/fuzz_seeds.rs` also runs on a seed corpus in every `cargo test`.
#![no_main]

#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::frame_decode(data));
