//! A bounded multi-producer, single-consumer channel that allocates nothing until it is
//! used.
//!
//! Every held session owns a few channels (its events, the bot side's close, a push
//! session's deliveries) and most of them stay empty for hours. A tokio `mpsc` channel
//! allocates its first block of 32 slots when it is created (for a push delivery, 11 KiB
//! per session); this one allocates its queue when the first item is sent and frees it
//! again once a burst has been read. The guarantees are the same: the channel is bounded (a
//! sender waits for room, in the order the senders came), nothing is dropped while the
//! receiver lives, order is kept, and the senders learn when the receiver is gone.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use tokio::sync::{Notify, Semaphore};

/// Items of a drained queue whose room is kept; a larger queue is freed once empty.
const KEPT_ROOM: usize = 8;

/// A channel of `capacity` items (at least 1).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        room: Semaphore::new(capacity.clamp(1, Semaphore::MAX_PERMITS)),
        state: Mutex::new(State { queue: VecDeque::new(), senders: 1, receiving: true, waker: None }),
        receiver_gone: Notify::new(),
    });
    (Sender { shared: shared.clone() }, Receiver { shared })
}

/// What the two halves share.
struct Shared<T> {
    /// Free places in the queue: a sender takes one before it queues its item, and the
    /// receiver gives it back when it takes the item out. Closed once the receiver is gone.
    room: Semaphore,
    state: Mutex<State<T>>,
    /// Wakes [`Sender::closed`] once the receiver is gone.
    receiver_gone: Notify,
}

struct State<T> {
    queue: VecDeque<T>,
    senders: usize,
    receiving: bool,
    /// The receiver waiting for an item (or for the last sender to leave).
    waker: Option<Waker>,
}

impl<T> Shared<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The sending half; clone it for more senders.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `item`, waiting while the channel is full; gives `item` back when the
    /// receiver is gone. Cancel safe: dropped while it waits, nothing was queued.
    #[allow(clippy::manual_async_fn, reason = "an `async fn` would keep `item` twice in its state")]
    pub fn send(&self, item: T) -> impl Future<Output = Result<(), T>> + '_ {
        // An `async` block rather than an `async fn`, whose state would hold `item` twice
        // (the argument and the body's binding of it); this future is part of every
        // session task's.
        async move {
            let Ok(place) = self.shared.room.acquire().await else { return Err(item) };
            let mut state = self.shared.state();
            if !state.receiving {
                return Err(item);
            }
            // The receiver gives the place back when it takes the item out.
            place.forget();
            state.queue.push_back(item);
            let waker = state.waker.take();
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
            Ok(())
        }
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.room.is_closed()
    }

    /// Resolves once the receiver is gone (cancel safe, for `select!`).
    pub async fn closed(&self) {
        // Registered before the check, so a receiver leaving in between still wakes it.
        let gone = self.shared.receiver_gone.notified();
        if self.is_closed() {
            return;
        }
        gone.await;
    }

    /// Whether `self` and `other` send to the same receiver.
    pub fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.state().senders += 1;
        Self { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.senders -= 1;
        let waker = if state.senders == 0 { state.waker.take() } else { None };
        drop(state);
        // The last sender is gone: the receiver ends once the queue is read.
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("closed", &self.is_closed()).finish_non_exhaustive()
    }
}

/// The receiving half: items in the order they were queued, then `None` once every sender
/// is gone and the queue is read. Dropping it drops what is still queued.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item; `None` once every sender is gone and the queue is read. Cancel safe.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next item (see [`recv`](Self::recv)).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.state();
        if let Some(item) = state.queue.pop_front() {
            if state.queue.is_empty() && state.queue.capacity() > KEPT_ROOM {
                // A burst is over: give its room back.
                state.queue = VecDeque::new();
            }
            drop(state);
            self.shared.room.add_permits(1);
            return Poll::Ready(Some(item));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            none => *none = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Stream for Receiver<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.poll_recv(cx)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let queued = {
            let mut state = self.shared.state();
            state.receiving = false;
            state.waker = None;
            std::mem::take(&mut state.queue)
        };
        // Senders waiting for room give up; `closed` resolves.
        self.shared.room.close();
        self.shared.receiver_gone.notify_waiters();
        drop(queued);
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_and_the_receiver_ends_after_the_last_sender() {
        let (tx, mut rx) = channel(8);
        let other = tx.clone();
        assert!(tx.same_channel(&other));
        assert!(!tx.same_channel(&channel::<u32>(1).0));
        tx.send(1).await.unwrap();
        other.send(2).await.unwrap();
        tx.send(3).await.unwrap();
        drop(tx);
        assert!(!other.is_closed());
        drop(other);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        assert_eq!(rx.recv().await, None, "every sender is gone and the queue is read");
    }

    #[tokio::test]
    async fn a_full_channel_makes_the_sender_wait() {
        let (tx, mut rx) = channel(1);
        tx.send(1).await.unwrap();
        assert!(tx.send(2).now_or_never().is_none(), "the second send waits for the receiver");
        assert_eq!(rx.recv().await, Some(1));
        tx.send(2).await.unwrap();
        assert_eq!(rx.recv().await, Some(2));
    }

    #[tokio::test]
    async fn a_send_dropped_while_waiting_queues_nothing_and_keeps_the_room() {
        let (tx, mut rx) = channel(1);
        tx.send(1).await.unwrap();
        assert!(tx.send(2).now_or_never().is_none(), "full: waits, then is dropped");
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(tx.send(3).now_or_never(), Some(Ok(())), "the freed place is there");
        assert_eq!(rx.recv().await, Some(3));
        assert!(rx.recv().now_or_never().is_none(), "the dropped send queued nothing");
    }

    #[tokio::test]
    async fn a_waiting_sender_and_closed_wake_when_the_receiver_is_dropped() {
        let (tx, rx) = channel(1);
        tx.send(1).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(2).await }
        });
        let closed = tokio::spawn({
            let tx = tx.clone();
            async move { tx.closed().await }
        });
        tokio::task::yield_now().await;
        assert!(tx.closed().now_or_never().is_none(), "open while the receiver lives");
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(2), "the item comes back: nobody will read it");
        closed.await.unwrap();
        assert!(tx.is_closed());
        tx.closed().await;
        assert_eq!(tx.send(3).await, Err(3));
    }

    fn next<T>(rx: &mut Receiver<T>) -> Option<T> {
        match rx.poll_recv(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(item) => item,
            Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn nothing_is_allocated_up_front_and_a_burst_gives_its_room_back() {
        let (tx, mut rx) = channel::<u32>(64);
        assert_eq!(tx.shared.state().queue.capacity(), 0, "no room until the first item");
        for n in 0..40 {
            tx.send(n).await.unwrap();
        }
        assert!(tx.shared.state().queue.capacity() >= 40);
        for n in 0..40 {
            assert_eq!(next(&mut rx), Some(n));
        }
        assert_eq!(tx.shared.state().queue.capacity(), 0, "drained after a burst: freed");
        tx.send(40).await.unwrap();
        assert_eq!(next(&mut rx), Some(40));
        assert!(tx.shared.state().queue.capacity() <= KEPT_ROOM, "a small queue is kept");
        assert_eq!(next(&mut rx), None);
    }
}
