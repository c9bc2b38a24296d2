//! Salesforce Messaging for In-App and Web (`protocols/salesforce-miaw.md`).
//!
//! Guest and authenticated tokens (an identity JWT whose `iss` is [`IDENTITY_ISSUER`] and
//! that has not expired verifies; anything else falls back silently to a guest token, as
//! the real API does), conversations with lowercase UUIDs, messages, files (the end user's
//! multipart uploads, 413 over 5 MB, 415 for executables; the agent's as `Attachments`
//! messages with pre-signed URLs), typing, close, the entries list (payloads as objects)
//! and the SSE stream (payloads as JSON strings, event ids, `ping` keep-alives, echoes of
//! the end user's messages, no replay on reconnect).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::ProtocolHandle;
use crate::model::{AgentAction, Change, Conversation, CustomerAction, EmulatedFile, Hub, lock, now_ms};
use crate::multipart::form_data;
use crate::sse::{self, Chunk};
use crate::{Setup, Started};

/// The org id the emulator expects.
pub const ORG_ID: &str = "00DEMO000000001";
/// The Embedded Service deployment name the emulator expects.
pub const ES_DEVELOPER_NAME: &str = "Handover_Demo";
/// The issuer of identity JWTs the emulator accepts.
pub const IDENTITY_ISSUER: &str = "handover-emulator";
/// Lifetime of guest tokens.
pub const GUEST_TTL: Duration = Duration::from_secs(3600);
/// Lifetime of authenticated tokens.
pub const AUTH_TTL: Duration = Duration::from_secs(6 * 3600);
/// The largest file `/file` takes (Salesforce: "maximum size of each file is 5 MB"); a larger
/// one is answered 413.
pub const MAX_FILE_BYTES: usize = 5_000_000;
/// Media types `/file` refuses with 415 (the real list is not documented).
const REFUSED_FILE_TYPES: [&str; 4] =
    ["application/x-msdownload", "application/x-executable", "application/x-sh", "application/x-msdos-program"];

#[derive(Clone, Debug)]
struct Token {
    subject: String,
    expires_ms: u64,
}

#[derive(Clone, Debug)]
struct Frame {
    owner: String,
    event: &'static str,
    id: u64,
    data: String,
}

#[derive(Clone, Debug)]
struct Entry {
    identifier: String,
    entry_type: &'static str,
    payload: Value,
    sender: Value,
    sender_display_name: String,
    at_ms: u64,
}

impl Entry {
    fn json(&self, payload_as_string: bool) -> Value {
        json!({
            "identifier": self.identifier,
            "entryType": self.entry_type,
            "entryPayload": if payload_as_string { Value::String(self.payload.to_string()) } else { self.payload.clone() },
            "sender": self.sender,
            "senderDisplayName": self.sender_display_name,
            "transcriptedTimestamp": self.at_ms,
            "clientTimestamp": self.at_ms,
            "relatedRecords": [],
        })
    }
}

/// The MIAW emulator state.
pub struct Miaw {
    hub: Arc<Hub>,
    tokens: Mutex<HashMap<String, Token>>,
    next_event: AtomicU64,
    entries: Mutex<HashMap<String, Vec<Entry>>>,
    last_frame: Mutex<HashMap<String, Frame>>,
    /// Open SSE streams by token subject: a frame goes to its owner's streams only.
    streams: Mutex<HashMap<String, Vec<mpsc::Sender<Frame>>>>,
    keepalive: Duration,
    translated: Mutex<HashMap<String, u64>>,
}

