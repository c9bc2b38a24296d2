//! Salesforce Chat, the legacy Live Agent REST API (`protocols/salesforce-chat.md`):
//! `SessionId`, `ChasitorInit`, the `Messages` long poll (one in flight, or 409 ends the
//! chat), sequence-numbered `Chasitor/*` POSTs, `500` for messages before
//! `ChatEstablished`, failover (`ReconnectSession`, `ChasitorResyncState`,
//! `ChasitorSessionData`), `ChatEnd` and session deletion, `403` once a chat is over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::ProtocolHandle;
use crate::model::{AgentAction, Change, CustomerAction, Hub, lock, next_change};
use crate::{Setup, Started};

/// The API version the emulator expects.
pub const API_VERSION: &str = "52";
/// The org id.
pub const ORGANIZATION_ID: &str = "00DEMO000000002";
/// The deployment id.
pub const DEPLOYMENT_ID: &str = "572000000000001";
/// The button id.
pub const BUTTON_ID: &str = "573000000000001";
/// `clientPollTimeout` given to clients (seconds).
pub const POLL_TIMEOUT_SECS: u64 = 6;
/// How long a poll is held before `204`.
pub const HOLD: Duration = Duration::from_secs(3);

struct Chat {
    key: String,
    affinity: String,
    conversation: Option<String>,
    messages: Vec<(i64, Value)>,
    next_sequence: i64,
    /// The last `X-LIVEAGENT-SEQUENCE` accepted.
    last_post: u64,
    polling: bool,
    /// Counts polls, so an old poll ending late does not clear a newer one's flag.
    poll_generation: u64,
    established: bool,
    requested: bool,
    transferring: bool,
    ended: bool,
    last_batch: Option<Value>,
    replay: bool,
    /// Stream drops requested so far that this chat has answered.
    drops_seen: u32,
}

/// The Salesforce Chat emulator state.
pub struct Salesforce {
    hub: Arc<Hub>,
    chats: Mutex<HashMap<String, Chat>>,
    by_conversation: Mutex<HashMap<String, String>>,
    changed: Notify,
    translated: Mutex<HashMap<String, u64>>,
}

impl Salesforce {
    pub(crate) fn start(setup: &Setup) -> Started {
        let hub = setup.hub.clone();
        let salesforce = Arc::new(Self {
            hub,
            chats: Mutex::default(),
            by_conversation: Mutex::default(),
            changed: Notify::new(),
            translated: Mutex::default(),
        });
        let task = tokio::spawn(translate(salesforce.clone()));
        let routes = Router::new()
            .route("/chat/rest/System/SessionId", get(session_id))
            .route("/chat/rest/System/SessionId/{key}", delete(delete_session))
            .route("/chat/rest/System/Messages", get(messages))
            .route("/chat/rest/Visitor/Availability", get(availability))
            .route("/chat/rest/System/ReconnectSession", get(reconnect))
            .route("/chat/rest/Chasitor/{noun}", post(chasitor))
            .with_state(salesforce.clone());
        (salesforce, routes, task)
    }

    fn push(&self, chat: &mut Chat, kind: &str, message: Value) {
        if self.hub.faults.unknown_events() {
            chat.next_sequence += 1;
            chat.messages
                .push((chat.next_sequence, json!({ "type": "ChatbotTranscriptReady", "message": { "x": 1 } })));
        }
        chat.next_sequence += 1;
        chat.messages.push((chat.next_sequence, json!({ "type": kind, "message": message })));
        self.changed.notify_waiters();
    }

    fn with_conversation<T>(&self, conversation: &str, f: impl FnOnce(&mut Chat) -> T) -> Option<T> {
        let key = lock(&self.by_conversation).get(conversation).cloned()?;
        lock(&self.chats).get_mut(&key).map(f)
    }
}

