//! Cognigy Live Agent / Chatwoot (`protocols/liveagent-chatwoot.md`): the Application API
//! (contacts, conversations, messages, status, priority, the inbox's unassigned list) and
//! signed inbox webhooks (`X-Chatwoot-Signature`, `X-Chatwoot-Timestamp`,
//! `X-Chatwoot-Delivery`), including the echoes of what the connector posts and private notes.
//! Files: the connector uploads the user's as `multipart/form-data` on the "create message"
//! call (`attachments[]`); the agent's go out in `message_created` as `attachments` entries
//! whose `data_url` is an Active Storage redirect URL ending in the file name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use handover_transport::signature::{self, Algorithm, Encoding};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::ProtocolHandle;
use crate::model::{
    AgentAction, AgentRecord, Change, Conversation, CustomerAction, EmulatedFile, Hub, lock, next_change, now_ms,
};
use crate::webhooks::{self, Delivery};
use crate::{Setup, Started};

/// The account id.
pub const ACCOUNT_ID: u64 = 1;
/// The inbox id.
pub const INBOX_ID: u64 = 7;
/// The API access token.
pub const TOKEN: &str = "emulator-live-agent-token";
/// The webhook secret.
pub const WEBHOOK_SECRET: &str = "emulator-live-agent-webhook-secret";
/// The largest upload the desk takes (Chatwoot's 40 MB attachment limit); a larger body is
/// refused with `413`, as a proxy in front of the desk does.
pub const MAX_UPLOAD_BYTES: usize = 40 * 1024 * 1024;

#[derive(Default)]
struct Desk {
    contacts: Vec<(u64, String, String)>,
    next_contact: u64,
    next_conversation: u64,
    next_message: u64,
    conversations: HashMap<u64, DeskConversation>,
    /// Every message of every conversation, oldest first (the message list).
    messages: HashMap<u64, Vec<Value>>,
}

#[derive(Clone, Default)]
struct DeskConversation {
    status: String,
    priority: Option<String>,
    /// Assignee id and name.
    assignee: Option<(u64, String)>,
    /// Other customers' conversations ahead in the queue.
    ahead: u32,
}

/// The Live Agent emulator state.
pub struct LiveAgent {
    hub: Arc<Hub>,
    desk: Mutex<Desk>,
    webhook: Option<mpsc::UnboundedSender<Delivery>>,
    last_delivery: Mutex<HashMap<String, Delivery>>,
    translated: Mutex<HashMap<String, u64>>,
}

