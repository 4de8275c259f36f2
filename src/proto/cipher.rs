//! The record ciphers of secured links, by the code a link's clear
//! preamble names them with and the name a config file (`config::raw`'s
//! `CipherSetting`) and the logs use.

/// The record cipher of a link. The client chooses it for both directions
/// and says which in its clear preamble (`proto::preamble`), which is the
/// Noise prologue, so an attacker who changes it breaks the handshake. A
/// server accepts all three unless its `cipher` setting names one. Which
/// one a machine prefers asks its CPU: `rt::secure::preferred_cipher`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    /// ChaCha20-Poly1305: constant-time and fast in software.
    ChaChaPoly,
    /// AES-256-GCM: several times faster where the CPU has AES and
    /// carry-less multiply instructions (ring's assembly uses them).
    AesGcm,
    /// AEGIS-256X2: built from AES rounds alone, with no GHASH, so about
    /// 2.5x AES-256-GCM's speed on the same AES instructions.
    Aegis256X2,
}

impl Cipher {
    /// Its code in the clear preamble.
    pub fn code(self) -> u8 {
        match self {
            Cipher::ChaChaPoly => 1,
            Cipher::AesGcm => 2,
            Cipher::Aegis256X2 => 3,
        }
    }

    /// The cipher a preamble's code names, if this build knows it.
    pub fn from_code(code: u8) -> Option<Cipher> {
        match code {
            1 => Some(Cipher::ChaChaPoly),
            2 => Some(Cipher::AesGcm),
            3 => Some(Cipher::Aegis256X2),
            _ => None,
        }
    }

    /// The Noise protocol of the handshake that keys it.
    pub fn noise_params(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s",
            // Noise knows no AEGIS: the handshake's own two messages are
            // sealed with AES-GCM, the records with AEGIS under the split.
            Cipher::AesGcm | Cipher::Aegis256X2 => "Noise_NNpsk0_25519_AESGCM_BLAKE2s",
        }
    }

    /// The cipher's name, for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::ChaChaPoly => "chacha20-poly1305",
            Cipher::AesGcm => "aes-256-gcm",
            Cipher::Aegis256X2 => "aegis-256x2",
        }
    }

    /// The cipher to propose to a server that refused this one, fastest
    /// first: AES-256-GCM after AEGIS-256X2 (servers of this protocol
    /// version from before AEGIS know it), then ChaCha20-Poly1305 (a server
    /// whose `cipher` setting names it). `None` after the last.
    pub fn fallback(self) -> Option<Cipher> {
        match self {
            Cipher::Aegis256X2 => Some(Cipher::AesGcm),
            Cipher::AesGcm => Some(Cipher::ChaChaPoly),
            Cipher::ChaChaPoly => None,
        }
    }
}
