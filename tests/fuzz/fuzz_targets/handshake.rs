//! A stranger's first bytes against the server's handshake: plain HELLO
//! parsing, and the Noise handshake and first sealed record when a secret is
//! set. Whatever the bytes, the server must answer with an error or a HELLO,
//! never panic, and never write more than a handshake's worth.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtcp::proto::secret::Secret;
use mtcp::rt::secure;
use std::io::{self, Read, Write};

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

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let secret = Secret::from_text("fuzzing-secret-0123456789").ok();
    let (secret, encrypt) = match mode % 3 {
        0 => (None, false),
        1 => (secret.as_ref(), true),
        _ => (secret.as_ref(), false),
    };
    let mut peer = Peer {
        input: bytes,
        output: Vec::new(),
    };
    let _ = secure::server_accept(&mut peer, secret, encrypt);
    assert!(peer.output.len() <= 512, "server wrote {} bytes", peer.output.len());
});
