//! Routing pushed deliveries (webhooks) to live sessions.
//!
//! A push provider receives every delivery on one endpoint. [`PushRouter`] remembers which
//! session owns which conversation, drops redeliveries, and **keeps** a verified delivery
//! for a conversation no session owns yet: a desk may post an agent message (or an
//! auto-greeting) the moment the conversation exists, before `start` has returned, and some
//! desks send each webhook once and never retry (Chatwoot's account and API-inbox webhooks:
//! `protocols/liveagent-chatwoot.md` §5.4). Kept deliveries are bounded in count, bytes and
//! age ([`PendingLimits`]) and handed, in arrival order and once, to the session that
//! registers the conversation. A delivery nobody claims in time was for a conversation this
//! process does not handle, and is dropped with a trace.
//!
//! The rule is DESIGN.md §7.2's, for one process: acknowledge (2xx) only what is kept, and
//! keep what is verified. Only a full buffer refuses a delivery ([`Routed::Full`], `503`).
//!
//! For many instances the ingress splits in two: a provider's ingress turns a request into
//! [`Accepted`] deliveries without touching a session; [`ingested`] makes them the
//! [`Ingested`] a service keeps in its inbox (any instance), and [`PushRouter::apply`]
//! hands a kept one to the live session on the instance that owns it, returning once the
//! session has handled it. In one process [`PushRouter::route`] does both at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{Applied, EndReason, Error, ErrorKind, Event, EventStream, Inbound, Ingested, WebhookReply};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::bounded;
use crate::dedup::DedupSet;
use crate::events::{self, EventSender};
use crate::session::{CONTINUE, CloseReceiver, Flow, STOP, sleep_until};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What became of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routed {
    /// A live session took it.
    Delivered,
    /// It was seen before.
    Duplicate,
    /// No session owns the conversation yet: it is kept for the session that registers it
    /// (within [`PendingLimits`]).
    Kept,
    /// The conversation's handover has ended: nothing will take it, so it is acknowledged
    /// and dropped (a refusal would only make the provider retry).
    Closed,
    /// No session owns the conversation and the buffer of kept deliveries is full: refuse
    /// it, so a provider that retries delivers it again.
    Full,
}

impl Routed {
    /// The HTTP status to answer with: `200`, or `503` for [`Routed::Full`].
    pub fn status(self) -> u16 {
        match self {
            Routed::Delivered | Routed::Duplicate | Routed::Kept | Routed::Closed => 200,
            Routed::Full => 503,
        }
    }
}

/// Bounds on the deliveries kept for conversations no session owns yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingLimits {
    /// The most deliveries kept at once, over all conversations.
    pub max_deliveries: usize,
    /// The most body bytes kept at once.
    pub max_bytes: usize,
    /// How long a delivery waits for its session before it is dropped.
    pub max_age: Duration,
}

impl Default for PendingLimits {
    /// 1,000 deliveries, 8 MiB, 120 s: far more than a `start` in flight needs, small next to
    /// a process's memory.
    fn default() -> Self {
        Self { max_deliveries: 1000, max_bytes: 8 * 1024 * 1024, max_age: Duration::from_secs(120) }
    }
}

impl PendingLimits {
    /// Limits of `max_deliveries` deliveries, `max_bytes` bytes and `max_age`.
    pub fn new(max_deliveries: usize, max_bytes: usize, max_age: Duration) -> Self {
        Self { max_deliveries, max_bytes, max_age }
    }
}

/// A delivery on its way to a session, with whom to tell once the session has handled it.
pub struct Envelope<T> {
    item: T,
    done: Option<oneshot::Sender<()>>,
}

impl<T> Envelope<T> {
    fn new(item: T) -> Self {
        Self { item, done: None }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Envelope<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope").field("item", &self.item).field("awaited", &self.done.is_some()).finish()
    }
}

impl<T: PartialEq> PartialEq<T> for Envelope<T> {
    fn eq(&self, other: &T) -> bool {
        self.item == *other
    }
}

struct Route<T> {
    deliveries: bounded::Sender<Envelope<T>>,
    /// The session's event stream: once its consumer is gone, the route is not live.
    events: EventSender,
}

struct Pending<T> {
    key: String,
    item: Envelope<T>,
    bytes: usize,
    at: Instant,
}

