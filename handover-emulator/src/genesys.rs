//! Genesys Cloud Open Messaging (`protocols/genesys.md`): OAuth client credentials,
//! the inbound open-messaging endpoints, conversations and participants, users, the
//! Notifications API (channels, subscriptions, a WebSocket with heartbeats and
//! `user.start` / `user.end` / `customer.end` detail events), and signed outbound webhooks
//! (`X-Hub-Signature-256`, retried up to 5 times).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use handover_transport::signature::{self, Algorithm, Encoding};
use handover_transport::time;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::ProtocolHandle;
use crate::model::{AgentAction, Change, Conversation, CustomerAction, Hub, lock, next_change, now_ms};
use crate::webhooks::{self, Delivery};
use crate::{Setup, Started};

/// The OAuth client id the emulator accepts.
pub const CLIENT_ID: &str = "emulator-client";
/// The OAuth client secret the emulator accepts.
pub const CLIENT_SECRET: &str = "emulator-client-secret";
/// The Open Messaging integration id.
pub const INTEGRATION_ID: &str = "7f0c4a2e-1b3d-4c5e-8f9a-0b1c2d3e4f5a";
/// The webhook signature secret.
pub const WEBHOOK_SECRET: &str = "emulator-webhook-secret";
/// Interval of `channel.metadata` heartbeats on the notifications socket.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Participants {
    customer: String,
    customer_state: &'static str,
    /// Agent participants: id, user id, state, disconnect type.
    agents: Vec<(String, String, &'static str, Option<&'static str>)>,
}

/// The Genesys emulator state.
pub struct Genesys {
    hub: Arc<Hub>,
    addr: SocketAddr,
    tokens: Mutex<HashSet<String>>,
    by_customer: Mutex<HashMap<String, String>>,
    participants: Mutex<HashMap<String, Participants>>,
    channels: Mutex<HashMap<String, HashSet<String>>>,
    notifications: broadcast::Sender<(String, String)>,
    webhook: Option<mpsc::UnboundedSender<Delivery>>,
    last_delivery: Mutex<HashMap<String, Delivery>>,
    translated: Mutex<HashMap<String, u64>>,
}

impl Genesys {
    pub(crate) fn start(setup: &Setup) -> Started {
        let (hub, addr, webhook_url) = (setup.hub.clone(), setup.addr, setup.webhook_url.clone());
        let webhook = webhook_url.map(|url| webhooks::spawn(hub.clone(), url, 5, Duration::from_millis(200)));
        let (notifications, _) = broadcast::channel(4096);
        let genesys = Arc::new(Self {
            hub,
            addr,
            tokens: Mutex::default(),
            by_customer: Mutex::default(),
            participants: Mutex::default(),
            channels: Mutex::default(),
            notifications,
            webhook,
            last_delivery: Mutex::default(),
            translated: Mutex::default(),
        });
        let task = tokio::spawn(translate(genesys.clone()));
        let routes = Router::new()
            .route("/oauth/token", post(token))
            .route("/api/v2/conversations/messages/{integration}/inbound/open/message", post(inbound_message))
            .route("/api/v2/conversations/messages/{integration}/inbound/open/event", post(inbound_event))
            .route("/api/v2/conversations/messages/{integration}/inbound/open/receipt", post(inbound_receipt))
            .route("/api/v2/conversations/messages/{conversation}", get(conversation))
            .route("/api/v2/conversations/messages/{conversation}/participants/{participant}", patch(disconnect))
            .route("/api/v2/users/{user}", get(user))
            .route("/api/v2/conversations/messaging/integrations/open/{integration}", get(integration))
            .route("/api/v2/notifications/channels", post(create_channel))
            .route("/api/v2/notifications/channels/{channel}/subscriptions", post(add_topics).put(replace_topics))
            .route("/channels/{channel}", get(socket))
            .with_state(genesys.clone());
        (genesys, routes, task)
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if lock(&self.tokens).contains(token) && !self.hub.faults.tokens_expired() {
            Ok(())
        } else {
            Err(Box::new(error(StatusCode::UNAUTHORIZED, "authentication.required", "Invalid login credentials.")))
        }
    }