impl LiveAgent {
    pub(crate) fn start(setup: &Setup) -> Started {
        let (hub, webhook_url) = (setup.hub.clone(), setup.webhook_url.clone());
        // Account and API-inbox webhooks are sent once and never retried
        // (protocols/liveagent-chatwoot.md §5.4; chatwoot issue #15920).
        let webhook = webhook_url.map(|url| webhooks::spawn(hub.clone(), url, 0, Duration::ZERO));
        let desk = Desk { next_contact: 100, next_conversation: 1000, next_message: 50_000, ..Desk::default() };
        let live = Arc::new(Self {
            hub,
            desk: Mutex::new(desk),
            webhook,
            last_delivery: Mutex::default(),
            translated: Mutex::default(),
        });
        let task = tokio::spawn(translate(live.clone()));
        let base = "/api/v1/accounts/{account}";
        let routes = Router::new()
            .route(&format!("{base}/contacts"), post(create_contact))
            .route(&format!("{base}/contacts/search"), get(search_contacts))
            .route(&format!("{base}/contacts/{{contact}}/contact_inboxes"), post(create_contact_inbox))
            .route(&format!("{base}/conversations"), post(create_conversation).get(list_conversations))
            .route(&format!("{base}/inboxes/{{inbox}}"), get(show_inbox))
            .route(&format!("{base}/conversations/{{id}}"), get(show_conversation))
            .route(
                &format!("{base}/conversations/{{id}}/messages"),
                // Room for a 40 MB file and the form around it.
                post(create_message).get(list_messages).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES + 64 * 1024)),
            )
            .route(&format!("{base}/conversations/{{id}}/toggle_status"), post(toggle_status))
            .route(&format!("{base}/conversations/{{id}}/toggle_priority"), post(toggle_priority))
            .route("/rails/active_storage/blobs/redirect/{id}/{filename}", get(blob_redirect))
            .with_state(live.clone());
        (live, routes, task)
    }

    /// Keeps a message for the message list.
    fn record_message(&self, conversation: u64, message: &Value) {
        let mut message = message.clone();
        if let Some(object) = message.as_object_mut() {
            object.remove("event");
            object.insert("conversation_id".to_owned(), json!(conversation));
        }
        lock(&self.desk).messages.entry(conversation).or_default().push(message);
    }

    fn deliver(&self, conversation: &str, body: Value) {
        let Some(webhook) = &self.webhook else { return };
        if self.hub.faults.unknown_events() {
            let unknown = json!({ "event": "contact_updated", "id": 77, "conversation": { "id": conversation.parse::<u64>().unwrap_or(0) } });
            let _ = webhook.send(self.signed(conversation, unknown));
        }
        let delivery = self.signed(conversation, body);
        lock(&self.last_delivery).insert(conversation.to_owned(), delivery.clone());
        let _ = webhook.send(delivery);
    }

    /// A delivery signed as the desk signs it.
    fn signed(&self, conversation: &str, body: Value) -> Delivery {
        let body = body.to_string().into_bytes();
        let timestamp = (now_ms() / 1000).to_string();
        let key: &[u8] = if self.hub.faults.bad_signatures() { b"wrong-secret" } else { WEBHOOK_SECRET.as_bytes() };
        let mut signed = timestamp.as_bytes().to_vec();
        signed.push(b'.');
        signed.extend_from_slice(&body);
        let headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-chatwoot-timestamp".to_owned(), timestamp),
            (
                "x-chatwoot-signature".to_owned(),
                format!("sha256={}", signature::sign(Algorithm::Sha256, Encoding::Hex, key, &signed)),
            ),
            ("x-chatwoot-delivery".to_owned(), uuid::Uuid::new_v4().to_string()),
        ];
        Delivery::new(conversation, body, headers)
    }

    fn conversation_json(&self, id: u64) -> Value {
        let desk = lock(&self.desk);
        let DeskConversation { status, priority, assignee, .. } =
            desk.conversations.get(&id).cloned().unwrap_or_default();
        let assignee =
            assignee.map(|(id, name)| json!({ "id": id, "name": name, "available_name": name, "type": "user" }));
        json!({
            "id": id,
            "account_id": ACCOUNT_ID,
            "inbox_id": INBOX_ID,
            "status": status,
            "priority": priority,
            "meta": { "assignee": assignee },
            "channel": "Channel::Api",
        })
    }
}

impl ProtocolHandle for LiveAgent {
    fn provider_config(&self, base_url: &str) -> Value {
        json!({
            "base_url": format!("{base_url}/api/v1"),
            "account_id": ACCOUNT_ID,
            "api_access_token": TOKEN,
            "inbox_id": INBOX_ID,
            "webhook_secret": WEBHOOK_SECRET,
        })
    }

    fn redeliver_last(&self, conversation: &str) -> bool {
        let delivery = lock(&self.last_delivery).get(conversation).cloned();
        match (delivery, &self.webhook) {
            (Some(delivery), Some(webhook)) => webhook.send(delivery).is_ok(),
            _ => false,
        }
    }

    fn translated(&self, conversation: &str) -> u64 {
        lock(&self.translated).get(conversation).copied().unwrap_or(0)
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![TOKEN.to_owned(), WEBHOOK_SECRET.to_owned()];
        secrets.extend(self.hub.file_tokens());
        secrets
    }
}

fn agent_id(name: &str) -> u64 {
    name.bytes().fold(11u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) % 100_000
}

/// The desk's `file_type` for a content type (its `FileTypeHelper`).
fn file_type(media_type: &str) -> &'static str {
    match media_type {
        "image/jpeg" | "image/png" | "image/gif" | "image/bmp" | "image/webp" => "image",
        "video/ogg" | "video/mp4" | "video/webm" | "video/quicktime" => "video",
        t if t.contains("audio/") => "audio",
        _ => "file",
    }
}

