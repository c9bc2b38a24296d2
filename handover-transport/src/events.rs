//! The bounded channel a session task feeds its [`EventStream`] through.
//!
//! The channel is bounded so a slow consumer applies backpressure to the task reading
//! the provider (which then stops reading its socket) instead of growing memory.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use handover_core::{EndedBy, Error, Event, EventStream, Result};

use crate::session::{CONTINUE, Flow, STOP};
use tokio::sync::mpsc;

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

    /// Sends `event`, a terminal one only once: `mark_ended` marks the session ended and
    /// says whether it was not already (see [`EndState::mark_ended`]). [`STOP`] when the
    /// session is over: the event was terminal, a terminal one went before, or nobody
    /// listens any more.
    pub async fn emit(&self, event: Event, mark_ended: impl FnOnce() -> bool) -> Flow {
        let terminal = event.is_terminal();
        if terminal && !mark_ended() {
            return STOP;
        }
        if self.send(event).await && !terminal { CONTINUE } else { STOP }
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
}
