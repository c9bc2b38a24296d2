//! What the store keeps, and what an owner commits.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a handover is, as the bot sees it (DESIGN.md §7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoverState {
    /// Until the provider accepted the request.
    Starting,
    /// Until the first agent message.
    Queued,
    /// Until the end.
    Active,
    /// The status event is in the log.
    Ended,
}

impl HandoverState {
    /// The column value (`starting`, `queued`, `active`, `ended`).
    pub fn as_str(self) -> &'static str {
        match self {
            HandoverState::Starting => "starting",
            HandoverState::Queued => "queued",
            HandoverState::Active => "active",
            HandoverState::Ended => "ended",
        }
    }

    /// Reads a column value.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "starting" => HandoverState::Starting,
            "queued" => HandoverState::Queued,
            "active" => HandoverState::Active,
            "ended" => HandoverState::Ended,
            _ => return None,
        })
    }
}

impl fmt::Display for HandoverState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A handover to create.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NewHandover {
    /// Its id.
    pub id: String,
    /// The provider configuration's name.
    pub provider: String,
    /// A repeat of the same key returns the first handover and creates nothing.
    pub idempotency_key: Option<String>,
    /// The request, node config and callback as the service took them (sealed at rest: it
    /// holds the callback secret).
    pub spec: Value,
    /// Whether a callback endpoint must get every event: the handover is then claimed after
    /// its end too, until the endpoint has taken the last event or the callback failed.
    pub callback: bool,
}

impl NewHandover {
    /// A handover `id` for `provider` with `spec`.
    pub fn new(id: impl Into<String>, provider: impl Into<String>, spec: Value) -> Self {
        Self { id: id.into(), provider: provider.into(), idempotency_key: None, spec, callback: false }
    }

    /// With a callback endpoint that must get every event.
    #[must_use]
    pub fn with_callback(mut self) -> Self {
        self.callback = true;
        self
    }

    /// With an idempotency key.
    #[must_use]
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// A handover as stored.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct HandoverRecord {
    /// Its id.
    pub id: String,
    /// The provider configuration's name.
    pub provider: String,
    /// The idempotency key it was created with.
    pub idempotency_key: Option<String>,
    /// The request, node config and callback.
    pub spec: Value,
    /// Where it is.
    pub state: HandoverState,
    /// The provider's session snapshot (JSON), once the session started.
    pub snapshot: Option<Vec<u8>>,
    /// The node runtime's own state.
    pub node_state: Option<Value>,
    /// The final status, once ended.
    pub status: Option<Value>,
    /// The lease holder, if any.
    pub owner: Option<String>,
    /// The fencing token of the current (or last) lease.
    pub epoch: u64,
    /// When the lease expires, on the store's clock (Unix ms).
    pub lease_until_ms: i64,
    /// The last seq of the event log (0: no event yet).
    pub last_seq: u64,
    /// The last seq the callback endpoint acknowledged.
    pub callback_seq: u64,
    /// The callback's delivery state (attempts, next try, failure).
    pub callback_state: Option<Value>,
    /// Whether a callback endpoint still must get every event (it has one and it has not
    /// failed for good).
    pub callback_pending: bool,
    /// Created, on the store's clock.
    pub created_at_ms: i64,
    /// Last written, on the store's clock.
    pub updated_at_ms: i64,
}

impl fmt::Debug for HandoverRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The spec holds the callback secret and the snapshot tokens: names only.
        f.debug_struct("HandoverRecord")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("state", &self.state)
            .field("owner", &self.owner)
            .field("epoch", &self.epoch)
            .field("last_seq", &self.last_seq)
            .field("snapshot", &self.snapshot.as_ref().map(|s| format!("[{} bytes]", s.len())))
            .finish_non_exhaustive()
    }
}

/// A lease on a handover: its holder may act on it, and every write it makes carries the
/// epoch, which commits only while the epoch is still the handover's.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The handover.
    pub handover_id: String,
    /// The holder (an instance id).
    pub owner: String,
    /// The fencing token: grows on every grant.
    pub epoch: u64,
    /// When the lease expires, on the store's clock (Unix ms).
    pub until_ms: i64,
}

/// What [`Store::create`](crate::Store::create) did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Created {
    /// The handover (the first one, for a repeated idempotency key).
    pub record: HandoverRecord,
    /// The lease granted to the creator (`None` for a repeat: nothing new to own).
    pub lease: Option<Lease>,
    /// Whether it existed already (a repeated idempotency key).
    pub existing: bool,
}

