//! Every inbound decode (`protocols/liveagent-chatwoot.md` §5, §8): a webhook body or a
//! listed message into one [`Delivery`]. Crate-private: the webhook handler and the session
//! are its only readers.

use handover_core::attachment::guess_media_type;
use handover_core::{Agent, Attachment, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::NAME;

/// A delivery on its way to a session: the key its signature covers (to drop replays)
/// and what it means.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Item {
    pub(crate) key: String,
    pub(crate) delivery: Delivery,
}

/// What a delivery means.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Delivery {
    /// A human agent wrote to the user.
    AgentMessage {
        /// The message id.
        id: u64,
        /// The text (`content`; empty for a file sent without one).
        text: String,
        /// The agent.
        agent: Agent,
        /// The files sent with it (§5.2 `attachments`), as URLs.
        attachments: Vec<Attachment>,
    },
    /// An agent was assigned (or another agent took over).
    Assigned(Agent),
    /// The assignee was removed: back to the queue.
    Unassigned,
    /// The conversation was resolved (or abandoned).
    Resolved {
        /// `resolved`, `abandoned`, …
        status: String,
    },
    /// The agent typed.
    Typing(bool),
    /// Nothing for the user (incoming echoes, private notes, bots, other events). Never
    /// routed, so never kept.
    #[serde(skip)]
    Ignore(#[serde(skip)] &'static str),
}

/// A parsed delivery: the conversation it concerns, a dedup key and its meaning.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Parsed {
    /// The conversation id (the display id used in API paths); `None` when the delivery
    /// names no conversation (nothing a session waits for).
    pub(crate) conversation: Option<u64>,
    /// Key to drop repeats on, from what the signature covers: `message:<id>` for a message,
    /// else a digest of the body. Never the `X-Chatwoot-Delivery` header, which is not
    /// signed: a replay with a new header must not pass as new.
    pub(crate) dedup_key: String,
    /// What it means.
    pub(crate) delivery: Delivery,
}

/// The agent a desk user object describes.
pub(crate) fn agent_of(user: &Value) -> Agent {
    let mut agent = Agent::unknown();
    agent.name = user["available_name"].as_str().or_else(|| user["name"].as_str()).map(str::to_owned);
    agent.id = user["id"].as_u64().map(|id| id.to_string());
    agent
}

/// Reads a delivery's body.
pub(crate) fn parse(body: &[u8]) -> Result<Parsed> {
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        Error::protocol(
            NAME,
            "read webhook",
            format!("the body is not a webhook payload: {}", handover_transport::log::sanitize(&e.to_string())),
        )
    })?;
    if !json.is_object() {
        return Err(Error::protocol(NAME, "read webhook", "the body is not a JSON object"));
    }
    let event = json["event"].as_str().unwrap_or_default();
    let conversation = json["conversation"]["id"]
        .as_u64()
        .or_else(|| if event.starts_with("conversation_") { json["id"].as_u64() } else { None });
    let delivery = match event {
        "message_created" => message(&json),
        "conversation_status_changed" => status(json["status"].as_str()),
        "conversation_updated" => conversation_updated(&json),
        "conversation_typing_on" | "conversation_typing_off" => {
            if json["user"]["type"].as_str().is_some_and(|t| t != "user") || json["is_private"] == true {
                Delivery::Ignore("typing of someone else")
            } else {
                Delivery::Typing(event == "conversation_typing_on")
            }
        }
        "conversation_resolved" => status(Some("resolved")),
        _ => Delivery::Ignore("event not used by the handover"),
    };
    let dedup_key = match &delivery {
        Delivery::AgentMessage { id, .. } => format!("message:{id}"),
        _ => format!("body:{}", handover_transport::ids::content_key(body)),
    };
    Ok(Parsed { conversation, dedup_key, delivery })
}

fn status(status: Option<&str>) -> Delivery {
    match status {
        Some(s @ ("resolved" | "abandoned" | "closed")) => Delivery::Resolved { status: s.to_owned() },
        _ => Delivery::Ignore("status other than resolved"),
    }
}

/// What a message (from a `message_created` delivery or the message list) means.
pub(crate) fn message(json: &Value) -> Delivery {
    // §8.1-8.2: only public outgoing messages of human agents reach the user.
    if json["message_type"] != "outgoing" && json["message_type"] != 1 {
        return Delivery::Ignore("not an outgoing message");
    }
    if json["private"] == true {
        return Delivery::Ignore("private note");
    }
    if json["sender"]["type"].as_str().is_some_and(|t| t != "user") {
        return Delivery::Ignore("not sent by a human agent");
    }
    let text = json["content"].as_str().unwrap_or_default().to_owned();
    let attachments: Vec<Attachment> =
        json["attachments"].as_array().into_iter().flatten().filter_map(attachment).collect();
    if text.is_empty() && attachments.is_empty() {
        return Delivery::Ignore("message without content");
    }
    let Some(id) = json["id"].as_u64() else { return Delivery::Ignore("message without id") };
    Delivery::AgentMessage { id, text, agent: agent_of(&json["sender"]), attachments }
}