    fn notify(&self, conversation: &str, kind: &str, body: Value) {
        let topic = format!("v2.detail.events.conversation.{conversation}.{kind}");
        let frame = json!({ "topicName": topic, "version": "2", "eventBody": body, "metadata": { "CorrelationId": uuid::Uuid::new_v4().to_string() } });
        let _ = self.notifications.send((topic, frame.to_string()));
    }

    fn deliver(&self, conversation: &Conversation, body: Value) {
        let Some(webhook) = &self.webhook else {
            tracing::warn!("no webhook URL configured: an agent message goes nowhere");
            return;
        };
        if self.hub.faults.unknown_events() {
            let id = format!("unknown-{}", uuid::Uuid::new_v4());
            let unknown = self.outbound(conversation, &id, "Presence", json!({ "presence": { "type": "Join" } }));
            self.sign_and_send(webhook, conversation, unknown);
        }
        lock(&self.last_delivery).insert(conversation.id.clone(), self.sign_and_send(webhook, conversation, body));
    }

    /// Signs `body` as Genesys does and queues it; returns the delivery.
    fn sign_and_send(
        &self,
        webhook: &mpsc::UnboundedSender<Delivery>,
        conversation: &Conversation,
        body: Value,
    ) -> Delivery {
        let body = body.to_string().into_bytes();
        let key: &[u8] = if self.hub.faults.bad_signatures() { b"not-the-secret" } else { WEBHOOK_SECRET.as_bytes() };
        let headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-hub-signature-256".to_owned(), format!("sha256={}", sign(key, &body))),
        ];
        let delivery = Delivery::new(&conversation.id, body, headers);
        let _ = webhook.send(delivery.clone());
        delivery
    }

    fn outbound(&self, conversation: &Conversation, id: &str, kind: &str, extra: Value) -> Value {
        let mut body = json!({
            "id": id,
            "channel": {
                "id": INTEGRATION_ID,
                "platform": "Open",
                "type": "Private",
                "messageId": id,
                "to": { "id": conversation.owner, "idType": "Opaque" },
                "from": { "id": INTEGRATION_ID, "idType": "Opaque", "nickname": "Emulated Integration" },
                "time": iso8601(now_ms()),
            },
            "type": kind,
            "direction": "Outbound",
            "conversationId": conversation.id,
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    }
}

/// Genesys's `mediaType` for a media type (`Image`, `Video`, `Audio`, else `File`).
fn media_type_of(mime: &str) -> &'static str {
    match mime.split('/').next().unwrap_or_default().to_ascii_lowercase().as_str() {
        "image" => "Image",
        "video" => "Video",
        "audio" => "Audio",
        _ => "File",
    }
}

fn sign(key: &[u8], body: &[u8]) -> String {
    signature::sign(Algorithm::Sha256, Encoding::Base64, key, body)
}

fn iso8601(ms: u64) -> String {
    time::iso8601_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms))
}

impl ProtocolHandle for Genesys {
    fn provider_config(&self, base_url: &str) -> Value {
        json!({
            "login_url": base_url,
            "api_url": base_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "integration_id": INTEGRATION_ID,
            "webhook_secret": WEBHOOK_SECRET,
            "transfer_grace_ms": 300,
            "end_drain_ms": 150,
        })
    }

    fn redeliver_last(&self, conversation: &str) -> bool {
        let delivery = lock(&self.last_delivery).get(conversation).cloned();
        match (delivery, &self.webhook) {
            (Some(delivery), Some(webhook)) => webhook.send(delivery).is_ok(),
            _ => false,
        }
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = lock(&self.tokens).iter().cloned().collect();
        secrets.extend([CLIENT_SECRET.to_owned(), WEBHOOK_SECRET.to_owned()]);
        secrets.extend(self.hub.file_tokens());
        secrets
    }

    fn translated(&self, conversation: &str) -> u64 {
        lock(&self.translated).get(conversation).copied().unwrap_or(0)
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "message": message, "code": code, "status": status.as_u16(), "contextId": uuid::Uuid::new_v4().to_string() });
    (status, Json(body)).into_response()
}

