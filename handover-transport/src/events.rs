//! The bounded channel a session task feeds its [`EventStream`] through.
//!
//! The channel is bounded so a slow consumer applies backpressure to the task reading
//! the provider (which then stops reading its socket) instead of growing memory.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use handover_core::{Error, Event, EventStream, Result};
use tokio::sync::mpsc;

/// The default channel capacity.
pub const DEFAULT_CAPACITY: usize = 64;

/// The sending half, held by the task that reads the provider.
#[derive(Clone, Debug)]
pub struct EventSender {
    tx: mpsc::Sender<Result<Event>>,
}

impl EventSender {
    /// Sends an event, waiting while the channel is full. `false` when the consumer is
    /// gone (the task should stop).
    pub async fn send(&self, event: Event) -> bool {
        self.tx.send(Ok(event)).await.is_ok()
    }

    /// Sends a terminal error. `false` when the consumer is gone.
    pub async fn fail(&self, error: Error) -> bool {
        self.tx.send(Err(error)).await.is_ok()
    }

    /// Whether the consumer dropped the stream.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the consumer drops the stream.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

struct Receiver(mpsc::Receiver<Result<Event>>);

impl Stream for Receiver {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// A bounded channel of `capacity` events and the [`EventStream`] reading it.
pub fn channel(capacity: usize) -> (EventSender, EventStream) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (EventSender { tx }, EventStream::new(Receiver(rx)))
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;
    use handover_core::EndedBy;

    use super::*;

    #[tokio::test]
    async fn a_full_channel_makes_the_sender_wait() {
        let (tx, mut stream) = channel(1);
        assert!(tx.send(Event::AgentTyping(true)).await);
        let blocked = tx.send(Event::AgentTyping(false)).now_or_never();
        assert!(blocked.is_none(), "the second send must wait for the consumer");
        assert_eq!(stream.recv().await.unwrap().unwrap(), Event::AgentTyping(true));
        assert!(tx.send(Event::AgentTyping(false)).await);
        assert_eq!(stream.recv().await.unwrap().unwrap(), Event::AgentTyping(false));
    }

    #[tokio::test]
    async fn dropping_the_stream_tells_the_sender() {
        let (tx, stream) = channel(4);
        drop(stream);
        assert!(tx.is_closed());
        assert!(!tx.send(Event::Ended { by: EndedBy::Agent, reason: None }).await);
    }
}
