//! RingCentral Engage Digital (`protocols/ringcentral-engage.md`): the Source SDK Send API
//! (signed, answered `ok`, imported asynchronously), the REST API the handover uses
//! (thread search, recategorization, interventions, categories), Source SDK callbacks to
//! the connector (`implementation.info`, `messaging.queuing_update`, `messages.create`)
//! whose answers must be signed, and REST webhook events with `X-Dimelo-Secret`. Files: the
//! connector's Message `attachments` (`{content: <base64>, filename}` or `{url}`, fetched
//! like Engage does), and the agent's as `attachments` (`{url, type, filename}`) of the
//! `messages.create` callback, once the connector advertised `messages.attachments`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use handover_transport::signature::{self, Algorithm, Encoding};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::ProtocolHandle;
use base64::Engine as _;

use crate::model::{AgentAction, Change, CustomerAction, EmulatedFile, Hub, lock, next_change};
use crate::webhooks::{self, Delivery, ReplyCheck};
use crate::{Setup, Started};

/// The Source SDK source.
pub const SOURCE_ID: &str = "5f0c0ffee0000000000000aa";
/// The source's own access token: the HMAC-SHA512 key.
pub const SOURCE_TOKEN: &str = "emulator-engage-source-token";
/// The REST API access token.
pub const API_TOKEN: &str = "emulator-engage-api-token";
/// The Engage webhook's secret (`X-Dimelo-Secret`).
pub const WEBHOOK_SECRET: &str = "emulator-engage-webhook-secret";
/// The Engage webhook's verification token.
pub const VERIFY_TOKEN: &str = "emulator-engage-verify";
/// The bot category (the source's default).
pub const BOT_CATEGORY: &str = "5f0c0ffee0000000000000b0";
/// The agent category.
pub const AGENT_CATEGORY: &str = "5f0c0ffee0000000000000a9";
/// Another category agents filter on.
pub const PRIORITY_CATEGORY: &str = "5f0c0ffee0000000000000c1";
/// How long the Send API takes to import.
const IMPORT_DELAY: Duration = Duration::from_millis(30);
/// The Send API's request limit (`413 Invalid request size (max: 20971520 bytes)`).
const MAX_REQUEST_BYTES: usize = 20 * 1024 * 1024;

fn categories() -> [(&'static str, &'static str); 3] {
    [(BOT_CATEGORY, "Bot"), (AGENT_CATEGORY, "Agent"), (PRIORITY_CATEGORY, "Priority")]
}

/// The signature both sides use.
pub fn sign(body: &[u8]) -> String {
    signature::sign(Algorithm::Sha512, Encoding::Hex, SOURCE_TOKEN.as_bytes(), body)
}

#[derive(Clone, Default)]
struct Intervention {
    id: String,
    closed: bool,
    agent_replied: bool,
}

#[derive(Clone, Default)]
struct Thread {
    engage_id: String,
    foreign_id: String,
    categories: Vec<String>,
    interventions: Vec<Intervention>,
    /// What was imported before the thread reached the agent category.
    pending: Vec<CustomerAction>,
    /// Whether the handover reached the agent side (a hub conversation exists).
    routed: bool,
    last_customer_message: Option<String>,
    last_typing: Option<Instant>,
    owner: String,
}

#[derive(Default)]
struct Engage {
    /// By our (foreign) thread id.
    threads: HashMap<String, Thread>,
    next_id: u64,
}

impl Engage {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("5f0d{:020x}", self.next_id)
    }

    fn by_engage_id(&mut self, id: &str) -> Option<&mut Thread> {
        self.threads.values_mut().find(|t| t.engage_id == id)
    }
}

/// The Engage emulator state.
pub struct RingCentral {
    hub: Arc<Hub>,
    engage: Mutex<Engage>,
    webhook: Option<mpsc::UnboundedSender<Delivery>>,
    webhook_url: Option<String>,
    /// What `implementation.info` advertised.
    implementation: Mutex<Option<Value>>,
    last_delivery: Mutex<HashMap<String, Delivery>>,
    translated: Mutex<HashMap<String, u64>>,
    /// Imports apply in the order their requests arrived: the next ticket to hand out and
    /// the ticket whose turn it is.
    import_tickets: std::sync::atomic::AtomicU64,
    import_turn: tokio::sync::watch::Sender<u64>,
}