/// Percent-encodes a file name as the last segment of a URL path.
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A `message_created` webhook body for an agent's message (with its file, if any).
fn message_created(message_id: u64, agent: &str, content: &str, conversation: &Value, file: Option<Value>) -> Value {
    let mut body = json!({
        "event": "message_created",
        "id": message_id,
        "content": content,
        "content_type": "text",
        "message_type": "outgoing",
        "private": false,
        "created_at": now_ms() / 1000,
        "sender": { "id": agent_id(agent), "name": agent, "available_name": agent, "type": "user" },
        "inbox": { "id": INBOX_ID, "name": "Handover" },
        "conversation": conversation,
        "account": { "id": ACCOUNT_ID, "name": "Emulated" },
    });
    if let Some(file) = file {
        body["content_attributes"] = json!({});
        body["attachments"] = json!([file]);
    }
    body
}

/// An agent file as the desk's `Attachment#push_event_data` renders it (without the
/// `content_type` newer versions add): `data_url` is an Active Storage redirect URL whose
/// last segment is the file name. The emulator's URL also carries the file's pre-signed
/// token in its query (where the desk carries a signed blob id in the path).
fn attachment_json(hub: &Hub, record: &AgentRecord, file: &EmulatedFile, id: u64, message_id: u64) -> Value {
    let data_url = hub.file_url(record).and_then(|url| {
        let (base, rest) = url.split_once("/_emulator/files/")?;
        let (file_id, token) = rest.split_once("?token=")?;
        Some(format!("{base}/rails/active_storage/blobs/redirect/{file_id}/{}?token={token}", path_segment(&file.name)))
    });
    let extension = file.name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    json!({
        "id": id,
        "message_id": message_id,
        "file_type": file_type(&file.media_type),
        "account_id": ACCOUNT_ID,
        "extension": extension,
        "data_url": data_url.unwrap_or_default(),
        "thumb_url": "",
        "file_size": file.data.len(),
        "width": null,
        "height": null,
    })
}

async fn translate(live: Arc<LiveAgent>) {
    let mut changes = live.hub.subscribe();
    loop {
        let Some(change) = next_change(&mut changes).await else { return };
        match change {
            Change::Created(_) => {}
            Change::Agent(conversation, record) => {
                let Ok(id) = conversation.id.parse::<u64>() else { continue };
                let base = live.conversation_json(id);
                match &record.action {
                    AgentAction::Queued { position, .. } => {
                        if let Some(entry) = lock(&live.desk).conversations.get_mut(&id) {
                            entry.ahead = position.unwrap_or(1).saturating_sub(1);
                        }
                    }
                    AgentAction::Joined { agent } => {
                        let previous = lock(&live.desk)
                            .conversations
                            .get_mut(&id)
                            .and_then(|e| e.assignee.replace((agent_id(agent), agent.clone())));
                        let mut body = live.conversation_json(id);
                        body["event"] = json!("conversation_updated");
                        body["changed_attributes"] = json!([{ "assignee_id": { "previous_value": previous.map(|p| p.0), "current_value": agent_id(agent) } }]);
                        live.deliver(&conversation.id, body);
                    }
                    AgentAction::Left { .. } => {
                        let previous = lock(&live.desk).conversations.get_mut(&id).and_then(|e| e.assignee.take());
                        let mut body = live.conversation_json(id);
                        body["event"] = json!("conversation_updated");
                        body["changed_attributes"] = json!([{ "assignee_id": { "previous_value": previous.map(|p| p.0), "current_value": null } }]);
                        live.deliver(&conversation.id, body);
                    }
                    AgentAction::Message { agent, text } => {
                        let message_id = {
                            let mut desk = lock(&live.desk);
                            desk.next_message += 1;
                            desk.next_message
                        };
                        let body = message_created(message_id, agent, text, &base, None);
                        live.record_message(id, &body);
                        live.deliver(&conversation.id, body);
                    }
                    AgentAction::Typing { agent, on } => {
                        let body = json!({
                            "event": if *on { "conversation_typing_on" } else { "conversation_typing_off" },
                            "conversation": base,
                            "user": { "id": agent_id(agent), "name": agent, "type": "user" },
                            "is_private": false,
                        });
                        live.deliver(&conversation.id, body);
                    }
                    AgentAction::File { agent, file, caption } => {
                        let (message_id, attachment_id) = {
                            let mut desk = lock(&live.desk);
                            desk.next_message += 2;
                            (desk.next_message - 1, desk.next_message)
                        };
                        let attachment = attachment_json(&live.hub, &record, file, attachment_id, message_id);
                        let caption = caption.as_deref().unwrap_or_default();
                        let body = message_created(message_id, agent, caption, &base, Some(attachment));
                        live.record_message(id, &body);
                        live.deliver(&conversation.id, body);
                    }
                    AgentAction::Ended => {
                        if let Some(entry) = lock(&live.desk).conversations.get_mut(&id) {
                            entry.status = "resolved".to_owned();
                        }
                        let mut body = live.conversation_json(id);
                        body["event"] = json!("conversation_status_changed");
                        body["changed_attributes"] =
                            json!([{ "status": { "previous_value": "open", "current_value": "resolved" } }]);
                        live.deliver(&conversation.id, body);
                    }
                }
                *lock(&live.translated).entry(conversation.id.clone()).or_default() = record.seq;
            }
            Change::Customer(conversation, CustomerAction::Closed) => {
                let Ok(id) = conversation.id.parse::<u64>() else { continue };
                let mut body = live.conversation_json(id);
                body["event"] = json!("conversation_status_changed");
                live.deliver(&conversation.id, body);
            }
            Change::Customer(..) => {}
        }
    }
}