/// Turns hub changes into notifications and webhooks.
async fn translate(genesys: Arc<Genesys>) {
    let mut changes = genesys.hub.subscribe();
    loop {
        let Some(change) = next_change(&mut changes).await else { return };
        match change {
            Change::Created(_) => {}
            Change::Agent(conversation, record) => {
                let base = |participant: &str| {
                    json!({
                        "eventTime": now_ms(),
                        "conversationId": conversation.id,
                        "participantId": participant,
                        "sessionId": uuid::Uuid::new_v4().to_string(),
                        "mediaType": "MESSAGE",
                        "messageType": "OPEN",
                        "direction": "INBOUND",
                    })
                };
                match record.action.clone() {
                    AgentAction::Joined { agent } => {
                        let participant = uuid::Uuid::new_v4().to_string();
                        let user = format!("user-{}", agent.to_lowercase());
                        if let Some(p) = lock(&genesys.participants).get_mut(&conversation.id) {
                            p.agents.push((participant.clone(), user.clone(), "connected", None));
                        }
                        let mut body = base(&participant);
                        body["userId"] = json!(user);
                        body["queueId"] = json!("queue-1");
                        genesys.notify(&conversation.id, "user.start", body);
                    }
                    AgentAction::Message { text, .. } => {
                        let body = genesys.outbound(
                            &conversation,
                            &record.id,
                            "Text",
                            json!({ "text": text, "originatingEntity": "Human" }),
                        );
                        genesys.deliver(&conversation, body);
                    }
                    AgentAction::Typing { on: true, .. } => {
                        let body = genesys.outbound(
                            &conversation,
                            &record.id,
                            "Event",
                            json!({ "events": [{ "eventType": "Typing", "typing": { "type": "On", "duration": 5000 } }] }),
                        );
                        genesys.deliver(&conversation, body);
                    }
                    AgentAction::File { file, caption, .. } => {
                        // genesys.md §6.2: one `Attachment` item (go-gcloudcx's outbound
                        // fixtures), the caption as the message text; the URL is a
                        // pre-signed download URL, like Genesys's `api-downloads` host.
                        let url = genesys.hub.file_url(&record).unwrap_or_default();
                        let mut extra = json!({
                            "originatingEntity": "Human",
                            "content": [{
                                "contentType": "Attachment",
                                "attachment": {
                                    "id": record.id,
                                    "mediaType": media_type_of(&file.media_type),
                                    "url": url,
                                    "mime": file.media_type,
                                    "filename": file.name,
                                    "contentSizeBytes": file.data.len(),
                                },
                            }],
                        });
                        if let Some(caption) = caption {
                            extra["text"] = json!(caption);
                        }
                        let body = genesys.outbound(&conversation, &record.id, "Text", extra);
                        genesys.deliver(&conversation, body);
                    }
                    // Open Messaging has no queue data, and no "typing stopped".
                    AgentAction::Typing { on: false, .. } | AgentAction::Queued { .. } => {}
                    AgentAction::Left { .. } | AgentAction::Ended => {}
                }
                if let AgentAction::Left { transfer, .. } = &record.action {
                    end_agent(&genesys, &conversation, if *transfer { "TRANSFER" } else { "CLIENT" }, &base);
                }
                if record.action == AgentAction::Ended {
                    end_agent(&genesys, &conversation, "CLIENT", &base);
                    let customer = {
                        let mut participants = lock(&genesys.participants);
                        participants.get_mut(&conversation.id).map(|p| {
                            p.customer_state = "disconnected";
                            p.customer.clone()
                        })
                    };
                    let mut body = base(&customer.unwrap_or_default());
                    body["disconnectType"] = json!("PEER");
                    genesys.notify(&conversation.id, "customer.end", body);
                }
                *lock(&genesys.translated).entry(conversation.id.clone()).or_default() = record.seq;
            }
            Change::Customer(conversation, CustomerAction::Closed) => {
                let customer = lock(&genesys.participants).get(&conversation.id).map(|p| p.customer.clone());
                let body = json!({
                    "eventTime": now_ms(),
                    "conversationId": conversation.id,
                    "participantId": customer.unwrap_or_default(),
                    "mediaType": "MESSAGE",
                    "messageType": "OPEN",
                    "disconnectType": "CLIENT",
                });
                genesys.notify(&conversation.id, "customer.end", body);
            }
            Change::Customer(..) => {}
        }
    }
}