impl RingCentral {
    pub(crate) fn start(setup: &Setup) -> Started {
        let (hub, webhook_url) = (setup.hub.clone(), setup.webhook_url.clone());
        let webhook = webhook_url.clone().map(|url| webhooks::spawn(hub.clone(), url, 3, Duration::from_millis(200)));
        let engage = Arc::new(Self {
            hub,
            engage: Mutex::default(),
            webhook,
            webhook_url,
            implementation: Mutex::default(),
            import_tickets: std::sync::atomic::AtomicU64::new(0),
            import_turn: tokio::sync::watch::Sender::new(0),
            last_delivery: Mutex::default(),
            translated: Mutex::default(),
        });
        let task = tokio::spawn(translate(engage.clone()));
        let routes = Router::new()
            // Room for a request over the limit, to answer it as Engage does.
            .route(
                "/realtime/sdk/{source}",
                post(send_api).layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES + 1024 * 1024)),
            )
            .route("/1.0/content_threads", get(search_threads))
            .route("/1.0/content_threads/{id}", get(show_thread))
            .route("/1.0/content_threads/{id}/update_categories", put(update_categories))
            .route("/1.0/interventions", get(list_interventions))
            .route("/1.0/interventions/{id}/close", put(close_intervention))
            .route("/1.0/interventions/{id}/cancel", delete(cancel_intervention))
            .route("/1.0/categories", get(list_categories))
            .route("/1.0/content_sources/{id}", get(show_source))
            .with_state(engage.clone());
        (engage, routes, task)
    }

    /// A Source SDK callback: signed, and its answer must be signed.
    fn callback(&self, conversation: &str, action: &str, params: Value) {
        let body = json!({ "action": action, "params": params, "time": handover_transport::time::now_iso8601() });
        let body = body.to_string().into_bytes();
        let key: &[u8] =
            if self.hub.faults.bad_signatures() { b"not-the-source-token" } else { SOURCE_TOKEN.as_bytes() };
        let headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-smccsdk-signature".to_owned(), signature::sign(Algorithm::Sha512, Encoding::Hex, key, &body)),
        ];
        let check: ReplyCheck = Arc::new(|headers, body| {
            let given = headers.get("x-smccsdk-signature").and_then(|v| v.to_str().ok());
            signature::verify(Algorithm::Sha512, Encoding::Hex, SOURCE_TOKEN.as_bytes(), body, given).is_ok()
        });
        self.send(
            conversation,
            Delivery { conversation: conversation.to_owned(), body, headers, check_reply: Some(check) },
        );
    }

    /// A REST webhook delivery of one event about `thread`'s intervention.
    fn event(&self, conversation: &str, event_type: &str, thread: &str, intervention: &str) {
        let body = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "domain_id": "5f0c0ffee0000000000000d0",
            "events": [{
                "type": event_type,
                "id": uuid::Uuid::new_v4().to_string(),
                "issued_at": handover_transport::time::now_iso8601(),
                "resource": {
                    "type": "Intervention",
                    "id": intervention,
                    "metadata": { "source_id": SOURCE_ID, "thread_id": thread, "category_ids": [AGENT_CATEGORY] },
                },
            }],
        });
        let secret = if self.hub.faults.bad_signatures() { "not-the-secret" } else { WEBHOOK_SECRET };
        let headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-dimelo-secret".to_owned(), secret.to_owned()),
        ];
        self.send(conversation, Delivery::new(conversation, body.to_string().into_bytes(), headers));
    }

    fn send(&self, conversation: &str, delivery: Delivery) {
        let Some(webhook) = &self.webhook else { return };
        if self.hub.faults.unknown_events() {
            let unknown = json!({
                "id": uuid::Uuid::new_v4().to_string(),
                "domain_id": "5f0c0ffee0000000000000d0",
                "events": [{ "type": "identity.updated", "id": uuid::Uuid::new_v4().to_string(),
                    "issued_at": handover_transport::time::now_iso8601(), "resource": { "type": "Identity", "id": "i-1" } }],
            });
            let secret = if self.hub.faults.bad_signatures() { "not-the-secret" } else { WEBHOOK_SECRET };
            let headers = vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("x-dimelo-secret".to_owned(), secret.to_owned()),
            ];
            let _ = webhook.send(Delivery::new(conversation, unknown.to_string().into_bytes(), headers));
        }
        lock(&self.last_delivery).insert(conversation.to_owned(), delivery.clone());
        let _ = webhook.send(delivery);
    }

    /// §3.2: asks the connector what it implements (as Engage does on every source save);
    /// nothing is sent to a connector that does not answer a signed `implementation.info`.
    async fn fetch_implementation(&self) {
        if lock(&self.implementation).is_some() {
            return;
        }
        let Some(url) = &self.webhook_url else { return };
        let body =
            json!({ "action": "implementation.info", "time": handover_transport::time::now_iso8601() }).to_string();
        let client = reqwest::Client::new();
        let answer = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-smccsdk-signature", sign(body.as_bytes()))
            .body(body)
            .send()
            .await;
        let Ok(answer) = answer else { return };
        let status = answer.status();
        let given = answer.headers().get("x-smccsdk-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = answer.bytes().await.unwrap_or_default();
        let signed = given.as_deref().is_some_and(|given| sign(&bytes).eq_ignore_ascii_case(given));
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(info) if status.is_success() && signed => *lock(&self.implementation) = Some(info),
            _ => tracing::warn!(%status, signed, "implementation.info was not answered with signed JSON"),
        }
    }

    fn advertises(&self, option: &str) -> bool {
        lock(&self.implementation)
            .as_ref()
            .and_then(|info| info["options"].as_array().cloned())
            .is_some_and(|options| options.iter().any(|o| o == option))
    }

    fn thread_json(thread: &Thread) -> Value {
        json!({
            "id": thread.engage_id,
            "source_id": SOURCE_ID,
            "foreign_id": thread.foreign_id,
            "title": "Chat",
            "closed": false,
            "category_ids": thread.categories,
            "thread_category_ids": thread.categories,
            "interventions_count": thread.interventions.len(),
        })
    }

    fn intervention_json(thread: &Thread, intervention: &Intervention) -> Value {
        json!({
            "id": intervention.id,
            "thread_id": thread.engage_id,
            "source_id": SOURCE_ID,
            "closed": intervention.closed,
            "status": if intervention.closed { "Fermée" } else { "Ouverte" },
            "category_ids": thread.categories,
        })
    }

    /// An agent reply on `foreign`'s `intervention`: marks it replied, returns the reply's
    /// content id.
    fn agent_replied(&self, foreign: &str, intervention: &str) -> String {
        let mut state = lock(&self.engage);
        let content_id = state.id();
        if let Some(thread) = state.threads.get_mut(foreign)
            && let Some(i) = thread.interventions.iter_mut().find(|i| i.id == intervention)
        {
            i.agent_replied = true;
        }
        content_id
    }

    /// The open intervention of `foreign`, opened (with its event) when there is none.
    fn open_intervention(&self, foreign: &str) -> Option<(String, String)> {
        let (engage_id, id, opened) = {
            let mut engage = lock(&self.engage);
            let fresh = engage.id();
            let thread = engage.threads.get_mut(foreign)?;
            match thread.interventions.iter().find(|i| !i.closed) {
                Some(open) => (thread.engage_id.clone(), open.id.clone(), false),
                None => {
                    thread.interventions.push(Intervention { id: fresh.clone(), ..Intervention::default() });
                    (thread.engage_id.clone(), fresh, true)
                }
            }
        };
        if opened {
            self.event(foreign, "intervention.opened", &engage_id, &id);
        }
        Some((engage_id, id))
    }
}

