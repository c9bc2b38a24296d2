//! Webhook signatures: HMAC-SHA256/512 in hex or base64, verified in constant time.
//!
//! Signatures are always computed over the **raw** body bytes as received, never over
//! re-serialized JSON.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

/// The hash behind the HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA256 (Genesys, Chatwoot).
    Sha256,
    /// HMAC-SHA512 (RingCentral Engage).
    Sha512,
}

/// How the signature is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Lower- or upper-case hex.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// Why a delivery was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature header (or parameter) is absent.
    #[error("the signature is missing")]
    Missing,
    /// The signature is not valid hex/base64 or lacks its expected prefix.
    #[error("the signature is malformed")]
    Malformed,
    /// The signature does not match the body.
    #[error("the signature does not match the body")]
    Mismatch,
    /// The signed timestamp is outside the replay window.
    #[error("the delivery is outside the {window_secs}s replay window")]
    Stale {
        /// The window, in seconds.
        window_secs: u64,
    },
}

/// Computes the HMAC of `message` under `key`.
pub fn hmac(algorithm: Algorithm, key: &[u8], message: &[u8]) -> Vec<u8> {
    match algorithm {
        Algorithm::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Algorithm::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC accepts keys of any length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

/// Computes and encodes the signature of `message`.
pub fn sign(algorithm: Algorithm, encoding: Encoding, key: &[u8], message: &[u8]) -> String {
    let mac = hmac(algorithm, key, message);
    match encoding {
        Encoding::Hex => hex::encode(mac),
        Encoding::Base64 => BASE64.encode(mac),
    }
}

/// Verifies `provided` (encoded, without any `sha256=` prefix) against `message` in
/// constant time.
pub fn verify(
    algorithm: Algorithm,
    encoding: Encoding,
    key: &[u8],
    message: &[u8],
    provided: Option<&str>,
) -> Result<(), SignatureError> {
    let provided = provided.map(str::trim).filter(|s| !s.is_empty()).ok_or(SignatureError::Missing)?;
    let bytes = match encoding {
        Encoding::Hex => hex::decode(provided).map_err(|_| SignatureError::Malformed)?,
        Encoding::Base64 => BASE64.decode(provided).map_err(|_| SignatureError::Malformed)?,
    };
    // `verify_slice` compares in constant time.
    match algorithm {
        Algorithm::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
            mac.update(message);
            mac.verify_slice(&bytes)
        }
        Algorithm::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC accepts keys of any length");
            mac.update(message);
            mac.verify_slice(&bytes)
        }
    }
    .map_err(|_| SignatureError::Mismatch)
}

/// Compares two byte strings in constant time (for the lengths given).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Compares a shared secret sent verbatim (a URL token, a secret header) with the expected
/// one without revealing through timing where they differ or how long the secret is: both
/// are hashed under a fixed key first.
pub fn secret_eq(expected: &[u8], provided: &[u8]) -> bool {
    let expected = hmac(Algorithm::Sha256, b"handover-secret-eq", expected);
    let provided = hmac(Algorithm::Sha256, b"handover-secret-eq", provided);
    constant_time_eq(&expected, &provided)
}

/// Strips a required prefix such as `sha256=` from a header value.
pub fn strip_prefix<'a>(value: Option<&'a str>, prefix: &str) -> Result<Option<&'a str>, SignatureError> {
    match value {
        None => Ok(None),
        Some(v) => v.trim().strip_prefix(prefix).map(Some).ok_or(SignatureError::Malformed),
    }
}

/// Checks that a signed Unix timestamp (seconds) is within `window` of now, either way.
pub fn check_timestamp(timestamp: &str, window: Duration, now: SystemTime) -> Result<(), SignatureError> {
    let secs: u64 = timestamp.trim().parse().map_err(|_| SignatureError::Malformed)?;
    let now = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    if now.abs_diff(secs) > window.as_secs() {
        return Err(SignatureError::Stale { window_secs: window.as_secs() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(secret_eq(b"s3cret", b"s3cret"));
        assert!(!secret_eq(b"s3cret", b"s3cre"));
        assert!(!secret_eq(b"s3cret", b"s3cret "));
        assert!(!secret_eq(b"", b"x"));
    }

    // RFC 4231 test case 2.
    const KEY: &[u8] = b"Jefe";
    const DATA: &[u8] = b"what do ya want for nothing?";
    const SHA256_HEX: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    const SHA512_HEX: &str = "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737";

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(sign(Algorithm::Sha256, Encoding::Hex, KEY, DATA), SHA256_HEX);
        assert_eq!(sign(Algorithm::Sha512, Encoding::Hex, KEY, DATA), SHA512_HEX);
        assert_eq!(
            sign(Algorithm::Sha256, Encoding::Base64, KEY, DATA),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }

    #[test]
    fn verify_accepts_matching_and_rejects_everything_else() {
        use SignatureError::*;
        let ok = |s: Option<&str>| verify(Algorithm::Sha256, Encoding::Hex, KEY, DATA, s);
        let upper = SHA256_HEX.to_uppercase();
        assert_eq!(ok(Some(SHA256_HEX)), Ok(()));
        assert_eq!(ok(Some(&upper)), Ok(()));
        assert_eq!(ok(None), Err(Missing));
        assert_eq!(ok(Some("  ")), Err(Missing));
        assert_eq!(ok(Some("zz")), Err(Malformed));
        assert_eq!(ok(Some(&SHA256_HEX[..62])), Err(Mismatch));
        let tampered = verify(Algorithm::Sha256, Encoding::Hex, KEY, b"what do ya want for nothing!", Some(SHA256_HEX));
        assert_eq!(tampered, Err(Mismatch));
        let b64 = sign(Algorithm::Sha512, Encoding::Base64, KEY, DATA);
        assert_eq!(verify(Algorithm::Sha512, Encoding::Base64, KEY, DATA, Some(&b64)), Ok(()));
        assert_eq!(verify(Algorithm::Sha512, Encoding::Base64, b"other", DATA, Some(&b64)), Err(Mismatch));
    }

    #[test]
    fn constant_time_eq_compares_whole_strings() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn prefixes_and_replay_windows() {
        assert_eq!(strip_prefix(Some("sha256=abc"), "sha256="), Ok(Some("abc")));
        assert_eq!(strip_prefix(Some("abc"), "sha256="), Err(SignatureError::Malformed));
        assert_eq!(strip_prefix(None, "sha256="), Ok(None));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let window = Duration::from_secs(300);
        assert_eq!(check_timestamp("1000100", window, now), Ok(()));
        assert_eq!(check_timestamp("999800", window, now), Ok(()));
        assert_eq!(check_timestamp("999000", window, now), Err(SignatureError::Stale { window_secs: 300 }));
        assert_eq!(check_timestamp("soon", window, now), Err(SignatureError::Malformed));
    }
}