/// The current agent participant ends with `disconnect_type`.
fn end_agent(
    genesys: &Genesys,
    conversation: &Conversation,
    disconnect_type: &'static str,
    base: &dyn Fn(&str) -> Value,
) {
    let ended = {
        let mut participants = lock(&genesys.participants);
        participants.get_mut(&conversation.id).and_then(|p| {
            let agent = p.agents.iter_mut().rev().find(|a| a.2 == "connected")?;
            agent.2 = "disconnected";
            agent.3 = Some(disconnect_type);
            Some((agent.0.clone(), agent.1.clone()))
        })
    };
    if let Some((participant, user)) = ended {
        let mut body = base(&participant);
        body["userId"] = json!(user);
        body["disconnectType"] = json!(disconnect_type);
        genesys.notify(&conversation.id, "user.end", body);
    }
}

async fn token(State(genesys): State<Arc<Genesys>>, headers: HeaderMap, body: String) -> Response {
    let expected = format!("Basic {}", BASE64.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
    let form = headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/x-www-form-urlencoded");
    if !authorized || !form || body.trim() != "grant_type=client_credentials" {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_client", "description": "client not found or secret wrong" })),
        )
            .into_response();
    }
    let token = format!("emulator-token-{}", uuid::Uuid::new_v4());
    lock(&genesys.tokens).insert(token.clone());
    genesys.hub.faults.token_issued();
    genesys.hub.count("token_requests");
    Json(json!({ "access_token": token, "token_type": "bearer", "expires_in": 86400 })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Prefetch {
    prefetch_conversation_id: Option<bool>,
}

async fn inbound_message(
    State(genesys): State<Arc<Genesys>>,
    headers: HeaderMap,
    Path(integration): Path<String>,
    Query(query): Query<Prefetch>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = genesys.authorize(&headers) {
        return *r;
    }
    if integration != INTEGRATION_ID {
        return error(StatusCode::NOT_FOUND, "not.found", "The integration does not exist.");
    }
    let channel = &body["channel"];
    let (Some(from), Some(_time)) = (channel["from"]["id"].as_str(), channel["time"].as_str()) else {
        return error(StatusCode::BAD_REQUEST, "bad.request", "channel.from.id and channel.time are required.");
    };
    if channel["from"]["idType"].as_str().is_none() {
        return error(StatusCode::BAD_REQUEST, "bad.request", "channel.from.idType is required.");
    }
    if let Some(attributes) = channel["metadata"]["customAttributes"].as_object()
        && attributes.values().any(|v| !v.is_string())
    {
        return error(StatusCode::BAD_REQUEST, "bad.request", "customAttributes values must be strings.");
    }
    let files = match attachments(&body) {
        Ok(files) => files,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad.request", message),
    };
    let text = body["text"].as_str().unwrap_or_default().to_owned();
    let existing = lock(&genesys.by_customer).get(from).cloned().and_then(|id| genesys.hub.get(&id));
    let conversation = match existing.filter(|c| !c.is_ended()) {
        Some(conversation) => conversation,
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            lock(&genesys.by_customer).insert(from.to_owned(), id.clone());
            lock(&genesys.participants).insert(
                id.clone(),
                Participants {
                    customer: uuid::Uuid::new_v4().to_string(),
                    customer_state: "connected",
                    agents: Vec::new(),
                },
            );
            genesys.hub.create(
                id,
                from,
                json!({ "customAttributes": channel["metadata"]["customAttributes"], "from": channel["from"] }),
            )
        }
    };
    if !text.is_empty() || files.is_empty() {
        genesys.hub.customer(&conversation, CustomerAction::Message { text: text.clone() });
    }
    // Genesys fetches the file from its URL (it takes no bytes on this API) and shows it to
    // the agent; a file it cannot fetch does not reach the agent (the answer is the same).
    for (url, name, mime) in files {
        match genesys.hub.fetch_customer_file(&url, &name, &mime).await {
            Ok(file) => {
                genesys.hub.customer(&conversation, file.received());
            }
            Err(reason) => tracing::warn!(%reason, "the customer's attachment could not be fetched"),
        }
    }
    let mut answer = json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "channel": { "id": INTEGRATION_ID, "platform": "Open", "type": "Private", "messageId": channel["messageId"], "from": channel["from"], "time": channel["time"] },
        "type": "Text",
        "text": text,
        "direction": "Inbound",
    });
    if query.prefetch_conversation_id == Some(true) {
        answer["conversationId"] = json!(conversation.id);
    }
    (StatusCode::OK, Json(answer)).into_response()
}