/// An event to append to a handover's log.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NewEvent {
    /// The provider's id of what the event relays (an agent message id): an event with an
    /// id the log holds already is not appended again.
    pub event_id: Option<String>,
    /// The event as the bot sees it.
    pub body: Value,
}

impl NewEvent {
    /// An event with no provider id (never deduplicated).
    pub fn new(body: Value) -> Self {
        Self { event_id: None, body }
    }

    /// An event deduplicated on `id`.
    pub fn with_id(id: impl Into<String>, body: Value) -> Self {
        Self { event_id: Some(id.into()), body }
    }
}

/// An event of a handover's log.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StoredEvent {
    /// Its position: 1, 2, 3, … with no gap.
    pub seq: u64,
    /// The provider's id, if any.
    pub event_id: Option<String>,
    /// The event.
    pub body: Value,
    /// Appended, on the store's clock.
    pub created_at_ms: i64,
}

impl StoredEvent {
    /// Event `seq` with `body` (what a reader of the log gets; for tests and caches).
    pub fn new(seq: u64, event_id: Option<String>, body: Value, created_at_ms: i64) -> Self {
        Self { seq, event_id, body, created_at_ms }
    }
}

/// A conversation key of a provider configuration, mapped to a handover.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ConversationKey {
    /// The provider configuration's name.
    pub provider: String,
    /// The key the provider routes deliveries by.
    pub key: String,
}

impl ConversationKey {
    /// Key `key` of configuration `provider`.
    pub fn new(provider: impl Into<String>, key: impl Into<String>) -> Self {
        Self { provider: provider.into(), key: key.into() }
    }
}

/// A verified webhook delivery to keep (any instance stores it; the owner applies it).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NewDelivery {
    /// The provider configuration's name.
    pub provider: String,
    /// The conversation it is for.
    pub conversation_key: String,
    /// Its id (what the provider's signature covers): a repeat is kept once.
    pub delivery_id: String,
    /// What the owner needs to apply it (sealed at rest).
    pub payload: Vec<u8>,
}

impl NewDelivery {
    /// A delivery.
    pub fn new(
        provider: impl Into<String>,
        conversation_key: impl Into<String>,
        delivery_id: impl Into<String>,
        payload: Vec<u8>,
    ) -> Self {
        Self {
            provider: provider.into(),
            conversation_key: conversation_key.into(),
            delivery_id: delivery_id.into(),
            payload,
        }
    }
}

/// A kept delivery not applied yet.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboxDelivery {
    /// The inbox row (to mark it applied in a [`Commit`]).
    pub id: i64,
    /// The provider configuration's name.
    pub provider: String,
    /// The conversation it is for.
    pub conversation_key: String,
    /// Its id.
    pub delivery_id: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// Kept, on the store's clock.
    pub received_at_ms: i64,
}

/// A bot input to keep for a handover's owner to send.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NewInput {
    /// The bot's id of the input: a repeat is kept once.
    pub input_id: String,
    /// The input.
    pub payload: Value,
}

impl NewInput {
    /// Input `input_id`.
    pub fn new(input_id: impl Into<String>, payload: Value) -> Self {
        Self { input_id: input_id.into(), payload }
    }
}

/// A kept input not sent yet.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OutboxInput {
    /// The bot's id of the input.
    pub input_id: String,
    /// Its arrival order within the handover.
    pub position: i64,
    /// The input.
    pub payload: Value,
}

/// Where the callback endpoint is.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CallbackUpdate {
    /// The last seq the endpoint acknowledged.
    pub acked_seq: u64,
    /// Its delivery state (attempts, next try, failure).
    pub state: Option<Value>,
    /// The callback failed for good: nobody claims the ended handover for it any more.
    pub failed: bool,
}

impl CallbackUpdate {
    /// Acknowledged through `seq`, with `state`.
    pub fn new(acked_seq: u64, state: Option<Value>) -> Self {
        Self { acked_seq, state, failed: false }
    }

    /// Given up at `seq` (retried for too long), with `state` saying why.
    pub fn failed(acked_seq: u64, state: Option<Value>) -> Self {
        Self { acked_seq, state, failed: true }
    }
}

/// What changed in the store: a hint for readers and owners (see
/// [`Store::changes`](crate::Store::changes)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// The handover it concerns.
    pub handover_id: String,
    /// What changed.
    pub kind: ChangeKind,
}