impl Miaw {
    /// The protocol handle, routes and translator task.
    pub(crate) fn start(setup: &Setup) -> Started {
        let hub = setup.hub.clone();
        let miaw = Arc::new(Self {
            hub,
            tokens: Mutex::default(),
            next_event: AtomicU64::new(1000),
            entries: Mutex::default(),
            last_frame: Mutex::default(),
            streams: Mutex::default(),
            keepalive: Duration::from_secs(15),
            translated: Mutex::default(),
        });
        let task = tokio::spawn(translate(miaw.clone()));
        let routes = Router::new()
            .route("/iamessage/api/v2/authorization/unauthenticated/access-token", post(guest_token))
            .route(
                "/iamessage/api/v2/authorization/authenticated/access-token",
                post(authenticated_token).delete(revoke_token),
            )
            .route("/iamessage/api/v2/authorization/continuation-access-token", get(continuation_token))
            .route("/iamessage/api/v2/conversation", post(create_conversation))
            .route("/iamessage/api/v2/conversation/{id}", get(routing_status).delete(close_conversation))
            .route("/iamessage/api/v2/conversation/{id}/session", delete(close_conversation))
            .route("/iamessage/api/v2/conversation/{id}/message", post(send_message))
            .route(
                "/iamessage/api/v2/conversation/{id}/file",
                post(send_file).layer(DefaultBodyLimit::max(2 * MAX_FILE_BYTES)),
            )
            .route("/iamessage/api/v2/conversation/{id}/entry", post(send_entry))
            .route("/iamessage/api/v2/conversation/{id}/acknowledge-entries", post(acknowledge))
            .route("/iamessage/api/v2/conversation/{id}/entries", get(list_entries))
            .route("/eventrouter/v1/sse", get(stream))
            .with_state(miaw.clone());
        (miaw, routes, task)
    }

    fn issue(&self, subject: String, ttl: Duration) -> String {
        let exp = now_ms() / 1000 + ttl.as_secs();
        let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = B64.encode(json!({ "sub": subject, "exp": exp, "iat": now_ms() / 1000 }).to_string());
        let token = format!("{header}.{payload}.emulator-{}", self.hub.next_number());
        lock(&self.tokens).insert(token.clone(), Token { subject, expires_ms: exp * 1000 });
        self.hub.faults.token_issued();
        self.hub.count("token_requests");
        token
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<Token, Reject> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let found = lock(&self.tokens).get(token).cloned();
        match found {
            Some(t) if t.expires_ms > now_ms() && !self.hub.faults.tokens_expired() => Ok(t),
            Some(_) => Err(unauthorized("Jwt is expired")),
            None => Err(unauthorized("Invalid token")),
        }
    }

    fn conversation_for(&self, token: &Token, id: &str) -> Result<Arc<Conversation>, Reject> {
        match self.hub.get(id) {
            Some(c) if c.owner == token.subject => Ok(c),
            _ => Err(error(StatusCode::NOT_FOUND, "Conversation not found.")),
        }
    }

    fn record(&self, conversation: &Conversation, entry: Entry) {
        if self.hub.faults.unknown_events() {
            // An event type of a newer API version: no entry, nothing to back-fill.
            let unknown = Frame {
                owner: conversation.owner.clone(),
                event: "CONVERSATION_SENTIMENT_SCORED",
                id: self.next_event.fetch_add(1, Ordering::SeqCst),
                data: json!({ "conversationId": conversation.id, "score": 0.7 }).to_string(),
            };
            self.publish(&unknown);
        }
        let frame = Frame {
            owner: conversation.owner.clone(),
            event: event_name(entry.entry_type),
            id: self.next_event.fetch_add(1, Ordering::SeqCst),
            data: json!({
                "channelPlatformKey": "emulator",
                "channelType": "embedded_messaging",
                "channelAddressIdentifier": "emulator-channel",
                "conversationId": conversation.id,
                "conversationEntry": entry.json(true),
            })
            .to_string(),
        };
        lock(&self.entries).entry(conversation.id.clone()).or_default().push(entry);
        lock(&self.last_frame).insert(conversation.id.clone(), frame.clone());
        self.publish(&frame);
    }

    /// Sends `frame` to its owner's open streams. A stream that cannot keep up is closed:
    /// the client reconnects and back-fills, as with the real event router.
    fn publish(&self, frame: &Frame) -> bool {
        let mut streams = lock(&self.streams);
        let Some(senders) = streams.get_mut(&frame.owner) else { return false };
        senders.retain(|sender| sender.try_send(frame.clone()).is_ok());
        let delivered = !senders.is_empty();
        if !delivered {
            streams.remove(&frame.owner);
        }
        delivered
    }
}

impl ProtocolHandle for Miaw {
    fn provider_config(&self, base_url: &str) -> Value {
        json!({ "scrt_url": base_url, "org_id": ORG_ID, "es_developer_name": ES_DEVELOPER_NAME })
    }

