//! Every inbound decode (`protocols/salesforce-chat.md` §7): the `Messages` envelope of a
//! poll, and what each of its messages means for the session, one [`Delivery`].
//! Crate-private: the session is its only reader.

use std::fmt;
use std::time::Duration;

use handover_core::{Agent, Error, Event, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::NAME;

/// A `200` body of `GET /chat/rest/System/Messages`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Batch {
    /// The messages, to process in order.
    #[serde(default)]
    pub(crate) messages: Vec<Message>,
    /// The next `ack`.
    pub(crate) sequence: i64,
    /// The offset for `ReconnectSession` (when the batch is not empty).
    #[serde(default)]
    pub(crate) offset: Option<i64>,
}

/// One message of a batch. Its `Debug` shows the type and the field names only: a
/// `FileTransfer` carries an upload URL and a file token.
#[derive(Clone, Deserialize)]
pub(crate) struct Message {
    /// The type name.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    /// Type-specific fields.
    #[serde(default)]
    pub(crate) message: Value,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<&str> =
            self.message.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
        f.debug_struct("Message").field("kind", &self.kind).field("fields", &fields).finish()
    }
}

/// What a message means for the session.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Delivery {
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
    /// The agent asked the visitor for a file, or such a request changed (`FileTransfer`,
    /// its `type`: `Requested`, `Canceled`, `Success`, `Failure`, else `other`). The visitor
    /// side of this connector uploads no files (salesforce-chat.md §7): logged, nothing
    /// emitted.
    FileTransfer(&'static str),
    /// Nothing to do.
    Ignore,
}

