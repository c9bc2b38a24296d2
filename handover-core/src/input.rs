//! What the bot side sends to the agent side.

use serde::{Deserialize, Serialize};

use crate::Attachment;

/// Input from the bot side (the end user) to the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum UserInput {
    /// A text message from the end user.
    Message {
        /// A client-side id, unique within the session; providers that accept a client id
        /// use it so a retried send is not delivered twice.
        id: String,
        /// The text.
        text: String,
    },
    /// A file from the end user. Refused before any I/O with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) when the provider carries no
    /// files, or not in this form (bytes or URL), and with
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) when it is larger than the
    /// provider's limit or of a media type the provider does not accept.
    Attachment {
        /// A client-side id, unique within the session (delivered once per id, like
        /// [`UserInput::Message`]).
        id: String,
        /// The file.
        attachment: Attachment,
    },
    /// The end user started (`on: true`) or stopped (`on: false`) typing.
    Typing {
        /// Whether the user is typing now.
        on: bool,
    },
    /// The end user came back (returned to the tab). Relayed as information, not a cancel.
    Connected,
    /// The end user left (closed the tab). Relayed as information, not a cancel.
    Disconnected,
}

impl UserInput {
    /// The text providers send for [`UserInput::Connected`] when their API carries it as a
    /// message (`protocols/handover-semantics.md` §2).
    pub const CONNECTED_TEXT: &'static str = "User joined the conversation";

    /// The text providers send for [`UserInput::Disconnected`].
    pub const DISCONNECTED_TEXT: &'static str = "User left the conversation";

    /// A text message with the given client-side id.
    pub fn message(id: impl Into<String>, text: impl Into<String>) -> Self {
        UserInput::Message { id: id.into(), text: text.into() }
    }

    /// A file with the given client-side id.
    pub fn attachment(id: impl Into<String>, attachment: Attachment) -> Self {
        UserInput::Attachment { id: id.into(), attachment }
    }

    /// The client-side id of a message or attachment (the inputs delivered once per id).
    pub fn id(&self) -> Option<&str> {
        match self {
            UserInput::Message { id, .. } | UserInput::Attachment { id, .. } => Some(id),
            _ => None,
        }
    }

    /// A short name of the input kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            UserInput::Message { .. } => "message",
            UserInput::Attachment { .. } => "attachment",
            UserInput::Typing { .. } => "typing",
            UserInput::Connected => "user connected",
            UserInput::Disconnected => "user disconnected",
        }
    }
}

/// Why the bot side ends a handover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndReason {
    /// The end user cancelled while waiting for an agent.
    Cancelled,
    /// The bot closed the handover (the flow's "Close Handover").
    Closed,
    /// The process is shutting down and will not resume this session.
    Shutdown,
}

impl EndReason {
    /// A short description for logs and provider "reason" fields.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Cancelled => "cancelled",
            EndReason::Closed => "closed",
            EndReason::Shutdown => "shutdown",
        }
    }
}
