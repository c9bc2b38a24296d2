//! Webhook signatures (`protocols/8x8.md` §6.3): a detached RS256 JWS over a JSON document
//! built from the CRC32 of the raw body and the delivery headers, verified with the RSA key
//! 8x8 publishes at `GET /chat-gateway/v1/jwk/{kid}/public`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use handover_core::ErrorKind;
use handover_transport::session::lock;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::client::Client;

/// The headers the signed document is built from, in its key order.
pub const SIGNED_HEADERS: [&str; 5] =
    ["x-8x8-customer-id", "x-8x8-event-id", "x-8x8-retry", "x-8x8-tenant-id", "x-8x8-transmission-time"];

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-8x8-signature";

/// Why a delivery's signature was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// `x-8x8-signature` is absent.
    #[error("the x-8x8-signature header is missing")]
    MissingSignature,
    /// A header the signed document needs is absent.
    #[error("the signed header {0} is missing")]
    MissingHeader(&'static str),
    /// The signature or a signed header is not in the documented form.
    #[error("the signature is malformed: {0}")]
    Malformed(String),
    /// The protected header names an algorithm other than RS256.
    #[error("the signature algorithm `{0}` is not RS256")]
    UnsupportedAlgorithm(String),
    /// 8x8 does not know the key id.
    #[error("8x8 does not know the signing key `{0}`")]
    UnknownKey(String),
    /// The key could not be fetched now (8x8 unreachable or failing); the delivery should
    /// be retried.
    #[error("the signing key could not be fetched: {0}")]
    KeyUnavailable(String),
    /// The signature does not match the body and headers.
    #[error("the signature does not match the body and headers")]
    Mismatch,
    /// The signed transmission time is outside the replay window.
    #[error("the delivery was sent more than {window_secs}s from now: a replay")]
    Stale {
        /// The window, in seconds.
        window_secs: u64,
    },
}

impl JwsError {
    /// The HTTP status to refuse the delivery with: `503` (retry later) when the key could
    /// not be fetched, `401` otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::KeyUnavailable(_) => 503,
            _ => 401,
        }
    }
}

/// A parsed `x-8x8-signature`: `<b64url protected header>..<b64url signature>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetachedJws {
    header_b64: String,
    signature_b64: String,
    /// The key id from the protected header.
    pub kid: String,
    /// RFC 7797 `b64: false`: the payload is signed as is, not base64url-encoded.
    unencoded: bool,
}

impl DetachedJws {
    /// Parses the header value.
    pub fn parse(value: Option<&str>) -> Result<Self, JwsError> {
        let value = value.map(str::trim).filter(|v| !v.is_empty()).ok_or(JwsError::MissingSignature)?;
        let mut parts = value.split('.');
        let (Some(header_b64), Some(payload), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed("not a compact JWS with three parts".into()));
        };
        if !payload.is_empty() {
            return Err(JwsError::Malformed("the payload part of a detached JWS must be empty".into()));
        }
        if signature_b64.is_empty() {
            return Err(JwsError::Malformed("the signature part is empty".into()));
        }
        let header = B64URL
            .decode(header_b64)
            .map_err(|_| JwsError::Malformed("the protected header is not base64url".into()))?;
        let header: Value = serde_json::from_slice(&header)
            .map_err(|_| JwsError::Malformed("the protected header is not JSON".into()))?;
        let alg = header["alg"].as_str().unwrap_or_default();
        if alg != "RS256" {
            // From an unauthenticated request: shown escaped, never raw.
            return Err(JwsError::UnsupportedAlgorithm(handover_transport::log::untrusted(alg)));
        }
        let kid = header["kid"]
            .as_str()
            .filter(|k| is_key_id(k))
            .ok_or_else(|| JwsError::Malformed("the protected header has no usable kid".into()))?;
        let unencoded = header["b64"] == false;
        if unencoded && !header["crit"].as_array().is_some_and(|c| c.iter().any(|x| x == "b64")) {
            return Err(JwsError::Malformed("`b64: false` must be listed in `crit`".into()));
        }
        Ok(Self {
            header_b64: header_b64.to_owned(),
            signature_b64: signature_b64.to_owned(),
            kid: kid.to_owned(),
            unencoded,
        })
    }

    /// The bytes that were signed: the protected header as sent, `.`, and the payload.
    pub fn signing_input(&self, payload: &str) -> Vec<u8> {
        let payload = if self.unencoded { payload.to_owned() } else { B64URL.encode(payload) };
        format!("{}.{payload}", self.header_b64).into_bytes()
    }

    /// Checks the signature over `payload` with `key`.
    pub fn verify(&self, payload: &str, key: &DecodingKey) -> Result<(), JwsError> {
        match jsonwebtoken::crypto::verify(&self.signature_b64, &self.signing_input(payload), key, Algorithm::RS256) {
            Ok(true) => Ok(()),
            Ok(false) => Err(JwsError::Mismatch),
            Err(_) => Err(JwsError::Malformed("the signature is not base64url".into())),
        }
    }
}

