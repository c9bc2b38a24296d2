//! The one send loop of every provider request: retries per a [`RetryPolicy`], honouring
//! `Retry-After`, and says in the error why a request was not retried.

use std::borrow::Cow;

use handover_core::{Error, Result};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode};

pub use crate::backoff::{Backoff, Idempotency, RetryPolicy, Sleeper};
use crate::http::request_error;
pub use crate::http::retry_after;

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
    use std::time::Duration;

    use reqwest::header::RETRY_AFTER;

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
