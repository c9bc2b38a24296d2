//! The conformance suite: every rule of the [`Store`] contract, as generic
//! scenarios that [`store_suite!`](crate::store_suite) runs against one backend.
//!
//! ```ignore
//! handover_store::store_suite!(MyHarness);
//! ```
//!
//! A harness gives each scenario a fresh, empty store and can open a second handle on the
//! same database (another process, as far as the store can tell).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // scenarios: a panic is the failure report

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use crate::{
    CallbackUpdate, Change, ChangeKind, Commit, ConversationKey, HandoverState, Lease, NewDelivery, NewEvent,
    NewHandover, NewInput, POLL_BACKSTOP, Sealer, Store, StoreError,
};

/// A backend under test.
#[async_trait]
pub trait StoreHarness: Send + Sync + Sized + 'static {
    /// A fresh, empty store (its own database), sealing with `sealer`.
    async fn setup(sealer: Sealer) -> Self;

    /// The store.
    fn store(&self) -> Arc<dyn Store>;

    /// A second handle on the same database, sealing with `sealer` (another process).
    async fn reopen(&self, sealer: Sealer) -> Result<Arc<dyn Store>, StoreError>;

    /// Inserts an inbox row directly, past the store: no notification goes out (one lost
    /// on purpose). `payload` is already sealed.
    async fn insert_quietly(&self, provider: &str, conversation_key: &str, delivery_id: &str, payload: Vec<u8>);

    /// Records a migration this version of the crate does not know (a newer schema).
    async fn plant_newer_migration(&self);

    /// Every sealed value at rest, as stored (specs, snapshots, inbox payloads).
    async fn sealed_at_rest(&self) -> Vec<Vec<u8>>;

    /// Drops the database.
    async fn teardown(self);
}

/// The key the scenarios seal with.
pub fn key() -> Sealer {
    Sealer::new(&[42; 32])
}

const TTL: Duration = Duration::from_secs(30);

async fn handover<H: StoreHarness>(h: &H, id: &str) -> Lease {
    let created =
        h.store().create(NewHandover::new(id, "sales", json!({ "user": "u-1", "secret": "whsec_x" })), "a", TTL).await;
    created.unwrap().lease.unwrap()
}

/// A lease expires on the store's clock; a takeover grows the epoch; the old holder's
/// renew is fenced.
pub async fn lease_expiry_and_takeover_grow_the_epoch<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let store = h.store();
    let created = store.create(NewHandover::new("h1", "sales", json!({})), "a", Duration::from_millis(200)).await;
    let lease_a = created.unwrap().lease.unwrap();
    assert_eq!(lease_a.epoch, 1);
    assert!(store.acquire("h1", "b", TTL).await.unwrap().is_none(), "held: not granted");
    assert!(store.claim_orphans("b", TTL, 10).await.unwrap().is_empty(), "not expired yet");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lease_b = store.acquire("h1", "b", TTL).await.unwrap().expect("expired: granted");
    assert_eq!(lease_b.epoch, 2, "a takeover grows the epoch");
    assert!(store.renew(&lease_a, TTL).await.unwrap_err().is_fenced());
    let renewed = store.renew(&lease_b, TTL).await.unwrap();
    assert!(renewed.until_ms >= lease_b.until_ms);
    store.release(&renewed).await.unwrap();
    let claimed = store.claim_orphans("c", TTL, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "a released lease is claimable at once");
    assert_eq!(claimed[0].epoch, 3);
    assert_eq!(store.get("h1").await.unwrap().unwrap().owner.as_deref(), Some("c"));
    h.teardown().await;
}