/// Whether `kid` looks like a key id: 1 to 64 characters of `A-Z a-z 0-9 _ -` (the
/// documented examples are `key1` and 22-character base64url ids). Anything else is
/// refused before it reaches a log line or a URL.
pub fn is_key_id(kid: &str) -> bool {
    (1..=64).contains(&kid.len()) && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The CRC32 (IEEE, as `java.util.zip.CRC32`) of the raw body.
pub fn checksum(body: &[u8]) -> u32 {
    crc32fast::hash(body)
}

/// The signed document: compact JSON with the keys `checksum`, `cid`, `eid`, `retry`,
/// `tid`, `tt` in this order, from the raw body and the delivery headers (`header` looks
/// one up by its lower-case name).
pub fn signed_payload<'a>(body: &[u8], header: impl Fn(&str) -> Option<&'a str>) -> Result<String, JwsError> {
    let text = |name: &'static str| header(name).ok_or(JwsError::MissingHeader(name));
    let number = |name: &'static str| -> Result<u64, JwsError> {
        text(name)?.trim().parse().map_err(|_| JwsError::Malformed(format!("{name} is not a number")))
    };
    let string = |name: &'static str| -> Result<String, JwsError> {
        serde_json::to_string(text(name)?).map_err(|_| JwsError::Malformed(format!("{name} is not text")))
    };
    Ok(format!(
        r#"{{"checksum":{},"cid":{},"eid":{},"retry":{},"tid":{},"tt":{}}}"#,
        checksum(body),
        string("x-8x8-customer-id")?,
        string("x-8x8-event-id")?,
        number("x-8x8-retry")?,
        string("x-8x8-tenant-id")?,
        number("x-8x8-transmission-time")?,
    ))
}

/// Checks the signed `x-8x8-transmission-time` (Unix ms) against `now`.
pub fn check_transmission_time(
    header: Option<&str>,
    window: Duration,
    now: std::time::SystemTime,
) -> Result<(), JwsError> {
    let sent: u64 = header
        .ok_or(JwsError::MissingHeader("x-8x8-transmission-time"))?
        .trim()
        .parse()
        .map_err(|_| JwsError::Malformed("x-8x8-transmission-time is not a number".into()))?;
    let now =
        u64::try_from(now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX);
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    if now.abs_diff(sent) > window_ms {
        return Err(JwsError::Stale { window_secs: window.as_secs() });
    }
    Ok(())
}

/// Reads an RSA JWK (`{kty: "RSA", n, e, kid}`).
pub fn decoding_key(jwk: &Value, kid: &str) -> Result<DecodingKey, JwsError> {
    if jwk["kty"].as_str().is_some_and(|k| k != "RSA") {
        return Err(JwsError::Malformed(format!("the key `{kid}` is not an RSA key")));
    }
    if jwk["kid"].as_str().is_some_and(|k| k != kid) {
        return Err(JwsError::Malformed(format!("8x8 answered key `{}` for `{kid}`", jwk["kid"])));
    }
    let (Some(n), Some(e)) = (jwk["n"].as_str(), jwk["e"].as_str()) else {
        return Err(JwsError::Malformed(format!("the key `{kid}` has no n and e")));
    };
    DecodingKey::from_rsa_components(n, e).map_err(|_| JwsError::Malformed(format!("the key `{kid}` is not usable")))
}

