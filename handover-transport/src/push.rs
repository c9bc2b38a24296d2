//! Routing pushed deliveries (webhooks) to live sessions.
//!
//! A push provider receives every delivery on one endpoint. [`PushRouter`] remembers which
//! session owns which conversation, drops redeliveries, and tells the caller when no live
//! session took a delivery, so the webhook can be refused (`503`) and the provider's
//! retries bring it to a session resumed meanwhile instead of losing it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use handover_core::{Event, EventStream};
use tokio::sync::mpsc;

use crate::dedup::DedupSet;
use crate::events::{self, EventSender};

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
    /// No live session owns the conversation: refuse it so it is delivered again.
    NoSession,
    /// The conversation's handover has ended: nothing will take it, so it is acknowledged
    /// and dropped (a refusal would only make the provider retry).
    Closed,
}

impl Routed {
    /// The HTTP status to answer with: `200`, or `503` for [`Routed::NoSession`].
    pub fn status(self) -> u16 {
        match self {
            Routed::Delivered | Routed::Duplicate | Routed::Closed => 200,
            Routed::NoSession => 503,
        }
    }
}

struct Route<T> {
    deliveries: mpsc::Sender<T>,
    /// The session's event stream: once its consumer is gone, deliveries are refused.
    events: EventSender,
}

/// Conversation key → the session task's delivery channel.
pub struct PushRouter<T> {
    routes: Mutex<HashMap<String, Route<T>>>,
    seen: Mutex<DedupSet>,
    closed: Mutex<DedupSet>,
}

impl<T> Default for PushRouter<T> {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl<T> PushRouter<T> {
    /// A router remembering `capacity` delivery ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            routes: Mutex::default(),
            seen: Mutex::new(DedupSet::new(capacity)),
            closed: Mutex::new(DedupSet::new(capacity)),
        }
    }

    /// Routes `key`'s deliveries to `deliveries` for as long as `events` has a consumer.
    /// A later registration for the same key (a resumed session) replaces this one.
    pub fn register(&self, key: impl Into<String>, deliveries: mpsc::Sender<T>, events: EventSender) {
        let key = key.into();
        lock(&self.closed).remove(&key);
        lock(&self.routes).insert(key, Route { deliveries, events });
    }

    /// Removes `key`'s route like [`unregister`](Self::unregister) and records that its
    /// handover ended: later deliveries are acknowledged as [`Routed::Closed`].
    pub fn close(&self, key: &str, deliveries: &mpsc::Sender<T>) {
        let mut routes = lock(&self.routes);
        if routes.get(key).is_some_and(|route| route.deliveries.same_channel(deliveries)) {
            routes.remove(key);
            lock(&self.closed).insert(key);
        }
    }

    /// Removes `key`'s route if it is still `deliveries` (not a newer session's).
    pub fn unregister(&self, key: &str, deliveries: &mpsc::Sender<T>) {
        let mut routes = lock(&self.routes);
        if routes.get(key).is_some_and(|route| route.deliveries.same_channel(deliveries)) {
            routes.remove(key);
        }
    }

    /// Marks delivery ids as seen (from a snapshot).
    pub fn remember<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut seen = lock(&self.seen);
        for id in ids {
            seen.insert(id);
        }
    }

    /// Whether a live session owns `key`.
    pub fn is_live(&self, key: &str) -> bool {
        lock(&self.routes).get(key).is_some_and(|route| !route.events.is_closed())
    }

    /// Hands `item` (delivery id `id`) to `key`'s session. A delivery no live session takes
    /// is not recorded as seen, so its redelivery is handled like the first.
    pub async fn deliver(&self, key: &str, id: &str, item: T) -> Routed {
        if !lock(&self.seen).insert(id) {
            return Routed::Duplicate;
        }
        let route = lock(&self.routes).get(key).map(|r| (r.deliveries.clone(), r.events.is_closed()));
        let delivered = match route {
            Some((deliveries, false)) => deliveries.send(item).await.is_ok(),
            _ => false,
        };
        if delivered {
            return Routed::Delivered;
        }
        if lock(&self.closed).contains(key) {
            return Routed::Closed;
        }
        lock(&self.seen).remove(id);
        Routed::NoSession
    }
}