impl ProtocolHandle for RingCentral {
    fn provider_config(&self, base_url: &str) -> Value {
        json!({
            "api_url": format!("{base_url}/1.0"),
            "realtime_url": format!("{base_url}/realtime/sdk/{SOURCE_ID}"),
            "source_id": SOURCE_ID,
            "source_token": SOURCE_TOKEN,
            "access_token": API_TOKEN,
            "bot_category_id": BOT_CATEGORY,
            "agent_category_id": AGENT_CATEGORY,
            "additional_category_ids": [PRIORITY_CATEGORY],
            "webhook_secret": WEBHOOK_SECRET,
            "webhook_verify_token": VERIFY_TOKEN,
            "end_drain_ms": 200,
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
        let mut secrets =
            vec![SOURCE_TOKEN.to_owned(), API_TOKEN.to_owned(), WEBHOOK_SECRET.to_owned(), VERIFY_TOKEN.to_owned()];
        secrets.extend(self.hub.file_tokens());
        secrets
    }
}

async fn translate(engage: Arc<RingCentral>) {
    let mut changes = engage.hub.subscribe();
    while let Some(change) = next_change(&mut changes).await {
        let (conversation, record) = match change {
            Change::Created(_) => {
                engage.fetch_implementation().await;
                continue;
            }
            Change::Agent(conversation, record) => (conversation, record),
            Change::Customer(..) => continue,
        };
        let foreign = conversation.id.clone();
        let in_reply_to = lock(&engage.engage).threads.get(&foreign).and_then(|t| t.last_customer_message.clone());
        match &record.action {
            AgentAction::Queued { position, wait_secs } => {
                if engage.advertises("messaging.queuing_update") {
                    let params = json!({
                        "thread_id": foreign,
                        "in_reply_to_id": in_reply_to,
                        "position": position,
                        "estimated_wait_time": wait_secs,
                    });
                    engage.callback(&foreign, "messaging.queuing_update", params);
                }
            }
            AgentAction::Joined { .. } => {
                let _ = engage.open_intervention(&foreign);
            }
            AgentAction::Message { agent, text } => {
                reply(&engage, &foreign, in_reply_to, agent, text, json!([]));
            }
            // Agents attach files only where the connector advertised `messages.attachments`.
            AgentAction::File { agent, file, caption } if engage.advertises("messages.attachments") => {
                let attachments = json!([{
                    "url": engage.hub.file_url(&record),
                    "type": attachment_type(&file.media_type),
                    "filename": file.name,
                }]);
                reply(&engage, &foreign, in_reply_to, agent, caption.as_deref().unwrap_or_default(), attachments);
            }
            // A Source SDK source hears of neither agent typing nor reassignment.
            AgentAction::Typing { .. } | AgentAction::Left { .. } | AgentAction::File { .. } => {}
            AgentAction::Ended => {
                if let Some((engage_id, intervention)) = engage.open_intervention(&foreign) {
                    if let Some(thread) = lock(&engage.engage).threads.get_mut(&foreign)
                        && let Some(i) = thread.interventions.iter_mut().find(|i| i.id == intervention)
                    {
                        i.closed = true;
                    }
                    engage.event(&foreign, "intervention.closed", &engage_id, &intervention);
                }
            }
        }
        *lock(&engage.translated).entry(foreign).or_default() = record.seq;
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, body).into_response()
}

fn text_owned(status: StatusCode, body: String) -> Response {
    (status, body).into_response()
}

/// A media type for a file name (Engage types an imported file by its extension).
fn media_type_of(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

/// The agent's reply in the open intervention of `foreign`, as a `messages.create` callback
/// (none when no intervention is open).
fn reply(
    engage: &RingCentral,
    foreign: &str,
    in_reply_to: Option<String>,
    agent: &str,
    body: &str,
    attachments: Value,
) {
    let Some((_, intervention)) = engage.open_intervention(foreign) else { return };
    let content_id = engage.agent_replied(foreign, &intervention);
    let stamp = handover_transport::time::now_iso8601();
    let params = json!({
        "author_id": "agent-identity",
        "body": body,
        "format": "text",
        "content_id": content_id,
        "in_reply_to_id": in_reply_to,
        "thread_id": foreign,
        "sender_name": agent,
        "created_at": stamp,
        "updated_at": stamp,
        "retry": false,
        "attachments": attachments,
    });
    engage.callback(foreign, "messages.create", params);
}

/// Engage's attachment `type` for a media type (the categories of its attachment rules:
/// image, audio, video, pdf, document).
fn attachment_type(media_type: &str) -> &'static str {
    match media_type.split('/').next().unwrap_or_default() {
        "image" => "image",
        "audio" => "audio",
        "video" => "video",
        _ if media_type == "application/pdf" => "pdf",
        _ => "document",
    }
}

/// A file of a connector's Message `attachments`: base64 `content` with its `filename`,
/// or a `url` Engage fetches (named by `filename`, else the URL's last segment).
async fn customer_file(hub: &Hub, attachment: &Value) -> Result<EmulatedFile, String> {
    if let Some(content) = attachment["content"].as_str() {
        let Some(name) = attachment["filename"].as_str().filter(|n| !n.is_empty()) else {
            return Err("an attachment with content needs a filename".to_owned());
        };
        let data = base64::engine::general_purpose::STANDARD
            .decode(content.as_bytes())
            .map_err(|e| format!("the attachment content is not base64 ({e})"))?;
        return Ok(EmulatedFile::new(name, media_type_of(name), data));
    }
    let Some(url) = attachment["url"].as_str() else {
        return Err("an attachment needs a url or a content".to_owned());
    };
    let name = attachment["filename"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .or_else(|| url.split('?').next().and_then(|p| p.rsplit('/').next()).map(str::to_owned))
        .unwrap_or_else(|| "attachment".to_owned());
    let media_type = media_type_of(&name);
    hub.fetch_customer_file(url, &name, media_type).await
}

/// §4: the Send API.
async fn send_api(
    State(engage): State<Arc<RingCentral>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let from_query =
        query.as_deref().and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("signature=")).map(str::to_owned));
    let given = headers.get("x-smccsdk-signature").and_then(|v| v.to_str().ok()).map(str::to_owned).or(from_query);
    if signature::verify(Algorithm::Sha512, Encoding::Hex, SOURCE_TOKEN.as_bytes(), &body, given.as_deref()).is_err() {
        return text(StatusCode::UNPROCESSABLE_ENTITY, "Invalid signature");
    }
    if source != SOURCE_ID {
        return text(StatusCode::UNPROCESSABLE_ENTITY, "Source not found");
    }
    if body.len() > MAX_REQUEST_BYTES {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "Invalid request size (max: 20971520 bytes)");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return text(StatusCode::BAD_REQUEST, "Bad request");
    };
    let (Some(action), Some(params)) = (request["action"].as_str(), request.get("params").filter(|p| p.is_object()))
    else {
        return text(StatusCode::BAD_REQUEST, "Invalid request format");
    };
    let params = params.clone();
    match action {
        "threads.create" => {
            let (Some(id), Some(owner)) = (params["id"].as_str(), params["author"]["id"].as_str()) else {
                return text(StatusCode::UNPROCESSABLE_ENTITY, "Invalid resource format");
            };
            if params["author"]["screenname"].as_str().is_none() || params["body"].as_str().is_none() {
                return text(StatusCode::UNPROCESSABLE_ENTITY, "Invalid resource format");
            }
            let (id, owner, first) = (id.to_owned(), owner.to_owned(), params["body"].as_str().map(str::to_owned));
            import(engage, move |engage| {
                let mut state = lock(&engage.engage);
                if state.threads.contains_key(&id) {
                    return;
                }
                let engage_id = state.id();
                let thread = Thread {
                    engage_id,
                    foreign_id: id.clone(),
                    categories: vec![BOT_CATEGORY.to_owned()],
                    pending: first.map(|text| CustomerAction::Message { text }).into_iter().collect(),
                    owner,
                    ..Thread::default()
                };
                state.threads.insert(id, thread);
            });
        }
        "messages.create" => {
            // `body` is required unless attachments are present.
            let attachments = params["attachments"].as_array().cloned().unwrap_or_default();
            let body = params["body"].as_str().or_else(|| (!attachments.is_empty()).then_some(""));
            let (Some(id), Some(thread), Some(body)) = (params["id"].as_str(), params["thread_id"].as_str(), body)
            else {
                return text(StatusCode::UNPROCESSABLE_ENTITY, "Invalid resource format");
            };
            if params["author"]["id"].as_str().is_none() || params["author"]["screenname"].as_str().is_none() {
                return text(StatusCode::UNPROCESSABLE_ENTITY, "Invalid resource format");
            }
            let mut files = Vec::new();
            for attachment in &attachments {
                match customer_file(&engage.hub, attachment).await {
                    Ok(file) => files.push(file),
                    Err(why) => {
                        return text_owned(StatusCode::UNPROCESSABLE_ENTITY, format!("Invalid resource format: {why}"));
                    }
                }
            }
            let puppet = params["author"]["puppetizable"] == true;
            let (id, thread, body) = (id.to_owned(), thread.to_owned(), body.to_owned());
            import(engage, move |engage| {
                let mut actions: Vec<CustomerAction> = Vec::new();
                if !body.is_empty() || files.is_empty() {
                    actions.push(CustomerAction::Message { text: body });
                }
                actions.extend(files.iter().map(EmulatedFile::received));
                let routed = {
                    let mut state = lock(&engage.engage);
                    let Some(t) = state.threads.get_mut(&thread) else {
                        tracing::debug!(%thread, "a message for an unknown thread is dropped");
                        return;
                    };
                    if !puppet {
                        t.last_customer_message = Some(id);
                    }
                    if !t.routed {
                        t.pending.extend(actions.iter().cloned());
                    }
                    t.routed
                };
                if routed && let Some(conversation) = engage.hub.get(&thread) {
                    for action in actions {
                        engage.hub.customer(&conversation, action);
                    }
                }
            });
        }
        "typing.start" | "typing.stop" => {
            let Some(thread) = params["thread_id"].as_str() else {
                return text(StatusCode::UNPROCESSABLE_ENTITY, "Invalid resource format");
            };
            let start = action == "typing.start";
            if start && params["preview"].as_str().is_none() {
                return text(StatusCode::UNPROCESSABLE_ENTITY, "Invalid resource format");
            }
            {
                let mut state = lock(&engage.engage);
                if let Some(t) = state.threads.get_mut(thread) {
                    if start && t.last_typing.is_some_and(|at| at.elapsed() < Duration::from_secs(2)) {
                        return text(
                            StatusCode::TOO_MANY_REQUESTS,
                            "too many typing requests, please try again in a few seconds",
                        );
                    }
                    t.last_typing = start.then(Instant::now);
                }
            }
            if let Some(conversation) = engage.hub.get(thread) {
                engage.hub.customer(&conversation, CustomerAction::Typing { on: start });
            }
        }
        "users.create" | "status.mark_as_read" => {}
        _ => return text(StatusCode::UNPROCESSABLE_ENTITY, "Invalid action"),
    }
    text(StatusCode::OK, "ok")
}

