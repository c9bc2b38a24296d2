//! What goes into and comes out of the node runtime.

use serde::{Deserialize, Serialize};

use crate::HandoverStatus;

/// Bot-side input while the handover runs (the `--json` stdin lines of `handover chat`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum NodeInput {
    /// The user wrote a message.
    Message {
        /// The text.
        text: String,
        /// The bot's id of this input, unique within the handover. Providers derive their
        /// client message ids from it, so a message resent with the same id (after a restart
        /// or a retried call) is not delivered twice. The runtime makes one when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// The user sent a file. Exactly one of `url`, `path` or `data` says where it is:
    ///
    /// - `url`: a URL the contact center fetches (providers that take links), or, with
    ///   `"fetch": true`, one this process fetches (https only; plain http only from
    ///   loopback) and uploads, for providers that take uploads only;
    /// - `path`: a local file this process reads and uploads (`handover chat` only; the
    ///   service refuses paths);
    /// - `data`: the bytes, standard base64.
    ///
    /// ```json
    /// {"type":"attachment","path":"invoice.pdf","media_type":"application/pdf","id":"f-1"}
    /// ```
    Attachment {
        /// The file name shown to the agent (default: the last segment of `path`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The media type (default: guessed from the name's extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_type: Option<String>,
        /// A URL to the file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// A local file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<std::path::PathBuf>,
        /// The bytes, standard base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<String>,
        /// Text sent with the file, where the provider carries it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        /// Fetch `url` here and upload the bytes.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fetch: bool,
        /// The bot's id of this input (a repeat with the same id is sent once); made when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// The NLU recognized an intent in the user's input.
    Intent {
        /// The intent name.
        name: String,
    },
    /// The user pressed a quick-reply button.
    Button {
        /// The button's text.
        text: String,
    },
    /// The user came back (returned to the tab).
    Connected,
    /// The user left (closed the tab).
    Disconnected,
}

/// A flow event the node emits when enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowEvent {
    /// The request entered the queue.
    Queue,
    /// The agent sent the first message.
    Active,
    /// The agent resolved the handover.
    Resolve,
}

/// What the node produces for the bot side.
///
/// `Say`, `AgentMessage`, `QueueUpdate`, `Event` and `Status` are the documented output
/// lines of `handover chat --json`; the `Agent*` and `Connection` variants are extra
/// information that human-facing front ends may show.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeOutput {
    /// Show text to the user (the accepted message, the alternative text).
    Say {
        /// The text.
        text: String,
        /// Quick replies to offer (the cancel button).
        quick_replies: Vec<String>,
    },
    /// A message from the agent, with the files it carries (URLs to fetch, often
    /// pre-signed: pass them on, do not log them).
    AgentMessage {
        /// The text (may be empty when the message is only files).
        text: String,
        /// The agent's display name, if known.
        agent: Option<String>,
        /// Files sent with the message; absent when none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<handover_core::Attachment>,
    },
    /// The queue position or estimated wait changed. Either may be absent.
    QueueUpdate {
        /// Position in the queue.
        #[serde(skip_serializing_if = "Option::is_none")]
        position: Option<u32>,
        /// Estimated wait in milliseconds.
        #[serde(skip_serializing_if = "Option::is_none")]
        estimated_wait_time_ms: Option<u64>,
    },
    /// A flow event (only those enabled in the node config).
    Event {
        /// Which event.
        name: FlowEvent,
        /// Queue position (queue event).
        #[serde(skip_serializing_if = "Option::is_none")]
        position: Option<u32>,
        /// Estimated wait in milliseconds (queue event).
        #[serde(skip_serializing_if = "Option::is_none")]
        estimated_wait_time_ms: Option<u64>,
        /// Where the flow continues (resolve event).
        #[serde(skip_serializing_if = "Option::is_none")]
        continuation: Option<String>,
    },
    /// An agent was assigned.
    AgentJoined {
        /// The agent's display name.
        agent: String,
    },
    /// An agent left; `transfer` means the handover goes on with another agent.
    AgentLeft {
        /// The agent's display name.
        agent: String,
        /// Whether this is a transfer.
        transfer: bool,
    },
    /// The agent started or stopped typing.
    AgentTyping {
        /// Typing or not.
        typing: bool,
    },
    /// The connection to the contact center dropped (`reconnecting`) or came back (`resumed`).
    Connection {
        /// `reconnecting` or `resumed`.
        state: String,
    },
    /// An input was not delivered to the agent: too long for the provider, not supported
    /// by it, or refused by the contact center. The handover goes on.
    InputRejected {
        /// What was wrong, for the person reading it.
        reason: String,
        /// The rejected input's id, when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// The final status. Always the last output.
    Status {
        /// The status, serialized as the flow sees it.
        #[serde(flatten)]
        status: HandoverStatus,
    },
}

