//! Wake-ups for the readers of a handover's log (SSE, long-poll, the callback sender).
//!
//! The owner publishes what it just committed; a reader on the same instance takes those
//! events straight from here when they follow its cursor, and reads the store otherwise
//! (after a hint from another instance, a lost hint, or a batch it missed). A hint may be
//! missed, so every waiter also has a backstop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use handover_store::StoredEvent;
use tokio::sync::watch;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The latest news of one handover's log: the events of its latest commit, if this
/// instance made it (empty for a hint from elsewhere).
type News = Arc<Vec<StoredEvent>>;

/// Per-handover "the log grew" signals.
#[derive(Debug, Default)]
pub(crate) struct LogHints {
    senders: Mutex<HashMap<String, watch::Sender<News>>>,
}

/// One reader's subscription to a handover's log.
pub(crate) struct LogWaiter {
    rx: watch::Receiver<News>,
    /// `wait` saw news that `take_after` has not looked at yet.
    seen: bool,
}

impl LogHints {
    /// Subscribes to handover `id`'s log.
    pub(crate) fn subscribe(&self, id: &str) -> LogWaiter {
        let mut senders = lock(&self.senders);
        let sender = senders.entry(id.to_owned()).or_insert_with(|| watch::Sender::new(News::default()));
        let mut rx = sender.subscribe();
        rx.mark_unchanged();
        LogWaiter { rx, seen: false }
    }

    /// The log of `id` grew by `events` (committed by this instance), or by something a
    /// hint from elsewhere does not carry (`events` empty).
    pub(crate) fn publish(&self, id: &str, events: Vec<StoredEvent>) {
        let mut senders = lock(&self.senders);
        if let Some(sender) = senders.get(id) {
            if sender.receiver_count() == 0 {
                senders.remove(id);
            } else {
                sender.send_replace(Arc::new(events));
            }
        }
    }

    /// The log of `id` changed elsewhere.
    pub(crate) fn notify(&self, id: &str) {
        self.publish(id, Vec::new());
    }

    /// Hints were lost: wake every reader (they read the store again).
    pub(crate) fn notify_all(&self) {
        let mut senders = lock(&self.senders);
        senders.retain(|_, sender| sender.receiver_count() > 0);
        for sender in senders.values() {
            sender.send_replace(News::default());
        }
    }
}

impl LogWaiter {
    /// Waits for news, or `backstop` (a hint may be missed), whichever comes first.
    pub(crate) async fn wait(&mut self, backstop: Duration) {
        if let Ok(Ok(())) = tokio::time::timeout(backstop, self.rx.changed()).await {
            self.seen = true;
        }
    }

    /// What the news since the last look says about the log after `after`: its events when
    /// they follow `after` without a gap, nothing (`Some(empty)`) when it is about events
    /// already read, and `None` (read the store) when there was no news (a backstop, the
    /// first look), a hint from elsewhere, or a gap.
    pub(crate) fn take_after(&mut self, after: u64) -> Option<Vec<StoredEvent>> {
        if !std::mem::take(&mut self.seen) && !self.rx.has_changed().unwrap_or(false) {
            return None;
        }
        let news = self.rx.borrow_and_update().clone();
        let first = news.first()?;
        if first.seq == after + 1 {
            Some(news.to_vec())
        } else if news.last().is_some_and(|last| last.seq <= after) {
            Some(Vec::new())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(seq: u64) -> StoredEvent {
        StoredEvent::new(seq, None, json!({ "type": "say" }), 0)
    }

    #[tokio::test(start_paused = true)]
    async fn news_wakes_the_readers_of_its_handover_only_and_carries_contiguous_events() {
        let hints = LogHints::default();
        let mut a = hints.subscribe("a");
        let mut b = hints.subscribe("b");
        hints.publish("a", vec![event(1), event(2)]);
        let started = tokio::time::Instant::now();
        a.wait(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "woken at once");
        assert_eq!(a.take_after(0).map(|e| e.len()), Some(2), "follows the cursor: taken from here");
        assert_eq!(a.take_after(2).map(|e| e.len()), None, "no news since: read the store (a backstop)");
        hints.publish("a", vec![event(1), event(2)]);
        assert_eq!(a.take_after(2).map(|e| e.len()), Some(0), "news already read");
        hints.publish("a", vec![event(4)]);
        assert_eq!(a.take_after(2).map(|e| e.len()), None, "a gap (3 missed): read the store");
        b.wait(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5), "b waited for its backstop");
        assert_eq!(b.take_after(0).map(|e| e.len()), None, "nothing published for b: read the store");
        drop(a);
        hints.notify("a");
        assert!(!lock(&hints.senders).contains_key("a"), "nobody reads a any more");
    }
}
