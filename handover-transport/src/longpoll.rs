//! A long-poll loop: one poll in flight, backoff that resets on success, cancellation
//! checked between attempts, and a client timeout longer than the server's hold.

use std::future::Future;
use std::time::Duration;

use handover_core::{Error, Result};
use tokio_util::sync::CancellationToken;

use crate::retry::{Backoff, RetryPolicy};

/// What one poll returned.
#[derive(Debug)]
pub enum PollOutcome<T> {
    /// Data arrived: the loop returns it and resets the backoff.
    Data(T),
    /// The server's hold expired with nothing to say (`204`): poll again at once.
    Empty,
    /// A transient failure: poll again after backoff.
    Retry(Error),
    /// A permanent failure: the loop returns it.
    Fail(Error),
}

/// Settings of the loop.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LongPollConfig {
    /// How long the server holds a poll open before answering empty.
    pub server_hold: Duration,
    /// Added to the hold for the client-side timeout, so the server answers first.
    pub timeout_margin: Duration,
    /// Backoff after failed polls; `max_attempts` bounds consecutive failures.
    pub backoff: RetryPolicy,
}

impl Default for LongPollConfig {
    fn default() -> Self {
        Self {
            server_hold: Duration::from_secs(30),
            timeout_margin: Duration::from_secs(15),
            backoff: RetryPolicy {
                max_attempts: 8,
                initial_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(30),
                ..RetryPolicy::default()
            },
        }
    }
}

impl LongPollConfig {
    /// Sets the server hold.
    #[must_use]
    pub fn with_server_hold(mut self, hold: Duration) -> Self {
        self.server_hold = hold;
        self
    }

    /// Sets the backoff policy.
    #[must_use]
    pub fn with_backoff(mut self, policy: RetryPolicy) -> Self {
        self.backoff = policy;
        self
    }
}

/// The loop. Each [`next`](LongPoll::next) polls until data, a permanent failure, too many
/// transient failures, or cancellation.
#[derive(Debug)]
pub struct LongPoll {
    config: LongPollConfig,
    backoff: Backoff,
    cancel: CancellationToken,
    polls: u64,
}

impl LongPoll {
    /// A loop stopped by `cancel`.
    pub fn new(config: LongPollConfig, cancel: CancellationToken) -> Self {
        let backoff = config.backoff.backoff();
        Self { config, backoff, cancel, polls: 0 }
    }

    /// The timeout each poll request must use: the server hold plus a margin.
    pub fn client_timeout(&self) -> Duration {
        self.config.server_hold + self.config.timeout_margin
    }

    /// Polls made so far.
    pub fn polls(&self) -> u64 {
        self.polls
    }

