//! The API's request and response bodies, as the OpenAPI document describes them.

use std::collections::BTreeMap;

use handover::config::NodeKeys;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/handovers`: hand a conversation over. Only `provider` is required.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "provider": "miaw",
    "session_id": "session-42",
    "user": { "id": "user-42", "name": "Jane Doe", "email": "jane@example.com", "language": "en" },
    "transcript": [{ "from": "user", "text": "I was charged twice" }, { "from": "bot", "text": "Let me get a human." }],
    "routing": { "skills": ["billing"], "priority": 2, "attributes": { "plan": "pro" } },
    "node": { "accepted_message": "Connecting you to an agent." }
}))]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateHandover {
    /// The provider configuration to hand over to (a `[providers.<name>]` of the config).
    pub(crate) provider: String,
    /// The bot's session id (default: the handover's id).
    #[serde(default)]
    pub(crate) session_id: Option<String>,
    /// The end user (default: a user whose id is the session id).
    #[serde(default)]
    pub(crate) user: Option<User>,
    /// The conversation so far, oldest first.
    #[serde(default)]
    pub(crate) transcript: Vec<TranscriptLine>,
    /// Routing hints.
    #[serde(default)]
    pub(crate) routing: Option<RoutingBody>,
    /// Overrides of the `[node]` table's keys for this handover.
    #[serde(default)]
    pub(crate) node: Option<NodeKeys>,
    /// Where to POST every event, signed (Standard Webhooks).
    #[serde(default)]
    pub(crate) callback: Option<CallbackBody>,
}

/// The end user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct User {
    /// The user's id at the bot (default: the session id).
    #[serde(default)]
    pub(crate) id: Option<String>,
    /// Display name.
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Email address.
    #[serde(default)]
    pub(crate) email: Option<String>,
    /// Phone number.
    #[serde(default)]
    pub(crate) phone: Option<String>,
    /// Language (BCP 47, e.g. `en-US`).
    #[serde(default)]
    pub(crate) language: Option<String>,
}

/// Who said a line of the transcript.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Speaker {
    /// The end user.
    User,
    /// The bot.
    Bot,
    /// An agent.
    Agent,
}

/// One line of the transcript.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TranscriptLine {
    /// Who said it.
    pub(crate) from: Speaker,
    /// What was said.
    pub(crate) text: String,
    /// When, in Unix milliseconds.
    #[serde(default)]
    pub(crate) at: Option<u64>,
}

/// A priority: a number or a name, as the contact center takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum PriorityBody {
    /// A level.
    Level(i64),
    /// A name.
    Named(String),
}

/// Routing hints; each provider uses those it can (see its README).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoutingBody {
    /// Skills the agent needs.
    #[serde(default)]
    pub(crate) skills: Vec<String>,
    /// Languages the agent speaks.
    #[serde(default)]
    pub(crate) languages: Vec<String>,
    /// Priority.
    #[serde(default)]
    pub(crate) priority: Option<PriorityBody>,
    /// Custom attributes passed to the contact center.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub(crate) attributes: serde_json::Map<String, Value>,
}

/// A callback endpoint.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallbackBody {
    /// An `https://` URL (`http://` on loopback, or anywhere with `allow_insecure_http`).
    pub(crate) url: String,
    /// `whsec_` + base64 of 24 to 64 random bytes: the HMAC key of the signatures.
    pub(crate) secret: String,
}

impl std::fmt::Debug for CallbackBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackBody").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Where a handover is.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StateBody {
    /// Until the contact center accepted the request.
    Starting,
    /// Until the first agent message.
    Queued,
    /// Until the end.
    Active,
    /// The status event is in the log.
    Ended,
}

impl From<handover_store::HandoverState> for StateBody {
    fn from(state: handover_store::HandoverState) -> Self {
        match state {
            handover_store::HandoverState::Starting => StateBody::Starting,
            handover_store::HandoverState::Queued => StateBody::Queued,
            handover_store::HandoverState::Active => StateBody::Active,
            handover_store::HandoverState::Ended => StateBody::Ended,
        }
    }
}

/// `201` (and `200` for a repeated `Idempotency-Key`): the handover.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Created {
    /// The handover's id.
    pub(crate) id: String,
    /// `starting`.
    pub(crate) state: StateBody,
    /// Where its events are read (SSE or long-poll).
    pub(crate) events_url: String,
}

/// The final status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusSchema {
    /// `completed`, `cancelled` or `error`.
    #[schema(pattern = "^(completed|cancelled|error)$")]
    pub(crate) status: String,
    /// With `error`: why.
    #[schema(nullable = false)]
    pub(crate) error: Option<StatusError>,
}

/// Why a handover ended in `error`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusError {
    /// `unsupported` or `error`.
    pub(crate) reason: String,
    /// What happened.
    pub(crate) message: String,
}

/// A callback's progress.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CallbackStatus {
    /// The last `seq` the endpoint acknowledged (2xx).
    pub(crate) acked_seq: u64,
    /// The endpoint kept failing for the whole retry window: no more POSTs.
    pub(crate) failed: bool,
    /// Consecutive failed attempts so far.
    pub(crate) attempts: u64,
    /// The last failure, if the endpoint is failing.
    pub(crate) last_error: Option<String>,
}

/// `GET /v1/handovers/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HandoverBody {
    /// The handover's id.
    pub(crate) id: String,
    /// The provider configuration.
    pub(crate) provider: String,
    /// Where it is.
    pub(crate) state: StateBody,
    /// The `seq` of the newest event (0: none yet).
    pub(crate) last_seq: u64,
    /// Inputs kept but not sent to the contact center yet (they go in order).
    pub(crate) pending_inputs: u64,
    /// The final status once ended, else null.
    #[schema(value_type = Option<StatusSchema>)]
    pub(crate) status: Option<Value>,
    /// The callback's progress, when the handover has one.
    pub(crate) callback: Option<CallbackStatus>,
    /// The instance holding the handover's lease (null when none holds it).
    pub(crate) owner: Option<String>,
    /// The lease's epoch: it grows by one at each takeover.
    pub(crate) epoch: u64,
}

