//! What the agent side reports to the bot side.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Attachment;

/// A human agent, as far as the provider tells.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Agent {
    /// The provider's id of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The agent's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Agent {
    /// An agent with neither id nor name (the provider did not say).
    pub fn unknown() -> Self {
        Self::default()
    }

    /// An agent with a display name.
    pub fn named(name: impl Into<String>) -> Self {
        Self { id: None, name: Some(name.into()) }
    }

    /// Sets the id.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The name to show the user: the display name, else `"Agent"`.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("Agent")
    }
}

/// Who ended a handover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    /// The agent (resolved, closed, ended the session).
    Agent,
    /// The end user or the bot on the user's behalf.
    User,
    /// The contact center (routing failed, timeout, administrative close).
    System,
}

/// Something that happened on the agent side, in the order the provider reported it.
///
/// Events are past-tense facts. See [`EventStream`](crate::EventStream) for the ordering
/// and termination contract.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The request waits in a queue. Either field is `None` when the provider did not say.
    Queued {
        /// 1-based position in the queue.
        position: Option<u32>,
        /// Estimated wait before an agent picks the request up.
        estimated_wait: Option<Duration>,
    },
    /// An agent was assigned. This is not "active": the node runtime calls the handover
    /// active on the first agent message.
    AgentJoined {
        /// The agent.
        agent: Agent,
    },
    /// The agent wrote a message.
    AgentMessage {
        /// The provider's id of the message, used to deduplicate.
        id: String,
        /// The text.
        text: String,
        /// Who wrote it.
        agent: Agent,
        /// Files sent with the message, as URLs to fetch (often pre-signed: do not log
        /// them). Empty for a text-only message; `text` may be empty when there are files.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
    },
    /// The agent started (`on: true`) or stopped (`on: false`) typing.
    AgentTyping {
        /// Whether the agent is typing now.
        on: bool,
    },
    /// An agent left. With `transfer: true` the conversation moves to another agent or
    /// queue and the handover goes on.
    AgentLeft {
        /// The agent who left.
        agent: Agent,
        /// Whether this is a transfer rather than the end of the handover.
        transfer: bool,
    },
    /// The connection to the provider dropped; the session is reconnecting.
    Reconnecting,
    /// The connection is back. `gap: true` means events may have been missed and could not
    /// be back-filled.
    Resumed {
        /// Whether events may have been lost during the drop.
        gap: bool,
    },
    /// The handover ended. This is the last event of a stream.
    Ended {
        /// Who ended it.
        by: EndedBy,
        /// The provider's reason, if any.
        reason: Option<String>,
    },
}

impl Event {
    /// A short name of the event kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Queued { .. } => "queued",
            Event::AgentJoined { .. } => "agent_joined",
            Event::AgentMessage { .. } => "agent_message",
            Event::AgentTyping { .. } => "agent_typing",
            Event::AgentLeft { .. } => "agent_left",
            Event::Reconnecting => "reconnecting",
            Event::Resumed { .. } => "resumed",
            Event::Ended { .. } => "ended",
        }
    }

    /// Whether this event ends the stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Ended { .. })
    }
}
