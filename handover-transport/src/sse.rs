//! Server-Sent Events: an incremental parser and a reconnecting reader.
//!
//! The parser follows the WHATWG event-stream rules (any of `\n`, `\r\n`, `\r` ends a
//! line; `data:` lines join with `\n`; comments start with `:`; an `id` containing NUL is
//! ignored; `retry:` takes only digits). The reader keeps the last event id, reconnects
//! with `Last-Event-ID` after a drop, honours `retry:` hints, refreshes credentials once on
//! `401`, fails on other `4xx`, and treats a silent connection (no bytes, not even a
//! keep-alive, within the idle timeout) as dropped.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{Error, ErrorKind, Result};
use reqwest::header::CONTENT_TYPE;
use reqwest::{RequestBuilder, Response, StatusCode};

use crate::http::{request_error, status_error, truncate};
use crate::retry::{Backoff, RetryPolicy};

/// The largest event the parser accepts (1 MiB of `data`); larger events fail the stream.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Events of one read the reader keeps room for between bursts; a larger queue is freed
/// once drained.
const PENDING_KEPT: usize = 4;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or `"message"` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id at dispatch time (the stream's, not only this event's).
    pub id: Option<String>,
}

/// An incremental SSE parser: feed bytes as they arrive, take events out.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    skip_lf: bool,
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    retry: Option<Duration>,
}

/// The stream broke the SSE rules in a way that cannot be recovered (an oversized event).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an event exceeded {MAX_EVENT_BYTES} bytes")]
pub struct EventTooLarge;

impl SseParser {
    /// A parser with no last event id.
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser that continues after `last_id` (for a reconnect).
    pub fn resuming(last_id: Option<String>) -> Self {
        Self { last_id, ..Self::default() }
    }

    /// The last event id seen (to send as `Last-Event-ID`).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The last `retry:` hint.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// Forgets a partial event (after a dropped connection), keeping the last id.
    pub fn reset_connection(&mut self) {
        self.buf.clear();
        self.skip_lf = false;
        self.started = false;
        self.event = None;
        self.data.clear();
        self.has_data = false;
    }

    /// Feeds bytes; appends every completed event to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        if !self.started && !bytes.is_empty() {
            self.buf.extend_from_slice(bytes);
            if self.buf.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.buf) {
                return Ok(());
            }
            self.started = true;
            let pending = std::mem::take(&mut self.buf);
            let rest = pending.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&pending);
            return self.feed_lines(rest, out);
        }
        if self.skip_lf {
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
            if !bytes.is_empty() {
                self.skip_lf = false;
            }
        }
        self.feed_lines(bytes, out)
    }

    fn feed_lines(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, rest) = bytes.split_at(pos);
            let cr = rest[0] == b'\r';
            bytes = &rest[1..];
            if cr {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            if self.buf.is_empty() {
                self.line(line, out)?;
            } else {
                let mut whole = std::mem::take(&mut self.buf);
                whole.extend_from_slice(line);
                self.line(&whole, out)?;
            }
        }
        if self.buf.len() + bytes.len() + self.data.len() > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.data.len() + value.len() > MAX_EVENT_BYTES {
                    return Err(EventTooLarge);
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !self.has_data {
            self.data.clear();
            return;
        }
        self.has_data = false;
        out.push(SseEvent {
            event: event.filter(|e| !e.is_empty()).unwrap_or_else(|| "message".to_owned()),
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        });
    }
}

/// What to do about a response that is not an event stream.
#[derive(Debug)]
pub enum Disposition {
    /// Refresh credentials (once) and reconnect.
    Refresh,
    /// Reconnect after backoff.
    Retry,
    /// Give up with this error.
    Fail(Error),
}

/// How a provider connects its SSE stream.
#[async_trait]
pub trait SseConnect: Send + Sync {
    /// The provider name, for errors.
    fn provider(&self) -> &'static str;

    /// Builds the `GET` for a (re)connect, resuming after `last_event_id`. The reader adds
    /// `Accept: text/event-stream` and `Last-Event-ID` when `last_event_id` is set.
    async fn request(&self, last_event_id: Option<&str>) -> Result<RequestBuilder>;

    /// Gets fresh credentials after a `401`. Called at most once per failed connect.
    async fn refresh_auth(&self) -> Result<()>;

    /// Decides about a response that is not a `200 text/event-stream` (`body` is at most
    /// 4 KiB of it). The default refreshes on `401`, retries `408`, `429` and `5xx`, and
    /// fails on everything else.
    fn classify(&self, status: StatusCode, body: &str) -> Disposition {
        default_classify(self.provider(), status, body)
    }
}

/// The default [`SseConnect::classify`].
pub fn default_classify(provider: &'static str, status: StatusCode, body: &str) -> Disposition {
    match status.as_u16() {
        401 => Disposition::Refresh,
        408 | 429 | 500..=599 => Disposition::Retry,
        _ => Disposition::Fail(status_error(provider, "open event stream", status, &Default::default(), body)),
    }
}