    fn redeliver_last(&self, conversation: &str) -> bool {
        let frame = lock(&self.last_frame).get(conversation).cloned();
        match frame {
            Some(frame) => self.publish(&frame),
            None => false,
        }
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = lock(&self.tokens).keys().cloned().collect();
        secrets.extend(self.hub.file_tokens());
        secrets
    }

    fn translated(&self, conversation: &str) -> u64 {
        lock(&self.translated).get(conversation).copied().unwrap_or(0)
    }
}

fn event_name(entry_type: &str) -> &'static str {
    match entry_type {
        "Message" => "CONVERSATION_MESSAGE",
        "ParticipantChanged" => "CONVERSATION_PARTICIPANT_CHANGED",
        "RoutingResult" => "CONVERSATION_ROUTING_RESULT",
        "RoutingWorkResult" => "CONVERSATION_ROUTING_WORK_RESULT",
        "SessionStatusChanged" => "CONVERSATION_SESSION_STATUS_CHANGED",
        "CloseConversation" => "CONVERSATION_CLOSE_CONVERSATION",
        "TypingStartedIndicator" => "CONVERSATION_TYPING_STARTED_INDICATOR",
        "TypingStoppedIndicator" => "CONVERSATION_TYPING_STOPPED_INDICATOR",
        _ => "CONVERSATION_UNKNOWN_FUTURE_EVENT",
    }
}

fn agent_sender(name: &str) -> Value {
    json!({ "role": "Agent", "appType": "agent", "subject": format!("agent/{}", name.to_lowercase()) })
}

/// An `Attachments` message payload (§6.1): the files at their URLs, `text` the caption or
/// null.
fn attachments_message(id: &str, files: &[(&str, &EmulatedFile, String)], caption: Option<&str>) -> Value {
    let attachments: Vec<Value> = files
        .iter()
        .map(|(file_id, file, url)| {
            json!({
                "id": file_id,
                "name": file.name,
                "mimeType": file.media_type,
                "url": url,
                "referenceId": format!("ref-{file_id}"),
                "attachmentUploadResult": null,
            })
        })
        .collect();
    json!({
        "entryType": "Message",
        "id": id,
        "abstractMessage": {
            "messageType": "StaticContentMessage",
            "id": id,
            "inReplyToMessageId": null,
            "references": [],
            "staticContent": { "formatType": "Attachments", "text": caption, "attachments": attachments },
        },
        "messageReason": null,
    })
}

fn system_sender() -> Value {
    json!({ "role": "System", "appType": "iamessage", "subject": "system" })
}