fn authorized(headers: &HeaderMap) -> Result<(), Box<Response>> {
    if headers.get("api_access_token").and_then(|v| v.to_str().ok()) == Some(TOKEN) {
        Ok(())
    } else {
        Err(Box::new(
            (StatusCode::UNAUTHORIZED, Json(json!({ "error": "You need to sign in or sign up before continuing." })))
                .into_response(),
        ))
    }
}

fn unprocessable(message: &str, attributes: &[&str]) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "message": message, "attributes": attributes }))).into_response()
}

fn account(account: u64) -> Result<(), Box<Response>> {
    if account == ACCOUNT_ID {
        Ok(())
    } else {
        Err(Box::new((StatusCode::NOT_FOUND, Json(json!({ "error": "Resource could not be found" }))).into_response()))
    }
}

async fn create_contact(
    State(live): State<Arc<LiveAgent>>,
    headers: HeaderMap,
    Path(acc): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = authorized(&headers).and_then(|()| account(acc)) {
        return *r;
    }
    if body["inbox_id"].as_u64() != Some(INBOX_ID) {
        return unprocessable("Inbox must exist", &["inbox_id"]);
    }
    let identifier = body["identifier"].as_str().unwrap_or_default().to_owned();
    let mut desk = lock(&live.desk);
    if !identifier.is_empty() && desk.contacts.iter().any(|c| c.1 == identifier) {
        return unprocessable("Identifier has already been taken", &["identifier"]);
    }
    desk.next_contact += 1;
    let id = desk.next_contact;
    let source = uuid::Uuid::new_v4().to_string();
    desk.contacts.push((id, identifier.clone(), source.clone()));
    Json(json!({ "payload": {
        "contact": { "id": id, "name": body["name"], "email": body["email"], "identifier": identifier, "contact_inboxes": [] },
        "contact_inbox": { "inbox": { "id": INBOX_ID }, "source_id": source },
    } }))
    .into_response()
}

#[derive(Deserialize)]
struct Search {
    q: String,
}

async fn search_contacts(
    State(live): State<Arc<LiveAgent>>,
    headers: HeaderMap,
    Path(acc): Path<u64>,
    Query(search): Query<Search>,
) -> Response {
    if let Err(r) = authorized(&headers).and_then(|()| account(acc)) {
        return *r;
    }
    let desk = lock(&live.desk);
    let found: Vec<Value> = desk
        .contacts
        .iter()
        .filter(|c| c.1 == search.q)
        .map(|(id, identifier, source)| {
            json!({ "id": id, "identifier": identifier, "contact_inboxes": [{ "inbox": { "id": INBOX_ID }, "source_id": source }] })
        })
        .collect();
    Json(json!({ "meta": { "count": found.len() }, "payload": found })).into_response()
}