/// One entry of a message's `attachments` (§5.2; the desk's `Attachment#push_event_data`:
/// `id`, `message_id`, `file_type`, `account_id`, `extension`, `data_url`, `thumb_url`,
/// `file_size`, and `content_type` in newer versions). Only uploaded files
/// (`file_type` image, audio, video or file) are files for the user: a location, a
/// fallback or a contact card carries no file. The name is the last segment of
/// `data_url`'s path (the blob's file name in the desk's Active Storage URL), the media
/// type `content_type` when given, else guessed from that name or `extension`.
fn attachment(json: &Value) -> Option<Attachment> {
    if !matches!(json["file_type"].as_str(), None | Some("image" | "audio" | "video" | "file")) {
        return None;
    }
    let url = json["data_url"].as_str().filter(|u| u.starts_with("https://") || u.starts_with("http://"))?;
    let extension =
        json["extension"].as_str().filter(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric()));
    let name = file_name(url)
        .unwrap_or_else(|| json["id"].as_u64().map_or_else(|| "file".to_owned(), |id| format!("attachment-{id}")));
    // A name without an extension gets the desk's.
    let name = match extension {
        Some(extension) if !name.contains('.') => format!("{name}.{extension}"),
        _ => name,
    };
    let media_type = match json["content_type"].as_str().filter(|t| t.contains('/')) {
        Some(given) => given.to_owned(),
        None => match guess_media_type(&name) {
            "application/octet-stream" => guess_media_type(&format!("x.{}", extension.unwrap_or_default())).to_owned(),
            guessed => guessed.to_owned(),
        },
    };
    Some(Attachment::url(name, media_type, url).with_size(json["file_size"].as_u64()))
}

/// The last segment of `url`'s path, percent-decoded; `None` when there is none.
fn file_name(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let after_host = path.splitn(4, '/').nth(3).unwrap_or_default();
    let segment = after_host.rsplit('/').next().filter(|s| !s.is_empty())?;
    let name = percent_decode(segment);
    let name = name.trim();
    (!name.is_empty() && !name.contains(['/', '\\'])).then(|| name.to_owned())
}