/// Parses a `200` body.
pub(crate) fn parse_batch(body: &[u8]) -> Result<Batch> {
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
    pub(crate) fn interpret(&self, id: impl FnOnce() -> String) -> Delivery {
        let m = &self.message;
        match self.kind.as_str() {
            "ChatRequestSuccess" => Delivery::Emit(Event::Queued {
                position: position(&m["queuePosition"]),
                estimated_wait: seconds(&m["estimatedWaitTime"]),
            }),
            "QueueUpdate" => Delivery::Emit(Event::Queued {
                position: position(&m["position"]),
                estimated_wait: seconds(&m["estimatedWaitTime"]),
            }),
            "ChatEstablished" => Delivery::Established(agent(m)),
            "ChatTransferred" => Delivery::Transferred(agent(m)),
            "ChatRequestFail" => Delivery::Failed(m["reason"].as_str().unwrap_or("unknown reason").to_owned()),
            "ChatMessage" => match m["text"].as_str() {
                Some(text) if !text.is_empty() => Delivery::Emit(Event::AgentMessage {
                    id: id(),
                    text: text.to_owned(),
                    agent: agent(m),
                    attachments: Vec::new(),
                }),
                _ => Delivery::Ignore,
            },
            "AgentTyping" => Delivery::Emit(Event::AgentTyping { on: true }),
            "AgentNotTyping" => Delivery::Emit(Event::AgentTyping { on: false }),
            // §7: the agent lost the connection; the chat stays active for another agent.
            "AgentDisconnect" => Delivery::Emit(Event::AgentLeft { agent: Agent::unknown(), transfer: true }),
            "ChatEnded" => Delivery::Ended,
            "ChasitorSessionData" => Delivery::SessionData,
            "FileTransfer" => Delivery::FileTransfer(match m["type"].as_str() {
                Some("Requested") => "Requested",
                Some("Canceled") => "Canceled",
                Some("Success") => "Success",
                Some("Failure") => "Failure",
                _ => "other",
            }),
            _ => Delivery::Ignore,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every message type of §7, read from `tests/fixtures`.

    use super::*;

    fn actions(name: &str) -> (i64, Option<i64>, Vec<Delivery>) {
        let body =
            std::fs::read(format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"))).expect("fixture");
        let batch = parse_batch(&body).expect("the batch parses");
        let actions = batch.messages.iter().enumerate().map(|(i, m)| m.interpret(|| format!("id-{i}"))).collect();
        (batch.sequence, batch.offset, actions)
    }

    fn ann() -> Agent {
        Agent::named("Ann Agent").with_id("005000000000001")
    }

    #[test]
    fn queue_messages_carry_position_and_wait() {
        let (sequence, offset, success) = actions("chat_request_success");
        assert_eq!((sequence, offset), (1, Some(1000)));
        assert_eq!(
            success,
            [Delivery::Emit(Event::Queued { position: Some(3), estimated_wait: Some(Duration::from_secs(240)) })]
        );
        assert_eq!(
            actions("chat_request_success_no_estimate").2,
            [Delivery::Emit(Event::Queued { position: Some(1), estimated_wait: None })],
            "-1 means no estimate"
        );
        assert_eq!(
            actions("queue_update").2,
            [Delivery::Emit(Event::Queued { position: Some(2), estimated_wait: Some(Duration::from_secs(120)) })]
        );
    }

    #[test]
    fn establishment_messages_and_typing() {
        assert_eq!(actions("chat_established").2, [Delivery::Established(ann())]);
        assert_eq!(
            actions("chat_message").2,
            [Delivery::Emit(Event::AgentMessage {
                id: "id-0".into(),
                text: "Hi, how can I help?".into(),
                agent: ann(),
                attachments: Vec::new(),
            })]
        );
        assert_eq!(
            actions("typing").2,
            [Delivery::Emit(Event::AgentTyping { on: true }), Delivery::Emit(Event::AgentTyping { on: false })]
        );
    }

    #[test]
    fn a_disconnect_or_transfer_is_not_an_end() {
        assert_eq!(
            actions("agent_disconnect").2,
            [Delivery::Emit(Event::AgentLeft { agent: Agent::unknown(), transfer: true })]
        );
        assert_eq!(
            actions("chat_transferred").2,
            [Delivery::Transferred(Agent::named("Bob Agent").with_id("005000000000002"))]
        );
    }

    #[test]
    fn a_batch_with_the_last_message_and_the_end_keeps_their_order() {
        let (_, _, batch) = actions("message_then_ended");
        assert!(matches!(&batch[0], Delivery::Emit(Event::AgentMessage { text, .. }) if text == "Goodbye!"));
        assert_eq!(batch[1], Delivery::Ended);
    }

    #[test]
    fn failures_session_data_and_unknown_types() {
        assert_eq!(actions("chat_request_fail").2, [Delivery::Failed("Unavailable".into())]);
        assert_eq!(actions("session_data").2, [Delivery::SessionData]);
        assert_eq!(
            actions("unknown_and_ignored").2,
            [Delivery::Ignore, Delivery::Ignore, Delivery::Ignore, Delivery::Ignore]
        );
    }

    #[test]
    fn file_transfer_requests_are_read_and_carry_nothing_to_emit() {
        // The agent's "Attach File" in the console: the visitor may then upload one file to
        // `uploadServletUrl` with the `fileToken`; this connector does not.
        assert_eq!(
            actions("file_transfer").2,
            [
                Delivery::FileTransfer("Requested"),
                Delivery::FileTransfer("Canceled"),
                Delivery::FileTransfer("Success"),
                Delivery::FileTransfer("Failure"),
                Delivery::FileTransfer("other"),
            ]
        );
    }

    #[test]
    fn debug_output_of_a_file_transfer_hides_its_url_and_token() {
        let body = std::fs::read(format!("{}/tests/fixtures/file_transfer.json", env!("CARGO_MANIFEST_DIR")))
            .expect("fixture");
        let batch = parse_batch(&body).unwrap();
        let debug = format!("{batch:?}");
        assert!(!debug.contains("ft-token-4f1c") && !debug.contains("/rest/File/Upload"), "{debug}");
        assert!(debug.contains("FileTransfer") && debug.contains("fileToken"), "{debug}");
    }

    #[test]
    fn malformed_batches_are_typed_errors() {
        assert!(parse_batch(b"").is_err());
        assert!(parse_batch(b"{\"messages\":[]}").is_err(), "no sequence");
        assert!(parse_batch(b"OK").is_err());
    }
}