async fn create_contact_inbox(
    State(live): State<Arc<LiveAgent>>,
    headers: HeaderMap,
    Path((acc, contact)): Path<(u64, u64)>,
) -> Response {
    if let Err(r) = authorized(&headers).and_then(|()| account(acc)) {
        return *r;
    }
    let desk = lock(&live.desk);
    match desk.contacts.iter().find(|c| c.0 == contact) {
        Some((_, _, source)) => Json(json!({ "source_id": source, "inbox": { "id": INBOX_ID } })).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": "Resource could not be found" }))).into_response(),
    }
}

/// The API inbox (`handover check`).
async fn show_inbox(headers: HeaderMap, Path((acc, inbox)): Path<(u64, u64)>) -> Response {
    if let Err(r) = authorized(&headers).and_then(|()| account(acc)) {
        return *r;
    }
    if inbox != INBOX_ID {
        return (StatusCode::NOT_FOUND, Json(json!({ "error": "Resource could not be found" }))).into_response();
    }
    Json(json!({ "id": INBOX_ID, "name": "Handover", "channel_type": "Channel::Api" })).into_response()
}

async fn create_conversation(
    State(live): State<Arc<LiveAgent>>,
    headers: HeaderMap,
    Path(acc): Path<u64>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = authorized(&headers).and_then(|()| account(acc)) {
        return *r;
    }
    let Some(source) = body["source_id"].as_str() else {
        return unprocessable("source_id is required", &["source_id"]);
    };
    let owner = {
        let desk = lock(&live.desk);
        match desk.contacts.iter().find(|c| c.2 == source) {
            Some(contact) => contact.1.clone(),
            None => return unprocessable("Contact inbox not found", &["source_id"]),
        }
    };
    if body.get("priority").is_some() {
        return unprocessable("priority cannot be set on create", &["priority"]);
    }
    let id = {
        let mut desk = lock(&live.desk);
        desk.next_conversation += 1;
        let id = desk.next_conversation;
        let status = body["status"].as_str().unwrap_or("pending").to_owned();
        desk.conversations.insert(id, DeskConversation { status, ..DeskConversation::default() });
        id
    };
    live.hub.create(id.to_string(), owner, json!({ "custom_attributes": body["custom_attributes"] }));
    Json(live.conversation_json(id)).into_response()
}

async fn list_conversations(
    State(live): State<Arc<LiveAgent>>,
    headers: HeaderMap,
    Path(acc): Path<u64>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorized(&headers).and_then(|()| account(acc)) {
        return *r;
    }
    let unassigned_only = query.get("assignee_type").map(String::as_str) == Some("unassigned");
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let desk = lock(&live.desk);
    let mut list: Vec<Value> = Vec::new();
    let mut ids: Vec<&u64> = desk.conversations.keys().collect();
    ids.sort();
    for id in ids {
        let conversation = &desk.conversations[id];
        if conversation.status != "open" || (unassigned_only && conversation.assignee.is_some()) {
            continue;
        }
        // The conversations ahead of this one in the queue (other customers').
        for n in 0..conversation.ahead {
            list.push(json!({ "id": u64::from(n) + 1, "status": "open", "inbox_id": INBOX_ID }));
        }
        list.push(json!({ "id": id, "status": "open", "inbox_id": INBOX_ID }));
    }
    let page: Vec<Value> = list.into_iter().skip((page - 1) * 25).take(25).collect();
    Json(json!({ "data": { "meta": { "all_count": page.len() }, "payload": page } })).into_response()
}

async fn show_conversation(
    State(live): State<Arc<LiveAgent>>,
    headers: HeaderMap,
    Path((acc, id)): Path<(u64, u64)>,
) -> Response {
    if let Err(r) = authorized(&headers).and_then(|()| account(acc)) {
        return *r;
    }
    if !lock(&live.desk).conversations.contains_key(&id) {
        return (StatusCode::NOT_FOUND, Json(json!({ "error": "Resource could not be found" }))).into_response();
    }
    Json(live.conversation_json(id)).into_response()
}

