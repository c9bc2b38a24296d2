//! 8x8 Contact Center Chat Gateway v1 (`protocols/8x8.md`): conversations, messages,
//! attachments (multipart uploads referenced by messages; the agent's files as pre-signed
//! URLs on `MESSAGE` events), typing, user removal, participants, the channel, the public
//! JWK, and webhooks signed with a detached RS256 JWS (RFC 7797) by a key generated when the
//! process first needs one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{Algorithm, EncodingKey};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::ProtocolHandle;
use crate::model::{AgentAction, Change, CustomerAction, EmulatedFile, Hub, lock, next_change, now_ms};
use crate::webhooks::{self, Delivery};
use crate::{Setup, Started};

/// The API key.
pub const API_KEY: &str = "emulator-8x8-api-key";
/// The tenant (`X-8x8-Tenant`, `x-8x8-tenant-id`).
pub const TENANT: &str = "emulator-tenant";
/// The customer (`x-8x8-customer-id`).
pub const CUSTOMER: &str = "emulator-customer";
/// The Chat API channel.
pub const CHANNEL_ID: &str = "emulator-channel";
/// The queue.
pub const QUEUE_ID: &str = "emulator-queue";
/// Agents the emulator knows by name (their ids are `agent-<lower-case name>`).
pub const ROSTER: [&str; 4] = ["Ann", "Bob", "Cara", "Dan"];

const PREFIX: &str = "/chat-gateway/v1";

/// The largest upload the emulated Gateway takes; a larger body is answered 413. The real
/// limit is not documented (the provider's own bound, 10 MB, is below this one).
const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;

/// The environment variable holding a seed for [`SigningKey::shared`].
pub const KEY_SEED_ENV: &str = "HANDOVER_EMULATOR_KEY_SEED";

/// The id 8x8 gives an agent called `name` in this emulator.
pub fn agent_id(name: &str) -> String {
    format!("agent-{}", name.to_lowercase())
}

/// An RSA key that signs webhooks the way 8x8 does, and its public JWK.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

/// The headers a signed delivery carries besides the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryMeta {
    /// `x-8x8-event-id`.
    pub event_id: String,
    /// `x-8x8-retry`.
    pub retry: u32,
    /// `x-8x8-transmission-time`, Unix ms.
    pub transmission_time: u64,
    /// `x-8x8-tenant-id`.
    pub tenant: String,
    /// `x-8x8-customer-id`.
    pub customer: String,
}

impl DeliveryMeta {
    /// A first delivery of `event_id` now, for the emulator's tenant and customer.
    pub fn new(event_id: impl Into<String>) -> Self {
        Self {
            event_id: event_id.into(),
            retry: 0,
            transmission_time: now_ms(),
            tenant: TENANT.to_owned(),
            customer: CUSTOMER.to_owned(),
        }
    }

    /// The signed document (§6.3): compact JSON, fixed key order.
    pub fn payload(&self, body: &[u8]) -> String {
        format!(
            r#"{{"checksum":{},"cid":{},"eid":{},"retry":{},"tid":{},"tt":{}}}"#,
            crc32fast::hash(body),
            Value::from(self.customer.as_str()),
            Value::from(self.event_id.as_str()),
            self.retry,
            Value::from(self.tenant.as_str()),
            self.transmission_time,
        )
    }
}