/// The files of an inbound message (`content[].attachment {mediaType, url, mime,
/// filename?}`, with or without `contentType: "Attachment"`; genesys.md §5.1): `url` and
/// `mime` are required, `mediaType` one of the documented values, and an `Attachment`
/// content holds one item only.
fn attachments(body: &Value) -> Result<Vec<(String, String, String)>, &'static str> {
    let Some(content) = body.get("content") else { return Ok(Vec::new()) };
    let Some(items) = content.as_array() else { return Err("content must be an array.") };
    if items.len() > 1 {
        return Err("If contentType = Attachment only one item is allowed.");
    }
    let mut files = Vec::new();
    for item in items {
        if item.get("contentType").is_some_and(|t| t != "Attachment") {
            return Err("Only Attachment content is supported on inbound messages.");
        }
        let attachment = &item["attachment"];
        let (Some(url), Some(mime)) = (attachment["url"].as_str(), attachment["mime"].as_str()) else {
            return Err("content.attachment.url and content.attachment.mime are required.");
        };
        if !["Image", "Video", "Audio", "File", "Link"].contains(&attachment["mediaType"].as_str().unwrap_or_default())
        {
            return Err("content.attachment.mediaType must be Image, Video, Audio, File or Link.");
        }
        // A `Link` is a web page the agent sees, not a file Genesys fetches.
        if attachment["mediaType"] != "Link" {
            let name = attachment["filename"].as_str().unwrap_or("attachment");
            files.push((url.to_owned(), name.to_owned(), mime.to_owned()));
        }
    }
    Ok(files)
}