/// Turns hub changes into MIAW entries and SSE frames.
async fn translate(miaw: Arc<Miaw>) {
    let mut changes = miaw.hub.subscribe();
    let mut session_active: HashMap<String, bool> = HashMap::new();
    loop {
        let change = match changes.recv().await {
            Ok(change) => change,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(n, "miaw emulator lagged behind the hub");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let number = miaw.hub.next_number();
        let entry = |entry_type: &'static str, payload: Value, sender: Value, name: &str| Entry {
            identifier: format!("entry-{number}-{}", entry_type.to_lowercase()),
            entry_type,
            payload,
            sender,
            sender_display_name: name.to_owned(),
            at_ms: now_ms(),
        };
        match change {
            Change::Created(conversation) => {
                let payload = json!({ "sessionStatus": "Waiting", "sessionStatusPrev": "New" });
                miaw.record(&conversation, entry("SessionStatusChanged", payload, system_sender(), "System"));
            }
            Change::Agent(conversation, record) => {
                match record.action.clone() {
                    AgentAction::Queued { position, wait_secs } => {
                        let payload = json!({
                            "routingType": "Initial",
                            "failureType": "None",
                            "estimatedWaitTime": { "estimatedWaitTimeInSeconds": wait_secs.map_or(-1, |w| i64::try_from(w).unwrap_or(-1)), "isEWTRequested": true },
                            "recordId": format!("0Mw{number}"),
                            "routingConfigurationDetails": { "routingConfigurationType": "QueueRoutingType", "queueId": "00G000000000001" },
                        });
                        miaw.record(&conversation, entry("RoutingResult", payload, system_sender(), "System"));
                        if let Some(position) = position {
                            // The real payload of this event is unknown (protocols/salesforce-miaw.md §6.2).
                            let payload = json!({ "queuePosition": position });
                            miaw.record(&conversation, entry("QueuePosition", payload, system_sender(), "System"));
                        }
                    }
                    AgentAction::Joined { agent } => {
                        let participant = json!({
                            "operation": "add",
                            "displayName": agent,
                            "participant": agent_sender(&agent),
                        });
                        miaw.record(
                            &conversation,
                            entry("ParticipantChanged", json!({ "entries": [participant] }), system_sender(), "System"),
                        );
                        miaw.record(
                            &conversation,
                            entry("RoutingWorkResult", json!({ "workType": "Accepted" }), system_sender(), "System"),
                        );
                        if !session_active.insert(conversation.id.clone(), true).unwrap_or(false) {
                            let payload = json!({ "sessionStatus": "Active", "sessionStatusPrev": "Waiting" });
                            miaw.record(
                                &conversation,
                                entry("SessionStatusChanged", payload, system_sender(), "System"),
                            );
                        }
                    }
                    AgentAction::Message { agent, text } => {
                        let payload = json!({
                            "id": record.id,
                            "abstractMessage": {
                                "messageType": "StaticContentMessage",
                                "id": record.id,
                                "staticContent": { "formatType": "Text", "text": text },
                            },
                            "messageReason": null,
                        });
                        miaw.record(&conversation, entry("Message", payload, agent_sender(&agent), &agent));
                    }
                    AgentAction::Typing { agent, on } => {
                        let kind = if on { "TypingStartedIndicator" } else { "TypingStoppedIndicator" };
                        miaw.record(&conversation, entry(kind, json!({}), agent_sender(&agent), &agent));
                    }
                    AgentAction::Left { agent, transfer } => {
                        let participant = json!({
                            "operation": "remove",
                            "displayName": agent,
                            "participant": agent_sender(&agent),
                        });
                        miaw.record(
                            &conversation,
                            entry("ParticipantChanged", json!({ "entries": [participant] }), system_sender(), "System"),
                        );
                        if transfer {
                            let payload = json!({ "routingType": "Transfer", "failureType": "None", "estimatedWaitTime": { "estimatedWaitTimeInSeconds": null, "isEWTRequested": false } });
                            miaw.record(&conversation, entry("RoutingResult", payload, system_sender(), "System"));
                        }
                    }
                    AgentAction::File { agent, file, caption } => {
                        let url = miaw.hub.file_url(&record).unwrap_or_default();
                        let file_id = format!("0Mx{number}");
                        let payload =
                            attachments_message(&record.id, &[(file_id.as_str(), &file, url)], caption.as_deref());
                        miaw.record(&conversation, entry("Message", payload, agent_sender(&agent), &agent));
                    }
                    AgentAction::Ended => {
                        let payload = json!({ "sessionStatus": "Ended", "sessionStatusPrev": "Active", "sessionEndedByRole": "Agent" });
                        miaw.record(&conversation, entry("SessionStatusChanged", payload, system_sender(), "System"));
                    }
                }
                *lock(&miaw.translated).entry(conversation.id.clone()).or_default() = record.seq;
            }
            Change::Customer(conversation, action) => match action {
                CustomerAction::Message { text } => {
                    let payload = json!({
                        "id": format!("echo-{number}"),
                        "abstractMessage": { "messageType": "StaticContentMessage", "id": format!("echo-{number}"), "staticContent": { "formatType": "Text", "text": text } },
                    });
                    let sender = json!({ "role": "EndUser", "appType": "iamessage", "subject": conversation.owner });
                    miaw.record(&conversation, entry("Message", payload, sender, "Guest"));
                }
                CustomerAction::Typing { .. } | CustomerAction::File { .. } => {}
                CustomerAction::Closed => {
                    miaw.record(&conversation, entry("CloseConversation", json!({}), system_sender(), "System"));
                }
            },
        }
    }
}

/// A refused request: its status and message (the error body is built on the way out).
struct Reject {
    status: StatusCode,
    message: &'static str,
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "message": self.message, "errorCode": self.status.as_u16() }))).into_response()
    }
}

fn error(status: StatusCode, message: &'static str) -> Reject {
    Reject { status, message }
}

fn unauthorized(message: &'static str) -> Reject {
    error(StatusCode::UNAUTHORIZED, message)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    org_id: String,
    es_developer_name: String,
    capabilities_version: String,
    platform: String,
    authorization_type: Option<String>,
    customer_identity_token: Option<String>,
}

