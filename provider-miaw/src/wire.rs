//! Every inbound decode (`protocols/salesforce-miaw.md` §6): SSE envelopes and the
//! entries list into conversation entries, and what an entry means for a session, a list of
//! [`Delivery`]. Crate-private: the session and the client are its only readers.

use std::time::Duration;

use handover_core::{Agent, Attachment, Error, Event, Result};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::NAME;

/// The `data` of an SSE event (§6, "Event data envelope").
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Envelope {
    /// The conversation the entry belongs to (a token's stream carries all of its subject's).
    pub(crate) conversation_id: String,
    /// The entry.
    pub(crate) conversation_entry: WireEntry,
}

/// One conversation entry, as SSE carries it (payload a JSON string) or as the entries
/// list returns it (payload an object, or sometimes a string).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireEntry {
    /// The entry id, used to deduplicate.
    pub(crate) identifier: String,
    /// `Message`, `ParticipantChanged`, `RoutingResult`, `SessionStatusChanged`, …
    pub(crate) entry_type: String,
    /// The payload: an object, or a string holding one.
    #[serde(default)]
    pub(crate) entry_payload: Value,
    /// Who sent it.
    #[serde(default)]
    pub(crate) sender: Option<Sender>,
    /// The sender's display name.
    #[serde(default)]
    pub(crate) sender_display_name: Option<String>,
    /// When the server recorded it (Unix ms).
    #[serde(default)]
    pub(crate) transcripted_timestamp: Option<u64>,
}

/// An entry's sender.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Sender {
    /// The sender's role.
    #[serde(default)]
    pub(crate) role: Role,
    /// The sender's subject (a stable id).
    #[serde(default)]
    pub(crate) subject: Option<String>,
}

/// Sender roles (§6.1); unknown ones are kept, never an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Role {
    /// The end user (our own side: its messages are echoes).
    EndUser,
    /// A human agent.
    Agent,
    /// A Salesforce-side bot.
    Chatbot,
    /// The platform.
    System,
    /// The router.
    Router,
    /// A supervisor.
    Supervisor,
    /// A role this crate does not know.
    #[default]
    Unknown,
    /// A role this crate does not know, by name.
    Other(String),
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(match name.as_str() {
            "EndUser" => Role::EndUser,
            "Agent" => Role::Agent,
            "Chatbot" => Role::Chatbot,
            "System" => Role::System,
            "Router" => Role::Router,
            "Supervisor" => Role::Supervisor,
            _ => Role::Other(name),
        })
    }
}

/// What an entry means for the session.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Delivery {
    /// Deliver this event.
    Emit(Event),
    /// An agent was removed: a transfer or a leave, decided by the routing status.
    AgentRemoved(Agent),
    /// `CloseConversation`: the end user's side closed it.
    Closed,
    /// `SessionStatusChanged` to `Ended`: someone ended the session.
    SessionEnded,
    /// The initial routing failed: the handover cannot go on.
    RoutingFailed(String),
    /// Nothing to do (keep-alives, receipts, echoes, unknown entry types).
    Ignore(&'static str),
}

impl WireEntry {
    /// The payload as an object, parsing it when it arrives as a string.
    pub(crate) fn payload(&self) -> Result<Value> {
        match &self.entry_payload {
            Value::String(text) => serde_json::from_str(text).map_err(|e| {
                Error::protocol(
                    NAME,
                    "read event",
                    format!("entry {} has a malformed entryPayload: {e}", self.identifier),
                )
            }),
            Value::Null => Ok(Value::Object(Default::default())),
            other => Ok(other.clone()),
        }
    }

    fn role(&self) -> Role {
        self.sender.as_ref().map(|s| s.role.clone()).unwrap_or_default()
    }

    fn agent(&self) -> Agent {
        let mut agent = Agent::unknown();
        agent.name = self.sender_display_name.clone().filter(|n| !n.is_empty());
        agent.id = self.sender.as_ref().and_then(|s| s.subject.clone());
        agent
    }
}

