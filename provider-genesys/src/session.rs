//! The provider, its webhook router and its sessions.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{
    Agent, Capabilities, CheckReport, EndReason, EndedBy, Error, ErrorKind, Event, EventStream, HandoverRequest,
    Provider, ProviderInfo, Result, Session, SessionBackend, SessionSnapshot, UserInput, WebhookReply, WebhookRequest,
    transcript,
};
use handover_transport::dedup::DedupSet;
use handover_transport::events::{self, EndState};
use handover_transport::http::{self, HttpConfig};
use handover_transport::push::{Link, PendingLimits, PushRouter};
use handover_transport::retry::RetryPolicy;
use handover_transport::ws::WsConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::auth::TokenCache;
use crate::client::{Client, Customer};
use crate::config::GenesysConfig;
use crate::notifications::{EndDetector, NotificationsDetector, ParticipantEvent};
use crate::webhook::{self, Delivery, Outbound};
use crate::{NAME, TRANSCRIPT_CHUNK_CHARS};

/// The version of this provider's snapshot state: raise it when the state's shape
/// changes (a snapshot in another version is refused on resume).
const STATE_VERSION: u32 = 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Genesys Cloud Open Messaging.
///
/// One value serves many sessions: they share the OAuth token, the notification channel
/// and the webhook router ([`Provider::webhook`]).
pub struct GenesysProvider {
    info: ProviderInfo,
    config: Arc<GenesysConfig>,
    http: handover_transport::reqwest::Client,
    login: url::Url,
    api: url::Url,
    ws: WsConfig,
    client: Arc<Client>,
    tokens: Arc<TokenCache>,
    detector: Arc<dyn EndDetector>,
    /// Whether `detector` was given by the caller (kept when the retry policy changes).
    custom_detector: bool,
    router: Arc<PushRouter<Outbound>>,
    capacity: usize,
}

/// What Genesys Open Messaging supports.
pub fn capabilities() -> Capabilities {
    Capabilities::none().with_typing(true).with_participant_change(true).with_resume(true)
}

/// The API client, the token cache and the notifications detector, all with `retry`.
fn clients(
    config: &GenesysConfig,
    http: &handover_transport::reqwest::Client,
    login: &url::Url,
    api: &url::Url,
    ws: &WsConfig,
    retry: RetryPolicy,
) -> (Arc<Client>, Arc<TokenCache>, Arc<dyn EndDetector>) {
    let tokens = Arc::new(TokenCache::new(
        http.clone(),
        login,
        config.client_id.clone(),
        config.client_secret.clone(),
        retry.clone(),
    ));
    let client = Arc::new(Client::new(http.clone(), api.clone(), config.integration_id.clone(), retry));
    let detector: Arc<dyn EndDetector> = Arc::new(
        NotificationsDetector::new(client.clone(), tokens.clone(), ws.clone())
            .with_conversations_per_channel(config.conversations_per_channel),
    );
    (client, tokens, detector)
}

impl GenesysProvider {
    /// Checks `config` and builds the provider (no I/O) with the Notifications API detector.
    pub fn new(config: GenesysConfig) -> Result<Self> {
        Self::with_ws_config(config, NotificationsDetector::default_ws_config())
    }

    /// Like [`new`](Self::new) with custom notification socket settings.
    pub fn with_ws_config(config: GenesysConfig, ws: WsConfig) -> Result<Self> {
        let (login, api) = config.hosts()?;
        for (key, value) in
            [("client_id", config.client_id.as_str()), ("integration_id", config.integration_id.as_str())]
        {
            if value.trim().is_empty() {
                return Err(Error::config(NAME, format!("[genesys] `{key}` must not be empty")));
            }
        }
        // A notification channel holds 1000 topics, three per conversation: at most 333.
        config.validate()?;
        if config.webhook_secret.expose_secret().is_empty() {
            return Err(Error::config(NAME, "[genesys] `webhook_secret` must not be empty: webhooks are verified"));
        }
        let http = http::client(NAME, &HttpConfig::default())?;
        let config = Arc::new(config);
        let (client, tokens, detector) = clients(&config, &http, &login, &api, &ws, RetryPolicy::default());
        Ok(Self {
            info: ProviderInfo::new(NAME, "Genesys Cloud Open Messaging", capabilities()),
            config,
            http,
            login,
            api,
            ws,
            client,
            tokens,
            detector,
            custom_detector: false,
            router: Arc::default(),
            capacity: events::DEFAULT_CAPACITY,
        })
    }

