//! Every inbound decode (`protocols/ringcentral-engage.md` §3, §7): Source SDK callbacks
//! into a [`Callback`], REST webhook deliveries into [`EngageEvent`]s, and what either
//! means for a session, one [`Delivery`]. Crate-private: the webhook endpoint is its only
//! reader.

use std::time::Duration;

use handover_core::attachment::guess_media_type;
use handover_core::{Agent, Attachment, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::NAME;

/// A verified delivery on its way to a session: the key it is deduplicated on (the
/// content id, the signed body's digest, the event id) and what it means.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Item {
    pub(crate) key: String,
    pub(crate) delivery: Delivery,
}

/// Something Engage told a session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Delivery {
    /// An agent replied (an empty text still counts as a reply), with the files sent.
    AgentReply { content_id: String, text: String, agent: Agent, attachments: Vec<Attachment> },
    /// A queue update.
    Queued { position: Option<u32>, wait: Option<Duration> },
    /// The intervention was opened, assigned or reopened (its id, when given).
    InterventionOpen(Option<String>),
    /// The agent closed the intervention: the end, after the drain.
    InterventionClosed,
    /// The agent canceled the intervention.
    InterventionCanceled,
}

/// Our thread id: given, or the prefix of our message id (`<thread>:…`).
pub(crate) fn thread_of(thread_id: Option<String>, in_reply_to_id: Option<String>) -> Option<String> {
    thread_id.or_else(|| in_reply_to_id.and_then(|id| id.split_once(':').map(|(thread, _)| thread.to_owned())))
}

/// A Source SDK callback.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Callback {
    /// `implementation.info`.
    ImplementationInfo,
    /// `*.list`: a realtime-only connector answers `[]`.
    List,
    /// `*.show`: a realtime-only connector answers `{}`.
    Show,
    /// `messages.create` / `private_messages.create`: an agent replied.
    AgentReply {
        /// Engage's content id: the idempotency key of retries.
        content_id: String,
        /// Our thread id (absent for unthreaded or private messages).
        thread_id: Option<String>,
        /// Our id of the message answered.
        in_reply_to_id: Option<String>,
        /// The text (`body`; empty for a file sent alone).
        text: String,
        /// `sender_name` (the human agent) and `author_id` (the identity used).
        agent: Agent,
        /// The files (`attachments`), as URLs.
        attachments: Vec<Attachment>,
    },
    /// `messaging.queuing_update`.
    QueuingUpdate {
        /// Our thread id.
        thread_id: Option<String>,
        /// Our id of the message the update concerns.
        in_reply_to_id: Option<String>,
        /// `position`.
        position: Option<u32>,
        /// `estimated_wait_time`, given in seconds.
        wait: Option<Duration>,
    },
    /// Anything else (answered `422 Invalid action`).
    Unknown(String),
}

fn text_param(params: &Value, key: &str) -> Option<String> {
    match &params[key] {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number_param(params: &Value, key: &str) -> Option<u64> {
    params[key].as_u64().or_else(|| params[key].as_str().and_then(|s| s.trim().parse().ok()))
}

/// Reads a callback body (already verified).
pub(crate) fn parse_callback(body: &[u8]) -> Result<Callback> {
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        Error::protocol(
            NAME,
            "read callback",
            format!("the body is not a Source SDK request: {}", handover_transport::log::sanitize(&e.to_string())),
        )
    })?;
    let Some(action) = json["action"].as_str() else {
        return Err(Error::protocol(NAME, "read callback", "the request has no action"));
    };
    let params = &json["params"];
    Ok(match action {
        "implementation.info" => Callback::ImplementationInfo,
        "messages.list" | "threads.list" | "private_messages.list" => Callback::List,
        "messages.show" | "threads.show" | "private_messages.show" => Callback::Show,
        "messages.create" | "private_messages.create" => {
            let Some(content_id) = text_param(params, "content_id") else {
                return Err(Error::protocol(NAME, "read callback", format!("`{action}` without content_id")));
            };
            let text = params["body"].as_str().filter(|b| !b.trim().is_empty()).unwrap_or_default().to_owned();
            let attachments = params["attachments"].as_array().into_iter().flatten().filter_map(attachment).collect();
            let mut agent = Agent::unknown();
            agent.name = text_param(params, "sender_name");
            agent.id = text_param(params, "author_id");
            Callback::AgentReply {
                content_id,
                thread_id: text_param(params, "thread_id"),
                in_reply_to_id: text_param(params, "in_reply_to_id"),
                text,
                agent,
                attachments,
            }
        }
        "messaging.queuing_update" => Callback::QueuingUpdate {
            thread_id: text_param(params, "thread_id"),
            in_reply_to_id: text_param(params, "in_reply_to_id"),
            position: number_param(params, "position").and_then(|p| u32::try_from(p).ok()),
            wait: number_param(params, "estimated_wait_time").map(Duration::from_secs),
        },
        other => Callback::Unknown(other.to_owned()),
    })
}