impl NodeOutput {
    /// Whether this is one of the documented `--json` line types.
    pub fn is_flow_output(&self) -> bool {
        matches!(
            self,
            NodeOutput::Say { .. }
                | NodeOutput::AgentMessage { .. }
                | NodeOutput::QueueUpdate { .. }
                | NodeOutput::Event { .. }
                | NodeOutput::InputRejected { .. }
                | NodeOutput::Status { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ErrorReason;

    #[test]
    fn outputs_serialize_as_the_documented_json_lines() {
        let cases = [
            (
                NodeOutput::Say { text: "Connecting you to an agent.".into(), quick_replies: vec!["Cancel".into()] },
                r#"{"type":"say","text":"Connecting you to an agent.","quick_replies":["Cancel"]}"#,
            ),
            (
                NodeOutput::AgentMessage { text: "Hi".into(), agent: Some("Ann".into()), attachments: Vec::new() },
                r#"{"type":"agent_message","text":"Hi","agent":"Ann"}"#,
            ),
            (
                NodeOutput::QueueUpdate { position: Some(3), estimated_wait_time_ms: Some(300_000) },
                r#"{"type":"queue_update","position":3,"estimated_wait_time_ms":300000}"#,
            ),
            (
                NodeOutput::QueueUpdate { position: None, estimated_wait_time_ms: Some(1000) },
                r#"{"type":"queue_update","estimated_wait_time_ms":1000}"#,
            ),
            (
                NodeOutput::Event {
                    name: FlowEvent::Active,
                    position: None,
                    estimated_wait_time_ms: None,
                    continuation: None,
                },
                r#"{"type":"event","name":"active"}"#,
            ),
            (NodeOutput::Status { status: HandoverStatus::Completed }, r#"{"type":"status","status":"completed"}"#),
            (
                NodeOutput::Status {
                    status: HandoverStatus::Error { reason: ErrorReason::Error, message: "down".into() },
                },
                r#"{"type":"status","status":"error","error":{"reason":"error","message":"down"}}"#,
            ),
        ];
        for (output, line) in cases {
            assert_eq!(serde_json::to_string(&output).unwrap(), line);
        }
    }

    #[test]
    fn inputs_read_the_documented_json_lines() {
        let cases = [
            (json!({"type":"message","text":"hi"}), NodeInput::Message { text: "hi".into(), id: None }),
            (
                json!({"type":"message","text":"hi","id":"m-1"}),
                NodeInput::Message { text: "hi".into(), id: Some("m-1".into()) },
            ),
            (json!({"type":"intent","name":"cancel_handover"}), NodeInput::Intent { name: "cancel_handover".into() }),
            (json!({"type":"button","text":"Cancel"}), NodeInput::Button { text: "Cancel".into() }),
            (json!({"type":"connected"}), NodeInput::Connected),
            (json!({"type":"disconnected"}), NodeInput::Disconnected),
        ];
        for (json, input) in cases {
            assert_eq!(serde_json::from_value::<NodeInput>(json).unwrap(), input);
        }
        assert!(serde_json::from_value::<NodeInput>(json!({"type":"dance"})).is_err());
        assert!(serde_json::from_value::<NodeInput>(json!({"type":"message","txt":"x"})).is_err());
    }
}
