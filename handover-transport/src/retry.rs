//! Retry with exponential backoff and jitter, honouring `Retry-After`.
//!
//! One policy for every provider request (the shape follows object_store's): retry what
//! the server refused without processing (`429`, `503`), retry other server errors and
//! timeouts only for idempotent requests, and say in the error why a request was not
//! retried.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use handover_core::{Error, Result};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::http::request_error;

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

    fn retries_status(&self, status: StatusCode, idempotency: Idempotency) -> bool {
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

/// The `Retry-After` header as a delay: delta-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Sends a request built by `build` (called once per attempt), retrying per `policy`.
///
/// Returns the response of the last attempt, success or not: the caller turns a
/// non-success status into an error with its provider's `parse_error`. Fails only when
/// no response arrived at all.
pub async fn send(
    policy: &RetryPolicy,
    provider: &'static str,
    op: impl Into<Cow<'static, str>>,
    idempotency: Idempotency,
    mut build: impl FnMut() -> RequestBuilder,
) -> Result<Response> {
    let op = op.into();
    let mut backoff = policy.backoff();
    loop {
        match build().send().await {
            Ok(response) => {
                let status = response.status();
                if !policy.retries_status(status, idempotency) || !backoff.can_retry() {
                    return Ok(response);
                }
                let delay = match retry_after(response.headers()) {
                    Some(after) if after > policy.max_retry_after => return Ok(response),
                    Some(after) => {
                        backoff.next_delay();
                        after
                    }
                    None => backoff.next_delay(),
                };
                tracing::debug!(provider, op = %op, %status, ?delay, "retrying");
                drop(response);
                backoff.sleep(delay).await;
            }
            Err(error) => {
                // A connect error means the request never reached the server: always safe.
                let safe = error.is_connect() || idempotency == Idempotency::Idempotent;
                if safe && backoff.can_retry() {
                    let delay = backoff.next_delay();
                    tracing::debug!(provider, op = %op, ?delay, error = %error.without_url(), "retrying");
                    backoff.sleep(delay).await;
                    continue;
                }
                let not_retried = !safe && error.is_timeout();
                let mut err = request_error(provider, op.clone(), error);
                if not_retried {
                    err = Error::transport(
                        provider,
                        op,
                        "the request timed out and was not retried because it is not idempotent; \
                         it may or may not have been applied",
                    )
                    .with_source(err);
                } else if backoff.attempts() > 0 {
                    err = Error::transport(
                        provider,
                        op,
                        format!("{} after {} attempts", err.message(), backoff.attempts() + 1),
                    )
                    .with_source(err);
                }
                return Err(err);
            }
        }
    }
}

/// [`send`], then the answer's body (at most `limit` bytes): the bytes of a success, or
/// the error `parse_error` makes of a failure's status, headers and body.
pub async fn exchange(
    policy: &RetryPolicy,
    provider: &'static str,
    op: &'static str,
    idempotency: Idempotency,
    build: impl FnMut() -> RequestBuilder,
    limit: usize,
    parse_error: impl FnOnce(StatusCode, &HeaderMap, &[u8]) -> Error,
) -> Result<Vec<u8>> {
    let response = send(policy, provider, op, idempotency, build).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = crate::http::read_body(provider, op, response, limit).await?;
    if status.is_success() { Ok(body) } else { Err(parse_error(status, &headers, &body)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_to_the_cap_and_resets() {
        let policy = RetryPolicy::default()
            .with_backoff(Duration::from_millis(100), Duration::from_millis(500))
            .with_jitter(false)
            .with_max_attempts(10);
        let mut backoff = policy.backoff();
        let delays: Vec<_> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_half_to_full_delay() {
        let policy = RetryPolicy::default().with_backoff(Duration::from_millis(1000), Duration::from_secs(10));
        for _ in 0..100 {
            let d = policy.backoff().next_delay();
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000), "{d:?}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        headers.insert(RETRY_AFTER, "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap());
        // In the past: retry at once.
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
        // A date far in the future or a year no calendar has: no panic, no overflow.
        headers.insert(RETRY_AFTER, "Sun, 06 Nov 99999999999999 08:49:37 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap());
        assert!(retry_after(&headers).is_some_and(|d| d > Duration::from_secs(3600)));
    }

    #[test]
    fn which_statuses_are_retried() {
        let policy = RetryPolicy::default();
        use Idempotency::*;
        assert!(policy.retries_status(StatusCode::TOO_MANY_REQUESTS, NotIdempotent));
        assert!(policy.retries_status(StatusCode::SERVICE_UNAVAILABLE, NotIdempotent));
        assert!(policy.retries_status(StatusCode::BAD_GATEWAY, Idempotent));
        assert!(!policy.retries_status(StatusCode::BAD_GATEWAY, NotIdempotent));
        assert!(!policy.retries_status(StatusCode::UNAUTHORIZED, Idempotent));
        let strict = RetryPolicy::default().with_retry_server_errors(false).with_retry_unavailable(false);
        assert!(!strict.retries_status(StatusCode::INTERNAL_SERVER_ERROR, Idempotent));
        assert!(!strict.retries_status(StatusCode::SERVICE_UNAVAILABLE, Idempotent));
        assert!(strict.retries_status(StatusCode::TOO_MANY_REQUESTS, NotIdempotent));
    }
}