/// The Send API imports asynchronously (§9.5), in the order the requests arrived: two
/// imports whose delays end in the same timer tick must not swap two user messages.
fn import(engage: Arc<RingCentral>, apply: impl FnOnce(&RingCentral) + Send + 'static) {
    let ticket = engage.import_tickets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tokio::spawn(async move {
        tokio::time::sleep(IMPORT_DELAY).await;
        let mut turn = engage.import_turn.subscribe();
        if turn.wait_for(|turn| *turn == ticket).await.is_ok() {
            apply(&engage);
        }
        engage.import_turn.send_replace(ticket + 1);
    });
}

fn rest_error(status: StatusCode, error: &str, message: &str) -> Response {
    (status, axum::Json(json!({ "error": error, "message": message, "status": status.as_u16() }))).into_response()
}

fn authorized(headers: &HeaderMap) -> Result<(), Box<Response>> {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer == Some(API_TOKEN) {
        Ok(())
    } else {
        Err(Box::new(rest_error(StatusCode::UNAUTHORIZED, "invalid_token", "The access token is invalid")))
    }
}

/// The value of `key:"…"` (or `key:value`) in a search query.
fn search_term<'a>(q: &'a str, key: &str) -> Option<&'a str> {
    let start = q.find(&format!("{key}:"))? + key.len() + 1;
    let rest = &q[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split(' ').next(),
    }
}