    /// Replaces the end detector (a push-based one, fed by Triggers or EventBridge).
    #[must_use]
    pub fn with_end_detector(mut self, detector: Arc<dyn EndDetector>) -> Self {
        self.detector = detector;
        self.custom_detector = true;
        self
    }

    /// Sets the retry policy of every call the provider makes: the API, the token
    /// requests and the notification channel (tests shorten it). Call before any session.
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        let (client, tokens, detector) = clients(&self.config, &self.http, &self.login, &self.api, &self.ws, policy);
        self.client = client;
        self.tokens = tokens;
        if !self.custom_detector {
            self.detector = detector;
        }
        self
    }

    /// Bounds the webhook deliveries kept for customers whose `start` has not returned yet
    /// (DESIGN.md §7.2). Call before any session.
    #[must_use]
    pub fn with_pending_limits(mut self, limits: PendingLimits) -> Self {
        self.router = Arc::new(PushRouter::with_limits(4096, limits));
        self
    }

    /// OAuth token requests made so far (one token serves every session).
    pub fn token_requests(&self) -> u64 {
        self.tokens.requests()
    }

    /// The custom attributes of the first message (§5.4): language, skills and priority
    /// under the configured keys, the configured and requested attributes, and the user id.
    fn custom_attributes(&self, request: &HandoverRequest) -> Map<String, Value> {
        let config = &self.config;
        let mut attributes = Map::new();
        let stringify = |value: &Value| match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        for (key, value) in config.custom_attributes.iter().chain(request.routing.attributes.iter()) {
            attributes.insert(key.clone(), json!(stringify(value)));
        }
        let language = config
            .language
            .clone()
            .or_else(|| request.routing.languages.first().cloned())
            .or_else(|| request.user.language.clone());
        if let Some(language) = language {
            attributes.insert(config.language_attribute.clone(), json!(language));
        }
        let skills: Vec<&str> =
            config.skills.iter().chain(request.routing.skills.iter()).map(String::as_str).collect::<Vec<_>>();
        if !skills.is_empty() {
            let mut unique = Vec::new();
            for skill in skills {
                if !unique.contains(&skill) {
                    unique.push(skill);
                }
            }
            attributes.insert(config.skills_attribute.clone(), json!(unique.join(",")));
        }
        let priority = config
            .priority
            .map(|p| p.to_string())
            .or_else(|| request.routing.priority.as_ref().map(ToString::to_string));
        if let Some(priority) = priority {
            attributes.insert(config.priority_attribute.clone(), json!(priority));
        }
        attributes.entry("userId").or_insert_with(|| json!(request.user.id));
        attributes
    }

    /// Registers the customer for webhooks: before anything is sent as the customer, so a
    /// reply Genesys posts at once finds its session.
    fn link(&self, customer_id: &str) -> (Link<Outbound>, EventStream) {
        Link::open(&self.router, customer_id, self.capacity)
    }

    /// Routes webhooks and participant changes to a new session task. Returns once the
    /// conversation (when its id is known) is watched; on an error the link is dropped,
    /// which unregisters it.
    async fn open(
        &self,
        inner: Arc<Inner>,
        (link, stream): (Link<Outbound>, EventStream),
        catch_up: bool,
    ) -> Result<Session> {
        let (participants_tx, participants) = mpsc::channel(self.capacity);
        let (commands_tx, commands) = mpsc::channel(4);
        *lock(&inner.commands) = Some(commands_tx);
        let watching = match inner.conversation_id() {
            Some(conversation) => {
                self.detector.watch(&conversation, participants_tx.clone()).await?;
                true
            }
            None => {
                tracing::warn!(
                    "Genesys returned no conversation id; participants are watched from the first agent message"
                );
                false
            }
        };
        let task = Task {
            inner: inner.clone(),
            detector: self.detector.clone(),
            link,
            participants,
            participants_tx,
            commands,
            pending_end: None,
            agent: None,
        };
        tokio::spawn(task.run(watching, catch_up));
        Ok(Session::new(inner, stream))
    }
}

struct Inner {
    info: ProviderInfo,
    config: Arc<GenesysConfig>,
    client: Arc<Client>,
    tokens: Arc<TokenCache>,
    session_id: String,
    customer: Customer,
    state: Mutex<State>,
    send_lock: tokio::sync::Mutex<()>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
}