/// `%XX` escapes decoded (invalid ones kept as they are), as UTF-8 (lossy).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
        {
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn conversation_updated(json: &Value) -> Delivery {
    for change in json["changed_attributes"].as_array().into_iter().flatten() {
        if let Some(status_change) = change.get("status") {
            // §8.8: some transitions only show here.
            if let Delivery::Resolved { status } = status(status_change["current_value"].as_str()) {
                return Delivery::Resolved { status };
            }
        }
        if let Some(assignee) = change.get("assignee_id") {
            if assignee["current_value"].is_null() {
                return Delivery::Unassigned;
            }
            let mut agent = agent_of(&json["meta"]["assignee"]);
            if agent.id.is_none() {
                agent.id = assignee["current_value"].as_u64().map(|id| id.to_string());
            }
            return Delivery::Assigned(agent);
        }
    }
    Delivery::Ignore("update without assignee or status change")
}

#[cfg(test)]
mod tests {
    //! Every webhook shape of `protocols/liveagent-chatwoot.md` §5 the provider reads,
    //! from `tests/fixtures`, including private notes, echoes and bots it must not forward.

    use super::*;

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/webhook_{name}.json", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
    }

    fn delivery(name: &str) -> Delivery {
        let parsed = parse(&read(name)).expect("the fixture parses");
        assert_eq!(parsed.conversation, Some(1042), "{name}");
        parsed.delivery
    }

    #[test]
    fn public_outgoing_messages_of_human_agents_are_forwarded() {
        assert_eq!(
            delivery("message_agent"),
            Delivery::AgentMessage {
                id: 5001,
                text: "Hi, I'm Ann.".into(),
                agent: Agent::named("Ann").with_id("17"),
                attachments: Vec::new()
            }
        );
    }

    #[test]
    fn a_file_without_text_is_a_message_named_after_its_url() {
        let url = "https://desk.example/rails/active_storage/blobs/redirect/\
                   eyJfcmFpbHMiOnsibWVzc2FnZSI6IkJBaHBCZz09In19--0c5f1e0f/returns%20label%20%C3%A9t%C3%A9.pdf";
        assert_eq!(
            delivery("message_attachment"),
            Delivery::AgentMessage {
                id: 5005,
                text: String::new(),
                agent: Agent::named("Ann Agent").with_id("17"),
                attachments: vec![
                    Attachment::url("returns label été.pdf", "application/pdf", url).with_size(Some(48_213))
                ],
            }
        );
    }

    #[test]
    fn a_caption_with_files_keeps_the_given_type_and_the_desks_extension() {
        let Delivery::AgentMessage { text, attachments, .. } = delivery("message_attachment_caption") else {
            panic!("a message")
        };
        assert_eq!(text, "Here is the photo of the damaged part");
        let described: Vec<(&str, &str, Option<u64>)> =
            attachments.iter().map(|a| (a.name.as_str(), a.media_type.as_str(), a.size)).collect();
        assert_eq!(described, [("IMG_0042.jpeg", "image/jpeg", Some(183_422)), ("blob.csv", "text/csv", Some(120))]);
        assert!(attachments[0].url_str().unwrap().ends_with("/IMG_0042.jpeg"), "the file, not its thumbnail");
    }

    #[test]
    fn a_location_is_no_file_and_alone_no_message() {
        assert!(matches!(delivery("message_location"), Delivery::Ignore(_)));
    }

    #[test]
    fn odd_attachment_entries_are_skipped_or_named_by_id() {
        let message = |attachments: Value| {
            message(&serde_json::json!({
                "id": 1, "content": "x", "message_type": "outgoing", "private": false,
                "sender": { "type": "user" }, "attachments": attachments,
            }))
        };
        let Delivery::AgentMessage { attachments, .. } = message(serde_json::json!([
            { "id": 3, "file_type": "file", "data_url": "https://desk.example/", "extension": "pdf" },
            { "id": 4, "file_type": "file", "data_url": "https://desk.example/a/b%2Fc" },
            { "id": 5, "file_type": "file", "data_url": "/rails/active_storage/blobs/x.pdf" },
            { "id": 6, "file_type": "file", "data_url": 7 },
            { "id": 7, "file_type": "fallback", "data_url": "https://desk.example/f.pdf" },
            "not an object",
            { "id": 8, "file_type": "video", "data_url": "https://desk.example/v/clip%ZZ.mp4", "file_size": -1 },
        ])) else {
            panic!("a message")
        };
        let described: Vec<(&str, &str, Option<u64>)> =
            attachments.iter().map(|a| (a.name.as_str(), a.media_type.as_str(), a.size)).collect();
        assert_eq!(
            described,
            [
                ("attachment-3.pdf", "application/pdf", None),
                ("attachment-4", "application/octet-stream", None),
                ("clip%ZZ.mp4", "video/mp4", None),
            ]
        );
    }

    #[test]
    fn an_attachment_url_token_stays_out_of_debug_output() {
        let Delivery::AgentMessage { attachments, .. } = message(&serde_json::json!({
            "id": 1, "content": null, "message_type": "outgoing", "private": false, "sender": { "type": "user" },
            "attachments": [{ "file_type": "file",
                "data_url": "https://storage.example/label.pdf?X-Amz-Signature=s3cr3t-token&X-Amz-Expires=300" }],
        })) else {
            panic!("a message")
        };
        assert_eq!(attachments[0].name, "label.pdf");
        let debug = format!("{attachments:?}");
        assert!(!debug.contains("s3cr3t-token"), "{debug}");
    }

    #[test]
    fn private_notes_echoes_bots_and_edits_are_not() {
        for name in ["message_private_note", "message_incoming_echo", "message_agent_bot", "message_updated"] {
            assert!(matches!(delivery(name), Delivery::Ignore(_)), "{name}");
        }
    }

    #[test]
    fn assignment_changes() {
        assert_eq!(delivery("assigned"), Delivery::Assigned(Agent::named("Ann").with_id("17")));
        assert_eq!(delivery("unassigned"), Delivery::Unassigned);
    }

    #[test]
    fn resolution_through_either_event() {
        assert_eq!(delivery("resolved"), Delivery::Resolved { status: "resolved".into() });
        assert_eq!(delivery("resolved_via_update"), Delivery::Resolved { status: "resolved".into() });
        assert!(matches!(delivery("status_snoozed"), Delivery::Ignore(_)), "snoozed is still active");
    }

    #[test]
    fn typing_and_other_events() {
        assert_eq!(delivery("typing_on"), Delivery::Typing(true));
        assert!(matches!(delivery("typing_private"), Delivery::Ignore(_)));
        assert!(matches!(delivery("conversation_created"), Delivery::Ignore(_)));
        assert!(matches!(delivery("webwidget_triggered"), Delivery::Ignore(_)));
    }

    #[test]
    fn dedup_keys_come_from_the_signed_body() {
        assert_eq!(parse(&read("message_agent")).unwrap().dedup_key, "message:5001");
        let assigned = parse(&read("assigned")).unwrap().dedup_key;
        assert!(assigned.starts_with("body:"), "{assigned}");
        assert_eq!(parse(&read("assigned")).unwrap().dedup_key, assigned, "the same body, the same key");
        assert_ne!(parse(&read("unassigned")).unwrap().dedup_key, assigned);
    }

    #[test]
    fn malformed_payloads_are_typed_errors_and_strangers_name_no_conversation() {
        assert!(parse(b"nope").is_err());
        assert!(parse(b"[1,2]").is_err());
        let stranger = parse(br#"{"event":"message_created","id":1}"#).unwrap();
        assert_eq!(stranger.conversation, None, "no conversation: nothing for a session");
        let unknown = parse(br#"{"event":"contact_merged","id":3}"#).unwrap();
        assert!(matches!(unknown.delivery, Delivery::Ignore(_)));
    }
}