fn check_token_request(body: &TokenRequest) -> Result<(), Reject> {
    if body.org_id != ORG_ID {
        return Err(error(StatusCode::BAD_REQUEST, "Invalid orgId."));
    }
    if body.es_developer_name != ES_DEVELOPER_NAME {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "No Embedded Service deployment with that esDeveloperName is published.",
        ));
    }
    if body.capabilities_version != "1" || body.platform != "Web" {
        return Err(error(StatusCode::BAD_REQUEST, "Unsupported capabilitiesVersion or platform."));
    }
    Ok(())
}

fn token_response(miaw: &Miaw, token: String, subject: &str) -> Response {
    Json(json!({
        "accessToken": token,
        "lastEventId": (miaw.next_event.load(Ordering::SeqCst) - 1).to_string(),
        "context": {
            "deviceId": format!("device-{}", miaw.hub.next_number()),
            "endUser": { "role": "EndUser", "appType": "iamessage", "subject": subject },
            "configuration": { "embeddedServiceConfig": { "name": ES_DEVELOPER_NAME, "deploymentType": "API", "forms": [] } },
        },
    }))
    .into_response()
}

async fn guest_token(State(miaw): State<Arc<Miaw>>, Json(body): Json<TokenRequest>) -> Response {
    if let Err(reject) = check_token_request(&body) {
        return reject.into_response();
    }
    let subject = format!("v2/iamessage/ANON/{}", uuid::Uuid::new_v4());
    let token = miaw.issue(subject.clone(), GUEST_TTL);
    token_response(&miaw, token, &subject)
}

/// An identity JWT the emulator accepts for `subject`, valid for an hour (unsigned: the
/// emulator checks only the issuer and the expiry).
pub fn identity_jwt(subject: &str) -> String {
    let encode =
        |value: &Value| B64.encode(value.to_string()).trim_end_matches('=').replace('+', "-").replace('/', "_");
    let header = encode(&json!({ "alg": "RS256", "typ": "JWT" }));
    let claims = encode(&json!({ "iss": IDENTITY_ISSUER, "sub": subject, "exp": now_ms() / 1000 + 3600 }));
    format!("{header}.{claims}.emulator")
}

/// The claims of an identity JWT, without checking its signature (the emulator trusts its
/// issuer name; the real API verifies against the keyset).
fn identity_subject(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&B64.decode(payload.trim_end_matches('=')).ok()?).ok()?;
    let valid = claims["iss"] == IDENTITY_ISSUER && claims["exp"].as_u64().is_some_and(|exp| exp * 1000 > now_ms());
    let subject = claims["sub"].as_str().filter(|s| !s.is_empty())?;
    valid.then(|| format!("v2/iamessage/AUTH/emulator-keyset/uid:{subject}"))
}

async fn authenticated_token(State(miaw): State<Arc<Miaw>>, Json(body): Json<TokenRequest>) -> Response {
    if let Err(reject) = check_token_request(&body) {
        return reject.into_response();
    }
    if body.authorization_type.as_deref() != Some("JWT") {
        return error(StatusCode::BAD_REQUEST, "authorizationType must be JWT.").into_response();
    }
    // protocols/salesforce-miaw.md §5: a failed verification silently yields a guest token.
    let (subject, ttl) = match body.customer_identity_token.as_deref().and_then(identity_subject) {
        Some(subject) => (subject, AUTH_TTL),
        None => (format!("v2/iamessage/ANON/{}", uuid::Uuid::new_v4()), GUEST_TTL),
    };
    let token = miaw.issue(subject.clone(), ttl);
    token_response(&miaw, token, &subject)
}

async fn revoke_token(State(miaw): State<Arc<Miaw>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    lock(&miaw.tokens).remove(&token);
    StatusCode::NO_CONTENT.into_response()
}