struct Table<T> {
    routes: HashMap<String, Route<T>>,
    pending: VecDeque<Pending<T>>,
    pending_bytes: usize,
    seen: DedupSet,
    closed: DedupSet,
}

impl<T> Table<T> {
    /// Drops kept deliveries older than `max_age` (the oldest are at the front).
    fn expire(&mut self, max_age: Duration, now: Instant) {
        while let Some(front) = self.pending.front() {
            if now.saturating_duration_since(front.at) < max_age {
                break;
            }
            if let Some(old) = self.pending.pop_front() {
                self.pending_bytes -= old.bytes;
                tracing::trace!(key = %crate::log::Untrusted(&old.key), "dropping a delivery no session claimed");
            }
        }
    }

    fn live(&self, key: &str) -> Option<bounded::Sender<Envelope<T>>> {
        self.routes.get(key).filter(|route| !route.events.is_closed()).map(|route| route.deliveries.clone())
    }
}

/// Conversation key → the session task's delivery channel, plus the deliveries kept for
/// conversations no session owns yet.
pub struct PushRouter<T> {
    table: Mutex<Table<T>>,
    limits: PendingLimits,
    warned_full: AtomicBool,
}

impl<T> Default for PushRouter<T> {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl<T> PushRouter<T> {
    /// A router remembering `capacity` delivery ids, keeping deliveries within the default
    /// [`PendingLimits`].
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, PendingLimits::default())
    }

    /// A router remembering `capacity` delivery ids, keeping deliveries within `limits`.
    pub fn with_limits(capacity: usize, limits: PendingLimits) -> Self {
        Self {
            table: Mutex::new(Table {
                routes: HashMap::new(),
                pending: VecDeque::new(),
                pending_bytes: 0,
                seen: DedupSet::new(capacity),
                closed: DedupSet::new(capacity),
            }),
            limits,
            warned_full: AtomicBool::new(false),
        }
    }

    /// The limits on kept deliveries.
    pub fn limits(&self) -> PendingLimits {
        self.limits
    }

    /// Routes `key`'s deliveries to `deliveries` for as long as `events` has a consumer, and
    /// returns the deliveries kept for `key` so far, oldest first (the session handles them
    /// before anything from `deliveries`). A later registration for the same key (a
    /// resumed session) replaces this one.
    pub fn register(
        &self,
        key: impl Into<String>,
        deliveries: bounded::Sender<Envelope<T>>,
        events: EventSender,
    ) -> VecDeque<Envelope<T>> {
        let key = key.into();
        let mut table = lock(&self.table);
        table.expire(self.limits.max_age, Instant::now());
        table.closed.remove(&key);
        let mut backlog = VecDeque::new();
        if table.pending.iter().any(|p| p.key == key) {
            let pending = std::mem::take(&mut table.pending);
            for entry in pending {
                if entry.key == key {
                    table.pending_bytes -= entry.bytes;
                    backlog.push_back(entry.item);
                } else {
                    table.pending.push_back(entry);
                }
            }
        }
        table.routes.insert(key, Route { deliveries, events });
        backlog
    }

    /// Removes `key`'s route like [`unregister`](Self::unregister) and records that its
    /// handover ended: later deliveries are acknowledged as [`Routed::Closed`].
    pub fn close(&self, key: &str, deliveries: &bounded::Sender<Envelope<T>>) {
        let mut table = lock(&self.table);
        if table.routes.get(key).is_some_and(|route| route.deliveries.same_channel(deliveries)) {
            table.routes.remove(key);
            table.closed.insert(key);
        }
    }

    /// Removes `key`'s route if it is still `deliveries` (not a newer session's).
    pub fn unregister(&self, key: &str, deliveries: &bounded::Sender<Envelope<T>>) {
        let mut table = lock(&self.table);
        if table.routes.get(key).is_some_and(|route| route.deliveries.same_channel(deliveries)) {
            table.routes.remove(key);
        }
    }

    /// Marks delivery ids as seen (from a snapshot).
    pub fn remember<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut table = lock(&self.table);
        for id in ids {
            table.seen.insert(id);
        }
    }

    /// Whether a live session owns `key`.
    pub fn is_live(&self, key: &str) -> bool {
        lock(&self.table).live(key).is_some()
    }

    /// How many deliveries are kept for sessions not registered yet.
    pub fn pending(&self) -> usize {
        lock(&self.table).pending.len()
    }

    /// Hands `item` (delivery id `id`, a body of `bytes` bytes) to `key`'s session, or keeps
    /// it until a session registers `key`. A delivery that is refused ([`Routed::Full`]) is
    /// not recorded as seen, so its redelivery is handled like the first.
    pub async fn deliver(&self, key: &str, id: &str, item: T, bytes: usize) -> Routed {
        let route = {
            let mut table = lock(&self.table);
            if !table.seen.insert(id) {
                return Routed::Duplicate;
            }
            table.live(key)
        };
        let envelope = match route {
            Some(deliveries) => match deliveries.send(Envelope::new(item)).await {
                Ok(()) => return Routed::Delivered,
                // The session went away meanwhile: keep it for the next one.
                Err(envelope) => envelope,
            },
            None => Envelope::new(item),
        };
        self.keep(key, id, envelope, bytes)
    }

    /// Hands `item` to `key`'s live session and waits until the session has handled it
    /// (emitted every event it causes). Nothing is kept here: without a live session, or
    /// when the session stops before handling it, the answer is [`Applied::NotLive`] and
    /// the caller keeps the delivery.
    pub async fn deliver_handled(&self, key: &str, id: &str, item: T) -> Applied {
        let route = {
            let mut table = lock(&self.table);
            if table.seen.contains(id) {
                return Applied::Duplicate;
            }
            if table.closed.contains(key) && !table.routes.contains_key(key) {
                return Applied::Closed;
            }
            match table.live(key) {
                Some(route) => {
                    table.seen.insert(id);
                    route
                }
                None => return Applied::NotLive,
            }
        };
        let (done, handled) = oneshot::channel();
        if route.send(Envelope { item, done: Some(done) }).await.is_err() {
            lock(&self.table).seen.remove(id);
            return Applied::NotLive;
        }
        match handled.await {
            Ok(()) => Applied::Processed,
            Err(_) => {
                // The session stopped first: let a resumed one take it again.
                lock(&self.table).seen.remove(id);
                Applied::NotLive
            }
        }
    }

    /// In one process: routes every delivery of `accepted` ([`deliver`](Self::deliver))
    /// and answers its reply, or its `busy` reply when one could not be kept.
    pub async fn route(&self, accepted: Accepted<T>) -> WebhookReply {
        let mut full = false;
        for routable in accepted.items {
            let routed = self.deliver(&routable.key, &routable.id, routable.item, routable.bytes).await;
            full |= routed == Routed::Full;
        }
        if full { accepted.busy } else { accepted.reply }
    }

    /// Applies a kept delivery ([`ingested`] made it): decodes its payload and hands it to
    /// the live session ([`deliver_handled`](Self::deliver_handled)).
    pub async fn apply(&self, provider: &'static str, inbound: Inbound) -> handover_core::Result<Applied>
    where
        T: DeserializeOwned,
    {
        let item: T = serde_json::from_slice(&inbound.payload).map_err(|e| {
            Error::new(ErrorKind::Protocol, provider, "apply", "a kept delivery could not be read").with_source(e)
        })?;
        Ok(self.deliver_handled(&inbound.conversation_key, &inbound.delivery_id, item).await)
    }

    fn keep(&self, key: &str, id: &str, item: Envelope<T>, bytes: usize) -> Routed {
        let mut table = lock(&self.table);
        if table.closed.contains(key) {
            return Routed::Closed;
        }
        let now = Instant::now();
        table.expire(self.limits.max_age, now);
        let limits = self.limits;
        if table.pending.len() >= limits.max_deliveries || table.pending_bytes.saturating_add(bytes) > limits.max_bytes
        {
            table.seen.remove(id);
            if !self.warned_full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_deliveries = limits.max_deliveries,
                    max_bytes = limits.max_bytes,
                    "the buffer of webhook deliveries for sessions not started yet is full; refusing with 503 \
                     (raise [webhook] pending_deliveries or pending_bytes)"
                );
            }
            return Routed::Full;
        }
        table.pending_bytes += bytes;
        table.pending.push_back(Pending { key: key.to_owned(), item, bytes, at: now });
        tracing::debug!(key = %crate::log::Untrusted(key), "kept a delivery for a session not registered yet");
        Routed::Kept
    }
}

