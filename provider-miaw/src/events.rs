//! MIAW conversation entries (SSE envelopes and the entries list) → core events
//! (`protocols/salesforce-miaw.md` §6).

use std::time::Duration;

use handover_core::{Agent, Error, Event, Result};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::NAME;

/// The `data` of an SSE event (§6, "Event data envelope").
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The conversation the entry belongs to (a token's stream carries all of its subject's).
    pub conversation_id: String,
    /// The entry.
    pub conversation_entry: WireEntry,
}

/// One conversation entry, as SSE carries it (payload a JSON string) or as the entries
/// list returns it (payload an object, or sometimes a string).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireEntry {
    /// The entry id, used to deduplicate.
    pub identifier: String,
    /// `Message`, `ParticipantChanged`, `RoutingResult`, `SessionStatusChanged`, …
    pub entry_type: String,
    /// The payload: an object, or a string holding one.
    #[serde(default)]
    pub entry_payload: Value,
    /// Who sent it.
    #[serde(default)]
    pub sender: Option<Sender>,
    /// The sender's display name.
    #[serde(default)]
    pub sender_display_name: Option<String>,
    /// When the server recorded it (Unix ms).
    #[serde(default)]
    pub transcripted_timestamp: Option<u64>,
}

/// An entry's sender.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Sender {
    /// The sender's role.
    #[serde(default)]
    pub role: Role,
    /// The sender's subject (a stable id).
    #[serde(default)]
    pub subject: Option<String>,
}

/// Sender roles (§6.1); unknown ones are kept, never an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Role {
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

/// What the session does with an entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
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
    pub fn payload(&self) -> Result<Value> {
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
pub fn parse_envelope(data: &str) -> Result<Envelope> {
    serde_json::from_str(data)
        .map_err(|e| Error::protocol(NAME, "read event", format!("an event's data is not a conversation entry: {e}")))
}

/// What to do with `entry`. `event` is the SSE event name when the entry came over SSE.
pub fn interpret(entry: &WireEntry, event: Option<&str>) -> Result<Vec<Action>> {
    if event == Some("CONVERSATION_QUEUE_POSITION") || entry.entry_type == "QueuePosition" {
        return Ok(vec![queue_position(&entry.payload()?)]);
    }
    let actions = match entry.entry_type.as_str() {
        "Message" => vec![message(entry)?],
        "TypingStartedIndicator" | "TypingStoppedIndicator" => {
            if entry.role() == Role::EndUser {
                vec![Action::Ignore("own typing echo")]
            } else {
                vec![Action::Emit(Event::AgentTyping { on: entry.entry_type == "TypingStartedIndicator" })]
            }
        }
        "ParticipantChanged" => participants(&entry.payload()?),
        "RoutingResult" => vec![routing_result(&entry.payload()?)],
        "SessionStatusChanged" => {
            let payload = entry.payload()?;
            match payload["sessionStatus"].as_str() {
                Some("Ended") => vec![Action::SessionEnded],
                Some("Waiting") => vec![Action::Emit(Event::Queued { position: None, estimated_wait: None })],
                _ => vec![Action::Ignore("session status")],
            }
        }
        "CloseConversation" => vec![Action::Closed],
        "DeliveryAcknowledgement" | "ReadAcknowledgement" => vec![Action::Ignore("receipt")],
        _ => vec![Action::Ignore("entry type not used by the handover")],
    };
    Ok(actions)
}

fn message(entry: &WireEntry) -> Result<Action> {
    if entry.role() == Role::EndUser {
        return Ok(Action::Ignore("own message echo"));
    }
    let payload = entry.payload()?;
    let message = &payload["abstractMessage"];
    let content = &message["staticContent"];
    let text = match content["formatType"].as_str() {
        Some("Attachments") => {
            let urls: Vec<&str> =
                content["attachments"].as_array().into_iter().flatten().filter_map(|a| a["url"].as_str()).collect();
            let caption = content["text"].as_str().unwrap_or_default();
            let mut lines = vec![caption.to_owned()];
            lines.extend(urls.iter().map(|u| format!("[attachment] {u}")));
            lines.retain(|l| !l.is_empty());
            lines.join("\n")
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
    if text.trim().is_empty() {
        return Ok(Action::Ignore("message without text"));
    }
    Ok(Action::Emit(Event::AgentMessage { id: entry.identifier.clone(), text, agent: entry.agent() }))
}

fn participants(payload: &Value) -> Vec<Action> {
    let mut actions = Vec::new();
    for change in payload["entries"].as_array().into_iter().flatten() {
        let role = change["participant"]["role"].as_str().unwrap_or_default();
        if !matches!(role, "Agent" | "Supervisor") {
            actions.push(Action::Ignore("participant other than an agent"));
            continue;
        }
        let mut agent = Agent::unknown();
        agent.name = change["displayName"].as_str().filter(|n| !n.is_empty()).map(str::to_owned);
        agent.id = change["participant"]["subject"].as_str().map(str::to_owned);
        actions.push(match change["operation"].as_str() {
            Some("add") => Action::Emit(Event::AgentJoined { agent }),
            Some("remove") => Action::AgentRemoved(agent),
            _ => Action::Ignore("unknown participant operation"),
        });
    }
    if actions.is_empty() {
        actions.push(Action::Ignore("participant change without entries"));
    }
    actions
}

fn routing_result(payload: &Value) -> Action {
    let failure = payload["failureType"].as_str().unwrap_or("None");
    let routing_type = payload["routingType"].as_str().unwrap_or("Initial");
    if failure != "None" && routing_type != "Transfer" {
        let reason = payload["failureReason"].as_str().filter(|r| !r.is_empty()).unwrap_or(failure);
        let details: Vec<&str> =
            payload["errorMessages"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let message = if details.is_empty() { reason.to_owned() } else { format!("{reason}: {}", details.join("; ")) };
        return Action::RoutingFailed(message);
    }
    // §6.2: null or negative (-1 observed) means no estimate.
    let estimated_wait = payload["estimatedWaitTime"]["estimatedWaitTimeInSeconds"]
        .as_f64()
        .filter(|secs| *secs >= 0.0 && secs.is_finite())
        .map(Duration::from_secs_f64);
    Action::Emit(Event::Queued { position: None, estimated_wait })
}

/// The payload of `CONVERSATION_QUEUE_POSITION` is not documented (§6.2): take the first
/// positive integer under a position-like key, else ignore the event.
fn queue_position(payload: &Value) -> Action {
    for key in ["queuePosition", "position", "queuePositionNumber", "positionInQueue"] {
        if let Some(position) = payload[key].as_u64().filter(|p| *p > 0) {
            return Action::Emit(Event::Queued { position: u32::try_from(position).ok(), estimated_wait: None });
        }
    }
    tracing::debug!(payload = %payload, "queue position event without a recognised position field");
    Action::Ignore("queue position without a known field")
}