/// What a [`Change`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeKind {
    /// The owner committed: events appended, state or status changed.
    Committed,
    /// Work for the owner: a bot input or a webhook delivery was kept.
    Work,
    /// The lease was released: others may claim the handover now.
    Released,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Committed => "committed",
            ChangeKind::Work => "work",
            ChangeKind::Released => "released",
        }
    }
}

impl Change {
    /// A change of `kind` to handover `handover_id`.
    pub fn new(handover_id: impl Into<String>, kind: ChangeKind) -> Self {
        Self { handover_id: handover_id.into(), kind }
    }

    /// The notification payload (`<kind>:<handover id>`).
    pub(crate) fn to_payload(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.handover_id)
    }

    /// Reads a notification payload.
    pub(crate) fn from_payload(payload: &str) -> Option<Self> {
        let (kind, id) = payload.split_once(':')?;
        let kind = match kind {
            "committed" => ChangeKind::Committed,
            "work" => ChangeKind::Work,
            "released" => ChangeKind::Released,
            _ => return None,
        };
        Some(Self::new(id, kind))
    }
}

/// Everything an owner writes at once, fenced by its lease: it all commits, in one
/// transaction, while the lease's epoch is still the handover's, or nothing does.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Commit {
    /// Events to append, in order (one whose id the log holds is skipped).
    pub events: Vec<NewEvent>,
    /// Inbox rows applied.
    pub consumed: Vec<i64>,
    /// Outbox inputs sent.
    pub sent_inputs: Vec<String>,
    /// The provider's session snapshot.
    pub snapshot: Option<Vec<u8>>,
    /// The node runtime's own state.
    pub node_state: Option<Value>,
    /// The new state.
    pub state: Option<HandoverState>,
    /// The final status.
    pub status: Option<Value>,
    /// Conversation keys that now belong to this handover.
    pub conversation_keys: Vec<ConversationKey>,
    /// The callback's progress.
    pub callback: Option<CallbackUpdate>,
}

impl Commit {
    /// Nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `event`.
    #[must_use]
    pub fn event(mut self, event: NewEvent) -> Self {
        self.events.push(event);
        self
    }

    /// Marks inbox row `id` applied.
    #[must_use]
    pub fn consume(mut self, id: i64) -> Self {
        self.consumed.push(id);
        self
    }

    /// Marks outbox input `input_id` sent.
    #[must_use]
    pub fn sent(mut self, input_id: impl Into<String>) -> Self {
        self.sent_inputs.push(input_id.into());
        self
    }

    /// Saves the provider's snapshot.
    #[must_use]
    pub fn snapshot(mut self, snapshot: Vec<u8>) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// Saves the node runtime's state.
    #[must_use]
    pub fn node_state(mut self, state: Value) -> Self {
        self.node_state = Some(state);
        self
    }

    /// Moves the handover to `state`.
    #[must_use]
    pub fn state(mut self, state: HandoverState) -> Self {
        self.state = Some(state);
        self
    }

    /// Records the final status (and moves to `ended`).
    #[must_use]
    pub fn status(mut self, status: Value) -> Self {
        self.status = Some(status);
        self.state = Some(HandoverState::Ended);
        self
    }

    /// Maps a conversation key to this handover.
    #[must_use]
    pub fn conversation_key(mut self, key: ConversationKey) -> Self {
        self.conversation_keys.push(key);
        self
    }

    /// Records the callback's progress.
    #[must_use]
    pub fn callback(mut self, update: CallbackUpdate) -> Self {
        self.callback = Some(update);
        self
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.consumed.is_empty()
            && self.sent_inputs.is_empty()
            && self.snapshot.is_none()
            && self.node_state.is_none()
            && self.state.is_none()
            && self.status.is_none()
            && self.conversation_keys.is_empty()
            && self.callback.is_none()
    }
}

/// What a [`Commit`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Committed {
    /// The seq of each appended event (skipped repeats have none).
    pub appended: Vec<u64>,
    /// For each event of the commit, in order: its seq, or `None` when its id was in the
    /// log already and it was skipped.
    pub seqs: Vec<Option<u64>>,
    /// The log's last seq after the commit.
    pub last_seq: u64,
    /// When it was written, on the store's clock (the appended events' `created_at_ms`).
    pub at_ms: i64,
}
