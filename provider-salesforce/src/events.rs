//! The `Messages` envelope and its message types (`protocols/salesforce-chat.md` §7).

use std::time::Duration;

use handover_core::{Agent, Error, Event, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::NAME;

/// A `200` body of `GET /chat/rest/System/Messages`.
#[derive(Clone, Debug, Deserialize)]
pub struct Batch {
    /// The messages, to process in order.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// The next `ack`.
    pub sequence: i64,
    /// The offset for `ReconnectSession` (when the batch is not empty).
    #[serde(default)]
    pub offset: Option<i64>,
}

/// One message of a batch.
#[derive(Clone, Debug, Deserialize)]
pub struct Message {
    /// The type name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Type-specific fields.
    #[serde(default)]
    pub message: Value,
}

/// What a message means for the session.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Deliver this event.
    Emit(Event),
    /// An agent accepted the chat: messages may be sent from now on.
    Established(Agent),
    /// The chat moved to another agent.
    Transferred(Agent),
    /// The chat request failed (no agent, internal failure).
    Failed(String),
    /// The chat ended.
    Ended,
    /// The state after a reconnect: queued messages may be sent again.
    SessionData,
    /// Nothing to do.
    Ignore,
}

/// Parses a `200` body.
pub fn parse_batch(body: &[u8]) -> Result<Batch> {
    serde_json::from_slice(body)
        .map_err(|e| Error::protocol(NAME, "poll messages", format!("the batch is not a Messages envelope: {e}")))
}

fn seconds(value: &Value) -> Option<Duration> {
    // §7.1: 0 if overdue, -1 if it cannot be computed.
    value.as_f64().filter(|s| *s >= 0.0 && s.is_finite()).map(Duration::from_secs_f64)
}

fn position(value: &Value) -> Option<u32> {
    value.as_u64().and_then(|p| u32::try_from(p).ok())
}

fn agent(message: &Value) -> Agent {
    let mut agent = Agent::unknown();
    agent.name = message["name"].as_str().filter(|n| !n.is_empty()).map(str::to_owned);
    agent.id = message["userId"].as_str().or_else(|| message["agentId"].as_str()).map(str::to_owned);
    agent
}

impl Message {
    /// What the message means. `id` identifies an agent message (the API gives none).
    pub fn interpret(&self, id: impl FnOnce() -> String) -> Action {
        let m = &self.message;
        match self.kind.as_str() {
            "ChatRequestSuccess" => Action::Emit(Event::Queued {
                position: position(&m["queuePosition"]),
                estimated_wait: seconds(&m["estimatedWaitTime"]),
            }),
            "QueueUpdate" => Action::Emit(Event::Queued {
                position: position(&m["position"]),
                estimated_wait: seconds(&m["estimatedWaitTime"]),
            }),
            "ChatEstablished" => Action::Established(agent(m)),
            "ChatTransferred" => Action::Transferred(agent(m)),
            "ChatRequestFail" => Action::Failed(m["reason"].as_str().unwrap_or("unknown reason").to_owned()),
            "ChatMessage" => match m["text"].as_str() {
                Some(text) if !text.is_empty() => {
                    Action::Emit(Event::AgentMessage { id: id(), text: text.to_owned(), agent: agent(m) })
                }
                _ => Action::Ignore,
            },
            "AgentTyping" => Action::Emit(Event::AgentTyping { on: true }),
            "AgentNotTyping" => Action::Emit(Event::AgentTyping { on: false }),
            // §7: the agent lost the connection; the chat stays active for another agent.
            "AgentDisconnect" => Action::Emit(Event::AgentLeft { agent: Agent::unknown(), transfer: true }),
            "ChatEnded" => Action::Ended,
            "ChasitorSessionData" => Action::SessionData,
            _ => Action::Ignore,
        }
    }
}