fn hub_conversation(live: &LiveAgent, id: u64) -> Option<Arc<Conversation>> {
    live.hub.get(&id.to_string())
}

/// The "create message" call: JSON for text, `multipart/form-data` with `attachments[]`
/// for files (the desk's `MessageBuilder` attaches every uploaded file to the message).
async fn create_message(
    State(live): State<Arc<LiveAgent>>,
    headers: HeaderMap,
    Path((acc, id)): Path<(u64, u64)>,
    body: Bytes,
) -> Response {
    if let Err(r) = authorized(&headers).and_then(|()| account(acc)) {
        return *r;
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (body, files) = if content_type.starts_with("multipart/form-data") {
        let Ok(parts) = crate::multipart::parse(content_type, &body) else {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": "the multipart body does not parse" })))
                .into_response();
        };
        let mut fields = serde_json::Map::new();
        let mut files = Vec::new();
        for part in parts {
            match (part.name.as_str(), part.filename) {
                ("attachments[]", Some(filename)) => {
                    let media_type = part.content_type.unwrap_or_else(|| "application/octet-stream".to_owned());
                    files.push(EmulatedFile::new(filename, media_type, part.data));
                }
                ("attachments[]", None) => {
                    return unprocessable("attachments[] must be uploaded files", &["attachments"]);
                }
                (name, _) => {
                    fields.insert(name.to_owned(), json!(String::from_utf8_lossy(&part.data)));
                }
            }
        }
        if files.is_empty() {
            return unprocessable("a multipart message carries attachments[]", &["attachments"]);
        }
        (Value::Object(fields), files)
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(json) => (json, Vec::new()),
            Err(_) => {
                return (StatusCode::BAD_REQUEST, Json(json!({ "error": "the body is not JSON" }))).into_response();
            }
        }
    };
    let content = match body["content"].as_str() {
        Some(content) => content.to_owned(),
        // A file may come without text.
        None if !files.is_empty() => String::new(),
        None => return unprocessable("content is required", &["content"]),
    };
    let content = content.as_str();
    let message_type = body["message_type"].as_str().unwrap_or("outgoing");
    if !matches!(message_type, "incoming" | "outgoing") {
        return unprocessable("message_type is invalid", &["message_type"]);
    }
    let private = body["private"] == true || body["private"] == "true";
    let message_id = {
        let mut desk = lock(&live.desk);
        let Some(entry) = desk.conversations.get_mut(&id) else {
            return (StatusCode::NOT_FOUND, Json(json!({ "error": "Resource could not be found" }))).into_response();
        };
        if message_type == "incoming" && entry.status == "resolved" {
            // Chatwoot reopens a resolved conversation on a new incoming message.
            entry.status = "open".to_owned();
        }
        desk.next_message += 1;
        desk.next_message
    };
    let mut attachments = Vec::new();
    if let Some(conversation) = hub_conversation(&live, id) {
        if !content.is_empty() || files.is_empty() {
            live.hub.customer(&conversation, CustomerAction::Message { text: content.to_owned() });
        }
        for (n, file) in files.iter().enumerate() {
            live.hub.customer(&conversation, file.received());
            let url = live.hub.host_file(file.clone());
            attachments.push(json!({
                "id": message_id * 100 + n as u64,
                "message_id": message_id,
                "file_type": file_type(&file.media_type),
                "account_id": ACCOUNT_ID,
                "extension": file.name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()),
                "data_url": url,
                "thumb_url": "",
                "file_size": file.data.len(),
            }));
        }
        // The desk echoes every message, the connector's own included.
        let mut echo = json!({
            "event": "message_created",
            "id": message_id,
            "content": if content.is_empty() && !files.is_empty() { Value::Null } else { json!(content) },
            "message_type": message_type,
            "private": private,
            "sender": if message_type == "incoming" { json!({ "id": 1, "type": "contact" }) } else { json!({ "id": 99, "name": "API", "type": "user" }) },
            "conversation": live.conversation_json(id),
        });
        if !attachments.is_empty() {
            echo["attachments"] = json!(attachments);
        }
        live.record_message(id, &echo);
        live.deliver(&conversation.id, echo);
    }
    let mut answer = json!({ "id": message_id, "content": content, "message_type": if message_type == "incoming" { 0 } else { 1 }, "private": private, "conversation_id": id });
    if !attachments.is_empty() {
        answer["attachments"] = json!(attachments);
    }
    Json(answer).into_response()
}