impl SigningKey {
    /// Generates a 2048-bit key named `kid`.
    ///
    /// # Panics
    /// If the operating system has no randomness to offer.
    pub fn generate(kid: impl Into<String>) -> Self {
        Self::from_private(kid, rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation"))
    }

    /// Generates a 2048-bit key named `kid` from `seed`: every process with the same seed
    /// gets the same key (a benchmark signs in one process what an emulator process checks).
    ///
    /// # Panics
    /// Never in practice (key generation from a seeded generator does not fail).
    pub fn generate_seeded(kid: impl Into<String>, seed: u64) -> Self {
        use rand_chacha::rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Self::from_private(kid, rsa::RsaPrivateKey::new(&mut rng, 2048).expect("RSA key generation"))
    }

    fn from_private(kid: impl Into<String>, private: rsa::RsaPrivateKey) -> Self {
        let der = private.to_pkcs1_der().expect("a generated key encodes");
        let kid = kid.into();
        let jwk = json!({
            "kty": "RSA",
            "kid": kid,
            "n": B64URL.encode(private.n().to_bytes_be()),
            "e": B64URL.encode(private.e().to_bytes_be()),
        });
        Self { kid, encoding: EncodingKey::from_rsa_der(der.as_bytes()), jwk }
    }

    /// The process-wide key `emulator-key-1`, generated on first use; from the seed in
    /// [`KEY_SEED_ENV`] when that is set (so a benchmark process signs with the key of an
    /// emulator process).
    pub fn shared() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| match std::env::var(KEY_SEED_ENV).ok().and_then(|s| s.parse().ok()) {
            Some(seed) => Self::generate_seeded("emulator-key-1", seed),
            None => Self::generate("emulator-key-1"),
        })
    }

    /// A second key under the same `kid` (the bad-signature fault).
    pub fn impostor() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| Self::generate("emulator-key-1"))
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK `GET /chat-gateway/v1/jwk/{kid}/public` answers.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The `x-8x8-signature` value for `body` delivered with `meta`.
    ///
    /// # Panics
    /// Never for a key made by [`generate`](Self::generate).
    pub fn sign(&self, body: &[u8], meta: &DeliveryMeta) -> String {
        let header = json!({ "b64": false, "crit": ["b64"], "kid": self.kid, "alg": "RS256" });
        let header = B64URL.encode(header.to_string());
        let input = format!("{header}.{}", meta.payload(body));
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, Algorithm::RS256).expect("RS256 signs");
        format!("{header}..{signature}")
    }

    /// Every header of a signed delivery of `body`.
    pub fn headers(&self, body: &[u8], meta: &DeliveryMeta) -> Vec<(String, String)> {
        vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-8x8-signature".to_owned(), self.sign(body, meta)),
            ("x-8x8-event-id".to_owned(), meta.event_id.clone()),
            ("x-8x8-transmission-time".to_owned(), meta.transmission_time.to_string()),
            ("x-8x8-retry".to_owned(), meta.retry.to_string()),
            ("x-8x8-tenant-id".to_owned(), meta.tenant.clone()),
            ("x-8x8-customer-id".to_owned(), meta.customer.clone()),
        ]
    }
}

/// A delivered event: body, event id and how often it was retried.
type LastDelivery = (Vec<u8>, String, u32);

#[derive(Clone, Default)]
struct GatewayConversation {
    user_id: String,
    agent: Option<String>,
    user_removed: bool,
    queue: String,
}

/// The 8x8 emulator state.
pub struct EightByEight {
    hub: Arc<Hub>,
    conversations: Mutex<HashMap<String, GatewayConversation>>,
    webhook: Option<mpsc::UnboundedSender<Delivery>>,
    /// The last delivery per conversation (re-signed when redelivered).
    last_delivery: Mutex<HashMap<String, LastDelivery>>,
    translated: Mutex<HashMap<String, u64>>,
    /// Uploaded attachments by id: their conversation and the file.
    uploads: Mutex<HashMap<String, (String, EmulatedFile)>>,
}

impl EightByEight {
    pub(crate) fn start(setup: &Setup) -> Started {
        let (hub, webhook_url) = (setup.hub.clone(), setup.webhook_url.clone());
        let webhook = webhook_url.map(|url| webhooks::spawn(hub.clone(), url, 3, Duration::from_millis(200)));
        let gateway = Arc::new(Self {
            hub,
            conversations: Mutex::default(),
            webhook,
            last_delivery: Mutex::default(),
            translated: Mutex::default(),
            uploads: Mutex::default(),
        });
        let task = tokio::spawn(translate(gateway.clone()));
        let routes = Router::new()
            .route(&format!("{PREFIX}/conversations"), post(create_conversation))
            .route(&format!("{PREFIX}/conversations/{{id}}"), get(show_conversation))
            .route(&format!("{PREFIX}/conversations/{{id}}/messages"), post(send_message))
            .route(
                &format!("{PREFIX}/conversations/{{id}}/attachments"),
                post(upload_attachment).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
            )
            .route(&format!("{PREFIX}/conversations/{{id}}/typing"), post(typing))
            .route(&format!("{PREFIX}/conversations/{{id}}/participants"), get(participants))
            .route(&format!("{PREFIX}/conversations/{{id}}/participants/user"), patch(remove_user))
            .route(&format!("{PREFIX}/channels/{{id}}"), get(channel))
            .route(&format!("{PREFIX}/jwk/{{kid}}/public"), get(jwk))
            .with_state(gateway.clone());
        (gateway, routes, task)
    }

