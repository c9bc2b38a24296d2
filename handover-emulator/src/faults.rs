//! Fault switches, shared by every protocol module.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Faults to inject. All switches are one-shot counters or flags that tests set through
/// the control API (`POST /_emulator/faults`) or directly.
#[derive(Debug, Default)]
pub struct Faults {
    fail_status: AtomicU32,
    fail_count: AtomicU32,
    rate_limit_count: AtomicU32,
    rate_limit_retry_after: AtomicU64,
    expire_tokens: AtomicBool,
    duplicate_deliveries: AtomicBool,
    reorder_deliveries: AtomicBool,
    bad_signatures: AtomicBool,
    unknown_events: AtomicBool,
    greeting: std::sync::Mutex<Option<String>>,
    /// The number of drops requested so far; streams watch it for changes.
    drop_streams: watch::Sender<u32>,
    drops: AtomicU32,
    injected: AtomicU32,
}

/// The switches as JSON (the control API's body).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultSettings {
    /// Answer the next `fail_count` API requests with this status (e.g. 503).
    pub fail_status: Option<u16>,
    /// How many requests `fail_status` applies to.
    pub fail_count: u32,
    /// Answer the next N API requests with 429.
    pub rate_limit_count: u32,
    /// The `Retry-After` seconds of those 429s.
    pub rate_limit_retry_after: u64,
    /// Treat every token issued so far as expired (401) until a new one is issued.
    pub expire_tokens: bool,
    /// Deliver every webhook twice.
    pub duplicate_deliveries: bool,
    /// Deliver webhooks in pairs, the second first.
    pub reorder_deliveries: bool,
    /// Sign webhooks with a wrong key.
    pub bad_signatures: bool,
    /// Drop every open stream or socket now (one shot).
    pub drop_streams: bool,
    /// Send an event of a type the connector does not know before each agent-side event
    /// (signed like the rest).
    pub unknown_events: bool,
    /// The agent greets with this text the moment a conversation is created; a push
    /// protocol's create call answers only once the greeting's webhook was answered, so
    /// the greeting arrives before the connector's `start` returns.
    pub greet_on_create: Option<String>,
}

impl Faults {
    /// Applies settings.
    pub fn apply(&self, settings: &FaultSettings) {
        if let Some(status) = settings.fail_status {
            self.fail_status.store(u32::from(status), Ordering::SeqCst);
            self.fail_count.store(settings.fail_count.max(1), Ordering::SeqCst);
        }
        self.rate_limit_count.store(settings.rate_limit_count, Ordering::SeqCst);
        self.rate_limit_retry_after.store(settings.rate_limit_retry_after, Ordering::SeqCst);
        self.expire_tokens.store(settings.expire_tokens, Ordering::SeqCst);
        self.duplicate_deliveries.store(settings.duplicate_deliveries, Ordering::SeqCst);
        self.reorder_deliveries.store(settings.reorder_deliveries, Ordering::SeqCst);
        self.bad_signatures.store(settings.bad_signatures, Ordering::SeqCst);
        self.unknown_events.store(settings.unknown_events, Ordering::SeqCst);
        *self.greeting.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = settings.greet_on_create.clone();
        if settings.drop_streams {
            self.drop_streams();
        }
    }

    /// The status to answer the next API request with, if a failure is due.
    pub fn take_failure(&self) -> Option<(u16, Option<u64>)> {
        if take_one(&self.rate_limit_count) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Some((429, Some(self.rate_limit_retry_after.load(Ordering::SeqCst))));
        }
        if take_one(&self.fail_count) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            let status = u16::try_from(self.fail_status.load(Ordering::SeqCst)).unwrap_or(503);
            return Some((status, None));
        }
        None
    }

    /// How many failures were injected so far.
    pub fn injected(&self) -> u32 {
        self.injected.load(Ordering::SeqCst)
    }

    /// Whether tokens are currently treated as expired.
    pub fn tokens_expired(&self) -> bool {
        self.expire_tokens.load(Ordering::SeqCst)
    }

    /// Makes every token issued so far expired.
    pub fn expire_tokens(&self) {
        self.expire_tokens.store(true, Ordering::SeqCst);
    }

    /// A new token was issued: it is valid.
    pub fn token_issued(&self) {
        self.expire_tokens.store(false, Ordering::SeqCst);
    }

    /// Whether webhooks are delivered twice.
    pub fn duplicate_deliveries(&self) -> bool {
        self.duplicate_deliveries.load(Ordering::SeqCst)
    }

    /// Whether webhooks are delivered out of order.
    pub fn reorder_deliveries(&self) -> bool {
        self.reorder_deliveries.load(Ordering::SeqCst)
    }

    /// Whether webhooks are signed with a wrong key.
    pub fn bad_signatures(&self) -> bool {
        self.bad_signatures.load(Ordering::SeqCst)
    }

    /// Whether an unknown event goes before each agent-side event.
    pub fn unknown_events(&self) -> bool {
        self.unknown_events.load(Ordering::SeqCst)
    }

    /// The greeting the agent sends as a conversation is created, if any.
    pub fn greeting(&self) -> Option<String> {
        self.greeting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Drops every open stream now.
    pub fn drop_streams(&self) {
        let drops = self.drops.fetch_add(1, Ordering::SeqCst) + 1;
        self.drop_streams.send_replace(drops);
    }

    /// How many stream drops were requested.
    pub fn drops(&self) -> u32 {
        self.drops.load(Ordering::SeqCst)
    }

    /// A stream's view of drop requests from now on: take it when the stream opens, so a
    /// drop requested while the stream is busy writing is not missed.
    pub fn drop_signal(&self) -> DropSignal {
        DropSignal(self.drop_streams.subscribe())
    }
}

/// See [`Faults::drop_signal`].
#[derive(Debug)]
pub struct DropSignal(watch::Receiver<u32>);

impl DropSignal {
    /// Resolves at the first drop requested since the signal was taken (or since this last
    /// resolved).
    pub async fn dropped(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}