impl ProtocolHandle for Salesforce {
    fn provider_config(&self, base_url: &str) -> Value {
        json!({
            "base_url": base_url,
            "api_version": API_VERSION,
            "organization_id": ORGANIZATION_ID,
            "deployment_id": DEPLOYMENT_ID,
            "button_id": BUTTON_ID,
        })
    }

    /// Serves the last batch again, as a server would after a lost response.
    fn redeliver_last(&self, conversation: &str) -> bool {
        let done = self.with_conversation(conversation, |chat| {
            chat.replay = chat.last_batch.is_some();
            chat.replay
        });
        self.changed.notify_waiters();
        done.unwrap_or(false)
    }

    fn translated(&self, conversation: &str) -> u64 {
        lock(&self.translated).get(conversation).copied().unwrap_or(0)
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = lock(&self.chats).keys().cloned().collect();
        secrets.extend(self.hub.file_tokens());
        secrets
    }
}

async fn translate(salesforce: Arc<Salesforce>) {
    let mut changes = salesforce.hub.subscribe();
    loop {
        let Some(change) = next_change(&mut changes).await else { return };
        let Change::Agent(conversation, record) = change else { continue };
        let sf = &salesforce;
        sf.with_conversation(&conversation.id, |chat| {
            if !chat.requested {
                chat.requested = true;
                let mut success = json!({ "visitorId": "v-1", "geoLocation": {} });
                if let AgentAction::Queued { position, wait_secs } = &record.action {
                    success["queuePosition"] = json!(position);
                    success["estimatedWaitTime"] = json!(wait_secs);
                    sf.push(chat, "ChatRequestSuccess", success);
                    return;
                }
                sf.push(chat, "ChatRequestSuccess", success);
            }
            match &record.action {
                AgentAction::Queued { position, wait_secs } => {
                    sf.push(chat, "QueueUpdate", json!({ "position": position, "estimatedWaitTime": wait_secs }));
                }
                AgentAction::Joined { agent } => {
                    let body = json!({ "name": agent, "userId": format!("005{}", agent.to_lowercase()), "sneakPeekEnabled": false });
                    let kind = if chat.established { "ChatTransferred" } else { "ChatEstablished" };
                    chat.established = true;
                    chat.transferring = false;
                    sf.push(chat, kind, body);
                }
                AgentAction::Message { agent, text } => {
                    sf.push(chat, "ChatMessage", json!({ "name": agent, "text": text, "agentId": format!("005{}", agent.to_lowercase()) }));
                }
                AgentAction::Typing { on, .. } => {
                    sf.push(chat, if *on { "AgentTyping" } else { "AgentNotTyping" }, json!({}));
                }
                AgentAction::Left { transfer: true, .. } => chat.transferring = true,
                AgentAction::Left { transfer: false, .. } => sf.push(chat, "AgentDisconnect", json!({})),
                // Live Agent REST has no agent-to-visitor file message (salesforce-chat.md §7):
                // the agent can only ask the visitor for a file (a `FileTransfer` message with an
                // upload URL and token), and this connector uploads none. Nothing goes out.
                AgentAction::File { .. } => {}
                AgentAction::Ended => {
                    sf.push(chat, "ChatEnded", json!({ "reason": "agent" }));
                    chat.ended = true;
                }
            }
        });
        *lock(&salesforce.translated).entry(conversation.id.clone()).or_default() = record.seq;
    }
}