/// Decodes an SSE event's `data`.
pub(crate) fn parse_envelope(data: &str) -> Result<Envelope> {
    serde_json::from_str(data)
        .map_err(|e| Error::protocol(NAME, "read event", format!("an event's data is not a conversation entry: {e}")))
}

/// The readable entries of an entries list page (§3 #11); one that cannot be read is
/// skipped, not fatal: the rest still back-fill.
pub(crate) fn entries(page: Vec<Value>) -> Vec<WireEntry> {
    page.into_iter()
        .filter_map(|entry| match serde_json::from_value::<WireEntry>(entry) {
            Ok(entry) => Some(entry),
            Err(error) => {
                tracing::warn!(%error, "skipping an unreadable conversation entry");
                None
            }
        })
        .collect()
}

/// What `entry` means. `event` is the SSE event name when the entry came over SSE.
pub(crate) fn interpret(entry: &WireEntry, event: Option<&str>) -> Result<Vec<Delivery>> {
    if event == Some("CONVERSATION_QUEUE_POSITION") || entry.entry_type == "QueuePosition" {
        return Ok(vec![queue_position(&entry.payload()?)]);
    }
    let actions = match entry.entry_type.as_str() {
        "Message" => vec![message(entry)?],
        "TypingStartedIndicator" | "TypingStoppedIndicator" => {
            if entry.role() == Role::EndUser {
                vec![Delivery::Ignore("own typing echo")]
            } else {
                vec![Delivery::Emit(Event::AgentTyping { on: entry.entry_type == "TypingStartedIndicator" })]
            }
        }
        "ParticipantChanged" => participants(&entry.payload()?),
        "RoutingResult" => vec![routing_result(&entry.payload()?)],
        "SessionStatusChanged" => {
            let payload = entry.payload()?;
            match payload["sessionStatus"].as_str() {
                Some("Ended") => vec![Delivery::SessionEnded],
                Some("Waiting") => vec![Delivery::Emit(Event::Queued { position: None, estimated_wait: None })],
                _ => vec![Delivery::Ignore("session status")],
            }
        }
        "CloseConversation" => vec![Delivery::Closed],
        "DeliveryAcknowledgement" | "ReadAcknowledgement" => vec![Delivery::Ignore("receipt")],
        _ => vec![Delivery::Ignore("entry type not used by the handover")],
    };
    Ok(actions)
}

