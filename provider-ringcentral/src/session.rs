//! The provider, its webhook handler and its sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{
    Agent, Capabilities, CheckReport, EndReason, EndedBy, Error, ErrorKind, Event, HandoverRequest, Provider,
    ProviderInfo, Result, Session, SessionBackend, SessionSnapshot, Speaker, TranscriptEntry, UserInput, WebhookReply,
    WebhookRequest, transcript,
};
use handover_transport::dedup::DedupSet;
use handover_transport::events::{self, EndState};
use handover_transport::push::{Link, PendingLimits, PushRouter, Routed};
use handover_transport::retry::RetryPolicy;
use handover_transport::signature;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::NAME;
use crate::client::{Client, is_refused};
use crate::config::RingCentralConfig;
use crate::webhook::{self, Callback, EventKind, SIGNATURE_HEADER, signed_reply};

/// The version of this provider's snapshot state: raise it when the state's shape
/// changes (a snapshot in another version is refused on resume).
const STATE_VERSION: u32 = 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// §4: the longest message body.
const MAX_BODY: usize = 20_000;

/// RingCentral Engage Digital through a Source SDK source.
pub struct RingCentralProvider {
    info: ProviderInfo,
    config: Arc<RingCentralConfig>,
    client: Arc<Client>,
    router: Arc<PushRouter<Item>>,
    /// Engage thread id → our thread id, for webhook events (which carry Engage's id).
    threads: Arc<Mutex<HashMap<String, String>>>,
    capacity: usize,
}

/// What Engage supports: queue position and wait (`messaging.queuing_update`, with task
/// mode on), user typing, text up to 20 000 characters. Agent joins are not reported to a
/// Source SDK source; the agent shows with the first reply.
pub fn capabilities() -> Capabilities {
    Capabilities::none()
        .with_typing(true)
        .with_queue_position(true)
        .with_estimated_wait(true)
        .with_resume(true)
        .with_max_message_chars(Some(MAX_BODY))
}

/// A verified delivery on its way to a session: the key it is deduplicated on (the
/// content id, the signed body's digest, the event id) and what it means.
#[derive(Clone, Debug)]
struct Item {
    key: String,
    delivery: Delivery,
}

/// Something Engage told a session.
#[derive(Clone, Debug)]
enum Delivery {
    AgentReply { content_id: String, text: String, agent: Agent },
    Queued { position: Option<u32>, wait: Option<Duration> },
    InterventionOpen(Option<String>),
    InterventionClosed,
    InterventionCanceled,
}

impl RingCentralProvider {
    /// Checks `config` and builds the provider (no I/O).
    pub fn new(config: RingCentralConfig) -> Result<Self> {
        config.validate()?;
        let client = Client::new(&config)?;
        if config.webhook_secret.is_none() && !config.allow_unsigned_webhooks {
            return Err(Error::config(
                NAME,
                "[ringcentral] webhook events must be authenticated: set `webhook_secret` (the Engage webhook's \
                 Secret, sent as X-Dimelo-Secret) or `allow_unsigned_webhooks = true`",
            ));
        }
        if config.agent_category_id.trim().is_empty() {
            return Err(Error::config(NAME, "[ringcentral] `agent_category_id` is empty"));
        }
        Ok(Self {
            info: ProviderInfo::new(NAME, "RingCentral Engage Digital", capabilities()),
            config: Arc::new(config),
            client: Arc::new(client),
            router: Arc::default(),
            threads: Arc::default(),
            capacity: events::DEFAULT_CAPACITY,
        })
    }

    /// Bounds the deliveries kept for threads whose `start` has not returned yet
    /// (DESIGN.md §7.2). Call before any session.
    #[must_use]
    pub fn with_pending_limits(mut self, limits: PendingLimits) -> Self {
        self.router = Arc::new(PushRouter::with_limits(4096, limits));
        self
    }

