//! The control API under `/_emulator/`: read conversations, act as the agent, set faults.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::faults::FaultSettings;
use crate::model::{AgentAction, Change, Conversation, Hub};
use crate::sse::{Chunk, frame, response};

/// The agent desk's page and assets, embedded in the binary.
const DESK_HTML: &str = include_str!("../assets/desk.html");
const DESK_JS: &str = include_str!("../assets/desk.js");
const DESK_CSS: &str = include_str!("../assets/desk.css");

/// The routes, mounted under `/_emulator`, for the emulator of `protocol`.
pub(crate) fn routes(hub: Arc<Hub>, protocol: &'static str) -> Router {
    Router::new()
        .route("/_emulator/health", get(|| async { "ok" }))
        .route("/_emulator/info", get(move || async move { Json(json!({ "protocol": protocol })) }))
        .route("/_emulator/desk", get(|| async { asset("text/html; charset=utf-8", DESK_HTML) }))
        .route("/_emulator/desk/desk.js", get(|| async { asset("text/javascript; charset=utf-8", DESK_JS) }))
        .route("/_emulator/desk/desk.css", get(|| async { asset("text/css; charset=utf-8", DESK_CSS) }))
        .route("/_emulator/changes", get(changes))
        .route("/_emulator/conversations", get(list))
        .route("/_emulator/conversations/{id}", get(show))
        .route("/_emulator/conversations/{id}/agent", post(act))
        .route("/_emulator/faults", post(faults))
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/files/{id}", get(file))
        .with_state(hub)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, content_type),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
            // The desk loads nothing from elsewhere: no CDN, no external font.
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
            ),
        ],
        body,
    )
        .into_response()
}

/// The desk's live updates: an SSE stream with one `change` event per conversation
/// change (`{"conversation":"<id>"}`; `null` after the stream fell behind: reload all),
/// and a comment every 15 s to keep idle connections open.
async fn changes(State(hub): State<Arc<Hub>>) -> Response {
    let mut changes = hub.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut keepalive = tokio::time::interval(std::time::Duration::from_secs(15));
        loop {
            let id = tokio::select! {
                change = changes.recv() => match change {
                    Ok(Change::Created(c) | Change::Agent(c, _) | Change::Customer(c, _)) => json!(c.id),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => serde_json::Value::Null,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                _ = keepalive.tick() => {
                    if tx.send(Chunk::Frame(": keep-alive\n\n".to_owned())).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let data = json!({ "conversation": id }).to_string();
            if tx.send(Chunk::Frame(frame("change", "", &data))).await.is_err() {
                return;
            }
        }
    });
    response(rx)
}

fn find(hub: &Hub, id: &str) -> Option<Arc<Conversation>> {
    if id == "latest" { hub.latest() } else { hub.get(id) }
}

fn not_found(id: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no conversation `{id}`") }))).into_response()
}

async fn list(State(hub): State<Arc<Hub>>) -> Response {
    Json(hub.all().iter().map(|c| c.view()).collect::<Vec<_>>()).into_response()
}

async fn show(State(hub): State<Arc<Hub>>, Path(id): Path<String>) -> Response {
    match find(&hub, &id) {
        Some(conversation) => Json(conversation.view()).into_response(),
        None => not_found(&id),
    }
}

/// Body: an agent action, e.g. `{"action":"message","agent":"Ann","text":"Hi"}` (with
/// `"stamp": true` the text gets ` @<unix µs>` appended as it is recorded, for latency
/// measurements),
/// `{"action":"joined","agent":"Ann"}`, `{"action":"left","agent":"Ann","transfer":true}`,
/// `{"action":"queued","position":3,"wait_secs":120}`, `{"action":"ended"}`,
/// `{"action":"file","agent":"Ann","file":{"name":"label.pdf","media_type":"application/pdf","data":"<base64>"},"caption":"Your label"}`.
async fn act(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    Json(mut action): Json<serde_json::Value>,
) -> Response {
    let Some(conversation) = find(&hub, &id) else { return not_found(&id) };
    if action["stamp"] == true
        && let Some(text) = action["text"].as_str()
    {
        action["text"] = json!(format!("{text} @{}", crate::model::now_us()));
    }
    if let Some(fields) = action.as_object_mut() {
        fields.remove("stamp");
    }
    let action: AgentAction = match serde_json::from_value(action) {
        Ok(action) => action,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(json!({ "error": e.to_string() }))).into_response(),
    };
    match hub.agent(&conversation, action) {
        Some(record) => (StatusCode::CREATED, Json(record)).into_response(),
        None => (StatusCode::CONFLICT, Json(json!({ "error": "the conversation has ended" }))).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct FileQuery {
    #[serde(default)]
    token: String,
}

/// A file an agent sent, like a contact center's pre-signed download: 403 without the
/// token its URL carries.
async fn file(
    State(hub): State<Arc<Hub>>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<FileQuery>,
) -> Response {
    match hub.served_file(&id, &query.token) {
        Some(file) => (
            [
                (axum::http::header::CONTENT_TYPE, file.media_type.clone()),
                (
                    axum::http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}\"", file.name.replace('"', "")),
                ),
            ],
            file.data,
        )
            .into_response(),
        None => (StatusCode::FORBIDDEN, Json(json!({ "error": "no such file, or a wrong token" }))).into_response(),
    }
}

async fn faults(State(hub): State<Arc<Hub>>, Json(settings): Json<FaultSettings>) -> Response {
    hub.faults.apply(&settings);
    StatusCode::NO_CONTENT.into_response()
}

/// Counters (token requests, polls, …) and the latencies of stamped customer messages since
/// the last read.
async fn stats(State(hub): State<Arc<Hub>>) -> Response {
    Json(json!({ "counters": hub.counters(), "customer_latencies_us": hub.take_customer_latencies_us() }))
        .into_response()
}