async fn search_threads(
    State(engage): State<Arc<RingCentral>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorized(&headers) {
        return *r;
    }
    let q = query.get("q").map(String::as_str).unwrap_or_default();
    let state = lock(&engage.engage);
    let records: Vec<Value> = state
        .threads
        .values()
        .filter(|t| search_term(q, "foreign").is_none_or(|f| f == t.foreign_id))
        .filter(|_| search_term(q, "source").is_none_or(|s| s == SOURCE_ID))
        .map(RingCentral::thread_json)
        .collect();
    axum::Json(json!({ "count": records.len(), "offset": 0, "limit": 30, "records": records })).into_response()
}

async fn show_thread(State(engage): State<Arc<RingCentral>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorized(&headers) {
        return *r;
    }
    match lock(&engage.engage).by_engage_id(&id) {
        Some(thread) => axum::Json(RingCentral::thread_json(thread)).into_response(),
        None => rest_error(StatusCode::NOT_FOUND, "not_found", "Resource not found"),
    }
}

async fn update_categories(
    State(engage): State<Arc<RingCentral>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(r) = authorized(&headers) {
        return *r;
    }
    let wanted: Vec<String> =
        url_pairs(query.as_deref()).into_iter().filter(|(k, _)| k == "thread_category_ids[]").map(|(_, v)| v).collect();
    if let Some(unknown) = wanted.iter().find(|c| !categories().iter().any(|(id, _)| id == c)) {
        return rest_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_param", &format!("unknown category {unknown}"));
    }
    let (json, handed_over, withdrawn) = {
        let mut state = lock(&engage.engage);
        let Some(thread) = state.by_engage_id(&id) else {
            return rest_error(StatusCode::NOT_FOUND, "not_found", "Resource not found");
        };
        thread.categories = wanted;
        let for_agents = thread.categories.iter().any(|c| c == AGENT_CATEGORY);
        let to_agents = for_agents && !thread.routed;
        if to_agents {
            thread.routed = true;
        }
        let handed_over = to_agents.then(|| (thread.foreign_id.clone(), thread.owner.clone(), thread.pending.clone()));
        // Taken out of the agents' folder: the agent side no longer sees it.
        let withdrawn = (!for_agents && thread.routed).then(|| thread.foreign_id.clone());
        (RingCentral::thread_json(thread), handed_over, withdrawn)
    };
    if let Some(conversation) = withdrawn.and_then(|foreign| engage.hub.get(&foreign)) {
        engage.hub.customer(&conversation, CustomerAction::Closed);
    }
    // The thread reaches the agents' folder: the agent side sees it with what came before.
    if let Some((foreign, owner, pending)) = handed_over {
        let conversation = engage.hub.create(foreign, owner, json!({ "categories": json["category_ids"] }));
        for action in pending {
            engage.hub.customer(&conversation, action);
        }
    }
    axum::Json(json).into_response()
}

