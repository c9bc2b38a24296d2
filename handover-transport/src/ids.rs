//! Client message ids derived from the bot's input ids.
//!
//! Where a provider's API takes a client id for a message, the session sends one derived
//! from the input's id (DESIGN.md §7.2): the same input always carries the same client id,
//! so a resend after a retry, a restart or a takeover can be recognised at the provider
//! (where it deduplicates) and in the emulators.

use sha2::{Digest, Sha256};

/// A UUID derived from `scope` (a conversation id) and `input_id`: stable for the same
/// pair, different for different pairs. It carries the version-4 bits, as APIs that take
/// a client message id expect a random UUID and some check the version; derived from a
/// SHA-256 digest, it is as unpredictable to anyone without the pair.
///
/// ```
/// use handover_transport::ids::client_uuid;
///
/// let id = client_uuid("conversation-1", "node-1");
/// assert_eq!(id, client_uuid("conversation-1", "node-1"));
/// assert_ne!(id, client_uuid("conversation-2", "node-1"));
/// assert_eq!(id.len(), 36);
/// assert_eq!(&id[14..15], "4");
/// ```
pub fn client_uuid(scope: &str, input_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(scope.as_bytes());
    hasher.update([0]);
    hasher.update(input_id.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    let hex = hex::encode(bytes);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// A key for a delivery that carries no id of its own: a digest of its signed bytes, so a
/// replay of the same signed body is recognised whatever unsigned headers come with it.
///
/// ```
/// use handover_transport::ids::content_key;
///
/// assert_eq!(content_key(b"{}"), content_key(b"{}"));
/// assert_ne!(content_key(b"{}"), content_key(b"[]"));
/// ```
pub fn content_key(signed: &[u8]) -> String {
    hex::encode(&Sha256::digest(signed)[..16])
}