/// Every kind of owner write with a stale epoch is refused, and none of it is written.
pub async fn stale_epoch_writes_are_refused_for_every_kind_of_write<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let store = h.store();
    let created = store.create(NewHandover::new("h1", "sales", json!({})), "a", Duration::ZERO).await;
    let stale = created.unwrap().lease.unwrap();
    // Expired on the store's clock once a millisecond has passed.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let current = store.acquire("h1", "b", TTL).await.unwrap().unwrap();
    assert!(store.put_delivery(NewDelivery::new("sales", "conv-1", "d1", b"{}".to_vec())).await.unwrap());
    assert!(store.put_input("h1", NewInput::new("i1", json!({ "type": "message", "text": "hi" }))).await.unwrap());
    store.commit(&current, Commit::new().conversation_key(ConversationKey::new("sales", "conv-1"))).await.unwrap();
    let inbox = store.deliveries("h1", 10).await.unwrap();
    assert_eq!(inbox.len(), 1);
    let writes = [
        Commit::new().event(NewEvent::new(json!({ "type": "say" }))),
        Commit::new().consume(inbox[0].id),
        Commit::new().sent("i1"),
        Commit::new().snapshot(b"{}".to_vec()),
        Commit::new().node_state(json!({ "active": true })),
        Commit::new().state(HandoverState::Active),
        Commit::new().status(json!({ "status": "completed" })),
        Commit::new().conversation_key(ConversationKey::new("sales", "conv-2")),
        Commit::new().callback(CallbackUpdate::new(1, None)),
    ];
    for write in writes {
        let error = store.commit(&stale, write.clone()).await.unwrap_err();
        assert!(error.is_fenced(), "{write:?}: {error}");
    }
    assert!(store.renew(&stale, TTL).await.unwrap_err().is_fenced());
    assert!(store.release(&stale).await.unwrap_err().is_fenced());
    let record = store.get("h1").await.unwrap().unwrap();
    assert_eq!((record.last_seq, record.state, record.epoch), (0, HandoverState::Starting, 2), "nothing was written");
    assert!(record.snapshot.is_none() && record.node_state.is_none() && record.status.is_none());
    assert_eq!(store.deliveries("h1", 10).await.unwrap().len(), 1, "the delivery is still unapplied");
    assert_eq!(store.inputs("h1").await.unwrap().len(), 1, "the input is still unsent");
    assert!(store.handover_for_key(&ConversationKey::new("sales", "conv-2")).await.unwrap().is_none());
    h.teardown().await;
}

/// A commit writes everything at once: events with gap-free seqs (repeats of an event id
/// skipped), consumed deliveries, sent inputs, the snapshot, the node state, the status.
pub async fn a_commit_writes_everything_at_once<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let store = h.store();
    let lease = handover(&h, "h1").await;
    store.put_delivery(NewDelivery::new("sales", "conv-1", "d1", b"payload".to_vec())).await.unwrap();
    store.put_input("h1", NewInput::new("i1", json!({ "text": "one" }))).await.unwrap();
    store.put_input("h1", NewInput::new("i2", json!({ "text": "two" }))).await.unwrap();
    store.commit(&lease, Commit::new().conversation_key(ConversationKey::new("sales", "conv-1"))).await.unwrap();
    let inbox = store.deliveries("h1", 10).await.unwrap();
    assert_eq!(inbox[0].payload, b"payload");
    let commit = Commit::new()
        .event(NewEvent::with_id("m1", json!({ "type": "agent_message", "text": "Hi" })))
        .event(NewEvent::new(json!({ "type": "queue_update" })))
        .event(NewEvent::with_id("m1", json!({ "type": "agent_message", "text": "Hi" })))
        .consume(inbox[0].id)
        .sent("i1")
        .snapshot(br#"{"token":"secret-token"}"#.to_vec())
        .node_state(json!({ "active": true }))
        .state(HandoverState::Active);
    let committed = store.commit(&lease, commit).await.unwrap();
    assert_eq!(committed.appended, [1, 2], "the repeated event id is skipped");
    let again = store.commit(&lease, Commit::new().event(NewEvent::with_id("m1", json!({})))).await.unwrap();
    assert!(again.appended.is_empty(), "an event id is held once, across commits");
    let events = store.events("h1", 0, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(events[0].body["text"], "Hi");
    assert_eq!(store.events("h1", 1, 10).await.unwrap().len(), 1);
    assert!(store.deliveries("h1", 10).await.unwrap().is_empty());
    let inputs = store.inputs("h1").await.unwrap();
    assert_eq!(inputs.iter().map(|i| i.input_id.as_str()).collect::<Vec<_>>(), ["i2"]);
    let record = store.get("h1").await.unwrap().unwrap();
    assert_eq!(record.snapshot.as_deref(), Some(&br#"{"token":"secret-token"}"#[..]));
    assert_eq!((record.state, record.last_seq), (HandoverState::Active, 2));
    store.commit(&lease, Commit::new().status(json!({ "status": "completed" }))).await.unwrap();
    let record = store.get("h1").await.unwrap().unwrap();
    assert_eq!(record.state, HandoverState::Ended);
    assert!(store.acquire("h1", "b", TTL).await.unwrap().is_none(), "an ended handover is never granted");
    h.teardown().await;
}

/// The inbox keeps a delivery id once and the outbox an input id once, whichever handle
/// (process) writes it, and the inbox keeps deliveries no handover owns yet.
pub async fn inbox_and_outbox_deduplicate_across_connections<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let one = h.store();
    let two = h.reopen(key()).await.unwrap();
    let delivery = || NewDelivery::new("sales", "conv-9", "d-1", b"x".to_vec());
    assert!(one.put_delivery(delivery()).await.unwrap(), "kept before any handover claims conv-9");
    assert!(!two.put_delivery(delivery()).await.unwrap());
    assert!(!one.put_delivery(delivery()).await.unwrap());
    assert!(two.put_delivery(NewDelivery::new("other", "conv-9", "d-1", b"x".to_vec())).await.unwrap());
    let lease = handover(&h, "h1").await;
    assert!(one.put_input("h1", NewInput::new("i-1", json!({ "n": 1 }))).await.unwrap());
    assert!(!two.put_input("h1", NewInput::new("i-1", json!({ "n": 2 }))).await.unwrap());
    assert!(two.put_input("h1", NewInput::new("i-2", json!({ "n": 3 }))).await.unwrap());
    let inputs = one.inputs("h1").await.unwrap();
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0].payload, json!({ "n": 1 }), "the first copy is the one kept");
    two.commit(&lease, Commit::new().conversation_key(ConversationKey::new("sales", "conv-9"))).await.unwrap();
    assert_eq!(one.deliveries("h1", 10).await.unwrap().len(), 1, "the earlier delivery reaches its handover");
    h.teardown().await;
}