fn url_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect()
}

async fn list_interventions(
    State(engage): State<Arc<RingCentral>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorized(&headers) {
        return *r;
    }
    let mut state = lock(&engage.engage);
    let records: Vec<Value> = match query.get("thread_id").and_then(|id| state.by_engage_id(id)) {
        Some(thread) => thread.interventions.iter().map(|i| RingCentral::intervention_json(thread, i)).collect(),
        None => Vec::new(),
    };
    axum::Json(json!({ "count": records.len(), "offset": 0, "limit": 30, "records": records })).into_response()
}

/// Closes (`close`) or cancels an intervention, with Engage's rules (§9.7).
fn finish(engage: &RingCentral, id: &str, close: bool) -> Response {
    let (json, foreign) = {
        let mut state = lock(&engage.engage);
        let Some(thread) = state.threads.values_mut().find(|t| t.interventions.iter().any(|i| i.id == id)) else {
            return rest_error(StatusCode::NOT_FOUND, "not_found", "Resource not found");
        };
        let foreign = thread.foreign_id.clone();
        let snapshot = thread.clone();
        let Some(intervention) = thread.interventions.iter_mut().find(|i| i.id == id) else {
            return rest_error(StatusCode::NOT_FOUND, "not_found", "Resource not found");
        };
        if intervention.closed || intervention.agent_replied != close {
            let why = if close { "the intervention has no agent reply" } else { "the intervention has agent replies" };
            return rest_error(StatusCode::FORBIDDEN, "forbidden", why);
        }
        intervention.closed = true;
        (RingCentral::intervention_json(&snapshot, intervention), foreign)
    };
    if let Some(conversation) = engage.hub.get(&foreign) {
        engage.hub.customer(&conversation, CustomerAction::Closed);
    }
    axum::Json(json).into_response()
}

