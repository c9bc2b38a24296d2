//! The one HTTP client builder, URL rules, bounded body reads and status mapping.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use handover_core::{Error, ErrorKind, Result};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use url::Url;

/// The largest response body read by default (1 MiB); anything longer is refused.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Settings of the shared HTTP client.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Time to establish a TCP + TLS connection.
    pub connect_timeout: Duration,
    /// Time for a whole request/response. Streaming reads (SSE, long-poll) set their own.
    pub request_timeout: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// How long idle pooled connections are kept.
    pub pool_idle_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            user_agent: concat!("handover/", env!("CARGO_PKG_VERSION")).to_owned(),
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}

impl HttpConfig {
    /// Sets the `User-Agent` header.
    #[must_use]
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Sets the whole-request timeout.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

/// Builds the shared client: rustls, no redirects (APIs do not redirect; a redirect would
/// resend the `Authorization` header to another host), the configured timeouts.
pub fn client(provider: &'static str, config: &HttpConfig) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .pool_idle_timeout(config.pool_idle_timeout)
        .user_agent(config.user_agent.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::config(provider, "the HTTP client could not be built").with_source(e.without_url()))
}

/// A client for streaming reads (SSE, long-poll, WebSocket upgrades): like [`client`] but
/// without a whole-request timeout, since the body stays open. Streaming readers bound
/// each read instead.
pub fn streaming_client(provider: &'static str, config: &HttpConfig) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .pool_idle_timeout(config.pool_idle_timeout)
        .user_agent(config.user_agent.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::config(provider, "the HTTP client could not be built").with_source(e.without_url()))
}

/// Whether `host` names this machine (`localhost`, `127.0.0.0/8`, `::1`).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Parses a configured base URL.
///
/// `https://` is always accepted. `http://` (and `ws://`) only for loopback hosts, so
/// credentials never cross a network in clear text, unless `allow_insecure` is set.
/// A trailing `/` is removed so paths can be appended.
pub fn base_url(provider: &'static str, key: &str, value: &str, allow_insecure: bool) -> Result<Url> {
    let trimmed = value.trim().trim_end_matches('/');
    let url = Url::parse(trimmed).map_err(|e| {
        Error::config(
            provider,
            format!("`{key}` is not a valid URL ({e}); expected something like https://example.com"),
        )
    })?;
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" | "wss" => {}
        "http" | "ws" if allow_insecure || is_loopback_host(host) => {}
        "http" | "ws" => {
            return Err(Error::config(
                provider,
                format!(
                    "`{key}` uses plain {}:// to a non-loopback host `{host}`; use https:// \
                     (plain http is allowed only for 127.0.0.1, ::1 and localhost, or with \
                     `allow_insecure_http = true`)",
                    url.scheme()
                ),
            ));
        }
        other => {
            return Err(Error::config(provider, format!("`{key}` has scheme `{other}`; expected https://")));
        }
    }
    if url.cannot_be_a_base() || host.is_empty() {
        return Err(Error::config(provider, format!("`{key}` must be an absolute URL with a host")));
    }
    Ok(url)
}

/// Appends `path` (starting with `/`) to a base URL that may itself carry a path.
pub fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url
}

/// The error kind a status code means in every provider API.
pub fn status_kind(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 | 410 => ErrorKind::SessionNotFound,
        429 => ErrorKind::RateLimited,
        400 | 409 | 413 | 415 | 417 | 422 => ErrorKind::InvalidInput,
        408 | 500..=599 => ErrorKind::Transport,
        _ => ErrorKind::Protocol,
    }
}

/// An error for a non-success response: kind from the status, retry hint from
/// `Retry-After`, and `message` (what the provider said, extracted by the provider's
/// `parse_error`).
pub fn status_error(
    provider: &'static str,
    op: impl Into<Cow<'static, str>>,
    status: StatusCode,
    headers: &HeaderMap,
    message: impl AsRef<str>,
) -> Error {
    let message = message.as_ref().trim();
    let text = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {}", truncate(message, 300))
    };
    let mut error = Error::new(status_kind(status), provider, op, text).with_status(status.as_u16());
    if let Some(after) = retry_after(headers) {
        error = error.with_retry_after(after);
    }
    error
}

/// Whether `error` comes from an answer with `status` (e.g. to retry a `409`).
pub fn is_status(error: &Error, status: StatusCode) -> bool {
    error.status() == Some(status.as_u16())
}