    fn deliver(&self, conversation: &str, body: Value) {
        if self.hub.faults.unknown_events() {
            let unknown = json!({ "eventType": "SENTIMENT_SCORED", "conversationId": conversation, "timestamp": now_ms(), "data": { "score": 0.7 } });
            self.send(
                conversation,
                unknown.to_string().into_bytes(),
                DeliveryMeta::new(format!("ev-{}", uuid::Uuid::new_v4())),
            );
        }
        let event_id = format!("ev-{}", uuid::Uuid::new_v4());
        let body = body.to_string().into_bytes();
        lock(&self.last_delivery).insert(conversation.to_owned(), (body.clone(), event_id.clone(), 0));
        self.send(conversation, body, DeliveryMeta::new(event_id));
    }

    fn send(&self, conversation: &str, body: Vec<u8>, meta: DeliveryMeta) {
        let Some(webhook) = &self.webhook else { return };
        let key = if self.hub.faults.bad_signatures() { SigningKey::impostor() } else { SigningKey::shared() };
        let _ = webhook.send(Delivery::new(conversation, body.clone(), key.headers(&body, &meta)));
    }

    fn event(&self, conversation: &str, event_type: &str, data: Option<Value>) {
        let mut body = json!({ "eventType": event_type, "conversationId": conversation, "timestamp": now_ms() });
        if let Some(data) = data {
            body["data"] = data;
        }
        self.deliver(conversation, body);
    }
}

impl ProtocolHandle for EightByEight {
    fn provider_config(&self, base_url: &str) -> Value {
        let names: serde_json::Map<String, Value> =
            ROSTER.iter().map(|name| (agent_id(name), Value::from(*name))).collect();
        json!({
            "base_url": base_url,
            "api_key": API_KEY,
            "tenant": TENANT,
            "channel_id": CHANNEL_ID,
            "queue_id": QUEUE_ID,
            "agent_names": names,
        })
    }

    /// A retry of the last event: same body and event id, the next retry number, a new
    /// transmission time and so a new signature.
    fn redeliver_last(&self, conversation: &str) -> bool {
        let last = {
            let mut deliveries = lock(&self.last_delivery);
            deliveries.get_mut(conversation).map(|(body, id, retry)| {
                *retry += 1;
                (body.clone(), id.clone(), *retry)
            })
        };
        let Some((body, event_id, retry)) = last else { return false };
        if self.webhook.is_none() {
            return false;
        }
        self.send(conversation, body, DeliveryMeta { retry, ..DeliveryMeta::new(event_id) });
        true
    }

    fn translated(&self, conversation: &str) -> u64 {
        lock(&self.translated).get(conversation).copied().unwrap_or(0)
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![API_KEY.to_owned()];
        secrets.extend(self.hub.file_tokens());
        secrets
    }
}

async fn translate(gateway: Arc<EightByEight>) {
    let mut changes = gateway.hub.subscribe();
    loop {
        let Some(change) = next_change(&mut changes).await else { return };
        let Change::Agent(conversation, record) = change else { continue };
        let id = conversation.id.as_str();
        let members = |member_type: &str, change: &str, member: &str| json!({ "memberType": member_type, "change": change, "id": member });
        match &record.action {
            AgentAction::Queued { .. } => {
                let queue = lock(&gateway.conversations).get(id).map(|c| c.queue.clone()).unwrap_or_default();
                gateway.event(id, "QUEUED", Some(json!({ "queueId": queue, "queueName": "Emulated queue" })));
            }
            AgentAction::Joined { agent } => {
                if let Some(c) = lock(&gateway.conversations).get_mut(id) {
                    c.agent = Some(agent_id(agent));
                }
                gateway.event(id, "MEMBERS_CHANGED", Some(members("agent", "joined", &agent_id(agent))));
            }
            AgentAction::Message { agent, text } => {
                let data = json!({
                    "isEcho": false,
                    "sender": { "id": agent_id(agent), "type": "agent" },
                    "text": text,
                    "attachments": [],
                    "cards": [],
                });
                gateway.event(id, "MESSAGE", Some(data));
            }
            AgentAction::Typing { agent, on } => {
                let users = if *on { json!([{ "type": "agent", "id": agent_id(agent) }]) } else { json!([]) };
                gateway.event(id, "ACTIVITY", Some(json!({ "name": "typing", "value": { "users": users } })));
            }
            AgentAction::Left { agent, transfer } => {
                if let Some(c) = lock(&gateway.conversations).get_mut(id) {
                    c.agent = None;
                }
                if *transfer {
                    gateway.event(id, "TRANSFER", None);
                }
                gateway.event(id, "MEMBERS_CHANGED", Some(members("agent", "left", &agent_id(agent))));
                if *transfer {
                    let queue = lock(&gateway.conversations).get(id).map(|c| c.queue.clone()).unwrap_or_default();
                    gateway.event(id, "QUEUED", Some(json!({ "queueId": queue, "queueName": "Emulated queue" })));
                }
            }
            // §6.4: `attachments[{id, type, preSignedUrl, fileName}]`, the caption as `text`.
            AgentAction::File { agent, file, caption } => {
                let url = gateway.hub.file_url(&record).unwrap_or_default();
                let mut data = json!({
                    "isEcho": false,
                    "sender": { "id": agent_id(agent), "type": "agent" },
                    "attachments": [{
                        "id": record.id,
                        "type": attachment_type(&file.media_type),
                        "preSignedUrl": url,
                        "fileName": file.name,
                    }],
                    "cards": [],
                });
                if let Some(caption) = caption {
                    data["text"] = json!(caption);
                }
                gateway.event(id, "MESSAGE", Some(data));
            }
            AgentAction::Ended => {
                // The agent ends by leaving; with no agent, the interaction is closed.
                let agent = lock(&gateway.conversations).get_mut(id).and_then(|c| c.agent.take());
                match agent {
                    Some(agent) => gateway.event(id, "MEMBERS_CHANGED", Some(members("agent", "left", &agent))),
                    None => {
                        let user = lock(&gateway.conversations).get(id).map(|c| c.user_id.clone()).unwrap_or_default();
                        gateway.event(id, "MEMBERS_CHANGED", Some(members("user", "left", &user)));
                    }
                }
            }
        }
        *lock(&gateway.translated).entry(conversation.id.clone()).or_default() = record.seq;
    }
}