fn message(entry: &WireEntry) -> Result<Delivery> {
    if entry.role() == Role::EndUser {
        return Ok(Delivery::Ignore("own message echo"));
    }
    let payload = entry.payload()?;
    let message = &payload["abstractMessage"];
    let content = &message["staticContent"];
    let mut attachments = Vec::new();
    let text = match content["formatType"].as_str() {
        // §6.1: `attachments[] {id, name, mimeType, url, referenceId, …}`, the caption in
        // `text` (null without one).
        Some("Attachments") => {
            attachments = content["attachments"].as_array().into_iter().flatten().filter_map(attachment).collect();
            content["text"].as_str().unwrap_or_default().to_owned()
        }
        Some("RichLink") => {
            let link = &content["linkItem"];
            [content["text"].as_str(), link["titleItem"]["title"].as_str(), link["url"].as_str()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("\n")
        }
        _ => content["text"].as_str().unwrap_or_default().to_owned(),
    };
    if text.trim().is_empty() && attachments.is_empty() {
        return Ok(Delivery::Ignore("message without text or files"));
    }
    Ok(Delivery::Emit(Event::AgentMessage { id: entry.identifier.clone(), text, agent: entry.agent(), attachments }))
}

/// One file of an `Attachments` message; `None` without a URL. A missing name is taken from
/// the URL's path (never its query), a missing `mimeType` is `application/octet-stream`.
fn attachment(file: &Value) -> Option<Attachment> {
    let url = file["url"].as_str().filter(|u| !u.trim().is_empty())?;
    let name = file["name"].as_str().map(str::trim).filter(|n| !n.is_empty()).map_or_else(
        || {
            let path = url.split(['?', '#']).next().unwrap_or_default();
            path.rsplit('/').next().filter(|n| !n.is_empty() && !n.contains(':')).unwrap_or("attachment").to_owned()
        },
        str::to_owned,
    );
    let media_type = file["mimeType"].as_str().map(str::trim).filter(|m| !m.is_empty());
    Some(Attachment::url(name, media_type.unwrap_or("application/octet-stream"), url))
}

fn participants(payload: &Value) -> Vec<Delivery> {
    let mut actions = Vec::new();
    for change in payload["entries"].as_array().into_iter().flatten() {
        let role = change["participant"]["role"].as_str().unwrap_or_default();
        if !matches!(role, "Agent" | "Supervisor") {
            actions.push(Delivery::Ignore("participant other than an agent"));
            continue;
        }
        let mut agent = Agent::unknown();
        agent.name = change["displayName"].as_str().filter(|n| !n.is_empty()).map(str::to_owned);
        agent.id = change["participant"]["subject"].as_str().map(str::to_owned);
        actions.push(match change["operation"].as_str() {
            Some("add") => Delivery::Emit(Event::AgentJoined { agent }),
            Some("remove") => Delivery::AgentRemoved(agent),
            _ => Delivery::Ignore("unknown participant operation"),
        });
    }
    if actions.is_empty() {
        actions.push(Delivery::Ignore("participant change without entries"));
    }
    actions
}

fn routing_result(payload: &Value) -> Delivery {
    let failure = payload["failureType"].as_str().unwrap_or("None");
    let routing_type = payload["routingType"].as_str().unwrap_or("Initial");
    if failure != "None" && routing_type != "Transfer" {
        let reason = payload["failureReason"].as_str().filter(|r| !r.is_empty()).unwrap_or(failure);
        let details: Vec<&str> =
            payload["errorMessages"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let message = if details.is_empty() { reason.to_owned() } else { format!("{reason}: {}", details.join("; ")) };
        return Delivery::RoutingFailed(message);
    }
    // §6.2: null or negative (-1 observed) means no estimate.
    let estimated_wait = payload["estimatedWaitTime"]["estimatedWaitTimeInSeconds"]
        .as_f64()
        .filter(|secs| *secs >= 0.0 && secs.is_finite())
        .map(Duration::from_secs_f64);
    Delivery::Emit(Event::Queued { position: None, estimated_wait })
}

/// The payload of `CONVERSATION_QUEUE_POSITION` is not documented (§6.2): take the first
/// positive integer under a position-like key, else ignore the event.
fn queue_position(payload: &Value) -> Delivery {
    for key in ["queuePosition", "position", "queuePositionNumber", "positionInQueue"] {
        if let Some(position) = payload[key].as_u64().filter(|p| *p > 0) {
            return Delivery::Emit(Event::Queued { position: u32::try_from(position).ok(), estimated_wait: None });
        }
    }
    tracing::debug!(payload = %payload, "queue position event without a recognised position field");
    Delivery::Ignore("queue position without a known field")
}

#[cfg(test)]
mod tests {
    //! Every event shape of §6, read from `tests/fixtures`.

    use serde_json::json;

    use super::*;

    const CONVERSATION: &str = "3b1f0c9e-7a2d-4e5f-9c1b-2d3e4f5a6b7c";

    fn fixture(name: &str) -> (String, Value) {
        let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture exists")).expect("JSON");
        (json["event"].as_str().expect("event").to_owned(), json["data"].clone())
    }

    /// The actions for a fixture, as the session would see them over SSE.
    fn actions(name: &str) -> Vec<Delivery> {
        let (event, data) = fixture(name);
        let envelope = parse_envelope(&data.to_string()).expect("the envelope parses");
        interpret(&envelope.conversation_entry, Some(&event)).expect("the entry is readable")
    }

    /// The one agent message a fixture yields: its text and agent.
    fn message(name: &str) -> (String, Agent) {
        match actions(name).as_slice() {
            [Delivery::Emit(Event::AgentMessage { text, agent, .. })] => (text.clone(), agent.clone()),
            other => panic!("expected one agent message, got {other:?}"),
        }
    }

    fn ignored(actions: &[Delivery]) -> bool {
        actions.iter().all(|a| matches!(a, Delivery::Ignore(_)))
    }

    fn jane() -> Agent {
        Agent::named("Jane (Agent)").with_id("005000000000001")
    }

    #[test]
    fn an_agent_message_is_delivered_with_its_entry_id_and_sender() {
        assert_eq!(
            actions("message_agent"),
            [Delivery::Emit(Event::AgentMessage {
                id: "e-msg-1".into(),
                text: "Hi, I'm Jane from billing.".into(),
                agent: jane(),
                attachments: Vec::new(),
            })]
        );
    }

    #[test]
    fn a_payload_given_as_an_object_reads_like_one_given_as_a_string() {
        assert_eq!(message("message_object_payload").0, "payload as an object");
    }

    #[test]
    fn own_echoes_are_filtered() {
        assert!(ignored(&actions("message_echo")));
        assert!(ignored(&actions("message_echo_attachments")), "the end user's own file comes back too");
        assert!(ignored(&actions("typing_echo")));
    }

    #[test]
    fn a_salesforce_bot_message_is_relayed_like_an_agent_message() {
        assert_eq!(message("message_chatbot").1.name.as_deref(), Some("Einstein Bot"));
    }

    #[test]
    fn attachments_arrive_as_urls_with_the_caption_as_text() {
        assert_eq!(
            actions("message_attachments"),
            [Delivery::Emit(Event::AgentMessage {
                id: "e-msg-4".into(),
                text: "Here is the form".into(),
                agent: jane(),
                attachments: vec![Attachment::url("form.pdf", "application/pdf", "https://files.example/form.pdf")],
            })]
        );
    }

    #[test]
    fn files_without_a_caption_arrive_with_empty_text() {
        let url = "https://acme.my.salesforce-scrt.com/iamessage/v1/files/0Mx1?token=s3cr3t-t0ken";
        assert_eq!(
            actions("message_attachments_no_caption"),
            [Delivery::Emit(Event::AgentMessage {
                id: "e-msg-5".into(),
                text: String::new(),
                agent: jane(),
                attachments: vec![
                    Attachment::url("returns-label.pdf", "application/pdf", url),
                    Attachment::url("photo.png", "application/octet-stream", "https://files.example/photo.png?sig=1"),
                ],
            })],
            "the entry without a URL is left out; a missing name and type are filled in"
        );
        let debug = format!("{:?}", actions("message_attachments_no_caption"));
        assert!(!debug.contains("s3cr3t-t0ken"), "Debug hides the URL's token: {debug}");
    }

    #[test]
    fn an_attachments_message_without_files_or_text_is_ignored() {
        let (_, mut data) = fixture("message_attachments");
        let payload = json!({ "abstractMessage": { "messageType": "StaticContentMessage",
            "staticContent": { "formatType": "Attachments", "text": null, "attachments": [{ "name": "x.pdf" }] } } });
        data["conversationEntry"]["entryPayload"] = Value::String(payload.to_string());
        let envelope = parse_envelope(&data.to_string()).unwrap();
        assert!(ignored(&interpret(&envelope.conversation_entry, Some("CONVERSATION_MESSAGE")).unwrap()));
    }

    #[test]
    fn the_envelope_names_the_conversation_so_others_can_be_ignored() {
        let (_, data) = fixture("message_other_conversation");
        let envelope = parse_envelope(&data.to_string()).unwrap();
        assert_ne!(envelope.conversation_id, CONVERSATION);
        let (_, data) = fixture("message_agent");
        assert_eq!(parse_envelope(&data.to_string()).unwrap().conversation_id, CONVERSATION);
    }

    #[test]
    fn participant_changes_are_joins_and_removals_of_agents_only() {
        assert_eq!(actions("participant_add"), [Delivery::Emit(Event::AgentJoined { agent: jane() })]);
        assert_eq!(actions("participant_remove"), [Delivery::AgentRemoved(jane())]);
        assert!(ignored(&actions("participant_chatbot_add")));
    }

    #[test]
    fn routing_results_report_the_estimated_wait_or_fail_the_handover() {
        assert_eq!(
            actions("routing_result"),
            [Delivery::Emit(Event::Queued { position: None, estimated_wait: Some(Duration::from_secs(240)) })]
        );
        assert_eq!(
            actions("routing_result_no_estimate"),
            [Delivery::Emit(Event::Queued { position: None, estimated_wait: None })],
            "-1 means no estimate"
        );
        assert_eq!(actions("routing_failed"), [Delivery::RoutingFailed("No agents available: Queue is closed".into())]);
        assert_eq!(
            actions("routing_transfer"),
            [Delivery::Emit(Event::Queued { position: None, estimated_wait: Some(Duration::from_secs(30)) })]
        );
        assert!(ignored(&actions("routing_work_result")));
    }

    #[test]
    fn session_status_changes_end_or_queue_the_handover() {
        assert_eq!(
            actions("session_waiting"),
            [Delivery::Emit(Event::Queued { position: None, estimated_wait: None })]
        );
        assert!(ignored(&actions("session_active")));
        assert!(ignored(&actions("session_inactive")), "inactive is not an end");
        assert_eq!(actions("session_ended"), [Delivery::SessionEnded]);
        assert_eq!(actions("close_conversation"), [Delivery::Closed]);
    }

    #[test]
    fn agent_typing_is_relayed() {
        assert_eq!(actions("typing_started"), [Delivery::Emit(Event::AgentTyping { on: true })]);
        assert_eq!(actions("typing_stopped"), [Delivery::Emit(Event::AgentTyping { on: false })]);
    }

    #[test]
    fn receipts_progress_client_actions_and_unknown_events_are_ignored() {
        for name in [
            "delivery_acknowledgement",
            "read_acknowledgement",
            "progress_indicator",
            "client_action",
            "unknown_future_event",
        ] {
            assert!(ignored(&actions(name)), "{name}");
        }
    }

    #[test]
    fn queue_positions_are_read_leniently_because_the_payload_is_undocumented() {
        assert_eq!(
            actions("queue_position"),
            [Delivery::Emit(Event::Queued { position: Some(4), estimated_wait: None })]
        );
        assert!(ignored(&actions("queue_position_unknown_shape")));
    }

    #[test]
    fn entries_list_payloads_are_objects_or_strings() {
        let path = format!("{}/tests/fixtures/entries_page.json", env!("CARGO_MANIFEST_DIR"));
        let page: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let entries: Vec<WireEntry> = serde_json::from_value(page["conversationEntries"].clone()).unwrap();
        let all: Vec<Delivery> = entries.iter().flat_map(|e| interpret(e, None).unwrap()).collect();
        assert_eq!(all.len(), 2);
        assert!(matches!(&all[0], Delivery::Emit(Event::AgentMessage { text, .. }) if text == "back-filled"));
        assert_eq!(all[1], Delivery::SessionEnded);
    }

    #[test]
    fn malformed_payloads_are_typed_errors_not_panics() {
        let (_, mut data) = fixture("message_agent");
        data["conversationEntry"]["entryPayload"] = Value::String("{not json".into());
        let envelope = parse_envelope(&data.to_string()).unwrap();
        let error = interpret(&envelope.conversation_entry, Some("CONVERSATION_MESSAGE")).unwrap_err();
        assert_eq!(error.kind(), handover_core::ErrorKind::Protocol);
        assert!(error.to_string().contains("e-msg-1"), "{error}");
        assert!(parse_envelope("[]").is_err());
        assert!(parse_envelope("0").is_err());
    }
}
