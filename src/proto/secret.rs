//! The pre-shared secret that authenticates links.
//!
//! The configured text is hashed into the 32-byte Noise PSK. It must be long
//! and random (generate it with `head -c 32 /dev/urandom | base64`), because
//! an observer of one handshake can test guesses of a weak secret offline.

use sha2::{Digest, Sha256};
use std::fmt;

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// The pre-shared secret, hashed; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

/// Why a secret text was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    /// Fewer than [`MIN_SECRET_LEN`] bytes once trimmed.
    TooShort(usize),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::TooShort(n) => write!(
                f,
                "secret is {n} bytes; use at least {MIN_SECRET_LEN} random bytes (e.g. `head -c 32 /dev/urandom | base64`)"
            ),
        }
    }
}

impl std::error::Error for SecretError {}

impl Secret {
    /// Derives the Noise PSK from the configured secret text (whitespace at
    /// either end ignored, so a trailing newline in a file does not matter).
    pub fn from_text(text: &str) -> Result<Secret, SecretError> {
        let trimmed = text.trim();
        if trimmed.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort(trimmed.len()));
        }
        let mut h = Sha256::new();
        h.update(b"mtcp psk v1\0");
        h.update(trimmed.as_bytes());
        Ok(Secret(h.finalize().into()))
    }

    /// The 32-byte PSK for the Noise handshake.
    pub fn psk(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_rejected_and_debug_masks() {
        assert_eq!(Secret::from_text("short"), Err(SecretError::TooShort(5)));
        let s = Secret::from_text("  0123456789abcdef  \n").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s, Secret::from_text("0123456789abcdef").unwrap());
    }

    #[test]
    fn a_short_secret_says_how_to_make_a_good_one() {
        assert_eq!(
            SecretError::TooShort(5).to_string(),
            "secret is 5 bytes; use at least 16 random bytes (e.g. `head -c 32 /dev/urandom | base64`)"
        );
    }
}