/// The `type` of a `MESSAGE` attachment (§6.4) for a file of `media_type`.
fn attachment_type(media_type: &str) -> &'static str {
    match media_type.split('/').next().unwrap_or_default() {
        "image" => "image",
        "video" => "video",
        "audio" => "audio",
        _ => "file",
    }
}

fn problem(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("application/problem+json"));
    response
}

/// §7 shapes: 401 with object errors, 403 with string errors.
#[allow(clippy::result_large_err)] // axum handlers answer errors as `Response`s
fn authorized(headers: &HeaderMap) -> Result<(), Response> {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            json!({ "message": "Access Denied", "errors": [{ "message": "Invalid API key", "code": "access_denied" }], "referenceId": "ref-emulator-401" }),
        ));
    }
    match headers.get("x-8x8-tenant").and_then(|v| v.to_str().ok()) {
        Some(tenant) if tenant != TENANT => Err(problem(
            StatusCode::FORBIDDEN,
            json!({ "message": "The tenant does not belong to customer.", "errors": [format!("Header X-8x8-Tenant doesn't match tenant information for customerId={CUSTOMER}")] }),
        )),
        _ => Ok(()),
    }
}

fn not_found(kind: &str, id: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        json!({ "message": format!("Resource of type {kind} with id {id} was not found."), "errors": [format!("{kind} {id} was not found")] }),
    )
}

fn bad_request(code: &str, message: &str) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        json!({ "message": "Bad Request", "errors": [{ "code": code, "message": message }] }),
    )
}