const MAX_KEYS: usize = 64;
const UNKNOWN_KEY_TTL: Duration = Duration::from_secs(60);

/// Public keys by `kid`, fetched once, and only for key ids there is reason to expect: the
/// configured ones, or (with none configured) new ids within a global budget of fetches.
/// Unknown ids are remembered for a minute. Whatever a forged delivery names, it costs at
/// most the budget in requests to 8x8, and a refused id costs none.
pub(crate) struct KeyCache {
    keys: Mutex<HashMap<String, DecodingKey>>,
    unknown: Mutex<HashMap<String, Instant>>,
    /// The configured key ids; empty: any well-formed id within the budget.
    expected: Vec<String>,
    budget: Mutex<Budget>,
}

/// A token bucket: `per_minute` fetches a minute, at most `per_minute` at once.
struct Budget {
    per_minute: u32,
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.per_minute) / 60.0;
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(f64::from(self.per_minute));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl KeyCache {
    /// A cache that fetches only `expected` key ids (any well-formed one when empty), and
    /// new ones at most `per_minute` times a minute.
    pub(crate) fn new(expected: Vec<String>, per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        Self {
            keys: Mutex::default(),
            unknown: Mutex::default(),
            expected,
            budget: Mutex::new(Budget { per_minute, tokens: f64::from(per_minute), at: Instant::now() }),
        }
    }

    pub(crate) async fn get(&self, kid: &str, client: &Client) -> Result<DecodingKey, JwsError> {
        if let Some(key) = lock(&self.keys).get(kid) {
            return Ok(key.clone());
        }
        if !self.expected.is_empty() && !self.expected.iter().any(|k| k == kid) {
            return Err(JwsError::UnknownKey(kid.to_owned()));
        }
        if lock(&self.unknown).get(kid).is_some_and(|at| at.elapsed() < UNKNOWN_KEY_TTL) {
            return Err(JwsError::UnknownKey(kid.to_owned()));
        }
        if self.expected.is_empty() && !lock(&self.budget).take() {
            return Err(JwsError::KeyUnavailable(
                "too many signing keys not seen before; not fetched now (set `webhook_key_ids`)".to_owned(),
            ));
        }
        let jwk = match client.jwk(kid).await {
            Ok(jwk) => jwk,
            Err(error) if matches!(error.kind(), ErrorKind::SessionNotFound | ErrorKind::InvalidInput) => {
                let mut unknown = lock(&self.unknown);
                if unknown.len() >= MAX_KEYS {
                    unknown.retain(|_, at| at.elapsed() < UNKNOWN_KEY_TTL);
                    if unknown.len() >= MAX_KEYS {
                        unknown.clear();
                    }
                }
                unknown.insert(kid.to_owned(), Instant::now());
                return Err(JwsError::UnknownKey(kid.to_owned()));
            }
            Err(error) => return Err(JwsError::KeyUnavailable(error.to_string())),
        };
        let key = decoding_key(&jwk, kid)?;
        let mut keys = lock(&self.keys);
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(kid.to_owned(), key.clone());
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_BODY: &str = r#"{"eventType":"AGENT_JOINED","messageType":"SYSTEM","conversationId":"Aka5NMHU8MtIG7lUQOxI0DTOvM4","agentId":"cmalutan","agentName":"Cosmin,Malutan","timestamp":1629804577002}"#;

    #[test]
    fn checksum_matches_the_test_vector_of_the_notes() {
        assert_eq!(checksum(DOC_BODY.as_bytes()), 1_564_621_066);
    }

    #[test]
    fn the_signed_document_has_the_fixed_key_order() {
        let headers: HashMap<&str, &str> = [
            ("x-8x8-customer-id", "cust/1"),
            ("x-8x8-event-id", "ev-\"9\""),
            ("x-8x8-retry", "0"),
            ("x-8x8-tenant-id", "tenant"),
            ("x-8x8-transmission-time", "1629804577296"),
        ]
        .into();
        let payload = signed_payload(DOC_BODY.as_bytes(), |n| headers.get(n).copied()).unwrap();
        assert_eq!(
            payload,
            r#"{"checksum":1564621066,"cid":"cust/1","eid":"ev-\"9\"","retry":0,"tid":"tenant","tt":1629804577296}"#
        );
        let missing = signed_payload(b"{}", |n| if n == "x-8x8-retry" { None } else { headers.get(n).copied() });
        assert_eq!(missing, Err(JwsError::MissingHeader("x-8x8-retry")));
        let bad = signed_payload(b"{}", |n| if n == "x-8x8-retry" { Some("first") } else { headers.get(n).copied() });
        assert!(matches!(bad, Err(JwsError::Malformed(_))));
    }

    #[test]
    fn transmission_times_outside_the_window_are_replays() {
        let now = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let window = Duration::from_secs(300);
        assert_eq!(check_transmission_time(Some("1700000000000"), window, now), Ok(()));
        assert_eq!(check_transmission_time(Some("1699999800000"), window, now), Ok(()));
        assert_eq!(
            check_transmission_time(Some("1699999000000"), window, now),
            Err(JwsError::Stale { window_secs: 300 })
        );
        assert_eq!(check_transmission_time(None, window, now), Err(JwsError::MissingHeader("x-8x8-transmission-time")));
    }

    #[test]
    fn the_doc_example_header_parses() {
        // {"b64":false,"crit":["b64"],"kid":"key1","alg":"RS256"}
        let header = B64URL.encode(br#"{"b64":false,"crit":["b64"],"kid":"key1","alg":"RS256"}"#);
        let jws = DetachedJws::parse(Some(&format!("{header}..c2ln"))).unwrap();
        assert_eq!(jws.kid, "key1");
        assert_eq!(jws.signing_input("{}"), format!("{header}.{{}}").into_bytes());
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let header = |json: &str| B64URL.encode(json);
        for (value, want) in [
            (None, JwsError::MissingSignature),
            (Some("   ".to_owned()), JwsError::MissingSignature),
            (Some("abc".to_owned()), JwsError::Malformed("not a compact JWS with three parts".into())),
            (Some("a.b.c".to_owned()), JwsError::Malformed("the payload part of a detached JWS must be empty".into())),
            (Some("!!..c2ln".to_owned()), JwsError::Malformed("the protected header is not base64url".into())),
            (
                Some(format!("{}..c2ln", header(r#"{"alg":"HS256","kid":"k"}"#))),
                JwsError::UnsupportedAlgorithm("HS256".into()),
            ),
            (
                Some(format!("{}..c2ln", header(r#"{"alg":"RS256"}"#))),
                JwsError::Malformed("the protected header has no usable kid".into()),
            ),
            (
                Some(format!("{}..c2ln", header(r#"{"alg":"RS256","kid":"k","b64":false}"#))),
                JwsError::Malformed("`b64: false` must be listed in `crit`".into()),
            ),
            (
                Some(format!("{}..", header(r#"{"alg":"RS256","kid":"k"}"#))),
                JwsError::Malformed("the signature part is empty".into()),
            ),
        ] {
            assert_eq!(DetachedJws::parse(value.as_deref()), Err(want), "{value:?}");
        }
    }

    #[test]
    fn jwks_must_be_rsa_with_the_asked_kid() {
        assert!(matches!(
            decoding_key(&serde_json::json!({"kty": "EC", "kid": "k"}), "k"),
            Err(JwsError::Malformed(_))
        ));
        assert!(matches!(
            decoding_key(&serde_json::json!({"kty": "RSA", "kid": "other", "n": "AQAB", "e": "AQAB"}), "k"),
            Err(JwsError::Malformed(_))
        ));
        assert!(matches!(decoding_key(&serde_json::json!({"kty": "RSA"}), "k"), Err(JwsError::Malformed(_))));
    }
}