/// Concurrent appenders on two handles get seqs 1..=n with no gap and no repeat.
pub async fn seq_is_gap_free_under_concurrent_appenders<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let lease = handover(&h, "h1").await;
    let stores = [h.store(), h.reopen(key()).await.unwrap()];
    let mut tasks = Vec::new();
    for worker in 0..6 {
        let store = stores[worker % 2].clone();
        let lease = lease.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..10 {
                let commit = Commit::new()
                    .event(NewEvent::with_id(format!("w{worker}-{n}"), json!({ "w": worker, "n": n })))
                    .event(NewEvent::with_id("shared", json!({ "shared": true })));
                store.commit(&lease, commit).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let events = h.store().events("h1", 0, 1000).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=61).collect::<Vec<u64>>(), "60 events and one shared, no gap");
    let ids: BTreeSet<_> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), 61, "no repeat");
    h.teardown().await;
}

/// Three claimers at once: each orphan goes to exactly one.
pub async fn orphans_are_claimed_once_by_three_claimers<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let store = h.store();
    for n in 0..30 {
        store.create(NewHandover::new(format!("h{n}"), "sales", json!({})), "dead", Duration::ZERO).await.unwrap();
    }
    // Expired on the store's clock once a millisecond has passed.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let handles = [h.store(), h.reopen(key()).await.unwrap(), h.reopen(key()).await.unwrap()];
    let mut tasks = Vec::new();
    for (n, store) in handles.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim_orphans(&format!("claimer-{n}"), TTL, 4).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|l| l.handover_id));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    let unique: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 30, "every orphan claimed: {all:?}");
    assert_eq!(unique.len(), 30, "none twice");
    for record in store.list(None, 100).await.unwrap() {
        assert_eq!(record.epoch, 2, "{}: one grant at creation, one claim", record.id);
    }
    h.teardown().await;
}

