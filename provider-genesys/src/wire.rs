//! Every inbound decode of a webhook delivery (`protocols/genesys.md` §6): the outbound
//! normalized message, and what it means for a session, one [`Delivery`]. Crate-private:
//! the webhook endpoint and the session are its only readers. (Notification frames are
//! read by the end detector, in [`crate::notifications`].)

use std::fmt;

use handover_core::{Attachment, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::NAME;

/// An outbound normalized message (`OpenMessageNormalizedMessage` and siblings, §6.2).
/// Its `Debug` leaves out `content`: attachment URLs carry download tokens.
#[derive(Clone, Serialize, Deserialize)]
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

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("kind", &self.kind)
            .field("text", &self.text)
            .field("content", &format_args!("[{} items]", self.content.len()))
            .field("events", &self.events)
            .field("originating_entity", &self.originating_entity)
            .field("conversation_id", &self.conversation_id)
            .field("status", &self.status)
            .field("reasons", &self.reasons)
            .finish()
    }
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
        /// The text: the message's (or its files' captions), quick replies as `[option] …`
        /// lines, template bodies, links; empty for files alone.
        text: String,
        /// The files, as the download URLs Genesys gives.
        attachments: Vec<Attachment>,
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
                let text = self.text.as_deref().filter(|t| !t.trim().is_empty());
                let mut lines: Vec<String> = text.iter().map(|t| (*t).to_owned()).collect();
                let mut attachments = Vec::new();
                for item in &self.content {
                    if let Some((file, caption)) = attachment(item) {
                        // A caption stands in for a missing message text.
                        if let (None, Some(caption)) = (text, caption) {
                            lines.push(caption);
                        }
                        attachments.push(file);
                    } else if let Some(url) = link(item) {
                        lines.push(url.to_owned());
                    } else if let Some(text) = item["quickReply"]["text"].as_str() {
                        lines.push(format!("[option] {text}"));
                    } else if let Some(body) = item["template"]["body"]["text"].as_str() {
                        lines.push(body.to_owned());
                    }
                }
                if lines.is_empty() && attachments.is_empty() {
                    return Delivery::Ignore("message without text or files");
                }
                Delivery::Message {
                    text: lines.join("\n"),
                    attachments,
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

/// The `attachment` of a content item, wrapped (`{contentType: "Attachment", attachment}`,
/// the documented outbound shape) or bare (`{attachment}`): both are seen (§6.2).
fn attachment_of(item: &Value) -> Option<&Value> {
    match item.get("contentType").and_then(Value::as_str) {
        Some(kind) if !kind.eq_ignore_ascii_case("Attachment") => None,
        _ => item.get("attachment").filter(|a| a.is_object()),
    }
}

/// A file of a content item (§6.2: `attachment {id, mediaType, url, mime, filename,
/// contentSizeBytes?, text?}`) and its caption (`text`). `None` when it has no URL, or is a
/// `Link` (a web page, not a file). A missing `mime` is `application/octet-stream`, a
/// missing `filename` the URL's last path segment.
fn attachment(item: &Value) -> Option<(Attachment, Option<String>)> {
    let attachment = attachment_of(item)?;
    if attachment["mediaType"] == "Link" {
        return None;
    }
    let url = attachment["url"].as_str().map(str::trim).filter(|u| !u.is_empty())?;
    let mime =
        attachment["mime"].as_str().map(str::trim).filter(|m| !m.is_empty()).unwrap_or("application/octet-stream");
    let name = match attachment["filename"].as_str().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => name.to_owned(),
        None => file_name_of(url),
    };
    let size = attachment["contentSizeBytes"].as_u64();
    let caption = attachment["text"].as_str().filter(|t| !t.trim().is_empty()).map(str::to_owned);
    Some((Attachment::url(name, mime, url).with_size(size), caption))
}

/// The URL of a `Link` attachment: shown as text.
fn link(item: &Value) -> Option<&str> {
    let attachment = attachment_of(item)?;
    (attachment["mediaType"] == "Link").then(|| attachment["url"].as_str()).flatten().filter(|u| !u.trim().is_empty())
}

/// The last path segment of `url` (without query or fragment), or `attachment`.
fn file_name_of(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let path = path.split_once("://").map_or(path, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("attachment").to_owned()
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

    fn text(text: &str, from_bot: bool) -> Delivery {
        Delivery::Message { text: text.into(), attachments: Vec::new(), from_bot }
    }

    #[test]
    fn human_text_is_a_message() {
        assert_eq!(delivery("text_human"), text("Hi, this is Ann from billing.", false));
    }

    #[test]
    fn bot_text_is_marked_as_such() {
        assert_eq!(delivery("text_bot"), text("You are now connected.", true));
    }

    #[test]
    fn a_wrapped_attachment_with_text_is_a_file_with_the_text() {
        assert_eq!(
            delivery("text_attachment"),
            Delivery::Message {
                text: "Here is the invoice.".into(),
                attachments: vec![
                    Attachment::url(
                        "invoice.pdf",
                        "application/pdf",
                        "https://api-downloads.usw2.pure.cloud/api/v2/downloads/abc"
                    )
                    .with_size(Some(1024))
                ],
                from_bot: false,
            }
        );
    }

    #[test]
    fn a_file_alone_is_a_message_with_empty_text() {
        // go-gcloudcx `openmessaging-outbound-attachment-file.json`: no `text` at all.
        assert_eq!(
            delivery("attachment_file_only"),
            Delivery::Message {
                text: String::new(),
                attachments: vec![
                    Attachment::url(
                        "returns-label.pdf",
                        "application/pdf",
                        "https://api-downloads.usw2.pure.cloud/api/v2/downloads/pce1234456?X-Amz-Signature=s3cr3t-sig&X-Amz-Expires=600"
                    )
                    .with_size(Some(10240))
                ],
                from_bot: false,
            }
        );
    }

    #[test]
    fn a_bare_attachment_is_read_and_its_caption_stands_in_for_the_text() {
        // The SDK's `OpenContentAttachment` item without the `contentType` wrapper; no
        // `filename` (the URL's last segment is used) and no size.
        assert_eq!(
            delivery("attachment_bare_with_caption"),
            Delivery::Message {
                text: "The broken part".into(),
                attachments: vec![Attachment::url(
                    "img-77",
                    "image/jpeg",
                    "https://api-downloads.usw2.pure.cloud/api/v2/downloads/img-77"
                )],
                from_bot: false,
            }
        );
    }

    #[test]
    fn links_templates_and_quick_replies_are_text() {
        assert_eq!(delivery("link_and_template"), text("https://help.example.com/returns\nYour order shipped", false));
        assert_eq!(delivery("structured_quick_replies"), text("Pick one\n[option] Yes\n[option] No", false));
    }

    #[test]
    fn an_attachment_without_a_url_and_nothing_else_is_ignored() {
        assert!(matches!(delivery("attachment_without_url"), Delivery::Ignore(_)));
    }

    #[test]
    fn debug_output_hides_download_tokens() {
        let message = parse(&read("webhook_attachment_file_only")).unwrap();
        let debug = format!("{message:?} {:?}", message.interpret());
        assert!(!debug.contains("s3cr3t-sig"), "{debug}");
        assert!(debug.contains("returns-label.pdf"), "{debug}");
    }

    #[test]
    fn file_names_fall_back_to_the_url() {
        assert_eq!(file_name_of("https://h/a/b/scan.png?sig=1"), "scan.png");
        assert_eq!(file_name_of("https://h/a/b/"), "b");
        assert_eq!(file_name_of("https://h"), "attachment");
        assert_eq!(file_name_of("https://h/?x=/y"), "attachment");
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