/// One entry of a posted message's `attachments` (§3.3; documented as
/// `{"url": …, "type": "image"}`, with `filename` in practice): a file the user fetches
/// from `url`. The name is `filename`, else the URL's last path segment; the media type
/// `content_type` when given (Engage's attachment objects carry it in the REST API), else
/// guessed from the name; `size` when given. An entry without an http(s) URL is skipped.
fn attachment(json: &Value) -> Option<Attachment> {
    let url = json["url"].as_str().filter(|u| u.starts_with("https://") || u.starts_with("http://"))?;
    let given = ["filename", "name"]
        .iter()
        .find_map(|key| json[*key].as_str().map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned));
    let name = given.or_else(|| last_segment(url)).unwrap_or_else(|| "attachment".to_owned());
    let media_type = json["content_type"]
        .as_str()
        .filter(|t| t.contains('/'))
        .map_or_else(|| guess_media_type(&name).to_owned(), str::to_owned);
    let size = json["size"].as_u64().or_else(|| json["size"].as_str().and_then(|s| s.parse().ok()));
    Some(Attachment::url(name, media_type, url).with_size(size))
}

/// The last segment of `url`'s path, percent-decoded; `None` when there is none (or it
/// decodes to something that is no file name).
fn last_segment(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let segment = path.splitn(4, '/').nth(3).unwrap_or_default().rsplit('/').next().filter(|s| !s.is_empty())?;
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    let name = String::from_utf8_lossy(&decoded).trim().to_owned();
    (!name.is_empty() && !name.contains(['/', '\\'])).then_some(name)
}

/// What a REST webhook event means for the handover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// The intervention was opened, assigned, reassigned, reopened or reactivated.
    InterventionOpen,
    /// The agent closed the intervention: the end (§8).
    InterventionClosed,
    /// The agent canceled the intervention before replying.
    InterventionCanceled,
    /// Anything else.
    Other,
}

/// One event of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EngageEvent {
    /// The event id (stable across resends).
    pub(crate) id: String,
    /// `type`, e.g. `intervention.closed`.
    pub(crate) event_type: String,
    /// What it means.
    pub(crate) kind: EventKind,
    /// `resource.id` (the intervention id for intervention events).
    pub(crate) resource_id: Option<String>,
    /// `resource.metadata.source_id`.
    pub(crate) source_id: Option<String>,
    /// `resource.metadata.thread_id`: Engage's thread id.
    pub(crate) thread_id: Option<String>,
}