async fn create_conversation(
    State(gateway): State<Arc<EightByEight>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, Response> {
    authorized(&headers)?;
    if body["channelId"].as_str() != Some(CHANNEL_ID) {
        return Err(bad_request("invalid_channel", &format!("Channel ID {} is invalid.", body["channelId"])));
    }
    let Some(user) = body["user"].as_object() else { return Err(bad_request("invalid_parameter", "user is required")) };
    let properties = user.get("additionalProperties").and_then(Value::as_array).map_or(0, Vec::len);
    if properties > 30 {
        return Err(bad_request("invalid_parameter", "additionalProperties must not have more than 30 entries"));
    }
    let history = body["history"]["messages"].as_array().cloned().unwrap_or_default();
    if history.len() > 200 {
        return Err(bad_request("invalid_parameter", "history.messages must not have more than 200 entries"));
    }
    let queue = match &body["assignment"] {
        Value::Null => QUEUE_ID.to_owned(),
        assignment => match (assignment["type"].as_str(), assignment["id"].as_str()) {
            (Some("queue" | "script"), Some(id)) if !id.trim().is_empty() => id.to_owned(),
            _ => return Err(bad_request("invalid_queue", "assignment needs a type (queue or script) and an id")),
        },
    };
    let id = format!("CONV-{}", gateway.hub.next_number());
    let user_id = user.get("userId").and_then(Value::as_str).unwrap_or("anonymous").to_owned();
    lock(&gateway.conversations)
        .insert(id.clone(), GatewayConversation { user_id: user_id.clone(), agent: None, user_removed: false, queue });
    let conversation = gateway.hub.create(id.clone(), user_id, json!({ "user": body["user"] }));
    for message in &history {
        if let Some(text) = message["text"].as_str() {
            gateway.hub.customer(&conversation, CustomerAction::Message { text: text.to_owned() });
        }
    }
    for state in ["created", "active"] {
        gateway.event(
            &id,
            "CONVERSATION_UPDATE",
            Some(json!({ "state": state, "user": body["user"], "channel": "ChatAPI" })),
        );
    }
    let created = json!({ "conversationId": id, "createdAt": handover_transport::time::now_iso8601() });
    Ok((StatusCode::ACCEPTED, Json(created)).into_response())
}

/// The request is authorized and names a known conversation.
#[allow(clippy::result_large_err)] // axum handlers answer errors as `Response`s
fn guard(gateway: &EightByEight, headers: &HeaderMap, id: &str) -> Result<GatewayConversation, Response> {
    authorized(headers)?;
    lock(&gateway.conversations).get(id).cloned().ok_or_else(|| not_found("Conversation", id))
}

async fn show_conversation(
    State(gateway): State<Arc<EightByEight>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let conversation = guard(&gateway, &headers, &id)?;
    let assignment = match &conversation.agent {
        Some(agent) => json!({ "type": "agent", "id": agent }),
        None => json!({ "type": "queue", "id": conversation.queue }),
    };
    let state = if conversation.user_removed { "idle" } else { "active" };
    Ok(Json(json!({ "id": id, "channelId": CHANNEL_ID, "assignment": assignment, "state": state })).into_response())
}

async fn send_message(
    State(gateway): State<Arc<EightByEight>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, Response> {
    let conversation = guard(&gateway, &headers, &id)?;
    let author = body["authorType"].as_str().unwrap_or_default();
    if !matches!(author, "user" | "bot") {
        // §7: this endpoint's 400 has `errors` as an object.
        return Err(problem(
            StatusCode::BAD_REQUEST,
            json!({ "message": "Bad Request", "errors": { "code": "invalid_json_object", "message": format!("Invalid authorType={author}, has to be one of user, bot, agent") }, "referenceId": "ref-emulator-400" }),
        ));
    }
    // §5.2: `attachments` names uploads (row 16) of this conversation by id.
    let mut files = Vec::new();
    for reference in body["attachments"].as_array().into_iter().flatten() {
        let upload = reference["id"].as_str().and_then(|a| lock(&gateway.uploads).get(a).cloned());
        match upload {
            Some((owner, file)) if owner == id => files.push(file),
            _ => {
                return Err(bad_request(
                    "invalid_attachment",
                    &format!("Attachment {} was not found.", reference["id"]),
                ));
            }
        }
    }
    let text = body["text"].as_str().filter(|t| !t.is_empty());
    if text.is_none() && files.is_empty() {
        return Err(bad_request("invalid_parameter", "text is required"));
    }
    if conversation.user_removed {
        return Err(not_found("Interaction", &id));
    }
    if let Some(hub_conversation) = gateway.hub.get(&id) {
        for file in &files {
            gateway.hub.customer(&hub_conversation, file.received());
        }
        if let Some(text) = text {
            gateway.hub.customer(&hub_conversation, CustomerAction::Message { text: text.to_owned() });
        }
    }
    // §8.1: every message comes back as a MESSAGE event, the connector's own included.
    let sender = if author == "user" { conversation.user_id } else { "bot".to_owned() };
    let mut data = json!({ "isEcho": author == "bot", "sender": { "id": sender, "type": author } });
    if let Some(text) = text {
        data["text"] = json!(text);
    }
    if !files.is_empty() {
        let attachments: Vec<Value> = files
            .into_iter()
            .map(|file| {
                let r#type = attachment_type(&file.media_type);
                let name = file.name.clone();
                json!({ "id": format!("echo-{}", gateway.hub.next_number()), "type": r#type, "preSignedUrl": gateway.hub.host_file(file), "fileName": name })
            })
            .collect();
        data["attachments"] = Value::Array(attachments);
    }
    gateway.event(&id, "MESSAGE", Some(data));
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Row 16: a multipart upload (part `attachment`: the file with its name and type; part
/// `authorType`: `user` or `bot`), kept until a message references it.
async fn upload_attachment(
    State(gateway): State<Arc<EightByEight>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let conversation = guard(&gateway, &headers, &id)?;
    if conversation.user_removed {
        return Err(not_found("Interaction", &id));
    }
    let parts = crate::multipart::form_data(&headers, &body).map_err(|why| bad_request("invalid_parameter", &why))?;
    let author =
        parts.iter().find(|p| p.name == "authorType").map_or("user".to_owned(), crate::multipart::FormPart::text);
    if !matches!(author.as_str(), "user" | "bot") {
        return Err(bad_request(
            "invalid_parameter",
            &format!("Invalid authorType={author}, has to be one of user, bot"),
        ));
    }
    let Some(part) = parts.into_iter().find(|p| p.name == "attachment") else {
        return Err(bad_request("invalid_parameter", "the attachment part is required"));
    };
    let name = part.filename.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "attachment".to_owned());
    let media_type = part.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned());
    let size = part.data.len();
    let attachment = format!("att-{}", uuid::Uuid::new_v4().simple());
    let file = EmulatedFile::new(name.clone(), media_type, part.data);
    lock(&gateway.uploads).insert(attachment.clone(), (id, file));
    let created = json!({
        "id": attachment,
        "filename": name,
        "sizeInBytes": size,
        "createdAt": handover_transport::time::now_iso8601(),
    });
    Ok(Json(created).into_response())
}

async fn typing(
    State(gateway): State<Arc<EightByEight>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, Response> {
    guard(&gateway, &headers, &id)?;
    if !matches!(body["authorType"].as_str(), Some("user" | "bot")) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            json!({ "message": "Bad Request", "errors": [{ "code": "invalid_parameter", "message": "authorType is required" }], "referenceId": "ref-emulator-typing" }),
        ));
    }
    if let Some(conversation) = gateway.hub.get(&id) {
        gateway.hub.customer(&conversation, CustomerAction::Typing { on: true });
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove_user(
    State(gateway): State<Arc<EightByEight>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Response, Response> {
    let conversation = guard(&gateway, &headers, &id)?;
    if body["removed"] != true {
        return Err(bad_request("invalid_parameter", "removed must be true"));
    }
    if conversation.user_removed {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if let Some(c) = lock(&gateway.conversations).get_mut(&id) {
        c.user_removed = true;
    }
    if let Some(hub_conversation) = gateway.hub.get(&id) {
        gateway.hub.customer(&hub_conversation, CustomerAction::Closed);
    }
    gateway.event(
        &id,
        "MEMBERS_CHANGED",
        Some(json!({ "memberType": "user", "change": "left", "id": conversation.user_id })),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn participants(
    State(gateway): State<Arc<EightByEight>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let conversation = guard(&gateway, &headers, &id)?;
    let mut list = vec![
        json!({ "id": conversation.user_id, "type": "user", "removed": conversation.user_removed, "language": "en" }),
        json!({ "id": "bot", "type": "bot", "removed": false }),
    ];
    if let Some(agent) = &conversation.agent {
        list.push(json!({ "id": agent, "type": "agent", "removed": false, "language": "en" }));
    }
    let count = list.len();
    Ok(Json(json!({
        "_embedded": { "participants": list },
        "page": { "size": 20, "number": 0, "totalElements": count, "totalPages": 1 },
    }))
    .into_response())
}

async fn channel(headers: HeaderMap, Path(id): Path<String>) -> Result<Response, Response> {
    authorized(&headers)?;
    if id != CHANNEL_ID {
        return Err(not_found("Channel", &id));
    }
    Ok(Json(json!({
        "id": CHANNEL_ID,
        "name": "Emulated Chat API channel",
        "type": "ChatAPI",
        "webHookId": "emulator-webhook",
        "routingOptions": { "type": "queue", "id": QUEUE_ID },
    }))
    .into_response())
}

async fn jwk(headers: HeaderMap, Path(kid): Path<String>) -> Result<Response, Response> {
    authorized(&headers)?;
    let key = SigningKey::shared();
    if kid != key.kid() {
        return Err(not_found("Jwk", &kid));
    }
    Ok(Json(key.jwk().clone()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_types_follow_the_top_level_media_type() {
        let types: Vec<&str> =
            ["image/png", "video/mp4", "audio/mpeg", "application/pdf", "bogus"].map(attachment_type).to_vec();
        assert_eq!(types, ["image", "video", "audio", "file", "file"]);
    }
}
