//! The bounded channel a session task feeds its [`EventStream`] through.
//!
//! The channel is bounded so a slow consumer applies backpressure to the task reading
//! the provider (which then stops reading its socket) instead of growing memory.

use futures_util::FutureExt as _;
use futures_util::future::OptionFuture;
use handover_core::{EndedBy, Error, Event, EventStream, Result};

use crate::bounded;
use crate::session::{CONTINUE, Flow, STOP};

/// The default channel capacity.
pub const DEFAULT_CAPACITY: usize = 64;

/// Whether a session has ended, and whether the bot side asked for it: one terminal event
/// per session, and an end the contact center reports after our own close reads as the
/// user's. Serializes as the two fields `ended` and `closed_by_us`, to flatten into a
/// provider's snapshot state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EndState {
    ended: bool,
    closed_by_us: bool,
}

impl EndState {
    /// Whether the session has ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// `Ok` while the session runs; after its end, the [`ErrorKind::SessionEnded`](handover_core::ErrorKind::SessionEnded)
    /// error of `provider`'s `op` (the check every `send` starts with).
    pub fn ensure_open(&self, provider: &'static str, op: &'static str) -> Result<()> {
        if self.ended { Err(Error::session_ended(provider, op)) } else { Ok(()) }
    }

    /// Marks the session ended; `true` the first time (send the terminal event), `false`
    /// after.
    pub fn mark_ended(&mut self) -> bool {
        !std::mem::replace(&mut self.ended, true)
    }

    /// The bot side is closing the session (`SessionBackend::end`): `false` when it has
    /// already ended and there is nothing to close.
    pub fn begin_close(&mut self) -> bool {
        if self.ended {
            return false;
        }
        self.closed_by_us = true;
        true
    }

    /// Who ended the session when the contact center reports its end: the user when the
    /// bot side closed it, else `otherwise`.
    pub fn ended_by(&self, otherwise: EndedBy) -> EndedBy {
        if self.closed_by_us { EndedBy::User } else { otherwise }
    }

    /// The state of a resumed session: not ended (a snapshot is taken of a live session),
    /// whoever closed before.
    pub fn resumed(self) -> Self {
        Self { ended: false, ..self }
    }
}

/// The sending half, held by the task that reads the provider.
#[derive(Clone)]
pub struct EventSender {
    tx: bounded::Sender<Result<Event>>,
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSender").field("closed", &self.is_closed()).finish()
    }
}

impl EventSender {
    /// Sends an event, waiting while the channel is full. `false` when the consumer is
    /// gone (the task should stop).
    pub fn send(&self, event: Event) -> impl Future<Output = bool> + '_ {
        // Not an `async fn`, which would keep a second copy of the event in its state: the
        // sender's future is part of every session task's.
        self.tx.send(Ok(event)).map(|sent| sent.is_ok())
    }

    /// Sends `event`, a terminal one only once: `mark_ended` marks the session ended and
    /// says whether it was not already (see [`EndState::mark_ended`]); it is called before
    /// the future is returned. [`STOP`] when the session is over: the event was terminal, a
    /// terminal one went before, or nobody listens any more.
    pub fn emit(&self, event: Event, mark_ended: impl FnOnce() -> bool) -> impl Future<Output = Flow> + '_ {
        let terminal = event.is_terminal();
        let send = (!terminal || mark_ended()).then(|| self.tx.send(Ok(event)));
        // Polled in place: moving the send out of an `async` block to await it would keep
        // two of them in the state.
        OptionFuture::from(send)
            .map(move |sent| if matches!(sent, Some(Ok(()))) && !terminal { CONTINUE } else { STOP })
    }

    /// Sends a terminal error. `false` when the consumer is gone.
    pub fn fail(&self, error: Error) -> impl Future<Output = bool> + '_ {
        self.tx.send(Err(error)).map(|sent| sent.is_ok())
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

/// A bounded channel of `capacity` events and the [`EventStream`] reading it.
///
/// Nothing is allocated for the events until the first one is sent: a held session is
/// mostly idle, and one of these lives for every session (see [`bounded`]).
pub fn channel(capacity: usize) -> (EventSender, EventStream) {
    let (tx, rx) = bounded::channel(capacity);
    (EventSender { tx }, EventStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_state_ends_once_and_remembers_who_closed() {
        let mut state = EndState::default();
        assert_eq!(state.ended_by(EndedBy::Agent), EndedBy::Agent);
        assert!(state.begin_close());
        assert_eq!(state.ended_by(EndedBy::Agent), EndedBy::User);
        assert!(state.mark_ended());
        assert!(!state.mark_ended());
        assert!(state.is_ended());
        assert!(!state.begin_close(), "nothing to close after the end");
        assert!(!state.resumed().is_ended());
        let json = serde_json::to_value(state).unwrap();
        assert_eq!(json, serde_json::json!({ "ended": true, "closed_by_us": true }));
        assert_eq!(serde_json::from_value::<EndState>(serde_json::json!({})).unwrap(), EndState::default());
    }

    use futures_util::FutureExt;
    use handover_core::EndedBy;

    #[tokio::test]
    async fn a_full_channel_makes_the_sender_wait() {
        let (tx, mut stream) = channel(1);
        assert!(tx.send(Event::AgentTyping { on: true }).await);
        let blocked = tx.send(Event::AgentTyping { on: false }).now_or_never();
        assert!(blocked.is_none(), "the second send must wait for the consumer");
        assert_eq!(stream.recv().await.unwrap().unwrap(), Event::AgentTyping { on: true });
        assert!(tx.send(Event::AgentTyping { on: false }).await);
        assert_eq!(stream.recv().await.unwrap().unwrap(), Event::AgentTyping { on: false });
    }

    #[tokio::test]
    async fn dropping_the_stream_tells_the_sender() {
        let (tx, stream) = channel(4);
        drop(stream);
        assert!(tx.is_closed());
        assert!(!tx.send(Event::Ended { by: EndedBy::Agent, reason: None }).await);
    }

    fn typing(on: bool) -> Event {
        Event::AgentTyping { on }
    }

    #[tokio::test]
    async fn a_waiting_sender_and_closed_wake_when_the_stream_is_dropped() {
        let (tx, stream) = channel(1);
        assert!(tx.send(typing(true)).await);
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(typing(false)).await }
        });
        let closed = tokio::spawn({
            let tx = tx.clone();
            async move { tx.closed().await }
        });
        tokio::task::yield_now().await;
        assert!(tx.closed().now_or_never().is_none(), "open while the stream lives");
        drop(stream);
        assert!(!waiting.await.unwrap(), "nobody will read it");
        closed.await.unwrap();
        assert!(tx.is_closed());
        tx.closed().await;
    }

    #[tokio::test]
    async fn a_terminal_event_goes_once_and_stops_the_task() {
        let (tx, mut stream) = channel(4);
        let mut ended = false;
        let mut first_end = || !std::mem::replace(&mut ended, true);
        assert_eq!(tx.emit(typing(true), &mut first_end).await, CONTINUE);
        let end = Event::Ended { by: EndedBy::Agent, reason: None };
        assert_eq!(tx.emit(end.clone(), &mut first_end).await, STOP, "terminal: the session is over");
        assert_eq!(tx.emit(end.clone(), &mut first_end).await, STOP);
        assert!(tx.fail(Error::transport("test", "read", "gone")).await);
        assert_eq!(stream.recv().await.unwrap().unwrap(), typing(true));
        assert_eq!(stream.recv().await.unwrap().unwrap(), end);
        assert!(stream.recv().await.is_none(), "one end only: the stream stops after it");
    }
}