/// What the reader yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SseItem {
    /// A connection opened. `reconnect` is `false` for the first one.
    Connected {
        /// Whether this follows a drop.
        reconnect: bool,
    },
    /// An event.
    Event(SseEvent),
    /// The connection dropped; the reader will reconnect on the next call.
    Disconnected,
}

/// Settings of the reconnecting reader.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SseConfig {
    /// Backoff between reconnects; `max_attempts` bounds consecutive failed connects.
    pub reconnect: RetryPolicy,
    /// A connection that delivers no bytes for this long is treated as dropped.
    pub idle_timeout: Duration,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            // protocols/salesforce-miaw.md §6: 1 s × 1.5ⁿ capped at 30 s, 10 attempts; 90 s heartbeat.
            reconnect: RetryPolicy {
                max_attempts: 10,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(30),
                multiplier: 1.5,
                ..RetryPolicy::default()
            },
            idle_timeout: Duration::from_secs(90),
        }
    }
}

impl SseConfig {
    /// Sets the reconnect policy.
    #[must_use]
    pub fn with_reconnect(mut self, policy: RetryPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// Sets the idle timeout.
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }
}

/// A reconnecting SSE reader. Pull items with [`next`](SseStream::next); drop it to close.
pub struct SseStream<C> {
    connect: C,
    /// [`SseConfig::idle_timeout`] (the reconnect policy is the backoff's).
    idle_timeout: Duration,
    parser: SseParser,
    backoff: Backoff,
    response: Option<Response>,
    pending: VecDeque<SseEvent>,
    connected_before: bool,
    dropped: bool,
    failed: bool,
}

impl<C: SseConnect> SseStream<C> {
    /// A reader that will connect on the first [`next`](Self::next), resuming after
    /// `last_event_id` if given.
    pub fn new(connect: C, config: SseConfig, last_event_id: Option<String>) -> Self {
        Self {
            connect,
            idle_timeout: config.idle_timeout,
            parser: SseParser::resuming(last_event_id),
            backoff: config.reconnect.backoff(),
            response: None,
            pending: Default::default(),
            connected_before: false,
            dropped: false,
            failed: false,
        }
    }

    /// The id to resume after.
    pub fn last_event_id(&self) -> Option<&str> {
        self.parser.last_event_id()
    }

    /// The connector.
    pub fn connector(&self) -> &C {
        &self.connect
    }

    /// The next item; `None` after a terminal error was returned.
    pub async fn next(&mut self) -> Option<Result<SseItem>> {
        if self.failed {
            return None;
        }
        if let Some(event) = self.pending.pop_front() {
            if self.pending.is_empty() && self.pending.capacity() > PENDING_KEPT {
                // A burst is over: give its room back (a held stream is mostly idle).
                self.pending = VecDeque::new();
            }
            return Some(Ok(SseItem::Event(event)));
        }
        let item = self.next_inner().await;
        if item.is_err() {
            self.failed = true;
        }
        Some(item)
    }

    async fn next_inner(&mut self) -> Result<SseItem> {
        loop {
            let Some(response) = self.response.as_mut() else {
                // Boxed: connecting is rare and its future large; unboxed it would be part
                // of every reader's resident state while it waits for the next chunk.
                Box::pin(self.open()).await?;
                let reconnect = self.connected_before;
                self.connected_before = true;
                return Ok(SseItem::Connected { reconnect });
            };
            let chunk = tokio::time::timeout(self.idle_timeout, response.chunk()).await;
            let provider = self.connect.provider();
            match chunk {
                Ok(Ok(Some(bytes))) => {
                    let mut events = Vec::new();
                    if self.parser.feed(&bytes, &mut events).is_err() {
                        return Err(Error::protocol(
                            provider,
                            "read event stream",
                            format!("an event exceeded {MAX_EVENT_BYTES} bytes"),
                        ));
                    }
                    let mut events = events.into_iter();
                    if let Some(first) = events.next() {
                        self.pending.extend(events);
                        return Ok(SseItem::Event(first));
                    }
                }
                Ok(Ok(None)) => return Ok(self.drop_connection("the server closed the stream")),
                Ok(Err(e)) => {
                    let reason = request_error(provider, "read event stream", e);
                    return Ok(self.drop_connection(&reason.to_string()));
                }
                Err(_) => return Ok(self.drop_connection("no data within the idle timeout")),
            }
        }
    }

    fn drop_connection(&mut self, why: &str) -> SseItem {
        tracing::debug!(provider = self.connect.provider(), why, "event stream dropped");
        self.response = None;
        self.parser.reset_connection();
        self.dropped = true;
        SseItem::Disconnected
    }