async fn inbound_event(State(genesys): State<Arc<Genesys>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Err(r) = genesys.authorize(&headers) {
        return *r;
    }
    let from = body["channel"]["from"]["id"].as_str().unwrap_or_default();
    if body["events"][0]["eventType"] != "Typing" {
        return error(StatusCode::BAD_REQUEST, "bad.request", "Only Typing events are supported.");
    }
    let conversation = lock(&genesys.by_customer).get(from).cloned().and_then(|id| genesys.hub.get(&id));
    match conversation {
        Some(conversation) => {
            genesys.hub.customer(&conversation, CustomerAction::Typing { on: true });
            (StatusCode::OK, Json(json!({ "type": "Event", "channel": body["channel"], "events": body["events"] })))
                .into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not.found", "No conversation for this customer."),
    }
}

async fn inbound_receipt(State(genesys): State<Arc<Genesys>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Err(r) = genesys.authorize(&headers) {
        return *r;
    }
    (
        StatusCode::OK,
        Json(json!({ "id": body["id"], "type": "Receipt", "status": body["status"], "direction": "Outbound" })),
    )
        .into_response()
}

async fn conversation(State(genesys): State<Arc<Genesys>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = genesys.authorize(&headers) {
        return *r;
    }
    let participants = lock(&genesys.participants);
    let Some(p) = participants.get(&id) else {
        return error(StatusCode::NOT_FOUND, "not.found", "The conversation does not exist.");
    };
    let mut list = vec![json!({ "id": p.customer, "purpose": "customer", "state": p.customer_state })];
    for (participant, user, state, disconnect) in &p.agents {
        let mut entry = json!({ "id": participant, "purpose": "agent", "state": state, "user": { "id": user } });
        if let Some(disconnect) = disconnect {
            entry["disconnectType"] = json!(disconnect.to_lowercase());
        }
        list.push(entry);
    }
    Json(json!({ "id": id, "participants": list })).into_response()
}

async fn disconnect(
    State(genesys): State<Arc<Genesys>>,
    headers: HeaderMap,
    Path((conversation, participant)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = genesys.authorize(&headers) {
        return *r;
    }
    if body["state"] != "disconnected" {
        return error(StatusCode::BAD_REQUEST, "bad.request", "Only state disconnected is supported.");
    }
    let is_customer = {
        let mut participants = lock(&genesys.participants);
        match participants.get_mut(&conversation) {
            Some(p) if p.customer == participant => {
                p.customer_state = "disconnected";
                true
            }
            Some(_) => false,
            None => return error(StatusCode::NOT_FOUND, "not.found", "The conversation does not exist."),
        }
    };
    if is_customer && let Some(c) = genesys.hub.get(&conversation) {
        genesys.hub.customer(&c, CustomerAction::Closed);
    }
    StatusCode::ACCEPTED.into_response()
}

async fn user(State(genesys): State<Arc<Genesys>>, headers: HeaderMap, Path(user): Path<String>) -> Response {
    if let Err(r) = genesys.authorize(&headers) {
        return *r;
    }
    let name = user.strip_prefix("user-").map(|n| {
        let mut chars = n.chars();
        chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
    });
    match name {
        Some(name) => Json(json!({ "id": user, "name": name, "state": "active" })).into_response(),
        None => error(StatusCode::NOT_FOUND, "not.found", "No such user."),
    }
}

/// The Open Messaging integration (`handover check`).
async fn integration(
    State(genesys): State<Arc<Genesys>>,
    headers: HeaderMap,
    Path(integration): Path<String>,
) -> Response {
    if let Err(r) = genesys.authorize(&headers) {
        return *r;
    }
    if integration != INTEGRATION_ID {
        return error(StatusCode::NOT_FOUND, "not.found", "The requested integration was not found.");
    }
    Json(json!({ "id": INTEGRATION_ID, "name": "Emulated Integration", "status": "Active" })).into_response()
}

/// Topics one notification channel holds.
const TOPICS_PER_CHANNEL: usize = 1000;

async fn create_channel(State(genesys): State<Arc<Genesys>>, headers: HeaderMap) -> Response {
    if let Err(r) = genesys.authorize(&headers) {
        return *r;
    }
    let id = format!("streaming-0-{}", uuid::Uuid::new_v4().simple());
    lock(&genesys.channels).insert(id.clone(), HashSet::new());
    genesys.hub.count("notification_channels");
    let expires = iso8601(now_ms() + 24 * 3600 * 1000);
    Json(json!({ "id": id, "connectUri": format!("ws://{}/channels/{id}", genesys.addr), "expires": expires }))
        .into_response()
}

fn topics_answer(topics: &HashSet<String>) -> Response {
    let entities: Vec<Value> = topics.iter().map(|t| json!({ "id": t, "state": "Permitted" })).collect();
    Json(json!({ "entities": entities })).into_response()
}

async fn add_topics(
    State(genesys): State<Arc<Genesys>>,
    headers: HeaderMap,
    Path(channel): Path<String>,
    Json(body): Json<Vec<Value>>,
) -> Response {
    subscribe(genesys, headers, channel, body, false)
}

async fn replace_topics(
    State(genesys): State<Arc<Genesys>>,
    headers: HeaderMap,
    Path(channel): Path<String>,
    Json(body): Json<Vec<Value>>,
) -> Response {
    subscribe(genesys, headers, channel, body, true)
}

fn subscribe(genesys: Arc<Genesys>, headers: HeaderMap, channel: String, body: Vec<Value>, replace: bool) -> Response {
    if let Err(r) = genesys.authorize(&headers) {
        return *r;
    }
    let mut channels = lock(&genesys.channels);
    let Some(topics) = channels.get_mut(&channel) else {
        return error(StatusCode::NOT_FOUND, "not.found", "The channel does not exist.");
    };
    let asked: Vec<String> = body.iter().filter_map(|t| t["id"].as_str().map(str::to_owned)).collect();
    let kept = if replace { 0 } else { topics.len() };
    let total = kept + asked.iter().filter(|t| replace || !topics.contains(*t)).count();
    if total > TOPICS_PER_CHANNEL {
        // The service's limit; the error body is the emulator's (the code is unconfirmed).
        let message = format!("A channel can subscribe to at most {TOPICS_PER_CHANNEL} topics; this asks for {total}.");
        return error(StatusCode::BAD_REQUEST, "bad.request", &message);
    }
    if replace {
        topics.clear();
        genesys.hub.count("notification_topic_replacements");
    }
    topics.extend(asked);
    topics_answer(topics)
}

async fn socket(
    State(genesys): State<Arc<Genesys>>,
    Path(channel): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !lock(&genesys.channels).contains_key(&channel) {
        return error(StatusCode::NOT_FOUND, "not.found", "The channel does not exist.");
    }
    // Subscribe before the handshake completes: events right after the client sees the
    // socket open must reach it.
    let notifications = genesys.notifications.subscribe();
    upgrade.on_upgrade(move |socket| serve_socket(genesys, channel, socket, notifications))
}

async fn serve_socket(
    genesys: Arc<Genesys>,
    channel: String,
    mut socket: WebSocket,
    mut notifications: broadcast::Receiver<(String, String)>,
) {
    let mut drops = genesys.hub.faults.drop_signal();
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    let heartbeat_frame =
        json!({ "topicName": "channel.metadata", "eventBody": { "message": "WebSocket Heartbeat" } }).to_string();
    loop {
        tokio::select! {
            notification = notifications.recv() => match notification {
                Ok((topic, frame)) => {
                    let subscribed = lock(&genesys.channels).get(&channel).is_some_and(|t| t.contains(&topic));
                    if subscribed && socket.send(Message::Text(frame.into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = heartbeat.tick() => {
                if socket.send(Message::Text(heartbeat_frame.clone().into())).await.is_err() {
                    return;
                }
            }
            frame = socket.recv() => match frame {
                Some(Ok(Message::Text(text))) if text.as_str().contains("\"ping\"") => {
                    let pong = json!({ "topicName": "channel.metadata", "eventBody": { "message": "pong" } }).to_string();
                    if socket.send(Message::Text(pong.into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
            // A dropped socket: no close frame, the connection just ends.
            () = drops.dropped() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_attachments_are_read_wrapped_or_bare_and_checked() {
        let item =
            |attachment: Value| json!({ "content": [{ "contentType": "Attachment", "attachment": attachment }] });
        let image = json!({ "mediaType": "Image", "url": "http://127.0.0.1/f?token=t", "mime": "image/png", "filename": "a.png" });
        assert_eq!(
            attachments(&item(image.clone())),
            Ok(vec![("http://127.0.0.1/f?token=t".to_owned(), "a.png".to_owned(), "image/png".to_owned())])
        );
        assert_eq!(attachments(&json!({ "content": [{ "attachment": image.clone() }] })).map(|f| f.len()), Ok(1));
        assert_eq!(attachments(&json!({ "text": "hi" })), Ok(Vec::new()));
        let link = json!({ "mediaType": "Link", "url": "https://example.com", "mime": "text/html" });
        assert_eq!(attachments(&item(link)), Ok(Vec::new()), "a link is not fetched");
        assert!(attachments(&item(json!({ "mediaType": "Image", "url": "http://x" }))).is_err(), "no mime");
        assert!(attachments(&item(json!({ "mediaType": "Sticker", "url": "http://x", "mime": "image/png" }))).is_err());
        assert!(
            attachments(&json!({ "content": [{ "attachment": image.clone() }, { "attachment": image }] })).is_err()
        );
        assert!(attachments(&json!({ "content": [{ "contentType": "Notification" }] })).is_err());
        assert_eq!(media_type_of("application/pdf"), "File");
        assert_eq!(media_type_of("VIDEO/mp4"), "Video");
    }
}