fn text(status: StatusCode, message: &str) -> Response {
    (status, message.to_owned()).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks version, affinity and session key; returns the key.
fn session_key(salesforce: &Salesforce, headers: &HeaderMap) -> Result<String, StatusCode> {
    if header(headers, "x-liveagent-api-version") != Some(API_VERSION) {
        return Err(StatusCode::BAD_REQUEST);
    }
    let key = header(headers, "x-liveagent-session-key").ok_or(StatusCode::BAD_REQUEST)?.to_owned();
    let chats = lock(&salesforce.chats);
    let chat = chats.get(&key).ok_or(StatusCode::FORBIDDEN)?;
    if header(headers, "x-liveagent-affinity") != Some(chat.affinity.as_str()) {
        // A stale affinity means the session moved: the client must reconnect.
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    Ok(key)
}

async fn session_id(State(salesforce): State<Arc<Salesforce>>, headers: HeaderMap) -> Response {
    if header(&headers, "x-liveagent-api-version") != Some(API_VERSION) {
        return text(StatusCode::BAD_REQUEST, "missing or wrong X-LIVEAGENT-API-VERSION");
    }
    if header(&headers, "x-liveagent-affinity") != Some("null") {
        return text(StatusCode::BAD_REQUEST, "X-LIVEAGENT-AFFINITY must be null");
    }
    let id = uuid::Uuid::new_v4().to_string();
    let key = format!("{id}!{}", uuid::Uuid::new_v4().simple());
    let affinity = format!("{:08x}", salesforce.hub.next_number() * 7919);
    let chat = Chat {
        key: key.clone(),
        affinity: affinity.clone(),
        conversation: None,
        messages: Vec::new(),
        next_sequence: 0,
        last_post: 0,
        polling: false,
        poll_generation: 0,
        established: false,
        requested: false,
        transferring: false,
        ended: false,
        last_batch: None,
        replay: false,
        drops_seen: salesforce.hub.faults.drops(),
    };
    lock(&salesforce.chats).insert(key.clone(), chat);
    Json(json!({ "id": id, "key": key, "affinityToken": affinity, "clientPollTimeout": POLL_TIMEOUT_SECS }))
        .into_response()
}

/// `Visitor/Availability`: results only for buttons of the emulated org and deployment.
async fn availability(Query(query): Query<HashMap<String, String>>) -> Response {
    let ours = query.get("org_id").map(String::as_str) == Some(ORGANIZATION_ID)
        && query.get("deployment_id").map(String::as_str) == Some(DEPLOYMENT_ID);
    let asked = query.get("Availability.ids").map(|ids| ids.trim_matches(['[', ']']).to_owned()).unwrap_or_default();
    let results: Vec<Value> = asked
        .split(',')
        .filter(|id| ours && *id == BUTTON_ID)
        .map(|id| json!({ "id": id, "isAvailable": true }))
        .collect();
    Json(json!({ "messages": [{ "type": "Availability", "message": { "results": results } }] })).into_response()
}

async fn delete_session(State(salesforce): State<Arc<Salesforce>>, Path(key): Path<String>) -> Response {
    let conversation = lock(&salesforce.chats).get_mut(&key).map(|chat| {
        chat.ended = true;
        chat.conversation.clone()
    });
    match conversation {
        Some(conversation) => {
            if let Some(c) = conversation.and_then(|id| salesforce.hub.get(&id)) {
                salesforce.hub.customer(&c, CustomerAction::Closed);
            }
            salesforce.changed.notify_waiters();
            StatusCode::OK.into_response()
        }
        None => text(StatusCode::FORBIDDEN, "session not valid"),
    }
}

#[derive(Deserialize)]
struct Ack {
    ack: i64,
}

/// Resets `polling` when the poll ends, including when the client goes away.
struct PollGuard {
    salesforce: Arc<Salesforce>,
    key: String,
    generation: u64,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        if let Some(chat) = lock(&self.salesforce.chats).get_mut(&self.key)
            && chat.poll_generation == self.generation
        {
            chat.polling = false;
        }
    }
}

async fn messages(
    State(salesforce): State<Arc<Salesforce>>,
    headers: HeaderMap,
    Query(Ack { ack }): Query<Ack>,
) -> Response {
    let key = match session_key(&salesforce, &headers) {
        Ok(key) => key,
        Err(status) => return text(status, "session check failed"),
    };
    if header(&headers, "x-liveagent-sequence").is_some() {
        return text(StatusCode::BAD_REQUEST, "Messages takes no sequence header");
    }
    salesforce.hub.count("polls");
    // Taken before the check below, so a drop requested from here on reaches this poll.
    let mut drop_signal = salesforce.hub.faults.drop_signal();
    let generation = {
        let mut chats = lock(&salesforce.chats);
        let Some(chat) = chats.get_mut(&key) else { return text(StatusCode::FORBIDDEN, "session not valid") };
        let drops = salesforce.hub.faults.drops();
        if drops > chat.drops_seen {
            // A drop requested while no poll was waiting: this poll meets the server move.
            chat.drops_seen = drops;
            return text(StatusCode::SERVICE_UNAVAILABLE, "server moved");
        }
        if chat.polling {
            // §6: a duplicate long poll terminates the chat.
            chat.ended = true;
            let conversation = chat.conversation.clone();
            drop(chats);
            if let Some(c) = conversation.and_then(|id| salesforce.hub.get(&id)) {
                salesforce.hub.customer(&c, CustomerAction::Closed);
            }
            return text(StatusCode::CONFLICT, "duplicate long poll: the chat was terminated");
        }
        chat.polling = true;
        chat.poll_generation += 1;
        chat.poll_generation
    };
    let _guard = PollGuard { salesforce: salesforce.clone(), key: key.clone(), generation };
    let deadline = tokio::time::Instant::now() + HOLD;
    loop {
        let notified = salesforce.changed.notified();
        {
            let mut chats = lock(&salesforce.chats);
            let Some(chat) = chats.get_mut(&key) else { return text(StatusCode::FORBIDDEN, "session not valid") };
            if chat.replay {
                chat.replay = false;
                if let Some(batch) = chat.last_batch.clone() {
                    return Json(batch).into_response();
                }
            }
            let pending: Vec<&(i64, Value)> = chat.messages.iter().filter(|(seq, _)| *seq > ack).collect();
            if let Some((last, _)) = pending.last() {
                let batch = json!({
                    "messages": pending.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
                    "sequence": last,
                    "offset": last * 1000,
                });
                chat.last_batch = Some(batch.clone());
                return Json(batch).into_response();
            }
            if chat.ended {
                return text(StatusCode::FORBIDDEN, "the chat is over");
            }
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep_until(deadline) => return StatusCode::NO_CONTENT.into_response(),
            () = drop_signal.dropped() => {
                if let Some(chat) = lock(&salesforce.chats).get_mut(&key) {
                    chat.drops_seen = salesforce.hub.faults.drops();
                }
                return text(StatusCode::SERVICE_UNAVAILABLE, "server moved");
            }
        }
    }
}

#[derive(Deserialize)]
struct Offset {
    #[serde(rename = "ReconnectSession.offset")]
    offset: i64,
}

async fn reconnect(
    State(salesforce): State<Arc<Salesforce>>,
    headers: HeaderMap,
    Query(Offset { offset }): Query<Offset>,
) -> Response {
    let Some(key) = header(&headers, "x-liveagent-session-key") else {
        return text(StatusCode::BAD_REQUEST, "session key required");
    };
    let mut chats = lock(&salesforce.chats);
    let Some(chat) = chats.get_mut(key) else { return text(StatusCode::FORBIDDEN, "session not valid") };
    if offset < 0 {
        return text(StatusCode::BAD_REQUEST, "offset required");
    }
    chat.affinity = format!("{:08x}", salesforce.hub.next_number() * 104_729);
    chat.last_post = 0;
    // The session moved: a poll still held on the old server no longer counts.
    chat.polling = false;
    chat.poll_generation += 1;
    let body = json!({ "messages": [{ "type": "ReconnectSession", "message": { "resetSequence": true, "affinityToken": chat.affinity } }] });
    Json(body).into_response()
}

async fn chasitor(
    State(salesforce): State<Arc<Salesforce>>,
    headers: HeaderMap,
    Path(noun): Path<String>,
    body: String,
) -> Response {
    let key = match session_key(&salesforce, &headers) {
        Ok(key) => key,
        Err(status) => return text(status, "session check failed"),
    };
    let Some(sequence) = header(&headers, "x-liveagent-sequence").and_then(|s| s.parse::<u64>().ok()) else {
        return text(StatusCode::BAD_REQUEST, "X-LIVEAGENT-SEQUENCE required");
    };
    let Ok(body) = serde_json::from_str::<Value>(&body) else {
        return text(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let mut chats = lock(&salesforce.chats);
    let Some(chat) = chats.get_mut(&key) else { return text(StatusCode::FORBIDDEN, "session not valid") };
    if chat.ended && noun != "ChatEnd" {
        return text(StatusCode::FORBIDDEN, "the chat is over");
    }
    if sequence <= chat.last_post {
        // The server deduplicates resent requests by sequence.
        return StatusCode::OK.into_response();
    }
    chat.last_post = sequence;
    let conversation = chat.conversation.clone().and_then(|id| salesforce.hub.get(&id));
    match noun.as_str() {
        "ChasitorInit" => {
            if body["organizationId"] != ORGANIZATION_ID
                || body["deploymentId"] != DEPLOYMENT_ID
                || body["buttonId"] != BUTTON_ID
            {
                return text(StatusCode::BAD_REQUEST, "unknown organization, deployment or button");
            }
            if body["isPost"] != true || body["sessionId"].as_str().is_none() {
                return text(StatusCode::BAD_REQUEST, "isPost and sessionId are required");
            }
            let id = uuid::Uuid::new_v4().to_string();
            chat.conversation = Some(id.clone());
            let key = chat.key.clone();
            drop(chats);
            lock(&salesforce.by_conversation).insert(id.clone(), key.clone());
            let owner = body["visitorName"].as_str().unwrap_or("visitor").to_owned();
            let conversation = salesforce.hub.create(
                id,
                owner,
                json!({ "prechatDetails": body["prechatDetails"], "visitorName": body["visitorName"] }),
            );
            // The transcript travels as a pre-chat detail; the agent sees it as text.
            if let Some(transcript) = body["prechatDetails"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| d["label"] == "Bot transcript")
                .and_then(|d| d["value"].as_str())
            {
                salesforce.hub.customer(&conversation, CustomerAction::Message { text: transcript.to_owned() });
            }
            StatusCode::OK.into_response()
        }
        "ChatMessage" => {
            if !chat.established {
                // §2: messages before ChatEstablished make the server throw.
                return text(StatusCode::INTERNAL_SERVER_ERROR, "java.lang.NullPointerException");
            }
            drop(chats);
            let Some(text_body) = body["text"].as_str() else { return text(StatusCode::BAD_REQUEST, "text required") };
            if let Some(c) = conversation {
                salesforce.hub.customer(&c, CustomerAction::Message { text: text_body.to_owned() });
            }
            StatusCode::OK.into_response()
        }
        "ChasitorTyping" | "ChasitorNotTyping" => {
            drop(chats);
            if let Some(c) = conversation {
                salesforce.hub.customer(&c, CustomerAction::Typing { on: noun == "ChasitorTyping" });
            }
            StatusCode::OK.into_response()
        }
        "ChasitorResyncState" => {
            if body["organizationId"] != ORGANIZATION_ID {
                return text(StatusCode::BAD_REQUEST, "organizationId required");
            }
            salesforce.push(chat, "ChasitorSessionData", json!({ "queuePosition": 0, "chatMessages": [] }));
            StatusCode::OK.into_response()
        }
        "ChatEnd" => {
            if body != json!({ "reason": "client" }) {
                return text(StatusCode::BAD_REQUEST, "ChatEnd needs {\"reason\":\"client\"}");
            }
            chat.ended = true;
            drop(chats);
            salesforce.changed.notify_waiters();
            if let Some(c) = conversation {
                salesforce.hub.customer(&c, CustomerAction::Closed);
            }
            Json(json!({ "attachedRecords": [] })).into_response()
        }
        _ => StatusCode::OK.into_response(),
    }
}