/// A change made without a notification (one lost on purpose) is found by the poll.
pub async fn a_lost_notification_is_caught_by_the_poll<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let store = h.store();
    let lease = handover(&h, "h1").await;
    store.commit(&lease, Commit::new().conversation_key(ConversationKey::new("sales", "c1"))).await.unwrap();
    let mut changes = store.changes();
    // Past the store: no hint goes out.
    h.insert_quietly("sales", "c1", "quiet", key().seal(b"lost").unwrap()).await;
    let found = tokio::time::timeout(POLL_BACKSTOP * 10, async {
        loop {
            let pending = store.deliveries("h1", 10).await.unwrap();
            if !pending.is_empty() {
                return pending;
            }
            // Wait for a hint or the backstop, whichever comes first.
            let _ = tokio::time::timeout(POLL_BACKSTOP, changes.recv()).await;
        }
    })
    .await
    .expect("the poll finds the change");
    assert_eq!(found[0].payload, b"lost");
    h.teardown().await;
}

/// Waits for the hint `want` (other hints may come first); panics after a few seconds.
async fn hint(changes: &mut tokio::sync::broadcast::Receiver<Change>, want: Change) {
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match changes.recv().await {
                Ok(change) if change == want => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => panic!("the hints stopped"),
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no hint {want:?}");
}

/// Hints name the handover and what changed: a kept input or delivery (work for the
/// owner), a commit (for readers of the log), a release (for claimers).
pub async fn hints_name_the_handover_and_what_changed<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let store = h.store();
    let mut changes = store.changes();
    let lease = handover(&h, "h1").await;
    store.commit(&lease, Commit::new().conversation_key(ConversationKey::new("sales", "c1"))).await.unwrap();
    hint(&mut changes, Change::new("h1", ChangeKind::Committed)).await;
    store.put_input("h1", NewInput::new("i1", json!({ "type": "connected" }))).await.unwrap();
    hint(&mut changes, Change::new("h1", ChangeKind::Work)).await;
    store.put_delivery(NewDelivery::new("sales", "c1", "d1", b"{}".to_vec())).await.unwrap();
    hint(&mut changes, Change::new("h1", ChangeKind::Work)).await;
    store.release(&lease).await.unwrap();
    hint(&mut changes, Change::new("h1", ChangeKind::Released)).await;
    h.teardown().await;
}

/// One write renews every live lease of an owner; an expired one is not renewed (it may be
/// someone else's by now), nor are other owners'.
pub async fn an_owner_renews_all_its_live_leases_at_once<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let store = h.store();
    let short = Duration::from_millis(200);
    store.create(NewHandover::new("h1", "sales", json!({})), "a", TTL).await.unwrap();
    store.create(NewHandover::new("h2", "sales", json!({})), "a", short).await.unwrap();
    store.create(NewHandover::new("h3", "sales", json!({})), "b", TTL).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let renewed = store.renew_owned("a", TTL).await.unwrap();
    assert_eq!(renewed.iter().map(|l| l.handover_id.as_str()).collect::<Vec<_>>(), ["h1"]);
    assert_eq!(renewed[0].epoch, 1, "a renew is not a new grant");
    let now = store.now_ms().await.unwrap();
    assert!(renewed[0].until_ms > now + 20_000, "extended by the TTL from now");
    let claimed = store.claim_orphans("c", TTL, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|l| l.handover_id.as_str()).collect::<Vec<_>>(), ["h2"]);
    h.teardown().await;
}

/// An owner finds the handovers with inputs to send or deliveries to apply in one read.
pub async fn pending_work_lists_the_owners_handovers_with_inputs_or_deliveries<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let store = h.store();
    let h1 = handover(&h, "h1").await;
    let h2 = handover(&h, "h2").await;
    store.create(NewHandover::new("h3", "sales", json!({})), "b", TTL).await.unwrap();
    assert!(store.pending_work("a").await.unwrap().is_empty());
    store.put_input("h1", NewInput::new("i1", json!({ "type": "connected" }))).await.unwrap();
    store.put_input("h3", NewInput::new("i1", json!({ "type": "connected" }))).await.unwrap();
    store.commit(&h2, Commit::new().conversation_key(ConversationKey::new("sales", "c2"))).await.unwrap();
    store.put_delivery(NewDelivery::new("sales", "c2", "d1", b"{}".to_vec())).await.unwrap();
    store.put_delivery(NewDelivery::new("sales", "unknown", "d2", b"{}".to_vec())).await.unwrap();
    let mut work = store.pending_work("a").await.unwrap();
    work.sort();
    assert_eq!(work, ["h1", "h2"]);
    let delivery = store.deliveries("h2", 10).await.unwrap().remove(0);
    store.commit(&h1, Commit::new().sent("i1")).await.unwrap();
    store.commit(&h2, Commit::new().consume(delivery.id)).await.unwrap();
    assert!(store.pending_work("a").await.unwrap().is_empty());
    h.teardown().await;
}