struct State {
    conversation_id: Option<String>,
    agents: HashSet<String>,
    /// The (id, time) keys of every delivery handled: the signature covers them, so a
    /// replay is dropped for as long as the session lives.
    seen: DedupSet,
    end: EndState,
}

impl Default for State {
    fn default() -> Self {
        Self { conversation_id: None, agents: HashSet::new(), seen: DedupSet::unbounded(), end: EndState::default() }
    }
}

enum Command {
    Closed(EndReason),
}

impl Inner {
    async fn authorized<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let token = self.tokens.token().await?;
        match call(token.clone()).await {
            Err(error) if error.kind() == ErrorKind::Unauthenticated => call(self.tokens.renew(&token).await?).await,
            other => other,
        }
    }

    /// Sends `text` as the customer, with `channel.messageId` derived from `input_id`: the
    /// same input always carries the same message id (genesys.md §5.1; whether Genesys
    /// deduplicates on it is not documented).
    async fn send_text(&self, input_id: &str, text: &str, attributes: Option<&Map<String, Value>>) -> Result<()> {
        let id = handover_transport::ids::client_uuid(&self.customer.id, input_id);
        let (client, customer, id) = (&self.client, &self.customer, id.as_str());
        let accepted = self
            .authorized(|token| async move { client.send_message(&token, customer, id, text, attributes).await })
            .await?;
        if let Some(conversation_id) = accepted.conversation_id {
            lock(&self.state).conversation_id.get_or_insert(conversation_id);
        }
        Ok(())
    }

    fn conversation_id(&self) -> Option<String> {
        lock(&self.state).conversation_id.clone()
    }
}

#[async_trait]
impl SessionBackend for Inner {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn send(&self, input: UserInput) -> Result<()> {
        let _order = self.send_lock.lock().await;
        if lock(&self.state).end.is_ended() {
            return Err(Error::session_ended(NAME, "send"));
        }
        match input {
            UserInput::Message { id, text } => self.send_text(&id, &text, None).await,
            UserInput::Typing { on: true } => {
                let (client, customer) = (&self.client, &self.customer);
                self.authorized(|token| async move { client.send_typing(&token, customer).await }).await
            }
            // Open Messaging has only "typing started" (§5.2): stopping needs no call.
            UserInput::Typing { on: false } => Ok(()),
            UserInput::Connected => self.send_text(&random_id(), UserInput::CONNECTED_TEXT, None).await,
            UserInput::Disconnected => self.send_text(&random_id(), UserInput::DISCONNECTED_TEXT, None).await,
            other => Err(Error::unsupported(NAME, other.kind())),
        }
    }

