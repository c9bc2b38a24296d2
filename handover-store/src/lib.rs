#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod crypto;
mod error;
mod lease;
mod sql;
pub mod suite;
mod types;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

pub use crate::crypto::Sealer;
pub use crate::error::{StoreError, StoreResult};
pub use crate::lease::LeaseHolder;
pub use crate::sql::SqlStore;
pub use crate::types::{
    CallbackUpdate, Change, ChangeKind, Commit, Committed, ConversationKey, Created, HandoverRecord, HandoverState,
    InboxDelivery, Lease, NewDelivery, NewEvent, NewHandover, NewInput, OutboxInput, StoredEvent,
};

/// Durable handovers for many instances: the handovers, their event logs, the inbox of
/// verified webhook deliveries, the outbox of bot inputs, and leases that say which
/// instance acts on which handover (DESIGN.md §7.1).
///
/// Object safe: the service holds an `Arc<dyn Store>`.
///
/// # Contract
///
/// The conformance suite ([`store_suite!`]) checks every rule on both backends.
///
/// - **Leases expire on the store's clock**, never an instance's; every grant (create,
///   acquire, claim) makes the epoch grow.
/// - **Every owner write is fenced**: [`commit`](Store::commit), [`renew`](Store::renew)
///   and [`release`](Store::release) carry the lease and commit only while its epoch is
///   still the handover's, in the same transaction; otherwise [`StoreError::Fenced`] and
///   nothing is written.
/// - **The event log has a gap-free `seq`** per handover (1, 2, 3, …), also under
///   concurrent appenders, and holds an event id (the provider's) at most once.
/// - **The inbox keeps a delivery id once** per provider configuration, even when no
///   handover is known for its conversation key yet; **the outbox keeps an input id once**
///   per handover.
/// - **Orphans are claimed once**: of several instances claiming at the same moment, each
///   handover goes to exactly one.
/// - **Secrets are sealed at rest** (snapshots, specs, inbox payloads) with the key the
///   store was written with; a store written with another key, or by a newer schema, is
///   refused on open.
/// - [`changes`](Store::changes) is a hint only: a change may come without one (another
///   process on SQLite, a PostgreSQL listener reconnecting), so readers also poll.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// The store's clock, in Unix milliseconds.
    async fn now_ms(&self) -> StoreResult<i64>;

    /// Creates a handover with a lease for `owner` (epoch 1); with an idempotency key a
    /// handover was already created with, returns that one and creates nothing.
    async fn create(&self, new: NewHandover, owner: &str, ttl: Duration) -> StoreResult<Created>;

    /// A handover by id.
    async fn get(&self, id: &str) -> StoreResult<Option<HandoverRecord>>;

    /// The newest handovers, at most `limit`, optionally of one state.
    async fn list(&self, state: Option<HandoverState>, limit: u32) -> StoreResult<Vec<HandoverRecord>>;

    /// Grants `owner` the lease of handover `id` when nobody holds it (or the holder's
    /// lease expired); `None` when someone holds it, or it has ended (and its callback
    /// endpoint, if any, has every event).
    async fn acquire(&self, id: &str, owner: &str, ttl: Duration) -> StoreResult<Option<Lease>>;

    /// Extends `lease` by `ttl` from now; [`StoreError::Fenced`] when it was taken over.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> StoreResult<Lease>;

    /// Extends by `ttl` from now every lease `owner` holds that has not expired, in one
    /// write (an instance renews all its leases at once), and returns them: a handover
    /// missing from the answer is no longer `owner`'s to act on.
    async fn renew_owned(&self, owner: &str, ttl: Duration) -> StoreResult<Vec<Lease>>;

    /// The handovers `owner` holds that have work waiting: bot inputs not sent, or webhook
    /// deliveries not applied (the poll behind [`changes`](Store::changes)).
    async fn pending_work(&self, owner: &str) -> StoreResult<Vec<String>>;

    /// Gives `lease` up, so others may claim the handover at once.
    async fn release(&self, lease: &Lease) -> StoreResult<()>;

    /// Claims up to `limit` handovers whose lease expired (or was released) and that are
    /// not ended, or ended with events their callback endpoint has not taken yet; each for
    /// `owner`, every one claimed once, however many claim at once.
    async fn claim_orphans(&self, owner: &str, ttl: Duration, limit: u32) -> StoreResult<Vec<Lease>>;

    /// Writes `commit` for the holder of `lease`, all or nothing, fenced by the epoch.
    async fn commit(&self, lease: &Lease, commit: Commit) -> StoreResult<Committed>;

    /// The events of handover `id` after `after`, at most `limit`, in `seq` order.
    async fn events(&self, id: &str, after: u64, limit: u32) -> StoreResult<Vec<StoredEvent>>;

    /// Keeps a verified delivery; `false` when its id was kept before.
    async fn put_delivery(&self, delivery: NewDelivery) -> StoreResult<bool>;

    /// The kept, unapplied deliveries of the conversation keys that belong to handover `id`,
    /// oldest first, at most `limit`.
    async fn deliveries(&self, id: &str, limit: u32) -> StoreResult<Vec<InboxDelivery>>;

    /// The handover a conversation key belongs to, if any.
    async fn handover_for_key(&self, key: &ConversationKey) -> StoreResult<Option<String>>;

    /// Keeps a bot input for handover `id`; `false` when its id was kept before.
    async fn put_input(&self, id: &str, input: NewInput) -> StoreResult<bool>;

    /// The kept, unsent inputs of handover `id`, in arrival order.
    async fn inputs(&self, id: &str) -> StoreResult<Vec<OutboxInput>>;

    /// Hints of what changed: every commit, kept input or delivery and release this process
    /// makes, and on PostgreSQL those of every process. A hint may be missed (another
    /// process on SQLite, a listener reconnecting, a receiver lagging behind), so readers
    /// also poll, every [`POLL_BACKSTOP`].
    fn changes(&self) -> broadcast::Receiver<Change>;
}

/// Opens the store at `url`: `sqlite://path/to/file.db`, `sqlite::memory:` (tests), or
/// `postgres://user@host/db` (feature `postgres`). Applies the migrations and checks the
/// key against what the store was written with.
pub async fn open(url: &str, sealer: Sealer) -> StoreResult<std::sync::Arc<dyn Store>> {
    Ok(std::sync::Arc::new(SqlStore::open(url, sealer).await?))
}

/// How long a reader waits for a [`Store::changes`] hint before it polls anyway.
pub const POLL_BACKSTOP: Duration = Duration::from_millis(500);
