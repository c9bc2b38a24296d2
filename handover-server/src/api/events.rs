//! `GET /v1/handovers/{id}/events`: the log, as SSE or long-poll, on any instance.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use handover_store::{HandoverState, StoredEvent};
use serde_json::Value;
use tokio::time::Instant;

use super::ApiError;
use super::types::EventsPage;
use crate::app::App;
use crate::callbacks::event_body;
use crate::hints::LogWaiter;

/// At most this many events per long-poll answer (and per SSE read).
const PAGE: u32 = 100;
/// The longest long-poll.
const MAX_WAIT_MS: u64 = 60_000;
/// How often a waiting reader reads the store without a hint (hints from another SQLite
/// process, or lost ones).
const READER_BACKSTOP: Duration = Duration::from_secs(1);
/// How often an idle SSE stream gets a comment line.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The query: `after` and `wait_ms` (long-poll), `after` (SSE, instead of `Last-Event-ID`).
struct Query {
    after: Option<u64>,
    wait_ms: u64,
}

fn parse_query(raw: Option<&str>) -> Result<Query, ApiError> {
    let mut query = Query { after: None, wait_ms: 0 };
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = |name: &str| {
            value.parse::<u64>().map_err(|_| ApiError::invalid(format!("`{name}` must be a whole number of 0 or more")))
        };
        match key {
            "after" => query.after = Some(number("after")?),
            "wait_ms" => {
                query.wait_ms = number("wait_ms")?;
                if query.wait_ms > MAX_WAIT_MS {
                    return Err(ApiError::invalid(format!("`wait_ms` is at most {MAX_WAIT_MS}")));
                }
            }
            other => {
                let other = handover_transport::log::untrusted(other);
                return Err(ApiError::invalid(format!("unknown query parameter `{other}`; expected after, wait_ms")));
            }
        }
    }
    Ok(query)
}

/// A handover's events after a `seq`: SSE with `Accept: text/event-stream`, else long-poll.
#[utoipa::path(
    get,
    path = "/v1/handovers/{id}/events",
    operation_id = "readEvents",
    tag = "events",
    params(
        ("id" = String, Path, description = "The handover's id."),
        ("after" = Option<u64>, Query, description = "Only events with a greater seq (default 0; SSE also takes Last-Event-ID)."),
        ("wait_ms" = Option<u64>, Query, description = "Long-poll: wait up to this long for an event when none is there yet (0 to 60000; default 0)."),
        ("Last-Event-ID" = Option<String>, Header, description = "SSE: resume after this seq."),
    ),
    responses(
        (status = 200, description = "Long-poll: the events (or none when `wait_ms` passed). SSE (`text/event-stream`): `id: <seq>`, `event: <type>`, `data: <event>`, a comment every 15 s; the stream ends after the status event.",
         content((EventsPage = "application/json"), (String = "text/event-stream"))),
        (status = 401, description = "No or a wrong API key.", body = super::types::ErrorBody),
        (status = 404, description = "No such handover.", body = super::types::ErrorBody),
        (status = 422, description = "A query parameter is wrong.", body = super::types::ErrorBody),
        (status = 503, description = "The store is unreachable: retry.", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = parse_query(raw.as_deref())?;
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    // Subscribe before the first read, so an event appended in between wakes us.
    let waiter = app.log_hints.subscribe(&id);
    let record = app.store.get(&id).await.map_err(|e| ApiError::store(&e))?.ok_or_else(|| ApiError::not_found(&id))?;
    if wants_sse {
        let last_event_id = match headers.get("last-event-id") {
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| ApiError::invalid("`Last-Event-ID` must be a seq (a whole number)"))?,
            ),
            None => None,
        };
        let after = last_event_id.or(query.after).unwrap_or(0);
        // A resume after the status event: nothing more will come.
        let done = record.state == HandoverState::Ended && record.last_seq <= after;
        let stream = sse(app, id, after, waiter, done);
        return Ok(Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
            .into_response());
    }
    let after = query.after.unwrap_or(0);
    let deadline = Instant::now() + Duration::from_millis(query.wait_ms);
    let events = long_poll(&app, &id, after, deadline, record.state, waiter).await?;
    let last_seq = events.last().map_or(after, |e| e.seq);
    let events = events.iter().map(|e| event_body(&id, e)).collect();
    Ok(Json(EventsPage { events, last_seq }).into_response())
}

async fn long_poll(
    app: &App,
    id: &str,
    after: u64,
    deadline: Instant,
    state: HandoverState,
    mut waiter: LogWaiter,
) -> Result<Vec<StoredEvent>, ApiError> {
    let mut events = app.store.events(id, after, PAGE).await.map_err(|e| ApiError::store(&e))?;
    loop {
        // Nothing more will come once the handover has ended.
        if !events.is_empty() || state == HandoverState::Ended || Instant::now() >= deadline {
            return Ok(events);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // An end while waiting appends the status event, which the next read returns.
        waiter.wait(left.min(READER_BACKSTOP)).await;
        events = match waiter.take_after(after) {
            Some(news) => news,
            None => app.store.events(id, after, PAGE).await.map_err(|e| ApiError::store(&e))?,
        };
    }
}

struct Reader {
    app: Arc<App>,
    id: String,
    after: u64,
    waiter: LogWaiter,
    buffered: std::collections::VecDeque<StoredEvent>,
    done: bool,
}

/// The SSE stream: every event after `after`, then new ones as they come, ending after
/// the status event. A store error ends the stream; the client resumes with
/// `Last-Event-ID`.
fn sse(
    app: Arc<App>,
    id: String,
    after: u64,
    waiter: LogWaiter,
    done: bool,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let reader = Reader { app, id, after, waiter, buffered: Default::default(), done };
    stream::unfold(reader, |mut reader| async move {
        loop {
            if reader.done {
                return None;
            }
            if let Some(event) = reader.buffered.pop_front() {
                reader.after = event.seq;
                let body = event_body(&reader.id, &event);
                let kind = body.get("type").and_then(Value::as_str).unwrap_or("event").to_owned();
                if kind == "status" {
                    reader.done = true;
                }
                let sse = SseEvent::default().id(event.seq.to_string()).event(kind).data(body.to_string());
                return Some((Ok(sse), reader));
            }
            // What this instance just committed, when it follows the cursor; else the store.
            let read = match reader.waiter.take_after(reader.after) {
                Some(news) => Ok(news),
                None => reader.app.store.events(&reader.id, reader.after, PAGE).await,
            };
            match read {
                Ok(events) if !events.is_empty() => reader.buffered.extend(events),
                // The status event ends the stream when it is read, so nothing to check here.
                Ok(_) => reader.waiter.wait(READER_BACKSTOP).await,
                Err(error) => {
                    tracing::warn!(%error, "the store failed an event stream; ending it (the client resumes)");
                    return None;
                }
            }
        }
    })
}