impl<T> std::fmt::Debug for PushRouter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = lock(&self.table);
        f.debug_struct("PushRouter")
            .field("routes", &table.routes.len())
            .field("pending", &table.pending.len())
            .field("pending_bytes", &table.pending_bytes)
            .finish()
    }
}

/// A verified delivery for conversation `key`, ready to route or to keep.
#[derive(Debug)]
#[non_exhaustive]
pub struct Routable<T> {
    /// The conversation key the sessions register with.
    pub key: String,
    /// The delivery's id (what its signature covers).
    pub id: String,
    /// What the session handles.
    pub item: T,
    /// The size of the request it came in (for [`PendingLimits`]).
    pub bytes: usize,
}

impl<T> Routable<T> {
    /// Delivery `id` for conversation `key`.
    pub fn new(key: impl Into<String>, id: impl Into<String>, item: T, bytes: usize) -> Self {
        Self { key: key.into(), id: id.into(), item, bytes }
    }
}

/// What a push provider's ingress made of one request, before any session has it: the
/// reply to send once the deliveries are kept, the reply to send when one could not be
/// (the provider retries it), and the deliveries.
#[derive(Debug)]
#[non_exhaustive]
pub struct Accepted<T> {
    /// The answer once every delivery is kept.
    pub reply: WebhookReply,
    /// The answer when one could not be kept (a `503` the provider retries).
    pub busy: WebhookReply,
    /// The deliveries, in order.
    pub items: Vec<Routable<T>>,
}

