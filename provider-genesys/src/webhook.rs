//! The outbound webhook: agent messages, typing and receipts (`protocols/genesys.md` §6).

use handover_core::{Error, Result};
use handover_transport::signature::{self, Algorithm, Encoding, SignatureError};
use serde::Deserialize;
use serde_json::Value;

use crate::NAME;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Verifies `X-Hub-Signature-256: sha256=<base64 HMAC-SHA256 of the raw body>` in
/// constant time. Hex (GitHub's form) is not Genesys's and is refused.
pub fn verify_signature(secret: &[u8], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let value = signature::strip_prefix(header, "sha256=")?;
    signature::verify(Algorithm::Sha256, Encoding::Base64, secret, body, value)
}

/// The signature Genesys would send for `body` (for emulators and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", signature::sign(Algorithm::Sha256, Encoding::Base64, secret, body))
}

/// An outbound normalized message (`OpenMessageNormalizedMessage` and siblings, §6.2).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outbound {
    /// Genesys message id.
    pub id: String,
    /// The channel; `to.id` is the customer id we sent as `from.id`.
    pub channel: OutboundChannel,
    /// `Text`, `Structured`, `Event`, `Receipt`, or a future type.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Message text.
    #[serde(default)]
    pub text: Option<String>,
    /// Attachments and structured content.
    #[serde(default)]
    pub content: Vec<Value>,
    /// Events (typing).
    #[serde(default)]
    pub events: Vec<Value>,
    /// `Human` or `Bot`.
    #[serde(default)]
    pub originating_entity: Option<String>,
    /// The Genesys conversation id.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Receipt status.
    #[serde(default)]
    pub status: Option<String>,
    /// Receipt failure reasons.
    #[serde(default)]
    pub reasons: Vec<Value>,
}

/// The `channel` of an outbound message.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundChannel {
    /// The recipient: our customer id.
    pub to: Party,
    /// The sender (the integration); `nickname` or `nickName`.
    #[serde(default)]
    pub from: Option<Party>,
    /// When (ISO-8601); part of the uniqueness key.
    #[serde(default)]
    pub time: Option<String>,
}

/// A party of the channel.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Party {
    /// The id.
    pub id: String,
    /// A display name.
    #[serde(default, alias = "nickName")]
    pub nickname: Option<String>,
}

/// What a delivery means for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A message to show the user.
    Message {
        /// The text (attachments as `[attachment] url` lines).
        text: String,
        /// Whether a bot or flow sent it (`originatingEntity: Bot`).
        from_bot: bool,
    },
    /// The agent is typing.
    Typing,
    /// A receipt for a message we sent; `Failed` ones are logged.
    Receipt {
        /// The status.
        status: String,
    },
    /// Nothing to do.
    Ignore(&'static str),
}

impl Outbound {
    /// The key Genesys guarantees unique: id and time (§6.2).
    pub fn dedup_key(&self) -> String {
        format!("{}@{}", self.id, self.channel.time.as_deref().unwrap_or(""))
    }

    /// What the delivery means.
    pub fn interpret(&self) -> Delivery {
        match self.kind.as_str() {
            "Text" | "Structured" => {
                let mut lines: Vec<String> = self.text.iter().filter(|t| !t.is_empty()).cloned().collect();
                for item in &self.content {
                    if let Some(url) = item["attachment"]["url"].as_str() {
                        lines.push(format!("[attachment] {url}"));
                    } else if let Some(text) = item["quickReply"]["text"].as_str() {
                        lines.push(format!("[option] {text}"));
                    } else if let Some(body) = item["template"]["body"]["text"].as_str() {
                        lines.push(body.to_owned());
                    }
                }
                if lines.is_empty() {
                    return Delivery::Ignore("message without text");
                }
                Delivery::Message {
                    text: lines.join("\n"),
                    from_bot: self.originating_entity.as_deref() == Some("Bot"),
                }
            }
            "Event" => {
                if self.events.iter().any(|e| e["eventType"] == "Typing") {
                    Delivery::Typing
                } else {
                    Delivery::Ignore("event other than typing")
                }
            }
            "Receipt" => Delivery::Receipt { status: self.status.clone().unwrap_or_default() },
            _ => Delivery::Ignore("message type this crate does not know"),
        }
    }
}

/// Parses a delivery's body.
pub fn parse(body: &[u8]) -> Result<Outbound> {
    serde_json::from_slice(body).map_err(|e| {
        Error::protocol(
            NAME,
            "read webhook",
            format!("the body is not an outbound open message: {}", handover_transport::log::sanitize(&e.to_string())),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"it's a secret";
    const BODY: &[u8] = br#"{"id":"m1","channel":{"to":{"id":"c1"}},"type":"Text","text":"Hi"}"#;

    #[test]
    fn signature_vectors() {
        let good = sign(SECRET, BODY);
        assert!(good.starts_with("sha256="));
        assert_eq!(verify_signature(SECRET, Some(&good), BODY), Ok(()));
        assert_eq!(verify_signature(SECRET, None, BODY), Err(SignatureError::Missing));
        assert_eq!(verify_signature(b"other", Some(&good), BODY), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature(SECRET, Some(&good), b"{}"), Err(SignatureError::Mismatch));
        let hex = format!("sha256={}", signature::sign(Algorithm::Sha256, Encoding::Hex, SECRET, BODY));
        assert!(verify_signature(SECRET, Some(&hex), BODY).is_err(), "hex is the wrong encoding");
        let unprefixed = good.trim_start_matches("sha256=");
        assert_eq!(verify_signature(SECRET, Some(unprefixed), BODY), Err(SignatureError::Malformed));
    }
}
