//! Sealing what the store keeps at rest: provider snapshots hold access tokens, specs hold
//! callback secrets, inbox payloads hold what users wrote. ChaCha20-Poly1305 with a random
//! 96-bit nonce per value.

use std::fmt;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::{StoreError, StoreResult};

/// What the store seals values with: a 32-byte key, or nothing (only when plaintext is
/// explicitly allowed).
#[derive(Clone)]
pub struct Sealer {
    cipher: Option<ChaCha20Poly1305>,
}

/// The text sealed into the store's metadata, to tell on open whether the key is the one
/// the store was written with.
const KEY_CHECK: &[u8] = b"handover-store key check v1";

/// The metadata value of a store written in plaintext.
pub(crate) const PLAINTEXT_MARK: &str = "plaintext";

impl Sealer {
    /// Seals with `key` (32 bytes).
    pub fn new(key: &[u8; 32]) -> Self {
        Self { cipher: Some(ChaCha20Poly1305::new(Key::from_slice(key))) }
    }

    /// Reads a key given as base64 (the `encryption_key_env` variable of the service).
    pub fn from_base64(text: &str) -> StoreResult<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| StoreError::Config("the encryption key is not base64".to_owned()))?;
        let key: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            StoreError::Config(format!("the encryption key has {} bytes; it must have 32", bytes.len()))
        })?;
        Ok(Self::new(&key))
    }

    /// Stores values as they are (only with `allow_plaintext_store`).
    pub fn plaintext() -> Self {
        Self { cipher: None }
    }

    /// Whether values are sealed.
    pub fn is_sealing(&self) -> bool {
        self.cipher.is_some()
    }

    /// Seals `plain`: the nonce, then the ciphertext and tag.
    pub fn seal(&self, plain: &[u8]) -> StoreResult<Vec<u8>> {
        let Some(cipher) = &self.cipher else { return Ok(plain.to_vec()) };
        // A random 96-bit nonce from the operating system: a repeat under one key is
        // negligible.
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        let sealed = cipher.encrypt(&nonce, plain).map_err(|_| StoreError::Sealed("encryption failed".to_owned()))?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`seal`](Self::seal) made.
    pub fn open(&self, sealed: &[u8]) -> StoreResult<Vec<u8>> {
        let Some(cipher) = &self.cipher else { return Ok(sealed.to_vec()) };
        if sealed.len() < 12 + 16 {
            return Err(StoreError::Sealed("too short".to_owned()));
        }
        let (nonce, body) = sealed.split_at(12);
        cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| StoreError::Sealed("the tag does not match (another key, or corrupt)".to_owned()))
    }

    /// The metadata value recording which key (or plaintext) the store is written with.
    pub(crate) fn key_check(&self) -> StoreResult<String> {
        if self.cipher.is_none() {
            return Ok(PLAINTEXT_MARK.to_owned());
        }
        Ok(base64::engine::general_purpose::STANDARD.encode(self.seal(KEY_CHECK)?))
    }

    /// Checks the store's recorded key check against this sealer.
    pub(crate) fn verify(&self, recorded: &str) -> StoreResult<()> {
        match (self.cipher.is_some(), recorded == PLAINTEXT_MARK) {
            (false, true) => Ok(()),
            (false, false) => Err(StoreError::Key(
                "the store was written with an encryption key, but none is configured; set the key it was written with"
                    .to_owned(),
            )),
            (true, true) => Err(StoreError::Key(
                "the store was written in plaintext, but an encryption key is configured; its rows would be unreadable"
                    .to_owned(),
            )),
            (true, false) => {
                let sealed = base64::engine::general_purpose::STANDARD
                    .decode(recorded)
                    .map_err(|_| StoreError::Key("the store's key check is corrupt".to_owned()))?;
                match self.open(&sealed) {
                    Ok(plain) if plain == KEY_CHECK => Ok(()),
                    _ => Err(StoreError::Key(
                        "the store was written with another encryption key; configure the key it was written with"
                            .to_owned(),
                    )),
                }
            }
        }
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("sealing", &self.cipher.is_some()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_the_key_only() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal(b"token").unwrap();
        assert_ne!(&sealed[12..], b"token");
        assert_eq!(sealer.open(&sealed).unwrap(), b"token");
        assert!(Sealer::new(&[8; 32]).open(&sealed).is_err());
        let check = sealer.key_check().unwrap();
        assert!(sealer.verify(&check).is_ok());
        assert!(matches!(Sealer::new(&[8; 32]).verify(&check), Err(StoreError::Key(_))));
        assert!(matches!(Sealer::plaintext().verify(&check), Err(StoreError::Key(_))));
        assert!(matches!(sealer.verify(PLAINTEXT_MARK), Err(StoreError::Key(_))));
        assert!(matches!(Sealer::from_base64("c2hvcnQ="), Err(StoreError::Config(_))));
    }
}