/// A push session's place in a [`PushRouter`]: the channel its deliveries arrive on and the
/// sender of its events. The session task owns it.
pub struct Link<T> {
    router: Arc<PushRouter<T>>,
    key: String,
    route: mpsc::Sender<T>,
    events: EventSender,
}

impl<T> Link<T> {
    /// Registers `key` with `router`; returns the link, the deliveries and the event stream
    /// to hand to the caller.
    pub fn open(
        router: &Arc<PushRouter<T>>,
        key: impl Into<String>,
        capacity: usize,
    ) -> (Self, mpsc::Receiver<T>, EventStream) {
        let key = key.into();
        let (events, stream) = events::channel(capacity);
        let (route, deliveries) = mpsc::channel(capacity);
        router.register(key.clone(), route.clone(), events.clone());
        (Self { router: router.clone(), key, route, events }, deliveries, stream)
    }

    /// The event sender (to wait on [`EventSender::closed`]).
    pub fn events(&self) -> &EventSender {
        &self.events
    }

    /// Sends `event` ([`EventSender::emit`]: a terminal event once).
    pub async fn emit(&self, event: Event, mark_ended: impl FnOnce() -> bool) -> bool {
        self.events.emit(event, mark_ended).await
    }

    /// Leaves the router: after an end late deliveries are acknowledged
    /// ([`PushRouter::close`]), otherwise refused so a resumed session gets them.
    pub fn finish(&self, ended: bool) {
        if ended {
            self.router.close(&self.key, &self.route);
        } else {
            self.router.unregister(&self.key, &self.route);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events;

    #[tokio::test]
    async fn deliveries_reach_the_live_session_once_and_are_refused_without_one() {
        let router = PushRouter::new(16);
        assert_eq!(router.deliver("c1", "d1", 1).await, Routed::NoSession);
        let (events, stream) = events::channel(4);
        let (tx, mut rx) = mpsc::channel(4);
        router.register("c1", tx.clone(), events);
        assert_eq!(router.deliver("c1", "d1", 1).await, Routed::Delivered, "refused before, so not seen");
        assert_eq!(router.deliver("c1", "d1", 1).await, Routed::Duplicate);
        assert_eq!(rx.recv().await, Some(1));
        drop(stream);
        assert!(!router.is_live("c1"));
        assert_eq!(router.deliver("c1", "d2", 2).await, Routed::NoSession);
        assert_eq!(Routed::NoSession.status(), 503);

        // A resumed session takes over; the old one's cleanup leaves it alone.
        let (events, _stream) = events::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        router.register("c1", tx2, events);
        router.unregister("c1", &tx);
        assert_eq!(router.deliver("c1", "d2", 2).await, Routed::Delivered);
        assert_eq!(rx2.recv().await, Some(2));
    }

    #[tokio::test]
    async fn a_link_sends_one_end_and_leaves_the_router() {
        let router = Arc::new(PushRouter::new(16));
        let (link, mut deliveries, mut stream) = Link::open(&router, "c1", 4);
        assert_eq!(router.deliver("c1", "d1", 7).await, Routed::Delivered);
        assert_eq!(deliveries.recv().await, Some(7));
        let mut ended = false;
        let mut first_end = || !std::mem::replace(&mut ended, true);
        assert!(link.emit(Event::AgentTyping(true), &mut first_end).await);
        let end = Event::Ended { by: handover_core::EndedBy::Agent, reason: None };
        assert!(!link.emit(end.clone(), &mut first_end).await, "terminal: the session is over");
        assert!(!link.emit(end, &mut first_end).await);
        assert!(matches!(stream.recv().await, Some(Ok(Event::AgentTyping(true)))));
        assert!(matches!(stream.recv().await, Some(Ok(Event::Ended { .. }))));
        assert!(stream.recv().await.is_none(), "one end only");
        link.finish(true);
        assert_eq!(router.deliver("c1", "d2", 8).await, Routed::Closed);
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
        assert_eq!(router.deliver("c1", "late", 1).await, Routed::Closed);
        assert_eq!(Routed::Closed.status(), 200);
        assert_eq!(router.deliver("c2", "other", 1).await, Routed::NoSession);
        // A resumed session for the same conversation takes deliveries again.
        let (tx2, mut rx2) = mpsc::channel(4);
        router.register("c1", tx2, events);
        assert_eq!(router.deliver("c1", "again", 3).await, Routed::Delivered);
        assert_eq!(rx2.recv().await, Some(3));
    }
}