impl<T> Accepted<T> {
    /// Nothing to deliver: answer `reply` (a refusal, a handshake, an event no session
    /// needs).
    pub fn reply(reply: WebhookReply) -> Self {
        Self { reply, busy: WebhookReply::text(503, "busy; retry"), items: Vec::new() }
    }

    /// `items` to deliver, then `reply`.
    pub fn items(reply: WebhookReply, items: Vec<Routable<T>>) -> Self {
        Self { reply, busy: WebhookReply::text(503, "busy; retry"), items }
    }

    /// With `busy` as the answer when a delivery could not be kept.
    #[must_use]
    pub fn with_busy(mut self, busy: WebhookReply) -> Self {
        self.busy = busy;
        self
    }
}

/// The deliveries of `accepted` as a service keeps them: each item serialized as its payload
/// (read back by [`PushRouter::apply`]). An item that cannot be serialized turns the reply
/// into `busy`, so nothing is acknowledged that is not kept.
pub fn ingested<T: Serialize>(accepted: Accepted<T>) -> Ingested {
    let mut items = Vec::with_capacity(accepted.items.len());
    for routable in accepted.items {
        match serde_json::to_vec(&routable.item) {
            Ok(payload) => items.push(Inbound::new(routable.key, routable.id, payload)),
            Err(error) => {
                tracing::error!(%error, "a verified delivery could not be serialized for the inbox");
                return Ingested::reply(accepted.busy);
            }
        }
    }
    Ingested::with_items(accepted.reply, items)
}

/// A push session's place in a [`PushRouter`]: its deliveries (those kept before it
/// registered, then those routed to it) and the sender of its events. The session task
/// owns it; dropping it leaves the router as [`finish(false)`](Self::finish) does.
pub struct Link<T> {
    router: Arc<PushRouter<T>>,
    key: String,
    route: bounded::Sender<Envelope<T>>,
    deliveries: bounded::Receiver<Envelope<T>>,
    backlog: VecDeque<Envelope<T>>,
    events: EventSender,
    /// Whom to tell once the delivery handed out last is handled.
    handling: Option<oneshot::Sender<()>>,
    finished: bool,
}

impl<T> Link<T> {
    /// Registers `key` with `router` (call it as soon as the provider returns the key, so
    /// deliveries go straight to this session); returns the link and the event stream to
    /// hand to the caller.
    pub fn open(router: &Arc<PushRouter<T>>, key: impl Into<String>, capacity: usize) -> (Self, EventStream) {
        let key = key.into();
        let (events, stream) = events::channel(capacity);
        // Allocates nothing until a delivery comes: a session waits on webhooks for hours.
        let (route, deliveries) = bounded::channel(capacity);
        let backlog = router.register(key.clone(), route.clone(), events.clone());
        let link =
            Self { router: router.clone(), key, route, deliveries, backlog, events, handling: None, finished: false };
        (link, stream)
    }