    /// §7.3: a final inbound message, then the customer participant is disconnected.
    async fn end(&self, reason: EndReason) -> Result<()> {
        if !lock(&self.state).end.begin_close() {
            return Ok(());
        }
        self.send_text("handover-end", &self.config.customer_left_message, None).await?;
        if let Some(conversation_id) = self.conversation_id() {
            let client = &self.client;
            let conversation = conversation_id.as_str();
            let participants =
                self.authorized(|token| async move { client.participants(&token, conversation).await }).await?;
            for customer in participants.iter().filter(|p| p.purpose == "customer" && p.state != "disconnected") {
                let participant = customer.id.as_str();
                self.authorized(|token| async move { client.disconnect(&token, conversation, participant).await })
                    .await?;
            }
        }
        let commands = lock(&self.commands).clone();
        if let Some(commands) = commands {
            let _ = commands.send(Command::Closed(reason)).await;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<SessionSnapshot> {
        let state = lock(&self.state);
        let snapshot = Snapshot {
            customer_id: self.customer.id.clone(),
            nickname: self.customer.nickname.clone(),
            email: self.customer.email.clone(),
            conversation_id: state.conversation_id.clone(),
            agents: state.agents.iter().cloned().collect(),
            seen: state.seen.clone(),
        };
        SessionSnapshot::new(NAME, STATE_VERSION, &self.session_id, &snapshot)
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    customer_id: String,
    nickname: Option<String>,
    email: Option<String>,
    conversation_id: Option<String>,
    agents: Vec<String>,
    #[serde(default)]
    seen: DedupSet,
}

/// A fresh id for an input that has none of its own (presence notes).
fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

struct Task {
    inner: Arc<Inner>,
    detector: Arc<dyn EndDetector>,
    link: Link<Outbound>,
    participants: mpsc::Receiver<ParticipantEvent>,
    participants_tx: mpsc::Sender<ParticipantEvent>,
    commands: mpsc::Receiver<Command>,
    /// The handover ends at this instant with this `by`, unless cancelled: after an agent's
    /// end (another agent may still start: a requeue), or after the conversation's end
    /// (agent messages may still arrive as webhooks).
    pending_end: Option<(Instant, EndedBy)>,
    /// The agent currently handling the conversation.
    agent: Option<Agent>,
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(mut self, watching: bool, catch_up: bool) {
        let mut watching = watching.then_some(());
        if watching.is_some() && catch_up && self.resync().await == Flow::Stop {
            return self.finish().await;
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
                delivery = self.link.recv() => match delivery {
                    Some(delivery) => {
                        if watching.is_none()
                            && let Some(conversation) = delivery.conversation_id.clone()
                        {
                            // No id came back from the first message: learn it from a delivery.
                            lock(&self.inner.state).conversation_id.get_or_insert(conversation.clone());
                            watching = self.watch(&conversation).await;
                        }
                        self.on_delivery(delivery).await
                    }
                    None => Flow::Stop,
                },
                event = self.participants.recv() => match event {
                    Some(event) => self.on_participant(event).await,
                    None => Flow::Continue,
                },
                () = sleep_until(self.pending_end.map(|(at, _)| at)) => {
                    let by = self.pending_end.take().map_or(EndedBy::Agent, |(_, by)| by);
                    self.emit(Event::Ended { by, reason: Some("the conversation ended".to_owned()) }).await
                }
            };
            if flow == Flow::Stop {
                return self.finish().await;
            }
        }
    }

    async fn finish(mut self) {
        // A resumed session may have taken the route over: that one is left alone. After the
        // end, late deliveries are acknowledged and dropped.
        let ended = lock(&self.inner.state).end.is_ended();
        self.link.finish(ended);
        if let Some(conversation) = self.inner.conversation_id() {
            self.detector.unwatch(&conversation, &self.participants_tx);
        }
    }

    async fn watch(&self, conversation: &str) -> Option<()> {
        match self.detector.watch(conversation, self.participants_tx.clone()).await {
            Ok(()) => Some(()),
            Err(error) => {
                self.link.events().fail(error.in_op("watch participants")).await;
                None
            }
        }
    }

    async fn emit(&self, event: Event) -> Flow {
        if self.link.emit(event, || lock(&self.inner.state).end.mark_ended()).await.is_continue() {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }

    async fn on_delivery(&mut self, delivery: Outbound) -> Flow {
        if !lock(&self.inner.state).seen.insert(&delivery.dedup_key()) {
            tracing::debug!("dropping a replayed delivery");
            return Flow::Continue;
        }
        match delivery.interpret() {
            Delivery::Message { text, from_bot } => {
                if from_bot && !self.inner.config.forward_bot_messages {
                    tracing::debug!("suppressing a message from the Genesys flow or a bot");
                    return Flow::Continue;
                }
                let agent = if from_bot { Agent::named("Bot") } else { self.current_agent() };
                self.emit(Event::AgentMessage { id: delivery.id, text, agent }).await
            }
            Delivery::Typing => self.emit(Event::AgentTyping { on: true }).await,
            Delivery::Receipt { status } => {
                if status == "Failed" {
                    tracing::warn!(reasons = ?delivery.reasons, "Genesys could not deliver a customer message");
                }
                Flow::Continue
            }
            Delivery::Ignore(why) => {
                tracing::trace!(why, "ignoring a webhook delivery");
                Flow::Continue
            }
        }
    }

    fn current_agent(&self) -> Agent {
        self.agent.clone().unwrap_or_else(Agent::unknown)
    }

    async fn agent_for(&self, user_id: Option<String>) -> Agent {
        let Some(user_id) = user_id else { return Agent::unknown() };
        let client = &self.inner.client;
        let id = user_id.as_str();
        let name = self.inner.authorized(|token| async move { client.user_name(&token, id).await }).await;
        let mut agent = Agent::unknown().with_id(user_id.clone());
        match name {
            Ok(name) => agent.name = name,
            Err(error) => tracing::debug!(%error, "the agent's name could not be read"),
        }
        agent
    }

    async fn on_participant(&mut self, event: ParticipantEvent) -> Flow {
        match event {
            ParticipantEvent::AgentStarted { participant_id, user_id } => {
                if !lock(&self.inner.state).agents.insert(participant_id) {
                    return Flow::Continue;
                }
                if self.pending_end.take_if(|(_, by)| *by == EndedBy::Agent).is_some() {
                    // The earlier agent's end was a requeue or transfer after all.
                    if self.emit(Event::AgentLeft { agent: self.current_agent(), transfer: true }).await == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                let agent = self.agent_for(user_id).await;
                self.agent = Some(agent.clone());
                self.emit(Event::AgentJoined { agent }).await
            }
            ParticipantEvent::AgentEnded { participant_id, disconnect } => {
                if !lock(&self.inner.state).agents.remove(&participant_id) {
                    // An offer the agent never accepted, or a repeat.
                    return Flow::Continue;
                }
                if disconnect.is_transfer() {
                    return self.emit(Event::AgentLeft { agent: self.current_agent(), transfer: true }).await;
                }
                // §7.1: a requeue also ends the agent's session; wait before deciding.
                let at = Instant::now() + Duration::from_millis(self.inner.config.transfer_grace_ms);
                self.pending_end.get_or_insert((at, EndedBy::Agent));
                Flow::Continue
            }
            ParticipantEvent::CustomerEnded { .. } => {
                let by = lock(&self.inner.state).end.ended_by(EndedBy::Agent);
                if by == EndedBy::User {
                    return self.emit(Event::Ended { by, reason: Some("the conversation ended".to_owned()) }).await;
                }
                // The conversation is over, but the agent's last messages may still be on their way.
                let at = Instant::now() + Duration::from_millis(self.inner.config.end_drain_ms);
                let at = self.pending_end.map_or(at, |(pending, _)| pending.min(at));
                self.pending_end = Some((at, by));
                Flow::Continue
            }
            ParticipantEvent::Resync => self.resync().await,
            ParticipantEvent::Lost(reason) => {
                self.link
                    .events()
                    .fail(Error::transport(
                        NAME,
                        "watch participants",
                        format!("participant changes are no longer detected: {reason}"),
                    ))
                    .await;
                Flow::Stop
            }
        }
    }

    /// Re-reads the conversation after events may have been missed.
    async fn resync(&mut self) -> Flow {
        let Some(conversation) = self.inner.conversation_id() else { return Flow::Continue };
        let client = &self.inner.client;
        let id = conversation.as_str();
        let participants =
            match self.inner.authorized(|token| async move { client.participants(&token, id).await }).await {
                Ok(participants) => participants,
                Err(error) => {
                    tracing::warn!(%error, "could not re-read the conversation after a reconnect");
                    return Flow::Continue;
                }
            };
        for participant in &participants {
            let known = lock(&self.inner.state).agents.contains(&participant.id);
            let event = match (participant.purpose.as_str(), participant.state.as_str(), known) {
                ("agent", "connected", false) => ParticipantEvent::AgentStarted {
                    participant_id: participant.id.clone(),
                    user_id: participant.user.as_ref().and_then(|u| u["id"].as_str()).map(str::to_owned),
                },
                ("agent", "disconnected" | "terminated", true) => ParticipantEvent::AgentEnded {
                    participant_id: participant.id.clone(),
                    disconnect: crate::notifications::DisconnectType::parse(
                        participant.disconnect_type.as_deref().map(str::to_ascii_uppercase).as_deref(),
                    ),
                },
                ("customer", "disconnected" | "terminated", _) => ParticipantEvent::CustomerEnded {
                    disconnect: crate::notifications::DisconnectType::parse(participant.disconnect_type.as_deref()),
                },
                _ => continue,
            };
            if Box::pin(self.on_participant(event)).await == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }
}

#[async_trait]
impl Provider for GenesysProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        let customer = Customer {
            // §7.4: a fresh id per handover, so Genesys never appends to a stale conversation.
            id: format!("handover-{}", uuid::Uuid::new_v4()),
            nickname: request.user.name.clone().or_else(|| Some(request.user.id.clone())),
            email: request.user.email.clone(),
        };
        let inner = Arc::new(Inner {
            info: self.info.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
            tokens: self.tokens.clone(),
            session_id: request.session_id.clone(),
            customer,
            state: Mutex::default(),
            send_lock: tokio::sync::Mutex::new(()),
            commands: Mutex::new(None),
        });
        // Route webhooks for this customer before Genesys can send any.
        let link = self.link(&inner.customer.id);
        let attributes = self.custom_attributes(&request);
        let rendered = transcript::render(&request.transcript);
        let mut texts: Vec<String> = if self.config.send_transcript && !rendered.is_empty() {
            transcript::split(&rendered, TRANSCRIPT_CHUNK_CHARS)
                .map_err(|e| Error::invalid_input(NAME, "send transcript", e.to_string()))?
                .into_iter()
                .map(str::to_owned)
                .collect()
        } else {
            Vec::new()
        };
        if texts.is_empty() {
            texts.push(self.config.handover_message.clone());
        }
        let mut texts = texts.into_iter().enumerate();
        let (_, first) = texts.next().unwrap_or_default();
        inner.send_text("transcript-0", &first, Some(&attributes)).await.map_err(|e| e.in_op("start conversation"))?;
        for (n, text) in texts {
            inner.send_text(&format!("transcript-{n}"), &text, None).await.map_err(|e| e.in_op("send transcript"))?;
        }
        self.open(inner, link, false).await
    }

    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session> {
        let state: Snapshot = snapshot.state_for(NAME, STATE_VERSION)?;
        let inner = Arc::new(Inner {
            info: self.info.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
            tokens: self.tokens.clone(),
            session_id: snapshot.session_id().to_owned(),
            customer: Customer { id: state.customer_id, nickname: state.nickname, email: state.email },
            state: Mutex::new(State {
                conversation_id: state.conversation_id,
                agents: state.agents.into_iter().collect(),
                seen: state.seen,
                end: EndState::default(),
            }),
            send_lock: tokio::sync::Mutex::new(()),
            commands: Mutex::new(None),
        });
        let link = self.link(&inner.customer.id);
        Ok(self.open(inner, link, true).await?.resumed_from(&snapshot))
    }

    /// Takes a token (proves the OAuth client) and reads the integration (proves
    /// `integration_id`, when the client may read integrations).
    async fn check(&self) -> Result<CheckReport> {
        let token = self.tokens.token().await?;
        let report = CheckReport::new().verified("login_url, client_id and client_secret: an OAuth token was issued");
        let report = match self.client.integration(&token).await {
            Ok(Some(_)) => report.verified("integration_id: the Open Messaging integration exists"),
            Ok(None) => report.unverified(
                "integration_id: this OAuth client may not read integrations (messaging:integration:view); \
                 the first handover shows whether it is right",
            ),
            Err(error) if error.kind() == ErrorKind::SessionNotFound => {
                return Err(Error::config(
                    NAME,
                    format!(
                        "[genesys] `integration_id` `{}` is not an Open Messaging integration of this org",
                        self.config.integration_id
                    ),
                ));
            }
            Err(error) => return Err(error.in_op("check integration_id")),
        };
        Ok(report.unverified("webhook_secret: only a delivery from Genesys proves it"))
    }

    /// §6: verify, deduplicate, route, answer 200 at once. A verified delivery for a
    /// customer no session has registered yet is kept for it (Genesys does retry 5xx, §6.1,
    /// but nothing here depends on it); deliveries of unknown types are acknowledged and
    /// dropped.
    async fn webhook(&self, request: WebhookRequest) -> WebhookReply {
        if request.method != "POST" {
            return WebhookReply::text(405, "POST only");
        }
        let signature = request.header(webhook::SIGNATURE_HEADER);
        if let Err(error) =
            webhook::verify_signature(self.config.webhook_secret.expose_secret().as_bytes(), signature, &request.body)
        {
            tracing::warn!(%error, "rejected a webhook");
            return WebhookReply::text(401, format!("signature check failed: {error}"));
        }
        let delivery = match webhook::parse(&request.body) {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::warn!(%error, "rejected a malformed webhook");
                return WebhookReply::text(400, error.message().to_owned());
            }
        };
        if let Delivery::Ignore(why) = delivery.interpret() {
            tracing::trace!(why, "webhook needs no session");
            return WebhookReply::ok();
        }
        let key = delivery.dedup_key();
        let to = delivery.channel.to.id.clone();
        let routed = self.router.deliver(&to, &key, delivery, request.body.len()).await;
        WebhookReply::status(routed.status())
    }
}