/// The desk's blob URL: a redirect to the stored file (`/_emulator/files/…`, pre-signed).
async fn blob_redirect(
    State(live): State<Arc<LiveAgent>>,
    Path((id, _filename)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let token = query.get("token").map(String::as_str).unwrap_or_default();
    if live.hub.served_file(&id, token).is_none() {
        return (StatusCode::NOT_FOUND, Json(json!({ "error": "Resource could not be found" }))).into_response();
    }
    let location = format!("/_emulator/files/{id}?token={token}");
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// The desk's message list: `after` gives the messages with greater ids, oldest first, at
/// most 100; without it, the latest 20.
async fn list_messages(
    State(live): State<Arc<LiveAgent>>,
    headers: HeaderMap,
    Path((acc, id)): Path<(u64, u64)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorized(&headers).and_then(|()| account(acc)) {
        return *r;
    }
    let desk = lock(&live.desk);
    if !desk.conversations.contains_key(&id) {
        return (StatusCode::NOT_FOUND, Json(json!({ "error": "Resource could not be found" }))).into_response();
    }
    let all = desk.messages.get(&id).cloned().unwrap_or_default();
    let listed: Vec<Value> = match query.get("after").and_then(|a| a.parse::<u64>().ok()) {
        Some(after) => all.into_iter().filter(|m| m["id"].as_u64().is_some_and(|i| i > after)).take(100).collect(),
        None => {
            let skip = all.len().saturating_sub(20);
            all.into_iter().skip(skip).collect()
        }
    };
    Json(json!({ "meta": { "contact_last_seen_at": 0 }, "payload": listed })).into_response()
}

async fn toggle_status(
    State(live): State<Arc<LiveAgent>>,
    headers: HeaderMap,
    Path((acc, id)): Path<(u64, u64)>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = authorized(&headers).and_then(|()| account(acc)) {
        return *r;
    }
    let Some(status) = body["status"].as_str().filter(|s| matches!(*s, "open" | "resolved" | "pending" | "snoozed"))
    else {
        return unprocessable("status is invalid", &["status"]);
    };
    {
        let mut desk = lock(&live.desk);
        let Some(entry) = desk.conversations.get_mut(&id) else {
            return (StatusCode::NOT_FOUND, Json(json!({ "error": "Resource could not be found" }))).into_response();
        };
        entry.status = status.to_owned();
    }
    if status == "resolved"
        && let Some(conversation) = hub_conversation(&live, id)
    {
        live.hub.customer(&conversation, CustomerAction::Closed);
    }
    Json(json!({ "meta": {}, "payload": { "success": true, "current_status": status, "conversation_id": id } }))
        .into_response()
}

async fn toggle_priority(
    State(live): State<Arc<LiveAgent>>,
    headers: HeaderMap,
    Path((acc, id)): Path<(u64, u64)>,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = authorized(&headers).and_then(|()| account(acc)) {
        return *r;
    }
    let priority = body["priority"].as_str().map(str::to_owned);
    if priority.as_deref().is_some_and(|p| !matches!(p, "urgent" | "high" | "medium" | "low")) {
        return unprocessable("priority is invalid", &["priority"]);
    }
    match lock(&live.desk).conversations.get_mut(&id) {
        Some(entry) => entry.priority = priority,
        None => {
            return (StatusCode::NOT_FOUND, Json(json!({ "error": "Resource could not be found" }))).into_response();
        }
    }
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_file_names_are_url_segments_and_types_the_desks_file_types() {
        assert_eq!(path_segment("returns label é.pdf"), "returns%20label%20%C3%A9.pdf");
        assert_eq!(
            (file_type("image/png"), file_type("audio/ogg"), file_type("application/pdf")),
            ("image", "audio", "file")
        );
    }
}