async fn continuation_token(State(miaw): State<Arc<Miaw>>, headers: HeaderMap) -> Response {
    let current = match miaw.authorize(&headers) {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    let remaining = Duration::from_millis(current.expires_ms.saturating_sub(now_ms()));
    let token = miaw.issue(current.subject.clone(), remaining);
    Json(json!({ "accessToken": token })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateConversation {
    conversation_id: String,
    es_developer_name: String,
    #[serde(default)]
    routing_attributes: Value,
}

async fn create_conversation(
    State(miaw): State<Arc<Miaw>>,
    headers: HeaderMap,
    Json(body): Json<CreateConversation>,
) -> Response {
    let token = match miaw.authorize(&headers) {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    let is_v4 = uuid::Uuid::parse_str(&body.conversation_id).is_ok_and(|u| u.get_version_num() == 4);
    if !is_v4 || body.conversation_id != body.conversation_id.to_lowercase() {
        return error(StatusCode::BAD_REQUEST, "Specify the conversationId in UUID format.").into_response();
    }
    if body.es_developer_name != ES_DEVELOPER_NAME {
        return error(StatusCode::BAD_REQUEST, "Invalid esDeveloperName.").into_response();
    }
    if miaw.hub.get(&body.conversation_id).is_some() {
        return error(StatusCode::CONFLICT, "A conversation with this ID already exists.").into_response();
    }
    miaw.hub.create(body.conversation_id, token.subject, json!({ "routingAttributes": body.routing_attributes }));
    StatusCode::CREATED.into_response()
}

async fn routing_status(State(miaw): State<Arc<Miaw>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let conversation = match miaw.authorize(&headers).and_then(|t| miaw.conversation_for(&t, &id)) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let view = conversation.view();
    let status = if view.transferring {
        "TRANSFER"
    } else if conversation.agent_name().is_some() {
        "ROUTED"
    } else if view.agent.iter().any(|r| matches!(r.action, AgentAction::Left { .. } | AgentAction::Ended)) {
        "NEEDS_ROUTING"
    } else {
        "INITIAL"
    };
    Json(json!({ "conversationId": id, "routingStatus": status })).into_response()
}

#[derive(Deserialize)]
struct EsQuery {
    #[serde(rename = "esDeveloperName")]
    es_developer_name: Option<String>,
}

async fn close_conversation(
    State(miaw): State<Arc<Miaw>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<EsQuery>,
) -> Response {
    let conversation = match miaw.authorize(&headers).and_then(|t| miaw.conversation_for(&t, &id)) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    if query.es_developer_name.as_deref() != Some(ES_DEVELOPER_NAME) {
        return error(StatusCode::BAD_REQUEST, "esDeveloperName is required.").into_response();
    }
    miaw.hub.customer(&conversation, CustomerAction::Closed);
    StatusCode::NO_CONTENT.into_response()
}

async fn send_message(
    State(miaw): State<Arc<Miaw>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let conversation = match miaw.authorize(&headers).and_then(|t| miaw.conversation_for(&t, &id)) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let message = &body["message"];
    let (Some(message_id), Some(text)) = (message["id"].as_str(), message["staticContent"]["text"].as_str()) else {
        return error(StatusCode::BAD_REQUEST, "message.id and message.staticContent.text are required.")
            .into_response();
    };
    if body["esDeveloperName"] != ES_DEVELOPER_NAME || message["messageType"] != "StaticContentMessage" {
        return error(StatusCode::BAD_REQUEST, "Invalid message.").into_response();
    }
    if !miaw.hub.customer(&conversation, CustomerAction::Message { text: text.to_owned() }) {
        return error(StatusCode::EXPECTATION_FAILED, "No active messaging session.").into_response();
    }
    (StatusCode::ACCEPTED, Json(json!({ "conversationEntries": [{ "id": message_id, "clientTimestamp": now_ms() }] })))
        .into_response()
}

/// §3 #10: the end user's file: part `messageEntry` (JSON `{esDeveloperName, message {id,
/// fileId, text}}`) and part `fileData` (the file with its name and type). The file reaches
/// the agent, the caption too; the end user's side sees the file come back as an echo.
async fn send_file(State(miaw): State<Arc<Miaw>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let conversation = match miaw.authorize(&headers).and_then(|t| miaw.conversation_for(&t, &id)) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Ok(parts) = form_data(&headers, &body) else {
        return error(StatusCode::BAD_REQUEST, "The request must be multipart/form-data.").into_response();
    };
    let entry =
        parts.iter().find(|p| p.name == "messageEntry").and_then(|p| serde_json::from_slice::<Value>(&p.data).ok());
    let Some(entry) = entry else {
        return error(StatusCode::BAD_REQUEST, "messageEntry is required.").into_response();
    };
    let message = &entry["message"];
    let uuid = |v: &Value| v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok());
    if entry["esDeveloperName"] != ES_DEVELOPER_NAME || !uuid(&message["id"]) || !uuid(&message["fileId"]) {
        return error(StatusCode::BAD_REQUEST, "messageEntry needs esDeveloperName, message.id and message.fileId.")
            .into_response();
    }
    let Some(part) = parts.into_iter().find(|p| p.name == "fileData" && !p.data.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "fileData is required.").into_response();
    };
    if part.data.len() > MAX_FILE_BYTES {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "The file exceeds the maximum size of 5 MB.").into_response();
    }
    let media_type = part.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned());
    if REFUSED_FILE_TYPES.contains(&media_type.as_str()) {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported file type.").into_response();
    }
    let name = part.filename.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "file".to_owned());
    let file = EmulatedFile::new(name, media_type, part.data);
    if !miaw.hub.customer(&conversation, file.received()) {
        return error(StatusCode::EXPECTATION_FAILED, "No active messaging session.").into_response();
    }
    let caption = message["text"].as_str().filter(|t| !t.is_empty());
    if let Some(caption) = caption {
        miaw.hub.customer(&conversation, CustomerAction::Message { text: caption.to_owned() });
    }
    // The echo of the end user's own file (skipped by the connector, like its text echoes).
    let message_id = message["id"].as_str().unwrap_or_default().to_owned();
    let file_id = message["fileId"].as_str().unwrap_or_default().to_owned();
    let url = miaw.hub.host_file(file.clone());
    let payload = attachments_message(&message_id, &[(file_id.as_str(), &file, url)], caption);
    let echo = Entry {
        identifier: format!("entry-{}-file", miaw.hub.next_number()),
        entry_type: "Message",
        payload,
        sender: json!({ "role": "EndUser", "appType": "iamessage", "subject": conversation.owner }),
        sender_display_name: "Guest".to_owned(),
        at_ms: now_ms(),
    };
    miaw.record(&conversation, echo);
    (StatusCode::ACCEPTED, Json(json!({ "conversationEntries": [{ "id": message_id, "clientTimestamp": now_ms() }] })))
        .into_response()
}