    /// Connects, retrying per policy; on return `self.response` is an open event stream.
    async fn open(&mut self) -> Result<()> {
        let provider = self.connect.provider();
        let op = "open event stream";
        let mut refreshed = false;
        if self.dropped {
            self.dropped = false;
            // A server's `retry:` hint counts, within what the policy would wait at most.
            let delay = match self.parser.retry() {
                Some(hint) => hint.min(self.backoff.policy().max_retry_after),
                None => self.backoff.next_delay(),
            };
            self.backoff.sleep(delay).await;
        }
        loop {
            let mut request = self
                .connect
                .request(self.parser.last_event_id())
                .await?
                .header(reqwest::header::ACCEPT, "text/event-stream")
                .header(reqwest::header::CACHE_CONTROL, "no-cache");
            if let Some(id) = self.parser.last_event_id() {
                request = request.header("Last-Event-ID", id);
            }
            let disposition = match request.send().await {
                Ok(mut response) if response.status() == StatusCode::OK && is_event_stream(&response) => {
                    // Only the body is read from here on. The head's header values are
                    // slices of the connection's first read buffer (8 KiB): kept, they
                    // would hold it for as long as the stream stays open.
                    drop(std::mem::take(response.headers_mut()));
                    drop(std::mem::take(response.extensions_mut()));
                    self.response = Some(response);
                    self.backoff.reset();
                    return Ok(());
                }
                Ok(response) => {
                    let status = response.status();
                    let body = read_prefix(response).await;
                    self.connect.classify(status, &body)
                }
                Err(e) => {
                    tracing::debug!(provider, error = %e.without_url(), "event stream connect failed");
                    Disposition::Retry
                }
            };
            match disposition {
                Disposition::Refresh if !refreshed => {
                    refreshed = true;
                    self.connect.refresh_auth().await?;
                }
                Disposition::Refresh => {
                    return Err(Error::unauthenticated(
                        provider,
                        op,
                        "the event stream rejected fresh credentials (401 after refresh)",
                    ));
                }
                Disposition::Retry if self.backoff.can_retry() => {
                    let delay = self.backoff.next_delay();
                    self.backoff.sleep(delay).await;
                }
                Disposition::Retry => {
                    return Err(Error::transport(
                        provider,
                        op,
                        format!(
                            "could not (re)connect the event stream after {} attempts",
                            self.backoff.attempts() + 1
                        ),
                    ));
                }
                Disposition::Fail(error) => {
                    debug_assert!(error.kind() != ErrorKind::Unsupported);
                    return Err(error);
                }
            }
        }
    }
}

fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

async fn read_prefix(mut response: Response) -> String {
    let mut body = Vec::new();
    while body.len() < 4096 {
        match tokio::time::timeout(Duration::from_secs(5), response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    truncate(&String::from_utf8_lossy(&body), 4096).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> (Vec<SseEvent>, SseParser) {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).unwrap();
        }
        (out, parser)
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent { event: event.into(), data: data.into(), id: id.map(Into::into) }
    }

    #[test]
    fn parses_fields_and_joins_data_lines() {
        let (events, parser) = parse(&[b"event: CONVERSATION_MESSAGE\nid: 7\ndata: {\"a\":1}\ndata: x\n\n"]);
        assert_eq!(events, [ev("CONVERSATION_MESSAGE", "{\"a\":1}\nx", Some("7"))]);
        assert_eq!(parser.last_event_id(), Some("7"));
    }

    #[test]
    fn any_line_ending_and_any_chunking_give_the_same_events() {
        let text = "event: a\r\nid: 1\r\ndata: one\r\n\r\n: comment\rdata:two\r\rdata: three\n\n";
        let whole = parse(&[text.as_bytes()]).0;
        assert_eq!(
            whole,
            [ev("a", "one", Some("1")), ev("message", "two", Some("1")), ev("message", "three", Some("1"))]
        );
        for split in 0..text.len() {
            let (a, b) = text.as_bytes().split_at(split);
            assert_eq!(parse(&[a, b]).0, whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(parse(&bytes).0, whole);
    }

    #[test]
    fn bom_retry_and_nul_ids() {
        let (events, parser) = parse(&[b"\xEF\xBB", b"\xBFretry: 1500\nid: a\0b\ndata: x\n\n"]);
        assert_eq!(events, [ev("message", "x", None)]);
        assert_eq!(parser.retry(), Some(Duration::from_millis(1500)));
        let (_, parser) = parse(&[b"retry: 1.5\n\n"]);
        assert_eq!(parser.retry(), None);
    }

    #[test]
    fn events_without_data_are_not_dispatched_but_set_the_id() {
        let (events, parser) = parse(&[b"id: 9\nevent: ping\n\ndata\n\n"]);
        assert_eq!(events, [ev("message", "", Some("9"))]);
        assert_eq!(parser.last_event_id(), Some("9"));
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        let line = format!("data: {}\n", "x".repeat(MAX_EVENT_BYTES / 2 + 1));
        parser.feed(line.as_bytes(), &mut out).unwrap();
        assert_eq!(parser.feed(line.as_bytes(), &mut out), Err(EventTooLarge));
    }

    #[test]
    fn a_partial_event_is_forgotten_on_reconnect_but_the_id_kept() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        parser.feed(b"id: 5\ndata: done\n\ndata: half", &mut out).unwrap();
        parser.reset_connection();
        parser.feed(b"data: fresh\n\n", &mut out).unwrap();
        assert_eq!(out, [ev("message", "done", Some("5")), ev("message", "fresh", Some("5"))]);
    }
}
