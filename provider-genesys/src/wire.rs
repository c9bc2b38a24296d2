//! Every inbound decode of a webhook delivery (`protocols/genesys.md` §6): the outbound
//! normalized message, and what it means for a session, one [`Delivery`]. Crate-private:
//! the webhook endpoint and the session are its only readers. (Notification frames are
//! read by the end detector, in [`crate::notifications`].)

use handover_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::NAME;

/// An outbound normalized message (`OpenMessageNormalizedMessage` and siblings, §6.2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Outbound {
    /// Genesys message id.
    pub(crate) id: String,
    /// The channel; `to.id` is the customer id we sent as `from.id`.
    pub(crate) channel: OutboundChannel,
    /// `Text`, `Structured`, `Event`, `Receipt`, or a future type.
    #[serde(rename = "type", default)]
    pub(crate) kind: String,
    /// Message text.
    #[serde(default)]
    pub(crate) text: Option<String>,
    /// Attachments and structured content.
    #[serde(default)]
    pub(crate) content: Vec<Value>,
    /// Events (typing).
    #[serde(default)]
    pub(crate) events: Vec<Value>,
    /// `Human` or `Bot`.
    #[serde(default)]
    pub(crate) originating_entity: Option<String>,
    /// The Genesys conversation id.
    #[serde(default)]
    pub(crate) conversation_id: Option<String>,
    /// Receipt status.
    #[serde(default)]
    pub(crate) status: Option<String>,
    /// Receipt failure reasons.
    #[serde(default)]
    pub(crate) reasons: Vec<Value>,
}

/// The `channel` of an outbound message.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutboundChannel {
    /// The recipient: our customer id.
    pub(crate) to: Party,
    /// The sender (the integration); `nickname` or `nickName`. Read only by the fixture
    /// tests (and in `Debug` output).
    #[serde(default)]
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) from: Option<Party>,
    /// When (ISO-8601); part of the uniqueness key.
    #[serde(default)]
    pub(crate) time: Option<String>,
}

/// A party of the channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Party {
    /// The id.
    pub(crate) id: String,
    /// A display name.
    #[serde(default, alias = "nickName")]
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) nickname: Option<String>,
}

/// What a delivery means for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
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
    pub(crate) fn dedup_key(&self) -> String {
        format!("{}@{}", self.id, self.channel.time.as_deref().unwrap_or(""))
    }

    /// What the delivery means.
    pub(crate) fn interpret(&self) -> Delivery {
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
pub(crate) fn parse(body: &[u8]) -> Result<Outbound> {
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
    //! Every webhook shape of §6 the provider reads, from `tests/fixtures`.

    use super::*;

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"))).expect("fixture exists")
    }

    fn delivery(name: &str) -> Delivery {
        parse(&read(&format!("webhook_{name}"))).expect("the fixture parses").interpret()
    }

    #[test]
    fn human_text_is_a_message() {
        assert_eq!(
            delivery("text_human"),
            Delivery::Message { text: "Hi, this is Ann from billing.".into(), from_bot: false }
        );
    }

    #[test]
    fn bot_text_is_marked_as_such() {
        assert_eq!(delivery("text_bot"), Delivery::Message { text: "You are now connected.".into(), from_bot: true });
    }

    #[test]
    fn attachments_and_quick_replies_become_text() {
        assert_eq!(
            delivery("text_attachment"),
            Delivery::Message {
                text: "Here is the invoice.\n[attachment] https://api-downloads.usw2.pure.cloud/api/v2/downloads/abc"
                    .into(),
                from_bot: false
            }
        );
        assert_eq!(
            delivery("structured_quick_replies"),
            Delivery::Message { text: "Pick one\n[option] Yes\n[option] No".into(), from_bot: false }
        );
    }

    #[test]
    fn typing_receipts_and_unknown_types() {
        assert_eq!(delivery("event_typing"), Delivery::Typing);
        assert_eq!(delivery("receipt_delivered"), Delivery::Receipt { status: "Delivered".into() });
        assert_eq!(delivery("receipt_failed"), Delivery::Receipt { status: "Failed".into() });
        assert!(matches!(delivery("unknown_type"), Delivery::Ignore(_)));
    }

    #[test]
    fn both_spellings_of_the_sender_nickname_are_read() {
        let message = parse(&read("webhook_nickname_spelled_nickName")).unwrap();
        assert_eq!(message.channel.from.unwrap().nickname.as_deref(), Some("Acme Integration"));
        let message = parse(&read("webhook_text_human")).unwrap();
        assert_eq!(message.channel.from.unwrap().nickname.as_deref(), Some("Acme Integration"));
    }

    #[test]
    fn the_dedup_key_is_id_and_time() {
        let message = parse(&read("webhook_text_human")).unwrap();
        assert_eq!(message.dedup_key(), "gm-text@2026-01-21T16:47:08.592Z");
        assert_eq!(message.channel.to.id, "handover-1c7e");
    }

    #[test]
    fn malformed_bodies_are_typed_errors() {
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{"id":"x"}"#).is_err(), "no channel");
        assert!(parse(&[0xff, 0xfe]).is_err());
    }
}