/// A REST webhook delivery: `{id, domain_id, events: [...]}`.
pub(crate) fn parse_events(body: &[u8]) -> Result<Vec<EngageEvent>> {
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        Error::protocol(
            NAME,
            "read webhook",
            format!("the body is not an Engage webhook: {}", handover_transport::log::sanitize(&e.to_string())),
        )
    })?;
    let Some(events) = json["events"].as_array() else {
        return Err(Error::protocol(NAME, "read webhook", "the delivery has no events list"));
    };
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let Some(id) = text_param(event, "id") else {
            return Err(Error::protocol(NAME, "read webhook", "an event has no id"));
        };
        let event_type = event["type"].as_str().unwrap_or_default().to_owned();
        let kind = match event_type.as_str() {
            "intervention.opened"
            | "intervention.assigned"
            | "intervention.user_updated"
            | "intervention.reopened"
            | "intervention.reactivated" => EventKind::InterventionOpen,
            "intervention.closed" => EventKind::InterventionClosed,
            "intervention.canceled" => EventKind::InterventionCanceled,
            _ => EventKind::Other,
        };
        let resource = &event["resource"];
        let metadata = &resource["metadata"];
        out.push(EngageEvent {
            id,
            event_type,
            kind,
            resource_id: text_param(resource, "id"),
            source_id: text_param(metadata, "source_id"),
            thread_id: text_param(metadata, "thread_id"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! Every callback (§3) and webhook event (§7) shape the provider reads, from
    //! `tests/fixtures`.

    use super::*;

    #[test]
    fn threads_come_from_the_thread_or_our_message_id() {
        assert_eq!(thread_of(Some("h-1".into()), None).as_deref(), Some("h-1"));
        assert_eq!(thread_of(None, Some("h-2:m:abc".into())).as_deref(), Some("h-2"));
        assert_eq!(thread_of(None, Some("foreign".into())), None);
    }

    fn read(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
    }

    fn callback(name: &str) -> Callback {
        parse_callback(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn events(name: &str) -> Vec<EngageEvent> {
        parse_events(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn the_documented_implementation_info_request() {
        assert_eq!(callback("callback_implementation_info"), Callback::ImplementationInfo);
    }

    #[test]
    fn agent_replies_with_sender_attachments_and_ids() {
        let mut agent = Agent::unknown();
        agent.name = Some("Jane from RingCentral".into());
        agent.id = Some("agent-identity".into());
        assert_eq!(
            callback("callback_messages_create"),
            Callback::AgentReply {
                content_id: "5e1f0c8a4f1ab2000a8c1234".into(),
                thread_id: Some("h-7b1e".into()),
                in_reply_to_id: Some("h-7b1e:m:42".into()),
                text: "Hello Jane, I'm looking at your invoice.".into(),
                agent: agent.clone(),
                attachments: vec![Attachment::url(
                    "invoice.pdf",
                    "application/pdf",
                    "https://acme.digital.ringcentral.com/attachments/5e1f/invoice.pdf"
                )],
            }
        );
        assert_eq!(
            callback("callback_private_messages_create"),
            Callback::AgentReply {
                content_id: "5e1f0c8a4f1ab2000a8c9999".into(),
                thread_id: None,
                in_reply_to_id: Some("h-7b1e:m:43".into()),
                text: "Private follow-up".into(),
                agent,
                attachments: Vec::new(),
            }
        );
    }

    fn reply_files(name: &str) -> (String, Vec<Attachment>) {
        match callback(name) {
            Callback::AgentReply { text, attachments, .. } => (text, attachments),
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn a_file_in_the_documented_shape_is_named_after_its_url() {
        let (text, attachments) = reply_files("callback_messages_create_attachment_only");
        assert_eq!(text, "", "a file alone: no text");
        assert_eq!(
            attachments,
            [Attachment::url(
                "brand logo.png",
                "image/png",
                "https://acme.digital.ringcentral.com/attachments/5e1f0c8a4f1ab2000a8c9abc/brand%20logo.png"
            )]
        );
    }

    #[test]
    fn a_file_with_engages_attachment_fields_keeps_its_type_and_size_and_odd_entries_are_skipped() {
        let (text, attachments) = reply_files("callback_messages_create_attachment_details");
        assert_eq!(text, "The signed contract");
        assert_eq!(
            attachments,
            [
                Attachment::url(
                    "sso.pdf",
                    "application/pdf",
                    "https://acme.digital.ringcentral.com/attachments/5464b5c04d61639684110000"
                )
                .with_size(Some(174_784)),
                // No name, no type: the id from the URL, opaque bytes.
                Attachment::url(
                    "5464b5c04d61639684110001",
                    "application/octet-stream",
                    "https://acme.digital.ringcentral.com/attachments/5464b5c04d61639684110001"
                ),
            ],
            "an entry without a URL, or with one that is not http(s), is skipped"
        );
    }

    #[test]
    fn an_attachment_url_token_stays_out_of_debug_output() {
        let body = serde_json::json!({ "action": "messages.create", "params": { "content_id": "c-9", "attachments": [
            { "url": "https://files.example/label.pdf?access_token=s3cr3t-token", "type": "pdf" },
        ] } });
        let parsed = parse_callback(body.to_string().as_bytes()).unwrap();
        let Callback::AgentReply { attachments, .. } = &parsed else { panic!("{parsed:?}") };
        assert_eq!(
            (attachments[0].name.as_str(), attachments[0].media_type.as_str()),
            ("label.pdf", "application/pdf")
        );
        let debug = format!("{parsed:?}");
        assert!(!debug.contains("s3cr3t-token"), "{debug}");
    }

    #[test]
    fn queue_updates_in_seconds_as_numbers_or_strings() {
        assert_eq!(
            callback("callback_queuing_update"),
            Callback::QueuingUpdate {
                thread_id: Some("h-7b1e".into()),
                in_reply_to_id: Some("h-7b1e:m:42".into()),
                position: Some(3),
                wait: Some(Duration::from_secs(120)),
            }
        );
        assert_eq!(
            callback("callback_queuing_update_doc"),
            Callback::QueuingUpdate {
                thread_id: None,
                in_reply_to_id: Some("h-7b1e:m:1".into()),
                position: Some(1),
                wait: Some(Duration::from_secs(10)),
            }
        );
    }

    #[test]
    fn realtime_only_answers_and_unknown_actions() {
        assert_eq!(callback("callback_threads_list"), Callback::List);
        assert_eq!(callback("callback_messages_show"), Callback::Show);
        assert_eq!(callback("callback_unknown_action"), Callback::Unknown("messages.delete".into()));
    }

    #[test]
    fn intervention_events_carry_engage_thread_and_source() {
        let closed = events("event_intervention_closed");
        assert_eq!(
            closed,
            [EngageEvent {
                id: "9a1b2c3d-0000-4000-8000-000000000001".into(),
                event_type: "intervention.closed".into(),
                kind: EventKind::InterventionClosed,
                resource_id: Some("5f0d000000000000000000i1".into()),
                source_id: Some("5f0c0ffee0000000000000aa".into()),
                thread_id: Some("5f0d000000000000000000t1".into()),
            }]
        );
        let several = events("event_intervention_opened_and_content");
        assert_eq!(several.len(), 2);
        assert_eq!(several[0].kind, EventKind::InterventionOpen);
        assert_eq!(several[1].kind, EventKind::Other, "content.imported includes our own pushes (§9.9)");
        assert_eq!(events("event_intervention_canceled")[0].kind, EventKind::InterventionCanceled);
        assert_eq!(events("event_task_completed")[0].kind, EventKind::Other);
    }

    #[test]
    fn malformed_bodies_are_typed_errors() {
        for body in [&b"nope"[..], br#"{"params":{}}"#, br#"{"action":"messages.create","params":{"body":"x"}}"#] {
            assert_eq!(parse_callback(body).unwrap_err().kind(), handover_core::ErrorKind::Protocol);
        }
        for body in [&b"[]"[..], br#"{"events":[{"type":"intervention.closed"}]}"#, br#"{"id":"x"}"#] {
            assert_eq!(parse_events(body).unwrap_err().kind(), handover_core::ErrorKind::Protocol);
        }
    }
}