async fn send_entry(
    State(miaw): State<Arc<Miaw>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let conversation = match miaw.authorize(&headers).and_then(|t| miaw.conversation_for(&t, &id)) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let on = match body["entryType"].as_str() {
        Some("TypingStartedIndicator") => true,
        Some("TypingStoppedIndicator") => false,
        _ => return error(StatusCode::BAD_REQUEST, "Unsupported entryType.").into_response(),
    };
    miaw.hub.customer(&conversation, CustomerAction::Typing { on });
    StatusCode::ACCEPTED.into_response()
}

async fn acknowledge(State(miaw): State<Arc<Miaw>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    match miaw.authorize(&headers).and_then(|t| miaw.conversation_for(&t, &id)) {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntriesQuery {
    limit: Option<usize>,
    start_timestamp: Option<u64>,
    direction: Option<String>,
}

async fn list_entries(
    State(miaw): State<Arc<Miaw>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<EntriesQuery>,
) -> Response {
    if let Err(r) = miaw.authorize(&headers).and_then(|t| miaw.conversation_for(&t, &id)) {
        return r.into_response();
    }
    let limit = query.limit.unwrap_or(20).clamp(1, 50);
    let entries = lock(&miaw.entries).get(&id).cloned().unwrap_or_default();
    let mut selected: Vec<&Entry> =
        entries.iter().filter(|e| query.start_timestamp.is_none_or(|start| e.at_ms >= start)).collect();
    if query.direction.as_deref() == Some("FromEnd") {
        selected.reverse();
    }
    let page: Vec<Value> = selected.into_iter().take(limit).map(|e| e.json(false)).collect();
    Json(json!({ "conversationEntries": page })).into_response()
}

async fn stream(State(miaw): State<Arc<Miaw>>, headers: HeaderMap) -> Response {
    let Ok(token) = miaw.authorize(&headers) else {
        // §7: the stream answers expired tokens with this JSON.
        let body = json!({ "status": 401, "error": "Unauthorized", "path": "/eventrouter/v1/sse" });
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    };
    if headers.get("x-org-id").and_then(|v| v.to_str().ok()) != Some(ORG_ID) {
        return error(StatusCode::BAD_REQUEST, "X-Org-Id header is missing or wrong.").into_response();
    }
    if headers.get("last-event-id").is_none() {
        return error(StatusCode::BAD_REQUEST, "Last-Event-Id header is missing.").into_response();
    }
    let (tx, rx) = mpsc::channel(256);
    let (frames_tx, mut frames) = mpsc::channel(256);
    lock(&miaw.streams).entry(token.subject.clone()).or_default().push(frames_tx);
    let miaw = miaw.clone();
    let mut drops = miaw.hub.faults.drop_signal();
    tokio::spawn(async move {
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + miaw.keepalive, miaw.keepalive);
        loop {
            let chunk = tokio::select! {
                frame = frames.recv() => match frame {
                    Some(frame) => Chunk::Frame(sse::frame(frame.event, &frame.id.to_string(), &frame.data)),
                    // Dropped for falling behind: end the stream so the client reconnects.
                    None => Chunk::Abort,
                },
                _ = keepalive.tick() => Chunk::Frame(sse::frame("ping", "", "0")),
                () = drops.dropped() => Chunk::Abort,
                () = tx.closed() => return,
            };
            let abort = matches!(chunk, Chunk::Abort);
            if tx.send(chunk).await.is_err() || abort {
                return;
            }
        }
    });
    sse::response(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Emulator, EmulatorOptions};

    /// A guest token and a new conversation on `emulator`: the token and the conversation id.
    async fn conversation(emulator: &Emulator) -> (String, String) {
        let http = reqwest::Client::new();
        let body = json!({ "orgId": ORG_ID, "esDeveloperName": ES_DEVELOPER_NAME, "capabilitiesVersion": "1", "platform": "Web" });
        let url = format!("{}/iamessage/api/v2/authorization/unauthenticated/access-token", emulator.url());
        let token: Value = http.post(url).json(&body).send().await.expect("token").json().await.expect("JSON");
        let token = token["accessToken"].as_str().expect("a token").to_owned();
        let id = uuid::Uuid::new_v4().to_string();
        let body = json!({ "conversationId": id, "esDeveloperName": ES_DEVELOPER_NAME });
        let url = format!("{}/iamessage/api/v2/conversation", emulator.url());
        let created = http.post(url).bearer_auth(&token).json(&body).send().await.expect("create");
        assert_eq!(created.status(), 201);
        (token, id)
    }

    async fn send_file(emulator: &Emulator, (token, id): &(String, String), media_type: &str, size: usize) -> u16 {
        let entry = json!({ "esDeveloperName": ES_DEVELOPER_NAME, "message": {
            "id": uuid::Uuid::new_v4().to_string(), "fileId": uuid::Uuid::new_v4().to_string(), "text": "" } });
        let entry = reqwest::multipart::Part::text(entry.to_string()).mime_str("application/json").expect("a type");
        let file =
            reqwest::multipart::Part::bytes(vec![7; size]).file_name("f.bin").mime_str(media_type).expect("a type");
        let form = reqwest::multipart::Form::new().part("messageEntry", entry).part("fileData", file);
        let url = format!("{}/iamessage/api/v2/conversation/{id}/file", emulator.url());
        let answer =
            reqwest::Client::new().post(url).bearer_auth(token).multipart(form).send().await.expect("an answer");
        answer.status().as_u16()
    }

    #[tokio::test]
    async fn files_over_five_megabytes_are_413_and_executables_415_and_the_rest_reach_the_agent() {
        let emulator = Emulator::start("miaw", EmulatorOptions::default()).await.expect("starts");
        let session = conversation(&emulator).await;
        assert_eq!(send_file(&emulator, &session, "image/png", MAX_FILE_BYTES + 1).await, 413);
        assert_eq!(send_file(&emulator, &session, "application/x-msdownload", 10).await, 415);
        assert_eq!(send_file(&emulator, &session, "image/png", MAX_FILE_BYTES).await, 202);
        let files = emulator.hub().get(&session.1).expect("the conversation").customer_files();
        let sizes: Vec<u64> = files
            .iter()
            .filter_map(|f| match f {
                CustomerAction::File { size, .. } => Some(*size),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, [MAX_FILE_BYTES as u64], "only the accepted file reached the agent");
    }
}