    /// The conversation key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The next delivery: first those kept before the session registered, in arrival
    /// order, then those routed since. Cancel safe (for `select!`). Asking for the next one
    /// means the last one is handled ([`handled`](Self::handled)).
    pub async fn recv(&mut self) -> Option<T> {
        self.handled();
        let envelope = match self.backlog.pop_front() {
            Some(envelope) => envelope,
            None => self.deliveries.recv().await?,
        };
        self.handling = envelope.done;
        Some(envelope.item)
    }

    /// The delivery handed out last is handled: every event it causes is emitted. Call it
    /// right after handling one, so whoever waits on it
    /// ([`PushRouter::deliver_handled`]) goes on at once.
    pub fn handled(&mut self) {
        if let Some(done) = self.handling.take() {
            let _ = done.send(());
        }
    }

    /// The event sender (to wait on [`EventSender::closed`]).
    pub fn events(&self) -> &EventSender {
        &self.events
    }

    /// Sends `event` ([`EventSender::emit`]: a terminal event once).
    pub fn emit(&self, event: Event, mark_ended: impl FnOnce() -> bool) -> impl Future<Output = Flow> + '_ {
        self.events.emit(event, mark_ended)
    }

    /// Leaves the router: after an end late deliveries are acknowledged
    /// ([`PushRouter::close`]), otherwise kept for a resumed session.
    pub fn finish(&mut self, ended: bool) {
        self.finished = true;
        if ended {
            self.router.close(&self.key, &self.route);
        } else {
            self.router.unregister(&self.key, &self.route);
        }
    }
}

impl<T> Drop for Link<T> {
    fn drop(&mut self) {
        if !self.finished {
            self.router.unregister(&self.key, &self.route);
        }
    }
}

/// What a push session's task does with what reaches it; [`serve`] runs the one loop of
/// every pure-push provider around it.
#[async_trait]
pub trait PushTask: Send {
    /// What the router hands the session.
    type Item: Send + 'static;

    /// After a resume, before anything else: re-reads what may have changed while no
    /// session was attached.
    async fn catch_up(&mut self) -> Flow {
        CONTINUE
    }

    /// A delivery for the session's conversation.
    async fn on_delivery(&mut self, item: Self::Item) -> Flow;

    /// The bot side closed the session (`Ended { by: User, reason }` follows).
    async fn on_close(&mut self, reason: EndReason) -> Flow;

    /// When [`on_timer`](Self::on_timer) is due next, if ever.
    fn next_timer(&self) -> Option<Instant> {
        None
    }

    /// The timer of [`next_timer`](Self::next_timer) is due.
    async fn on_timer(&mut self) -> Flow {
        CONTINUE
    }

    /// Whether the session has ended (late deliveries are then acknowledged and dropped).
    fn is_ended(&self) -> bool;
}