/// Percent-encodes `id` as one URL path segment (ids come from the network).
pub fn segment(id: &str) -> Cow<'_, str> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    if id.bytes().all(safe) {
        return Cow::Borrowed(id);
    }
    let mut out = String::with_capacity(id.len() * 3);
    for b in id.bytes() {
        if safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// Wraps a `reqwest` error, stripped of its URL (URLs may carry tokens in query strings).
pub fn request_error(provider: &'static str, op: impl Into<Cow<'static, str>>, error: reqwest::Error) -> Error {
    let what = if error.is_timeout() {
        "the request timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the response body could not be read"
    } else {
        "the request failed"
    };
    Error::transport(provider, op, what).with_source(error.without_url())
}

/// Reads a response body up to `limit` bytes; a longer body is an error, not truncated.
pub async fn read_body(
    provider: &'static str,
    op: &'static str,
    mut response: Response,
    limit: usize,
) -> Result<Vec<u8>> {
    if let Some(len) = response.content_length()
        && len > limit as u64
    {
        return Err(too_large(provider, op, limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| request_error(provider, op, e))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large(provider, op, limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large(provider: &'static str, op: &'static str, limit: usize) -> Error {
    Error::protocol(provider, op, format!("the response body is larger than {limit} bytes and was refused"))
}

/// Reads and decodes a JSON body (bounded by [`DEFAULT_BODY_LIMIT`]).
pub async fn read_json<T: DeserializeOwned>(provider: &'static str, op: &'static str, response: Response) -> Result<T> {
    let body = read_body(provider, op, response, DEFAULT_BODY_LIMIT).await?;
    decode_json(provider, op, &body)
}

/// Decodes JSON, with an error that says what did not fit.
pub fn decode_json<T: DeserializeOwned>(provider: &'static str, op: &'static str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::protocol(provider, op, format!("the response is not the JSON we expect: {e}")).with_source(e)
    })
}

/// At most `max` characters of `text`, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_recognised_and_segments_encoded() {
        let error = status_error("p", "op", StatusCode::CONFLICT, &HeaderMap::new(), "busy");
        assert!(is_status(&error, StatusCode::CONFLICT));
        assert!(!is_status(&error, StatusCode::BAD_REQUEST));
        assert!(!is_status(&Error::protocol("p", "op", "HTTP 4090"), StatusCode::CONFLICT));
        assert_eq!(segment("Aka5-NM_x.y~"), "Aka5-NM_x.y~");
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for ok in [
            "https://acme.my.salesforce-scrt.com",
            "http://127.0.0.1:8080",
            "http://localhost:1/api/v1/",
            "http://[::1]:9",
            "wss://streaming.mypurecloud.com",
        ] {
            assert!(base_url("miaw", "scrt_url", ok, false).is_ok(), "{ok}");
        }
        let err = base_url("miaw", "scrt_url", "http://acme.example.com", false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("`scrt_url`"), "{err}");
        assert!(err.to_string().contains("non-loopback"), "{err}");
        assert!(base_url("miaw", "scrt_url", "http://acme.example.com", true).is_ok());
        assert!(base_url("miaw", "scrt_url", "ftp://acme.example.com", true).is_err());
        assert!(base_url("miaw", "scrt_url", "not a url", false).is_err());
    }

    #[test]
    fn join_keeps_the_base_path() {
        let base = base_url("liveagent", "base_url", "https://desk.example.com/api/v1/", false).unwrap();
        assert_eq!(
            join(&base, "/accounts/1/conversations").as_str(),
            "https://desk.example.com/api/v1/accounts/1/conversations"
        );
    }

    #[test]
    fn status_errors_carry_kind_and_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        let err = status_error("miaw", "send message", StatusCode::TOO_MANY_REQUESTS, &headers, "slow down");
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(
            err.to_string(),
            "miaw send message: rate limited: HTTP 429 Too Many Requests: slow down (retry after 7s)"
        );
        assert_eq!(status_kind(StatusCode::UNAUTHORIZED), ErrorKind::Unauthenticated);
        assert_eq!(status_kind(StatusCode::SERVICE_UNAVAILABLE), ErrorKind::Transport);
    }

    #[test]
    fn truncate_cuts_on_characters() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hé", 2), "hé");
    }
}