/// `GET /v1/handovers`: the newest handovers first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HandoverList {
    /// At most `limit` handovers, newest first.
    pub(crate) handovers: Vec<HandoverBody>,
}

/// `GET /v1/handovers` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only handovers in this state: `starting`, `queued`, `active` or `ended`.
    #[serde(default)]
    pub(crate) state: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[serde(default)]
    pub(crate) limit: Option<u32>,
}

/// `POST /v1/handovers/{id}/inputs`: one input of the CLI protocol, or typing.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({ "type": "message", "text": "Hello", "id": "m-1" }))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum InputBody {
    /// A user message for the agent; with `id`, it is accepted once.
    Message {
        /// The text.
        text: String,
        /// The bot's id of the message (repeats are sent once).
        #[serde(default)]
        id: Option<String>,
    },
    /// A file from the user, with exactly one of `url` (the contact center fetches it; with
    /// `"fetch": true` the service fetches it, https only, and uploads it) or `data` (the
    /// bytes, standard base64). Local paths are not accepted. With `id`, it is accepted once.
    /// A provider that cannot carry it answers with an `input_rejected` event.
    #[schema(example = json!({ "type": "attachment", "name": "invoice.pdf", "media_type": "application/pdf", "data": "JVBERi0xLjQK", "id": "f-1" }))]
    Attachment {
        /// The file name shown to the agent.
        name: String,
        /// The media type (default: guessed from the name's extension).
        #[serde(default)]
        media_type: Option<String>,
        /// A URL to the file.
        #[serde(default)]
        url: Option<String>,
        /// The bytes, standard base64.
        #[serde(default)]
        data: Option<String>,
        /// Text sent with the file, where the provider carries it.
        #[serde(default)]
        caption: Option<String>,
        /// Fetch `url` here and upload the bytes (for providers that take uploads only).
        #[serde(default)]
        fetch: bool,
        /// The bot's id of the file (repeats are sent once).
        #[serde(default)]
        id: Option<String>,
    },
    /// An intent (the cancel intent cancels while queued).
    Intent {
        /// Its name.
        name: String,
    },
    /// A quick reply (the cancel button cancels while queued).
    Button {
        /// Its text.
        text: String,
    },
    /// The user came back.
    Connected,
    /// The user left.
    Disconnected,
    /// The user is (not) typing.
    Typing {
        /// Whether the user is typing now.
        on: bool,
    },
}

/// `202`: the input is kept and goes to the agent in order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    /// The handover.
    pub(crate) handover_id: String,
    /// The input's id (the message's `id`, or one the service made).
    pub(crate) input_id: String,
    /// The same `id` was accepted before: nothing new is sent.
    pub(crate) duplicate: bool,
}

/// `202`: the close is kept; the status event follows in the log.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Closing {
    /// The handover.
    pub(crate) id: String,
    /// Where it is now (the close is applied by its owner).
    pub(crate) state: StateBody,
}

/// What an event is.
#[allow(dead_code)] // The document's schema: events are served as stored.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EventType {
    /// Something for the bot to say (`text`, `quick_replies`).
    Say,
    /// An agent's message (`text`, `agent`, and `attachments` when it carries files: each
    /// `{name, media_type, size?, url, caption?}`; URLs are often pre-signed and expire).
    AgentMessage,
    /// The queue moved (`position`, `estimated_wait_time_ms`).
    QueueUpdate,
    /// A flow event (`name`: queue, active or resolve).
    Event,
    /// An agent joined (`agent`).
    AgentJoined,
    /// An agent left (`agent`, `transfer`).
    AgentLeft,
    /// The agent is (not) typing (`typing`).
    AgentTyping,
    /// The contact center's connection dropped or came back (`state`).
    Connection,
    /// An input did not reach the agent (`reason`, `id`).
    InputRejected,
    /// The final status (`status`, `error`): always the last event.
    Status,
}

/// An event of a handover's log: a node output (as `handover chat` prints it) with the
/// handover's id and its `seq`. Fields beyond `type`, `handover_id` and `seq` depend on
/// the type.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventSchema {
    /// What it is.
    #[serde(rename = "type")]
    pub(crate) kind: EventType,
    /// The handover.
    pub(crate) handover_id: String,
    /// Its position in the log: 1, 2, 3, … with no gap.
    pub(crate) seq: u64,
    /// Everything else the event carries.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub(crate) fields: BTreeMap<String, Value>,
}

/// `GET /v1/handovers/{id}/events` without `Accept: text/event-stream`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventsPage {
    /// Events after `after`, oldest first, at most 100.
    #[schema(value_type = Vec<EventSchema>)]
    pub(crate) events: Vec<Value>,
    /// The `seq` of the last event returned, or `after` when none.
    pub(crate) last_seq: u64,
}

/// Every error.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    pub(crate) error: ErrorDetail,
}

/// An error's code and message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// A stable code: `malformed_json`, `invalid_request`, `unknown_provider`,
    /// `unauthorized`, `not_found`, `handover_ended`, `body_too_large`, `draining`,
    /// `store_unavailable`, `internal`.
    pub(crate) code: String,
    /// What is wrong, naming the field or key at fault, and what to do.
    pub(crate) message: String,
}

/// `/livez` and `/readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`, or why not.
    pub(crate) status: String,
    /// This instance's id.
    pub(crate) instance: String,
}