async fn close_intervention(
    State(engage): State<Arc<RingCentral>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorized(&headers) {
        return *r;
    }
    finish(&engage, &id, true)
}

async fn cancel_intervention(
    State(engage): State<Arc<RingCentral>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorized(&headers) {
        return *r;
    }
    finish(&engage, &id, false)
}

/// The content source (`handover check`).
async fn show_source(headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorized(&headers) {
        return *r;
    }
    if id != SOURCE_ID {
        return (StatusCode::NOT_FOUND, axum::Json(json!({ "error": "not_found", "message": "Source not found" })))
            .into_response();
    }
    axum::Json(json!({ "id": SOURCE_ID, "name": "Handover", "type": "Dimelo::Rtc::Source", "active": true }))
        .into_response()
}

async fn list_categories(headers: HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    if let Err(r) = authorized(&headers) {
        return *r;
    }
    let ids: Vec<&str> = query.get("ids").map(|ids| ids.split(',').collect()).unwrap_or_default();
    let records: Vec<Value> = categories()
        .iter()
        .filter(|(id, _)| ids.is_empty() || ids.contains(id))
        .map(|(id, name)| json!({ "id": id, "name": name, "parent_id": null, "source_ids": [SOURCE_ID] }))
        .collect();
    axum::Json(json!({ "count": records.len(), "offset": 0, "limit": 150, "records": records })).into_response()
}