    /// Polls with `poll` (given the client timeout) until it yields data (`Some(Ok)`),
    /// fails permanently or exhausts the backoff (`Some(Err)`), or the loop is cancelled
    /// (`None`). Cancellation is checked before every attempt and interrupts the backoff
    /// wait and the poll itself.
    pub async fn next<T, F, Fut>(&mut self, mut poll: F) -> Option<Result<T>>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = PollOutcome<T>>,
    {
        loop {
            if self.cancel.is_cancelled() {
                return None;
            }
            self.polls += 1;
            let outcome = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return None,
                outcome = poll(self.client_timeout()) => outcome,
            };
            match outcome {
                PollOutcome::Data(data) => {
                    self.backoff.reset();
                    return Some(Ok(data));
                }
                PollOutcome::Empty => self.backoff.reset(),
                PollOutcome::Fail(error) => return Some(Err(error)),
                PollOutcome::Retry(error) => {
                    if !self.backoff.can_retry() {
                        let attempts = self.backoff.attempts() + 1;
                        let message = format!("{} (gave up after {attempts} failed polls)", error.message());
                        return Some(Err(Error::new(
                            error.kind(),
                            error.provider().to_owned(),
                            error.op().to_owned(),
                            message,
                        )
                        .with_source(error)));
                    }
                    let delay = error.retry_after().unwrap_or_else(|| self.backoff.next_delay());
                    tracing::debug!(provider = error.provider(), %error, ?delay, "poll failed; backing off");
                    tokio::select! {
                        biased;
                        () = self.cancel.cancelled() => return None,
                        () = self.backoff.sleep(delay) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::retry::Sleeper;

    fn recording() -> (Sleeper, Arc<Mutex<Vec<Duration>>>) {
        let delays = Arc::new(Mutex::new(Vec::new()));
        let d = delays.clone();
        (
            Sleeper::new(move |delay| {
                d.lock().unwrap().push(delay);
                async {}
            }),
            delays,
        )
    }

    fn config(sleeper: Sleeper) -> LongPollConfig {
        LongPollConfig::default().with_backoff(
            RetryPolicy::default()
                .with_backoff(Duration::from_millis(10), Duration::from_millis(40))
                .with_jitter(false)
                .with_max_attempts(4)
                .with_sleeper(sleeper),
        )
    }

    fn transient() -> Error {
        Error::transport("salesforce", "poll messages", "HTTP 502")
    }

    #[tokio::test]
    async fn empty_polls_repeat_at_once_and_data_is_returned() {
        let (sleeper, delays) = recording();
        let mut poll = LongPoll::new(config(sleeper), CancellationToken::new());
        let mut script = vec![PollOutcome::Empty, PollOutcome::Empty, PollOutcome::Data(7)].into_iter();
        let got = poll.next(|_| std::future::ready(script.next().unwrap())).await;
        assert_eq!(got.unwrap().unwrap(), 7);
        assert_eq!(poll.polls(), 3);
        assert!(delays.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn backoff_grows_on_failures_and_resets_on_success() {
        let (sleeper, delays) = recording();
        let mut poll = LongPoll::new(config(sleeper), CancellationToken::new());
        let mut script = vec![
            PollOutcome::Retry(transient()),
            PollOutcome::Retry(transient()),
            PollOutcome::Data(1),
            PollOutcome::Retry(transient()),
            PollOutcome::Data(2),
        ]
        .into_iter();
        assert_eq!(poll.next(|_| std::future::ready(script.next().unwrap())).await.unwrap().unwrap(), 1);
        assert_eq!(poll.next(|_| std::future::ready(script.next().unwrap())).await.unwrap().unwrap(), 2);
        let ms: Vec<_> = delays.lock().unwrap().iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [10, 20, 10]);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_with_the_last_error() {
        let (sleeper, _) = recording();
        let mut poll = LongPoll::new(config(sleeper), CancellationToken::new());
        let err = poll.next(|_| std::future::ready(PollOutcome::<()>::Retry(transient()))).await.unwrap().unwrap_err();
        assert_eq!(poll.polls(), 4);
        assert!(err.to_string().contains("gave up after 4 failed polls"), "{err}");
    }

    #[tokio::test]
    async fn cancellation_stops_between_attempts_and_during_a_poll() {
        let (sleeper, _) = recording();
        let cancel = CancellationToken::new();
        let mut poll = LongPoll::new(config(sleeper), cancel.clone());
        let c = cancel.clone();
        let got = poll
            .next(move |_| {
                c.cancel();
                std::future::ready(PollOutcome::<()>::Retry(transient()))
            })
            .await;
        assert!(got.is_none());
        assert_eq!(poll.polls(), 1);
        // A poll that never answers is interrupted too.
        let got = poll.next(|_| std::future::pending::<PollOutcome<()>>()).await;
        assert!(got.is_none());
    }

    #[tokio::test]
    async fn the_client_timeout_outlasts_the_server_hold() {
        let poll = LongPoll::new(
            LongPollConfig::default().with_server_hold(Duration::from_secs(30)),
            CancellationToken::new(),
        );
        assert!(poll.client_timeout() > Duration::from_secs(30));
    }
}