/// An ended handover with a callback endpoint behind is claimed (someone must send it the
/// rest); once the endpoint has every event, or the callback failed, it is not.
pub async fn an_ended_handover_is_claimed_until_its_callback_has_every_event<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let store = h.store();
    for id in ["with", "without", "failing"] {
        let mut new = NewHandover::new(id, "sales", json!({}));
        if id != "without" {
            new = new.with_callback();
        }
        let lease = store.create(new, "a", TTL).await.unwrap().lease.unwrap();
        let end = Commit::new()
            .event(NewEvent::new(json!({ "type": "say" })))
            .event(NewEvent::new(json!({ "type": "status", "status": "completed" })))
            .status(json!({ "status": "completed" }))
            .callback(CallbackUpdate::new(1, None));
        store.commit(&lease, end).await.unwrap();
        store.release(&lease).await.unwrap();
    }
    assert!(store.get("with").await.unwrap().unwrap().callback_pending);
    assert!(!store.get("without").await.unwrap().unwrap().callback_pending);
    let mut claimed = store.claim_orphans("b", TTL, 10).await.unwrap();
    claimed.sort_by(|a, b| a.handover_id.cmp(&b.handover_id));
    assert_eq!(claimed.iter().map(|l| l.handover_id.as_str()).collect::<Vec<_>>(), ["failing", "with"]);
    store.commit(&claimed[1], Commit::new().callback(CallbackUpdate::new(2, None))).await.unwrap();
    store
        .commit(&claimed[0], Commit::new().callback(CallbackUpdate::failed(1, Some(json!({ "error": "410" })))))
        .await
        .unwrap();
    for lease in &claimed {
        store.release(lease).await.unwrap();
    }
    assert!(store.claim_orphans("c", TTL, 10).await.unwrap().is_empty(), "nothing left to send");
    assert!(store.acquire("with", "c", TTL).await.unwrap().is_none());
    let failing = store.get("failing").await.unwrap().unwrap();
    assert!(!failing.callback_pending);
    assert_eq!(failing.callback_state, Some(json!({ "error": "410" })));
    h.teardown().await;
}

/// Commits of many handovers at the same moment (written together by the store's writer):
/// a fenced one is refused and writes nothing, the others commit whole.
pub async fn a_fenced_commit_among_many_at_once_leaves_the_others_whole<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let store = h.store();
    let mut leases = Vec::new();
    for n in 0..24 {
        leases.push(handover(&h, &format!("h{n}")).await);
    }
    store.release(&leases[5]).await.unwrap();
    let taken = store.acquire("h5", "b", TTL).await.unwrap().unwrap();
    let tasks: Vec<_> = leases
        .iter()
        .map(|lease| {
            let (store, lease) = (store.clone(), lease.clone());
            tokio::spawn(async move {
                let commit = Commit::new()
                    .event(NewEvent::with_id("e1", json!({ "type": "agent_message", "text": "one" })))
                    .event(NewEvent::new(json!({ "type": "agent_typing", "typing": false })))
                    .node_state(json!({ "active": true }));
                store.commit(&lease, commit).await
            })
        })
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if n == 5 {
            assert!(result.unwrap_err().is_fenced());
        } else {
            let committed = result.unwrap();
            assert_eq!((committed.appended.as_slice(), committed.last_seq), (&[1, 2][..], 2), "h{n}");
        }
    }
    assert_eq!(store.get("h5").await.unwrap().unwrap().last_seq, 0, "the fenced commit wrote nothing");
    assert!(store.events("h5", 0, 10).await.unwrap().is_empty());
    store.commit(&taken, Commit::new().event(NewEvent::new(json!({ "type": "say" })))).await.unwrap();
    // A repeat of an event id in a later commit is skipped and uses no seq.
    let again = Commit::new()
        .event(NewEvent::with_id("e1", json!({ "type": "agent_message", "text": "one" })))
        .event(NewEvent::new(json!({ "type": "say" })));
    let committed = store.commit(&leases[0], again).await.unwrap();
    assert_eq!((committed.appended.as_slice(), committed.last_seq), (&[3][..], 3));
    h.teardown().await;
}

