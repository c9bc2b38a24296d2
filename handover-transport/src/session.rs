//! The small kit every provider's session task is built from. Each provider's state
//! machine stays readable top to bottom in its own `session.rs`; these are the pieces
//! that would otherwise be written six times.

use std::ops::ControlFlow;
use std::sync::{Mutex, MutexGuard};

use handover_core::EndReason;
use tokio::time::Instant;

use crate::bounded;

/// What one step of a session task says: go on ([`CONTINUE`]) or stop the task
/// ([`STOP`]: the session ended, or nobody reads its events any more).
pub type Flow = ControlFlow<()>;

/// Go on.
pub const CONTINUE: Flow = ControlFlow::Continue(());

/// Stop the task.
pub const STOP: Flow = ControlFlow::Break(());

/// Locks `m`, going on after a panic elsewhere (the state stays usable: every writer
/// leaves it consistent between statements).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sleeps until `at`, or forever when there is no deadline (for a `select!` branch).
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The bot side's close, from `SessionBackend::end` to the session task: the task answers
/// with `Ended { by: User, reason }` once the contact center has the close. A channel of
/// one that allocates nothing until a close is sent (every session holds one).
pub fn close_signal() -> (CloseSender, CloseReceiver) {
    let (tx, rx) = bounded::channel(1);
    (CloseSender(tx), CloseReceiver(rx))
}

/// The sending half of [`close_signal`], kept by the session backend.
#[derive(Clone, Debug)]
pub struct CloseSender(bounded::Sender<EndReason>);

impl CloseSender {
    /// Tells the task the bot side closed the session for `reason` (waiting while an
    /// earlier close is not taken yet).
    pub async fn close(&self, reason: EndReason) {
        // A task that is gone has nothing left to end.
        let _ = self.0.send(reason).await;
    }
}

/// The receiving half of [`close_signal`], owned by the session task.
#[derive(Debug)]
pub struct CloseReceiver(bounded::Receiver<EndReason>);

impl CloseReceiver {
    /// The reason of the close, once the backend closed; never when it is gone without
    /// closing (cancel safe, for `select!`).
    pub async fn recv(&mut self) -> EndReason {
        match self.0.recv().await {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }
}

/// Calls `call` with `token`; when the answer is `Unauthenticated`, renews the token once
/// with `renew` and calls again (every token cache's refresh-once-on-401).
pub async fn refresh_once_on_401<T, Token, C, CF, R, RF>(token: Token, call: C, renew: R) -> handover_core::Result<T>
where
    Token: Clone,
    C: Fn(Token) -> CF,
    CF: Future<Output = handover_core::Result<T>>,
    R: FnOnce(Token) -> RF,
    RF: Future<Output = handover_core::Result<Token>>,
{
    match call(token.clone()).await {
        Err(error) if error.kind() == handover_core::ErrorKind::Unauthenticated => call(renew(token).await?).await,
        other => other,
    }
}

/// The builder setters every provider shares: `retry` and `channel_capacity`, and with
/// `pending` (push providers) `pending`. The builder has fields `retry`, `capacity` and
/// `pending` of those types.
#[macro_export]
macro_rules! provider_builder_setters {
    ($builder:ty) => {
        impl $builder {
            /// The retry policy of the provider's requests (tests shorten it).
            pub fn retry(mut self, policy: $crate::retry::RetryPolicy) -> Self {
                self.retry = policy;
                self
            }

            /// The capacity of each session's event channel.
            pub fn channel_capacity(mut self, capacity: usize) -> Self {
                self.capacity = capacity;
                self
            }
        }
    };
    ($builder:ty, pending) => {
        $crate::provider_builder_setters!($builder);

        impl $builder {
            /// Bounds the webhook deliveries kept for conversations whose `start` has not
            /// returned yet (DESIGN.md §7.2).
            pub fn pending(mut self, limits: $crate::push::PendingLimits) -> Self {
                self.pending = limits;
                self
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use handover_core::Error;

    use super::*;

    #[tokio::test]
    async fn a_close_carries_its_reason_and_a_dropped_sender_never_fires() {
        let (close, mut closed) = close_signal();
        close.close(EndReason::Cancelled).await;
        assert_eq!(closed.recv().await, EndReason::Cancelled);
        drop(close);
        let never = tokio::time::timeout(std::time::Duration::from_millis(20), closed.recv()).await;
        assert!(never.is_err());
    }

    #[tokio::test]
    async fn a_401_renews_the_token_once_and_calls_again() {
        let calls = AtomicU32::new(0);
        let result =
            refresh_once_on_401(
                "old",
                |token: &str| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let token = token.to_owned();
                    async move {
                        if token == "old" { Err(Error::unauthenticated("x", "call", "expired")) } else { Ok(token) }
                    }
                },
                |_| async { Ok("new") },
            )
            .await;
        assert_eq!(result.unwrap(), "new");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
