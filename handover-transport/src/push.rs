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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{EndReason, Event, EventStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

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

struct Route<T> {
    deliveries: mpsc::Sender<T>,
    /// The session's event stream: once its consumer is gone, the route is not live.
    events: EventSender,
}

struct Pending<T> {
    key: String,
    item: T,
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

    fn live(&self, key: &str) -> Option<mpsc::Sender<T>> {
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
    pub fn register(&self, key: impl Into<String>, deliveries: mpsc::Sender<T>, events: EventSender) -> VecDeque<T> {
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
    pub fn close(&self, key: &str, deliveries: &mpsc::Sender<T>) {
        let mut table = lock(&self.table);
        if table.routes.get(key).is_some_and(|route| route.deliveries.same_channel(deliveries)) {
            table.routes.remove(key);
            table.closed.insert(key);
        }
    }

    /// Removes `key`'s route if it is still `deliveries` (not a newer session's).
    pub fn unregister(&self, key: &str, deliveries: &mpsc::Sender<T>) {
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
        let item = match route {
            Some(deliveries) => match deliveries.send(item).await {
                Ok(()) => return Routed::Delivered,
                // The session went away meanwhile: keep it for the next one.
                Err(mpsc::error::SendError(item)) => item,
            },
            None => item,
        };
        self.keep(key, id, item, bytes)
    }

    fn keep(&self, key: &str, id: &str, item: T, bytes: usize) -> Routed {
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

/// A push session's place in a [`PushRouter`]: its deliveries (those kept before it
/// registered, then those routed to it) and the sender of its events. The session task
/// owns it; dropping it leaves the router as [`finish(false)`](Self::finish) does.
pub struct Link<T> {
    router: Arc<PushRouter<T>>,
    key: String,
    route: mpsc::Sender<T>,
    deliveries: mpsc::Receiver<T>,
    backlog: VecDeque<T>,
    events: EventSender,
    finished: bool,
}

impl<T> Link<T> {
    /// Registers `key` with `router` (call it as soon as the provider returns the key, so
    /// deliveries go straight to this session); returns the link and the event stream to
    /// hand to the caller.
    pub fn open(router: &Arc<PushRouter<T>>, key: impl Into<String>, capacity: usize) -> (Self, EventStream) {
        let key = key.into();
        let (events, stream) = events::channel(capacity);
        let (route, deliveries) = mpsc::channel(capacity.max(1));
        let backlog = router.register(key.clone(), route.clone(), events.clone());
        let link = Self { router: router.clone(), key, route, deliveries, backlog, events, finished: false };
        (link, stream)
    }

    /// The conversation key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The next delivery: first those kept before the session registered, in arrival
    /// order, then those routed since. Cancel safe (for `select!`).
    pub async fn recv(&mut self) -> Option<T> {
        if let Some(item) = self.backlog.pop_front() {
            return Some(item);
        }
        self.deliveries.recv().await
    }

    /// The event sender (to wait on [`EventSender::closed`]).
    pub fn events(&self) -> &EventSender {
        &self.events
    }

    /// Sends `event` ([`EventSender::emit`]: a terminal event once).
    pub async fn emit(&self, event: Event, mark_ended: impl FnOnce() -> bool) -> Flow {
        self.events.emit(event, mark_ended).await
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
                Some(item) => task.on_delivery(item).await,
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
        let (tx, mut rx) = mpsc::channel(4);
        let backlog = router.register("c1", tx.clone(), events);
        assert_eq!(backlog, [1], "the kept delivery goes to the registering session");
        assert_eq!(router.pending(), 0);
        assert_eq!(router.deliver("c1", "d2", 2, 10).await, Routed::Delivered);
        assert_eq!(rx.recv().await, Some(2));
        drop(stream);
        assert!(!router.is_live("c1"));
        assert_eq!(router.deliver("c1", "d3", 3, 10).await, Routed::Kept, "kept for a resumed session");

        // A resumed session takes over; the old one's cleanup leaves it alone.
        let (events, _stream) = events::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        assert_eq!(router.register("c1", tx2, events), [3]);
        router.unregister("c1", &tx);
        assert_eq!(router.deliver("c1", "d4", 4, 10).await, Routed::Delivered);
        assert_eq!(rx2.recv().await, Some(4));
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
        let (tx, _rx) = mpsc::channel(4);
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
        let (tx, _rx) = mpsc::channel(4);
        router.register("c1", tx.clone(), events.clone());
        let (other, _other_rx) = mpsc::channel(4);
        router.close("c1", &other);
        assert!(router.is_live("c1"), "only the owner closes its route");
        router.close("c1", &tx);
        assert_eq!(router.deliver("c1", "late", 1, 1).await, Routed::Closed);
        assert_eq!(Routed::Closed.status(), 200);
        assert_eq!(router.deliver("c2", "other", 1, 1).await, Routed::Kept);
        // A resumed session for the same conversation takes deliveries again.
        let (tx2, mut rx2) = mpsc::channel(4);
        router.register("c1", tx2, events);
        assert_eq!(router.deliver("c1", "again", 3, 1).await, Routed::Delivered);
        assert_eq!(rx2.recv().await, Some(3));
    }
}
