//! The stream of agent-side events of one session.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::{Event, Result};

type Inner = Pin<Box<dyn Stream<Item = Result<Event>> + Send + Sync + 'static>>;

/// The agent-side events of one [`Session`](crate::Session).
///
/// # Contract
///
/// Every provider's stream keeps these rules; the `handover-testkit` contract suite checks
/// them for each provider, and this type enforces the termination rules itself:
///
/// 1. **Order.** Events arrive in the order the provider reported them.
/// 2. **No repeats.** No event is delivered twice, across redeliveries, reconnects and
///    back-fills (providers deduplicate by the provider's message or event id).
/// 3. **End.** The stream yields `None` right after [`Event::Ended`].
/// 4. **Drops.** A connection drop that the provider recovers from shows as
///    [`Event::Reconnecting`] followed by [`Event::Resumed`]; `gap: true` says that events
///    may have been missed.
/// 5. **Errors are terminal.** An `Err` item means the session cannot go on; the stream
///    yields `None` after it.
///
/// Read it as a [`Stream`] or with [`EventStream::recv`].
pub struct EventStream {
    inner: Option<Inner>,
}

impl EventStream {
    /// Wraps a provider's raw stream, enforcing the termination rules of the contract.
    pub fn new<S>(stream: S) -> Self
    where
        S: Stream<Item = Result<Event>> + Send + Sync + 'static,
    {
        Self { inner: Some(Box::pin(stream)) }
    }

    /// A stream that has already ended.
    pub fn ended() -> Self {
        Self { inner: None }
    }

    /// The next event, or `None` once the stream has ended.
    pub async fn recv(&mut self) -> Option<Result<Event>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Whether the stream has ended (after `Ended`, an error, or the provider closing it).
    pub fn is_terminated(&self) -> bool {
        self.inner.is_none()
    }
}

impl Stream for EventStream {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(item)) => {
                let terminal = match &item {
                    Ok(event) => event.is_terminal(),
                    Err(_) => true,
                };
                if terminal {
                    self.inner = None;
                }
                Poll::Ready(Some(item))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            Some(inner) => (0, inner.size_hint().1),
            None => (0, Some(0)),
        }
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").field("terminated", &self.is_terminated()).finish()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;
    use crate::{EndedBy, Error};

    fn ended() -> Event {
        Event::Ended { by: EndedBy::Agent, reason: None }
    }

    #[tokio::test]
    async fn stream_ends_right_after_ended_even_if_the_provider_sends_more() {
        let events = vec![Ok(Event::AgentTyping { on: true }), Ok(ended()), Ok(Event::AgentTyping { on: false })];
        let mut stream = EventStream::new(stream::iter(events));
        assert_eq!(stream.recv().await.unwrap().unwrap(), Event::AgentTyping { on: true });
        assert_eq!(stream.recv().await.unwrap().unwrap(), ended());
        assert!(stream.recv().await.is_none());
        assert!(stream.recv().await.is_none());
        assert!(stream.is_terminated());
    }

    #[tokio::test]
    async fn an_error_is_terminal() {
        let events = vec![Err(Error::transport("fake", "stream", "dropped")), Ok(Event::AgentTyping { on: true })];
        let mut stream = EventStream::new(stream::iter(events));
        assert!(stream.recv().await.unwrap().is_err());
        assert!(stream.recv().await.is_none());
    }

    #[tokio::test]
    async fn provider_closing_the_stream_ends_it() {
        let mut stream = EventStream::new(stream::iter(vec![Ok(Event::Reconnecting)]));
        assert_eq!(stream.recv().await.unwrap().unwrap(), Event::Reconnecting);
        assert!(stream.recv().await.is_none());
        assert!(stream.is_terminated());
    }
}