/// A store written with one key refuses another key and plaintext; secrets are not
/// readable in the database.
pub async fn a_wrong_key_is_refused_and_secrets_are_sealed<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let lease = handover(&h, "h1").await;
    h.store().commit(&lease, Commit::new().snapshot(br#"{"access_token":"tok-3f9a"}"#.to_vec())).await.unwrap();
    let other = h.reopen(Sealer::new(&[7; 32])).await.unwrap_err();
    assert!(matches!(other, StoreError::Key(_)), "{other}");
    assert!(other.to_string().contains("another encryption key"), "{other}");
    let plain = h.reopen(Sealer::plaintext()).await.unwrap_err();
    assert!(matches!(plain, StoreError::Key(_)), "{plain}");
    h.store().put_delivery(NewDelivery::new("sales", "c1", "d1", b"user wrote: my card 4242".to_vec())).await.unwrap();
    // What is at rest: the spec's callback secret, the snapshot's token and what the user
    // wrote are sealed.
    let at_rest = h.sealed_at_rest().await;
    assert!(at_rest.len() >= 3, "spec, snapshot, inbox payload");
    for value in &at_rest {
        let text = String::from_utf8_lossy(value);
        for secret in ["tok-3f9a", "whsec_x", "4242"] {
            assert!(!text.contains(secret), "`{secret}` is readable at rest");
        }
    }
    let same = h.reopen(key()).await.unwrap();
    let record = same.get("h1").await.unwrap().unwrap();
    assert_eq!(record.spec["secret"], "whsec_x", "the right key opens it");
    h.teardown().await;
}

/// A repeated idempotency key returns the first handover and creates nothing.
pub async fn a_repeated_idempotency_key_returns_the_first_handover<H: StoreHarness>() {
    let h = H::setup(key()).await;
    let store = h.store();
    let first =
        store.create(NewHandover::new("h1", "sales", json!({ "n": 1 })).with_idempotency_key("k"), "a", TTL).await;
    let first = first.unwrap();
    assert!(!first.existing && first.lease.is_some());
    let again =
        store.create(NewHandover::new("h2", "sales", json!({ "n": 2 })).with_idempotency_key("k"), "b", TTL).await;
    let again = again.unwrap();
    assert!(again.existing && again.lease.is_none());
    assert_eq!(again.record.id, "h1");
    assert_eq!(again.record.spec, json!({ "n": 1 }));
    assert!(store.get("h2").await.unwrap().is_none(), "nothing was created");
    h.teardown().await;
}

/// A store written by a newer schema is refused with a clear error.
pub async fn a_newer_schema_is_refused<H: StoreHarness>() {
    let h = H::setup(key()).await;
    h.plant_newer_migration().await;
    let error = h.reopen(key()).await.unwrap_err();
    assert!(matches!(error, StoreError::NewerSchema(_)), "{error}");
    assert!(error.to_string().contains("upgrade"), "{error}");
    h.teardown().await;
}

/// Runs every scenario of the conformance suite against harness `$harness`, one test each.
#[macro_export]
macro_rules! store_suite {
    ($harness:ty) => {
        $crate::store_suite!(@tests $harness;
            lease_expiry_and_takeover_grow_the_epoch,
            stale_epoch_writes_are_refused_for_every_kind_of_write,
            a_commit_writes_everything_at_once,
            inbox_and_outbox_deduplicate_across_connections,
            seq_is_gap_free_under_concurrent_appenders,
            orphans_are_claimed_once_by_three_claimers,
            a_lost_notification_is_caught_by_the_poll,
            hints_name_the_handover_and_what_changed,
            an_owner_renews_all_its_live_leases_at_once,
            pending_work_lists_the_owners_handovers_with_inputs_or_deliveries,
            an_ended_handover_is_claimed_until_its_callback_has_every_event,
            a_fenced_commit_among_many_at_once_leaves_the_others_whole,
            a_wrong_key_is_refused_and_secrets_are_sealed,
            a_repeated_idempotency_key_returns_the_first_handover,
            a_newer_schema_is_refused,
        );
    };
    (@tests $harness:ty; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                $crate::suite::$scenario::<$harness>().await;
            }
        )*
    };
}