/// Runs a push session's task until it stops: deliveries, the bot side's close and the
/// task's timer, in one `select!`, stopping when nobody reads the events any more.
pub async fn serve<T: PushTask>(mut task: T, mut link: Link<T::Item>, mut closed: CloseReceiver, catch_up: bool) {
    let events = link.events().clone();
    let mut flow = if catch_up { task.catch_up().await } else { CONTINUE };
    while flow.is_continue() {
        let timer = task.next_timer();
        flow = tokio::select! {
            biased;
            () = events.closed() => STOP,
            reason = closed.recv() => task.on_close(reason).await,
            item = link.recv() => match item {
                Some(item) => {
                    let flow = task.on_delivery(item).await;
                    link.handled();
                    flow
                }
                None => STOP,
            },
            () = sleep_until(timer) => task.on_timer().await,
        };
    }
    link.finish(task.is_ended());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events;

    #[tokio::test]
    async fn deliveries_reach_the_live_session_once_and_are_kept_without_one() {
        let router = PushRouter::new(16);
        assert_eq!(router.deliver("c1", "d1", 1, 10).await, Routed::Kept);
        assert_eq!(router.deliver("c1", "d1", 1, 10).await, Routed::Duplicate, "kept means seen");
        let (events, stream) = events::channel(4);
        let (tx, mut rx) = bounded::channel(4);
        let backlog = router.register("c1", tx.clone(), events);
        assert_eq!(backlog, [1], "the kept delivery goes to the registering session");
        assert_eq!(router.pending(), 0);
        assert_eq!(router.deliver("c1", "d2", 2, 10).await, Routed::Delivered);
        assert_eq!(rx.recv().await.map(|e| e.item), Some(2));
        drop(stream);
        assert!(!router.is_live("c1"));
        assert_eq!(router.deliver("c1", "d3", 3, 10).await, Routed::Kept, "kept for a resumed session");

        // A resumed session takes over; the old one's cleanup leaves it alone.
        let (events, _stream) = events::channel(4);
        let (tx2, mut rx2) = bounded::channel(4);
        assert_eq!(router.register("c1", tx2, events), [3]);
        router.unregister("c1", &tx);
        assert_eq!(router.deliver("c1", "d4", 4, 10).await, Routed::Delivered);
        assert_eq!(rx2.recv().await.map(|e| e.item), Some(4));
    }

    #[tokio::test]
    async fn kept_deliveries_go_to_their_own_session_in_arrival_order() {
        let router = Arc::new(PushRouter::new(16));
        for (n, key) in [(1, "a"), (2, "b"), (3, "a"), (4, "a")] {
            assert_eq!(router.deliver(key, &format!("d{n}"), n, 1).await, Routed::Kept);
        }
        let (mut link, _stream) = Link::open(&router, "a", 4);
        assert_eq!(router.deliver("a", "d5", 5, 1).await, Routed::Delivered);
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(link.recv().await.unwrap());
        }
        assert_eq!(got, [1, 3, 4, 5]);
        assert_eq!(router.pending(), 1, "b's delivery waits for b");
    }

    #[tokio::test]
    async fn the_buffer_is_bounded_in_count_and_bytes_and_refuses_past_them() {
        let router = PushRouter::with_limits(64, PendingLimits::new(2, 100, Duration::from_secs(60)));
        assert_eq!(router.deliver("a", "d1", 1, 40).await, Routed::Kept);
        assert_eq!(router.deliver("b", "d2", 2, 70).await, Routed::Full, "over the byte limit");
        assert_eq!(router.deliver("b", "d2", 2, 40).await, Routed::Kept, "a refused delivery is not marked seen");
        assert_eq!(router.deliver("c", "d3", 3, 1).await, Routed::Full, "over the count limit");
        assert_eq!(Routed::Full.status(), 503);
        assert_eq!(Routed::Kept.status(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn deliveries_nobody_claims_expire() {
        let router = PushRouter::with_limits(64, PendingLimits::new(10, 1000, Duration::from_secs(5)));
        assert_eq!(router.deliver("stranger", "d1", 1, 1).await, Routed::Kept);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(router.deliver("other", "d2", 2, 1).await, Routed::Kept);
        assert_eq!(router.pending(), 1, "the expired delivery is gone");
        let (events, _stream) = events::channel(4);
        let (tx, _rx) = bounded::channel(4);
        assert!(router.register("stranger", tx, events).is_empty());
    }

    #[tokio::test]
    async fn a_link_sends_one_end_and_leaves_the_router() {
        let router = Arc::new(PushRouter::new(16));
        let (mut link, mut stream) = Link::open(&router, "c1", 4);
        assert_eq!(router.deliver("c1", "d1", 7, 1).await, Routed::Delivered);
        assert_eq!(link.recv().await, Some(7));
        let mut ended = false;
        let mut first_end = || !std::mem::replace(&mut ended, true);
        assert!(link.emit(Event::AgentTyping { on: true }, &mut first_end).await.is_continue());
        let end = Event::Ended { by: handover_core::EndedBy::Agent, reason: None };
        assert!(link.emit(end.clone(), &mut first_end).await.is_break(), "terminal: the session is over");
        assert!(link.emit(end, &mut first_end).await.is_break());
        assert!(matches!(stream.recv().await, Some(Ok(Event::AgentTyping { on: true }))));
        assert!(matches!(stream.recv().await, Some(Ok(Event::Ended { .. }))));
        assert!(stream.recv().await.is_none(), "one end only");
        link.finish(true);
        assert_eq!(router.deliver("c1", "d2", 8, 1).await, Routed::Closed);
    }

    #[tokio::test]
    async fn dropping_a_link_unregisters_it() {
        let router = Arc::new(PushRouter::new(16));
        let (link, _stream) = Link::open(&router, "c1", 4);
        assert!(router.is_live("c1"));
        drop(link);
        assert!(!router.is_live("c1"));
        assert_eq!(router.deliver("c1", "d1", 1, 1).await, Routed::Kept);
    }

    #[tokio::test]
    async fn deliveries_for_an_ended_handover_are_acknowledged_and_dropped() {
        let router = PushRouter::new(16);
        let (events, _stream) = events::channel(4);
        let (tx, _rx) = bounded::channel(4);
        router.register("c1", tx.clone(), events.clone());
        let (other, _other_rx) = bounded::channel(4);
        router.close("c1", &other);
        assert!(router.is_live("c1"), "only the owner closes its route");
        router.close("c1", &tx);
        assert_eq!(router.deliver("c1", "late", 1, 1).await, Routed::Closed);
        assert_eq!(Routed::Closed.status(), 200);
        assert_eq!(router.deliver("c2", "other", 1, 1).await, Routed::Kept);
        // A resumed session for the same conversation takes deliveries again.
        let (tx2, mut rx2) = bounded::channel(4);
        router.register("c1", tx2, events);
        assert_eq!(router.deliver("c1", "again", 3, 1).await, Routed::Delivered);
        assert_eq!(rx2.recv().await.map(|e| e.item), Some(3));
    }

    #[tokio::test]
    async fn a_handled_delivery_returns_once_the_session_has_handled_it() {
        let router = Arc::new(PushRouter::new(16));
        assert_eq!(router.deliver_handled("c1", "d0", 0).await, Applied::NotLive, "nothing kept without a session");
        assert_eq!(router.pending(), 0);
        let (mut link, _stream) = Link::open(&router, "c1", 4);
        let handled = Arc::new(AtomicBool::new(false));
        let session = {
            let handled = handled.clone();
            tokio::spawn(async move {
                let item = link.recv().await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                handled.store(true, Ordering::SeqCst);
                link.handled();
                (item, link)
            })
        };
        assert_eq!(router.deliver_handled("c1", "d1", 1).await, Applied::Processed);
        assert!(handled.load(Ordering::SeqCst), "returned only after the session handled it");
        let (item, mut link) = session.await.unwrap();
        assert_eq!(item, 1);
        assert_eq!(router.deliver_handled("c1", "d1", 1).await, Applied::Duplicate);

        // A session that stops before handling it: not applied, and not marked seen.
        let stopping = tokio::spawn(async move {
            let _ = link.recv().await;
            drop(link);
        });
        assert_eq!(router.deliver_handled("c1", "d2", 2).await, Applied::NotLive);
        stopping.await.unwrap();
        let (mut again, _stream) = Link::open(&router, "c1", 4);
        let taker = tokio::spawn(async move {
            let item = again.recv().await;
            again.handled();
            item
        });
        assert_eq!(router.deliver_handled("c1", "d2", 2).await, Applied::Processed, "taken by the resumed session");
        assert_eq!(taker.await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn accepted_deliveries_are_kept_as_json_and_applied_from_it() {
        let accepted = Accepted::items(
            WebhookReply::json(200, &serde_json::json!({ "id": "x" })),
            vec![Routable::new("c1", "d1", "hello".to_owned(), 5)],
        );
        let ingested = ingested(accepted);
        assert_eq!(ingested.reply.status, 200);
        assert_eq!(ingested.items, [Inbound::new("c1", "d1", br#""hello""#.to_vec())]);

        let router: Arc<PushRouter<String>> = Arc::new(PushRouter::new(16));
        let (mut link, _stream) = Link::open(&router, "c1", 4);
        let session = tokio::spawn(async move {
            let item = link.recv().await;
            link.handled();
            item
        });
        let inbound = ingested.items.into_iter().next().unwrap();
        assert_eq!(router.apply("test", inbound).await.unwrap(), Applied::Processed);
        assert_eq!(session.await.unwrap().as_deref(), Some("hello"));
        let garbage = Inbound::new("c1", "d2", b"not json".to_vec());
        assert_eq!(router.apply("test", garbage).await.unwrap_err().kind(), ErrorKind::Protocol);
    }

    #[tokio::test]
    async fn routing_in_one_process_answers_busy_when_a_delivery_cannot_be_kept() {
        let router = PushRouter::with_limits(16, PendingLimits::new(1, 100, Duration::from_secs(60)));
        let items = vec![Routable::new("a", "d1", 1, 1), Routable::new("b", "d2", 2, 1)];
        let reply = router.route(Accepted::items(WebhookReply::ok(), items)).await;
        assert_eq!(reply.status, 503, "the second one did not fit");
        assert_eq!(router.route(Accepted::items(WebhookReply::ok(), Vec::new())).await.status, 200);
    }
}
