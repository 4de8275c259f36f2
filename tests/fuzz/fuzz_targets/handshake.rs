//! A stranger's first bytes against the server's handshake; the checks are
//! in `../harness.rs` (`handshake`), which `tests/fuzz_seeds.rs` also runs
//! on a seed corpus in every `cargo test`.
#![no_main]

#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    harness::handshake(data);
});
