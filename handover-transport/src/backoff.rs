//! Retry policies and exponential backoff with jitter (the shape follows object_store's):
//! retry what the server refused without processing (`429`, `503`), retry other server
//! errors and timeouts only for idempotent requests.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

type SleepFn = dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// How to wait between attempts. Production code sleeps on the tokio timer; tests inject a
/// recorder that returns at once and remembers each delay.
#[derive(Clone)]
pub struct Sleeper(Arc<SleepFn>);

impl Sleeper {
    /// Sleeps on the tokio timer.
    pub fn tokio() -> Self {
        Self(Arc::new(|d| Box::pin(tokio::time::sleep(d))))
    }

    /// A custom sleeper (for tests).
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(Duration) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self(Arc::new(move |d| Box::pin(f(d))))
    }

    /// Waits `duration`.
    pub async fn sleep(&self, duration: Duration) {
        (self.0)(duration).await;
    }
}

impl fmt::Debug for Sleeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sleeper")
    }
}

/// Whether repeating a request is safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Repeating it has no further effect (GET, DELETE, PUT, or a POST with a client id).
    Idempotent,
    /// Repeating it may act twice (a POST without a client id).
    NotIdempotent,
}

/// Retry and backoff settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, including the first. `1` disables retries.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_backoff: Duration,
    /// Upper bound of the computed delay.
    pub max_backoff: Duration,
    /// Growth factor per attempt.
    pub multiplier: f64,
    /// Randomize each delay within `[delay/2, delay]` so clients do not retry in step.
    pub jitter: bool,
    /// Upper bound for a server's `Retry-After`; longer requests give up instead of waiting.
    pub max_retry_after: Duration,
    /// Whether `500`, `502` and `504` are retried (for idempotent requests). Providers whose
    /// APIs give these statuses a protocol meaning turn this off and handle them.
    pub retry_server_errors: bool,
    /// Whether `503` is retried. Salesforce Chat gives it a meaning (the session moved to
    /// another server) and turns this off.
    pub retry_unavailable: bool,
    /// How to wait.
    pub sleeper: Sleeper,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(15),
            multiplier: 2.0,
            jitter: true,
            max_retry_after: Duration::from_secs(60),
            retry_server_errors: true,
            retry_unavailable: true,
            sleeper: Sleeper::tokio(),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// Sets the number of attempts (at least 1).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets initial and maximum backoff.
    #[must_use]
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Turns jitter on or off.
    #[must_use]
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the sleeper (tests inject one that does not wait).
    #[must_use]
    pub fn with_sleeper(mut self, sleeper: Sleeper) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// Sets whether 503 is retried.
    #[must_use]
    pub fn with_retry_unavailable(mut self, retry: bool) -> Self {
        self.retry_unavailable = retry;
        self
    }

    /// Sets whether 500/502/504 are retried.
    #[must_use]
    pub fn with_retry_server_errors(mut self, retry: bool) -> Self {
        self.retry_server_errors = retry;
        self
    }

    /// A fresh backoff sequence for this policy.
    pub fn backoff(&self) -> Backoff {
        Backoff { policy: self.clone(), attempt: 0 }
    }

    /// Whether an answer with `status` to a request of `idempotency` is retried.
    pub fn retries_status(&self, status: StatusCode, idempotency: Idempotency) -> bool {
        match status.as_u16() {
            // The server refused without processing: safe for any request.
            429 => true,
            503 => self.retry_unavailable,
            500 | 502 | 504 => self.retry_server_errors && idempotency == Idempotency::Idempotent,
            _ => false,
        }
    }
}

/// An exponential backoff sequence. [`reset`](Backoff::reset) after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
}

impl Backoff {
    /// The delay before the next retry, advancing the sequence.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.policy.multiplier.powi(i32::try_from(self.attempt).unwrap_or(i32::MAX));
        self.attempt = self.attempt.saturating_add(1);
        let base = self.policy.initial_backoff.as_secs_f64() * exp;
        let capped = base.min(self.policy.max_backoff.as_secs_f64());
        let secs = if self.policy.jitter { capped / 2.0 + fastrand::f64() * capped / 2.0 } else { capped };
        Duration::from_secs_f64(secs)
    }

    /// Retries made so far in this sequence.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Whether the policy allows another retry.
    pub fn can_retry(&self) -> bool {
        self.attempt + 1 < self.policy.max_attempts
    }

    /// Starts over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Waits `delay` with the policy's sleeper.
    pub async fn sleep(&self, delay: Duration) {
        self.policy.sleeper.sleep(delay).await;
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}