    /// Sets the retry policy of API calls (tests shorten it).
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        if let Some(client) = Arc::get_mut(&mut self.client) {
            client.retry = policy;
        }
        self
    }

    fn key(&self) -> &[u8] {
        self.config.source_token.expose_secret().as_bytes()
    }

    /// Registers our thread id for deliveries: before anything is sent on the thread.
    fn link(&self, thread: &str) -> (Link<Item>, handover_core::EventStream) {
        Link::open(&self.router, thread, self.capacity)
    }

    fn open(
        &self,
        inner: Arc<Inner>,
        (link, stream): (Link<Item>, handover_core::EventStream),
        catch_up: bool,
    ) -> Session {
        let (commands_tx, commands) = mpsc::channel(4);
        if let Some(engage) = lock(&inner.state).engage_thread.clone() {
            lock(&self.threads).insert(engage, inner.thread.clone());
        }
        *lock(&inner.commands) = Some(commands_tx);
        let task = Task { inner: inner.clone(), link, commands, closing: None };
        tokio::spawn(task.run(catch_up));
        Session::new(inner, stream)
    }

    /// §6: waits for Engage to import our thread (the Send API is asynchronous).
    async fn engage_thread(&self, thread: &str) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(self.config.thread_lookup_timeout_secs);
        let mut delay = Duration::from_millis(100);
        loop {
            if let Some(id) = self.client.find_thread(&self.config.source_id, thread).await? {
                return Ok(id);
            }
            if Instant::now() + delay > deadline {
                return Err(Error::new(
                    ErrorKind::Rejected,
                    NAME,
                    "find thread",
                    format!(
                        "Engage did not import the thread within {}s; check that the source is active and that \
                         `source_id` and the realtime URL are the source's",
                        self.config.thread_lookup_timeout_secs
                    ),
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// §3: a Source SDK callback.
    async fn callback(&self, request: &WebhookRequest) -> WebhookReply {
        if let Err(error) = webhook::verify(self.key(), request) {
            tracing::warn!(%error, "rejected a callback");
            return signed_reply(self.key(), 422, &json!({ "error": "Invalid signature" }));
        }
        let callback = match webhook::parse_callback(&request.body) {
            Ok(callback) => callback,
            Err(error) => {
                tracing::warn!(%error, "rejected a malformed callback");
                return signed_reply(self.key(), 400, &json!({ "error": error.message() }));
            }
        };
        // Replies and queue updates change things: a replay of an old one is refused.
        if matches!(callback, Callback::AgentReply { .. } | Callback::QueuingUpdate { .. }) {
            let window = Duration::from_secs(self.config.webhook_replay_window_secs);
            if let Err(error) = webhook::check_time(&request.body, window, std::time::SystemTime::now()) {
                tracing::warn!(%error, "rejected a replayed callback");
                return signed_reply(self.key(), 422, &json!({ "error": format!("Invalid request: {error}") }));
            }
        }
        match callback {
            Callback::ImplementationInfo => signed_reply(self.key(), 200, &webhook::implementation_info()),
            Callback::List => signed_reply(self.key(), 200, &json!([])),
            Callback::Show => signed_reply(self.key(), 200, &json!({})),
            Callback::AgentReply { content_id, thread_id, in_reply_to_id, text, agent } => {
                // §9.4: retries carry the same content id and get the same id back.
                let id = format!("agent-{content_id}");
                let Some(thread) = thread_of(thread_id, in_reply_to_id) else {
                    return signed_reply(
                        self.key(),
                        422,
                        &json!({ "error": { "fatal": true, "message": "no thread" } }),
                    );
                };
                let key = format!("sdk:{content_id}");
                let item = Item { key: key.clone(), delivery: Delivery::AgentReply { content_id, text, agent } };
                match self.router.deliver(&thread, &key, item, request.body.len()).await {
                    Routed::Full => signed_reply(self.key(), 503, &json!({ "error": "busy; retry" })),
                    _ => signed_reply(self.key(), 200, &json!({ "id": id })),
                }
            }
            Callback::QueuingUpdate { thread_id, in_reply_to_id, position, wait } => {
                let Some(thread) = thread_of(thread_id, in_reply_to_id) else {
                    return signed_reply(self.key(), 200, &json!({}));
                };
                // Each update has its own `time`, so its signed body tells a resend from news.
                let key = format!("queue:{}", handover_transport::ids::content_key(&request.body));
                let item = Item { key: key.clone(), delivery: Delivery::Queued { position, wait } };
                match self.router.deliver(&thread, &key, item, request.body.len()).await {
                    Routed::Full => signed_reply(self.key(), 503, &json!({ "error": "busy; retry" })),
                    _ => signed_reply(self.key(), 200, &json!({})),
                }
            }
            Callback::Unknown(action) => {
                // Verified, but nothing we advertised: a refusal would only be retried.
                tracing::trace!(action = %handover_transport::log::Untrusted(&action), "an action we do not implement");
                signed_reply(self.key(), 200, &json!({}))
            }
        }
    }

    fn secret_ok(&self, request: &WebhookRequest) -> bool {
        match &self.config.webhook_secret {
            Some(secret) => request
                .header("x-dimelo-secret")
                .is_some_and(|given| signature::secret_eq(secret.expose_secret().as_bytes(), given.as_bytes())),
            None => self.config.allow_unsigned_webhooks,
        }
    }

    /// §7.1: `GET ?hub.mode=subscribe&hub.challenge=…&hub.verify_token=…`.
    fn validate(&self, request: &WebhookRequest) -> WebhookReply {
        let token_ok = match (&self.config.webhook_verify_token, request.query_param("hub.verify_token")) {
            (Some(expected), Some(given)) => {
                signature::secret_eq(expected.expose_secret().as_bytes(), given.as_bytes())
            }
            _ => false,
        };
        match (request.query_param("hub.mode"), request.query_param("hub.challenge")) {
            (Some("subscribe"), Some(challenge)) if token_ok && self.secret_ok(request) => {
                WebhookReply::text(200, challenge)
            }
            _ => WebhookReply::text(403, "webhook validation failed: check `webhook_verify_token`"),
        }
    }

    /// §7.2: REST webhook events.
    async fn events(&self, request: &WebhookRequest) -> WebhookReply {
        if !self.secret_ok(request) {
            tracing::warn!("rejected a webhook without the right X-Dimelo-Secret");
            return WebhookReply::text(401, "X-Dimelo-Secret is missing or wrong");
        }
        let events = match webhook::parse_events(&request.body) {
            Ok(events) => events,
            Err(error) => return WebhookReply::text(400, error.message().to_owned()),
        };
        let mut redeliver = false;
        for event in events {
            if event.source_id.as_deref().is_some_and(|s| s != self.config.source_id) {
                continue;
            }
            let delivery = match event.kind {
                EventKind::InterventionOpen => Delivery::InterventionOpen(event.resource_id.clone()),
                EventKind::InterventionClosed => Delivery::InterventionClosed,
                EventKind::InterventionCanceled => Delivery::InterventionCanceled,
                EventKind::Other => continue,
            };
            let Some(engage) = event.thread_id.as_deref() else { continue };
            let known = lock(&self.threads).get(engage).cloned();
            let thread = match known {
                Some(thread) => thread,
                None => match self.client.thread_foreign_id(engage).await {
                    Ok(Some(thread)) => thread,
                    Ok(None) => continue,
                    Err(error) if error.kind() == ErrorKind::SessionNotFound => continue,
                    Err(error) => {
                        tracing::warn!(%error, "could not map an event's thread; asking for a redelivery");
                        redeliver = true;
                        continue;
                    }
                },
            };
            let key = format!("event:{}", event.id);
            let item = Item { key: key.clone(), delivery };
            if self.router.deliver(&thread, &key, item, request.body.len()).await == Routed::Full {
                redeliver = true;
            }
        }
        if redeliver { WebhookReply::text(503, "redeliver later") } else { WebhookReply::ok() }
    }
}

/// Our thread id: given, or the prefix of our message id (`<thread>:…`).
fn thread_of(thread_id: Option<String>, in_reply_to_id: Option<String>) -> Option<String> {
    thread_id.or_else(|| in_reply_to_id.and_then(|id| id.split_once(':').map(|(thread, _)| thread.to_owned())))
}

fn now() -> String {
    handover_transport::time::now_iso8601()
}

/// `context_data` keys are `[a-zA-Z-]`.
fn context_key(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphabetic() { c } else { '-' }).collect()
}

fn user_object(request: &HandoverRequest) -> Value {
    let user = &request.user;
    let mut context = Map::new();
    context.insert("bot-session".into(), json!(request.session_id));
    if let Some(language) = &user.language {
        context.insert("language".into(), json!(language));
    }
    if !request.routing.skills.is_empty() {
        context.insert("skills".into(), json!(request.routing.skills.join(",")));
    }
    for (key, value) in &request.routing.attributes {
        let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        context.insert(context_key(key), json!(text));
    }
    let stamp = now();
    let mut object = json!({
        "id": user.id,
        "screenname": user.name.clone().unwrap_or_else(|| user.id.clone()),
        "puppetizable": false,
        "created_at": stamp,
        "updated_at": stamp,
        "context_data": context,
    });
    if let Some(email) = &user.email {
        object["email"] = json!(email);
    }
    if let Some(phone) = &user.phone {
        object["mobile_phone"] = json!(phone);
    }
    object
}

fn bot_object(config: &RingCentralConfig) -> Value {
    let stamp = now();
    json!({
        "id": config.bot_identity_id,
        "screenname": config.bot_name,
        "puppetizable": true,
        "created_at": stamp,
        "updated_at": stamp,
    })
}

struct Inner {
    info: ProviderInfo,
    config: Arc<RingCentralConfig>,
    client: Arc<Client>,
    session_id: String,
    /// Our thread id (`foreign_id` in Engage).
    thread: String,
    user: Value,
    state: Mutex<State>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct State {
    engage_thread: Option<String>,
    intervention: Option<String>,
    /// An agent replied: the intervention can be closed, not canceled (§9.7).
    agent_replied: bool,
    /// The keys of every delivery handled, so a replay is dropped for as long as the
    /// session lives.
    #[serde(default)]
    seen: DedupSet,
    #[serde(flatten)]
    end: EndState,
}

impl Default for State {
    fn default() -> Self {
        Self {
            engage_thread: None,
            intervention: None,
            agent_replied: false,
            seen: DedupSet::unbounded(),
            end: EndState::default(),
        }
    }
}

enum Command {
    Closed(EndReason),
}

impl Inner {
    /// Posts a message on our thread with our id `<thread>:m:<message id>` (Engage keeps it
    /// as `foreign_id`; whether it deduplicates on it is not documented).
    async fn post(&self, op: &'static str, author: Value, message_id: &str, body: &str) -> Result<()> {
        let params = json!({
            "id": format!("{}:m:{message_id}", self.thread),
            "author": author,
            "body": body,
            "format": "text",
            "thread_id": self.thread,
            "created_at": now(),
        });
        self.client.send(op, "messages.create", &params).await
    }

    async fn presence(&self, text: &str) -> Result<()> {
        if text.trim().is_empty() {
            return Ok(());
        }
        self.post("send presence", bot_object(&self.config), &uuid::Uuid::new_v4().to_string(), text).await
    }

    /// The open intervention: known from events, else listed.
    async fn open_intervention(&self) -> Result<Option<String>> {
        let (known, engage) = {
            let state = lock(&self.state);
            (state.intervention.clone(), state.engage_thread.clone())
        };
        if known.is_some() {
            return Ok(known);
        }
        let Some(engage) = engage else { return Ok(None) };
        let listed = self.client.interventions(&engage).await?;
        Ok(listed.iter().find(|i| i["closed"] != true).and_then(|i| i["id"].as_str()).map(str::to_owned))
    }
}

#[async_trait]
impl SessionBackend for Inner {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn send(&self, input: UserInput) -> Result<()> {
        if lock(&self.state).end.is_ended() {
            return Err(Error::session_ended(NAME, "send"));
        }
        match input {
            UserInput::Message { id, text } => {
                let id = handover_transport::ids::client_uuid(&self.thread, &id);
                self.post("send message", self.user.clone(), &id, &text).await
            }
            UserInput::Typing { on } => {
                let (action, params) = if on {
                    ("typing.start", json!({ "thread_id": self.thread, "preview": "…" }))
                } else {
                    ("typing.stop", json!({ "thread_id": self.thread }))
                };
                match self.client.send("send typing", action, &params).await {
                    // §4: one typing.start per thread every 2 s; typing is best effort.
                    Err(error) if error.kind() == ErrorKind::RateLimited => Ok(()),
                    other => other,
                }
            }
            UserInput::Connected => self.presence(&self.config.user_connects_text).await,
            UserInput::Disconnected => self.presence(&self.config.user_disconnects_text).await,
            other => Err(Error::unsupported(NAME, other.kind())),
        }
    }

    /// Closes the intervention when an agent replied, cancels it otherwise (§9.7); with no
    /// intervention yet, moves the thread back to the bot category.
    async fn end(&self, reason: EndReason) -> Result<()> {
        let (replied, engage) = {
            let mut state = lock(&self.state);
            if !state.end.begin_close() {
                return Ok(());
            }
            (state.agent_replied, state.engage_thread.clone())
        };
        match self.open_intervention().await? {
            Some(id) => match self.client.finish_intervention(&id, replied).await {
                // The other call fits what Engage knows (a reply we have not seen yet).
                Err(error) if is_refused(&error) => self.client.finish_intervention(&id, !replied).await?,
                other => other?,
            },
            None => {
                if let (Some(engage), Some(bot)) = (engage, &self.config.bot_category_id) {
                    self.client.set_thread_categories(&engage, std::slice::from_ref(bot)).await?;
                }
            }
        }
        let commands = lock(&self.commands).clone();
        if let Some(commands) = commands {
            let _ = commands.send(Command::Closed(reason)).await;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<SessionSnapshot> {
        let snapshot =
            Snapshot { thread: self.thread.clone(), user: self.user.clone(), state: lock(&self.state).clone() };
        SessionSnapshot::new(NAME, STATE_VERSION, &self.session_id, &snapshot)
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    thread: String,
    user: Value,
    state: State,
}

struct Task {
    inner: Arc<Inner>,
    link: Link<Item>,
    commands: mpsc::Receiver<Command>,
    /// The intervention closed: the end once replies still on their way had time to come.
    closing: Option<Instant>,
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

impl Task {
    async fn run(mut self, catch_up: bool) {
        if catch_up && self.resync().await == Flow::Stop {
            return self.finish();
        }
        let events = self.link.events().clone();
        loop {
            let flow = tokio::select! {
                biased;
                () = events.closed() => Flow::Stop,
                command = self.commands.recv() => match command {
                    Some(Command::Closed(reason)) => {
                        self.emit(Event::Ended { by: EndedBy::User, reason: Some(reason.as_str().to_owned()) }).await
                    }
                    None => Flow::Continue,
                },
                item = self.link.recv() => match item {
                    Some(Item { key, delivery }) => {
                        if lock(&self.inner.state).seen.insert(&key) {
                            self.on_delivery(delivery).await
                        } else {
                            tracing::debug!("dropping a replayed delivery");
                            Flow::Continue
                        }
                    }
                    None => Flow::Stop,
                },
                () = sleep_until(self.closing) => {
                    self.emit(Event::Ended {
                        by: EndedBy::Agent,
                        reason: Some("the agent closed the intervention".to_owned()),
                    })
                    .await
                }
            };
            if flow == Flow::Stop {
                return self.finish();
            }
        }
    }

    fn finish(&mut self) {
        let ended = lock(&self.inner.state).end.is_ended();
        self.link.finish(ended);
    }

    async fn emit(&self, event: Event) -> Flow {
        let first_end = || lock(&self.inner.state).end.mark_ended();
        if self.link.emit(event, first_end).await.is_continue() { Flow::Continue } else { Flow::Stop }
    }

    async fn on_delivery(&mut self, delivery: Delivery) -> Flow {
        match delivery {
            Delivery::AgentReply { content_id, text, agent } => {
                lock(&self.inner.state).agent_replied = true;
                if text.is_empty() {
                    return Flow::Continue;
                }
                self.emit(Event::AgentMessage { id: content_id, text, agent }).await
            }
            Delivery::Queued { position, wait } => {
                if lock(&self.inner.state).agent_replied {
                    return Flow::Continue;
                }
                self.emit(Event::Queued { position, estimated_wait: wait }).await
            }
            Delivery::InterventionOpen(id) => {
                // Reopened while closing: the handover goes on.
                self.closing = None;
                if id.is_some() {
                    lock(&self.inner.state).intervention = id;
                }
                Flow::Continue
            }
            Delivery::InterventionClosed => {
                let drain = Duration::from_millis(self.inner.config.end_drain_ms);
                self.closing.get_or_insert(Instant::now() + drain);
                Flow::Continue
            }
            Delivery::InterventionCanceled => {
                let by = lock(&self.inner.state).end.ended_by(EndedBy::System);
                self.emit(Event::Ended { by, reason: Some("the intervention was canceled".to_owned()) }).await
            }
        }
    }

    /// After a resume: the intervention may have been closed while no session was attached.
    async fn resync(&mut self) -> Flow {
        let Some(engage) = lock(&self.inner.state).engage_thread.clone() else { return Flow::Continue };
        let listed = match self.inner.client.interventions(&engage).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, "could not re-read the interventions after a resume");
                return Flow::Continue;
            }
        };
        if let Some(open) = listed.iter().find(|i| i["closed"] != true) {
            lock(&self.inner.state).intervention = open["id"].as_str().map(str::to_owned);
            return Flow::Continue;
        }
        if !listed.is_empty() {
            return self.on_delivery(Delivery::InterventionClosed).await;
        }
        Flow::Continue
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn transcript_body(entry: &TranscriptEntry) -> String {
    match entry.from {
        Speaker::Agent => format!("{}: {}", entry.from.label(), entry.text),
        _ => entry.text.clone(),
    }
}

#[async_trait]
impl Provider for RingCentralProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        let thread = format!("h-{}", uuid::Uuid::new_v4());
        // Replies and queue updates for the thread reach this session from now on.
        let link = self.link(&thread);
        let user = user_object(&request);
        let name = request.user.name.clone().unwrap_or_else(|| request.user.id.clone());
        let intro = format!("{name} asked for an agent.");
        let params = json!({
            "id": thread,
            "title": format!("Chat with {name}"),
            "body": intro,
            "author": user,
            "format": "text",
            "created_at": now(),
        });
        self.client.send("create thread", "threads.create", &params).await?;
        let bot = bot_object(&self.config);
        for (n, entry) in request.transcript.iter().filter(|e| !e.text.trim().is_empty()).enumerate() {
            let author = if entry.from == Speaker::User { user.clone() } else { bot.clone() };
            let body = transcript_body(entry);
            let parts = transcript::split(&body, MAX_BODY)
                .map_err(|e| Error::invalid_input(NAME, "send transcript", e.to_string()))?;
            for (k, part) in parts.into_iter().enumerate() {
                let message = json!({
                    "id": format!("{thread}:t:{n}.{k}"),
                    "author": author,
                    "body": part,
                    "format": "text",
                    "thread_id": thread,
                    "created_at": entry.at.map_or_else(now, |ms| {
                        handover_transport::time::iso8601_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                    }),
                });
                self.client.send("send transcript", "messages.create", &message).await?;
            }
        }
        let engage = self.engage_thread(&thread).await?;
        let mut categories = vec![self.config.agent_category_id.clone()];
        for extra in &self.config.additional_category_ids {
            if !categories.contains(extra) {
                categories.push(extra.clone());
            }
        }
        self.client.set_thread_categories(&engage, &categories).await?;
        tracing::info!(%thread, %engage, "thread handed to the agent category");
        let inner = Arc::new(Inner {
            info: self.info.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
            session_id: request.session_id.clone(),
            thread,
            user,
            state: Mutex::new(State { engage_thread: Some(engage), ..State::default() }),
            commands: Mutex::new(None),
        });
        Ok(self.open(inner, link, false))
    }

    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session> {
        let saved: Snapshot = snapshot.state_for(NAME, STATE_VERSION)?;
        let inner = Arc::new(Inner {
            info: self.info.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
            session_id: snapshot.session_id().to_owned(),
            thread: saved.thread,
            user: saved.user,
            state: Mutex::new(State { end: saved.state.end.resumed(), ..saved.state }),
            commands: Mutex::new(None),
        });
        let link = self.link(&inner.thread);
        Ok(self.open(inner, link, true).resumed_from(&snapshot))
    }

    /// Reads the source and the configured categories: proves the API token, the source id
    /// and the category ids.
    async fn check(&self) -> Result<CheckReport> {
        let source = self.client.source(&self.config.source_id).await.map_err(|e| e.in_op("check source_id"))?;
        if source["active"] == false {
            return Err(Error::config(
                NAME,
                format!("[ringcentral] the source `{}` is not active", self.config.source_id),
            ));
        }
        let mut wanted = vec![self.config.agent_category_id.clone()];
        wanted.extend(self.config.additional_category_ids.iter().cloned());
        wanted.extend(self.config.bot_category_id.iter().cloned());
        let known = self.client.categories(&wanted).await?;
        let missing: Vec<&String> = wanted.iter().filter(|id| !known.contains(id)).collect();
        if missing.is_empty() {
            return Ok(CheckReport::new()
                .verified("api_url, access_token and source_id: the source was read")
                .verified("agent_category_id and the other category ids: Engage knows them")
                .unverified("source_token and realtime_url: only a message sent or a callback received proves them")
                .unverified("webhook_secret: only a webhook delivery from Engage proves it"));
        }
        let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        Err(Error::config(NAME, format!("[ringcentral] Engage has no category {}", missing.join(", "))))
    }

    /// One endpoint for all of Engage (§1): Source SDK callbacks (signed), REST webhook
    /// events (`X-Dimelo-Secret`) and the webhook's `hub.*` validation (`GET`).
    async fn webhook(&self, request: WebhookRequest) -> WebhookReply {
        match request.method.as_str() {
            "GET" => return self.validate(&request),
            "POST" => {}
            _ => return WebhookReply::text(405, "GET (validation) or POST only"),
        }
        if request.header(SIGNATURE_HEADER).is_some() || request.query_param("signature").is_some() {
            return self.callback(&request).await;
        }
        match serde_json::from_slice::<Value>(&request.body) {
            Ok(json) if json.get("action").is_some() => {
                tracing::warn!("rejected an unsigned callback");
                signed_reply(self.key(), 422, &json!({ "error": "Invalid signature" }))
            }
            Ok(json) if json.get("events").is_some() => self.events(&request).await,
            _ => WebhookReply::text(400, "neither a Source SDK callback nor an Engage webhook delivery"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_come_from_the_thread_or_our_message_id() {
        assert_eq!(thread_of(Some("h-1".into()), None).as_deref(), Some("h-1"));
        assert_eq!(thread_of(None, Some("h-2:m:abc".into())).as_deref(), Some("h-2"));
        assert_eq!(thread_of(None, Some("foreign".into())), None);
        assert_eq!(context_key("my_key 2"), "my-key--");
    }
}
