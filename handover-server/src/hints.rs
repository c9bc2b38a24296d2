//! Wake-ups from the store's change hints: readers of a handover's log (SSE, long-poll,
//! the callback sender) wait on it here; owners' runners and the claimer are woken by
//! [`crate::fleet`]. A hint may be missed, so every waiter also has a backstop.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Per-handover "the log grew" signals.
#[derive(Debug, Default)]
pub(crate) struct LogHints {
    senders: Mutex<HashMap<String, watch::Sender<u64>>>,
}

/// One reader's subscription to a handover's log.
pub(crate) struct LogWaiter {
    rx: watch::Receiver<u64>,
}

impl LogHints {
    /// Subscribes to handover `id`'s log.
    pub(crate) fn subscribe(&self, id: &str) -> LogWaiter {
        let mut senders = lock(&self.senders);
        let sender = senders.entry(id.to_owned()).or_insert_with(|| watch::Sender::new(0));
        let mut rx = sender.subscribe();
        rx.mark_unchanged();
        LogWaiter { rx }
    }

    /// The log of `id` grew (or its state changed).
    pub(crate) fn notify(&self, id: &str) {
        let mut senders = lock(&self.senders);
        if let Some(sender) = senders.get(id) {
            if sender.receiver_count() == 0 {
                senders.remove(id);
            } else {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Hints were lost: wake every reader (they read the store again).
    pub(crate) fn notify_all(&self) {
        let mut senders = lock(&self.senders);
        senders.retain(|_, sender| sender.receiver_count() > 0);
        for sender in senders.values() {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

impl LogWaiter {
    /// Waits for a hint, or `backstop` (a hint may be missed), whichever comes first.
    pub(crate) async fn wait(&mut self, backstop: Duration) {
        let _ = tokio::time::timeout(backstop, self.rx.changed()).await;
        self.rx.mark_unchanged();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_hint_wakes_the_readers_of_its_handover_only() {
        let hints = LogHints::default();
        let mut a = hints.subscribe("a");
        let mut b = hints.subscribe("b");
        hints.notify("a");
        let started = tokio::time::Instant::now();
        a.wait(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "woken at once");
        b.wait(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(5), "b waited for its backstop");
        drop(a);
        hints.notify("a");
        assert!(!lock(&hints.senders).contains_key("a"), "nobody reads a any more");
    }
}
