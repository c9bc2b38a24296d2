//! The provider, its webhook handler and its sessions.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use handover_core::{
    Agent, Capabilities, CheckReport, EndReason, EndedBy, Error, Event, HandoverRequest, Priority, Provider,
    ProviderInfo, Result, Session, SessionHandle, SessionSnapshot, UserInput, WebhookReply, WebhookRequest, transcript,
};
use handover_transport::dedup::DedupSet;
use handover_transport::events::{self, EndState};
use handover_transport::push::{Link, PendingLimits, PushRouter};
use handover_transport::retry::RetryPolicy;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::NAME;
use crate::client::{Client, Contact};
use crate::config::LiveAgentConfig;
use crate::webhook::{self, Auth, Delivery};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The largest private note posted at once (the transcript is split to this).
const NOTE_CHARS: usize = 10_000;

/// Cognigy Live Agent, or any Chatwoot desk with an API-channel inbox.
pub struct LiveAgentProvider {
    info: ProviderInfo,
    config: Arc<LiveAgentConfig>,
    client: Arc<Client>,
    auth: Auth,
    router: Arc<PushRouter<Item>>,
    capacity: usize,
}

/// A verified delivery on its way to a session: the key its signature covers (to drop
/// replays) and what it means.
#[derive(Clone, Debug)]
struct Item {
    key: String,
    delivery: Delivery,
}

/// What Live Agent supports. Queue position is computed from the inbox's unassigned
/// conversations and the wait estimated from it: the desk has no queue API.
pub fn capabilities() -> Capabilities {
    Capabilities::none()
        .with_queue_position(true)
        .with_estimated_wait(true)
        .with_participant_change(true)
        .with_resume(true)
}

impl LiveAgentProvider {
    /// Checks `config` and builds the provider (no I/O).
    pub fn new(config: LiveAgentConfig) -> Result<Self> {
        config.validate()?;
        let client = Client::new(&config)?;
        let auth = match (&config.webhook_secret, &config.webhook_token, config.allow_unsigned_webhooks) {
            (Some(secret), _, _) => Auth::Signature {
                secret: secret.clone(),
                window: Duration::from_secs(config.webhook_replay_window_secs),
            },
            (None, Some(token), _) => Auth::Token(token.clone()),
            (None, None, true) => Auth::Unsigned,
            (None, None, false) => {
                return Err(Error::config(
                    NAME,
                    "[liveagent] webhooks must be authenticated: set `webhook_secret` (desks that sign), \
                     `webhook_token` (a ?token= in the webhook URL), or `allow_unsigned_webhooks = true`",
                ));
            }
        };
        if let Some(priority) = &config.priority
            && !matches!(priority.as_str(), "urgent" | "high" | "medium" | "low")
        {
            return Err(Error::config(
                NAME,
                format!("[liveagent] `priority` `{priority}` must be urgent, high, medium or low"),
            ));
        }
        Ok(Self {
            info: ProviderInfo::new(NAME, "Cognigy Live Agent", capabilities()),
            config: Arc::new(config),
            client: Arc::new(client),
            auth,
            router: Arc::default(),
            capacity: events::DEFAULT_CAPACITY,
        })
    }

    /// Bounds the webhook deliveries kept for conversations whose `start` has not returned
    /// yet (DESIGN.md §7.2). Call before any session.
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

    fn custom_attributes(&self, request: &HandoverRequest) -> Map<String, Value> {
        let join = |a: &[String], b: &[String]| {
            let mut all: Vec<&str> = Vec::new();
            for item in a.iter().chain(b) {
                if !all.contains(&item.as_str()) {
                    all.push(item);
                }
            }
            all.join(",")
        };
        let mut attributes = self.config.custom_attributes.clone();
        for (key, value) in &request.routing.attributes {
            attributes.insert(key.clone(), value.clone());
        }
        let skills = join(&self.config.skills, &request.routing.skills);
        if !skills.is_empty() {
            attributes.insert("skills".to_owned(), json!(skills));
        }
        let languages = join(&self.config.languages, &request.routing.languages);
        if !languages.is_empty() {
            attributes.insert("languages".to_owned(), json!(languages));
        }
        attributes.insert("bot_session_id".to_owned(), json!(request.session_id));
        attributes
    }

    /// Registers the conversation for webhooks: call it as soon as its id is known.
    fn link(&self, conversation: u64) -> (Link<Item>, handover_core::EventStream) {
        Link::open(&self.router, conversation.to_string(), self.capacity)
    }

    fn open(
        &self,
        inner: Arc<Inner>,
        (link, stream): (Link<Item>, handover_core::EventStream),
        catch_up: bool,
    ) -> Session {
        let (commands_tx, commands) = mpsc::channel(4);
        *lock(&inner.commands) = Some(commands_tx);
        let task = Task { inner: inner.clone(), link, commands };
        tokio::spawn(task.run(catch_up));
        Session::new(inner, stream)
    }
}

struct Inner {
    info: ProviderInfo,
    config: Arc<LiveAgentConfig>,
    client: Arc<Client>,
    session_id: String,
    conversation: u64,
    contact: Contact,
    state: Mutex<State>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct State {
    agent: Option<Agent>,
    /// An agent wrote or is assigned: queue reports stop.
    served: bool,
    own_messages: Vec<u64>,
    /// The highest message id handled: a resumed session reads the messages after it.
    #[serde(default)]
    last_message: u64,
    /// The keys of every delivery this session handled (signed message ids or body
    /// digests), so a replay is dropped for as long as the session lives.
    #[serde(default)]
    seen: DedupSet,
    #[serde(flatten)]
    end: EndState,
}

impl Default for State {
    fn default() -> Self {
        Self {
            agent: None,
            served: false,
            own_messages: Vec::new(),
            last_message: 0,
            seen: DedupSet::unbounded(),
            end: EndState::default(),
        }
    }
}

enum Command {
    Closed(EndReason),
}

impl Inner {
    async fn note(&self, text: &str) -> Result<()> {
        let id = self.client.post_message(self.conversation, text, "outgoing", true, &random_echo_id()).await?;
        lock(&self.state).own_messages.extend(id);
        Ok(())
    }
}

/// An `echo_id` for a note (the desk echoes it in realtime events only; it deduplicates
/// nothing: chatwoot issue #15743).
fn random_echo_id() -> String {
    format!("handover-{}", uuid::Uuid::new_v4())
}

#[async_trait]
impl SessionHandle for Inner {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn send(&self, input: UserInput) -> Result<()> {
        // §8.4: a message to a resolved conversation would silently reopen it.
        if lock(&self.state).end.is_ended() {
            return Err(Error::session_ended(NAME, "send"));
        }
        match input {
            UserInput::Message { id, text } => {
                // Derived from the input's id: a resend carries the same echo id.
                let echo_id = handover_transport::ids::client_uuid(&self.conversation.to_string(), &id);
                let id = self.client.post_message(self.conversation, &text, "incoming", false, &echo_id).await?;
                lock(&self.state).own_messages.extend(id);
                Ok(())
            }
            // Shown to the agent, never to a channel: private notes.
            UserInput::Connected => self.note(UserInput::CONNECTED_TEXT).await,
            UserInput::Disconnected => self.note(UserInput::DISCONNECTED_TEXT).await,
            other => Err(Error::unsupported(NAME, other.kind())),
        }
    }

    /// Resolves the conversation from the bot side.
    async fn end(&self, reason: EndReason) -> Result<()> {
        if !lock(&self.state).end.begin_close() {
            return Ok(());
        }
        self.client.set_status(self.conversation, "resolved").await?;
        let commands = lock(&self.commands).clone();
        if let Some(commands) = commands {
            let _ = commands.send(Command::Closed(reason)).await;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<SessionSnapshot> {
        let snapshot = Snapshot {
            conversation: self.conversation,
            contact_id: self.contact.id,
            source_id: self.contact.source_id.clone(),
            state: lock(&self.state).clone(),
        };
        SessionSnapshot::new(NAME, &self.session_id, &snapshot)
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    conversation: u64,
    contact_id: u64,
    source_id: String,
    state: State,
}

struct Task {
    inner: Arc<Inner>,
    link: Link<Item>,
    commands: mpsc::Receiver<Command>,
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

impl Task {
    fn queue_interval(&self) -> Option<Duration> {
        let config = &self.inner.config;
        let intervals = [
            config.get_queue_position.then_some(config.queue_update_interval),
            config.get_estimated_wait_time.then_some(config.wait_time_update_interval),
        ];
        intervals.into_iter().flatten().min().map(|secs| Duration::from_secs(secs.max(1)))
    }

    async fn run(mut self, catch_up: bool) {
        if catch_up && self.resync().await == Flow::Stop {
            return self.finish();
        }
        let interval = self.queue_interval();
        let mut next_check = interval.map(|_| tokio::time::Instant::now());
        let events = self.link.events().clone();
        loop {
            let served = lock(&self.inner.state).served;
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
                    Some(item) => self.on_item(item).await,
                    None => Flow::Stop,
                },
                () = sleep_until(next_check.filter(|_| !served)) => {
                    next_check = interval.map(|i| handover_transport::time::deadline_after(tokio::time::Instant::now(), i));
                    self.report_queue().await
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
        if self.link.emit(event, first_end).await { Flow::Continue } else { Flow::Stop }
    }

    /// §7.1: the position is one plus the open, unassigned conversations of the inbox that
    /// are older than ours; the wait is estimated from it.
    async fn report_queue(&mut self) -> Flow {
        let mut older = 0u32;
        let mut ours_listed = false;
        for page in 1..=20 {
            let list = match self.inner.client.unassigned(page).await {
                Ok(list) => list,
                Err(error) => {
                    tracing::debug!(%error, "could not read the queue");
                    return Flow::Continue;
                }
            };
            for conversation in &list {
                match conversation["id"].as_u64() {
                    Some(id) if id == self.inner.conversation => ours_listed = true,
                    Some(id) if id < self.inner.conversation => older += 1,
                    _ => {}
                }
            }
            if list.len() < 25 {
                break;
            }
        }
        if !ours_listed {
            // Assigned (or resolved) meanwhile: the assignment event follows.
            return Flow::Continue;
        }
        let position = older + 1;
        let config = &self.inner.config;
        let estimated_wait = config
            .get_estimated_wait_time
            .then(|| Duration::from_secs(u64::from(position).saturating_mul(config.wait_per_position_secs)));
        let position = config.get_queue_position.then_some(position);
        self.emit(Event::Queued { position, estimated_wait }).await
    }

    /// A delivery from the webhook or the message list, once per signed key.
    async fn on_item(&mut self, Item { key, delivery }: Item) -> Flow {
        if !lock(&self.inner.state).seen.insert(&key) {
            tracing::debug!("dropping a replayed delivery");
            return Flow::Continue;
        }
        self.on_delivery(delivery).await
    }

    async fn on_delivery(&mut self, delivery: Delivery) -> Flow {
        match delivery {
            Delivery::AgentMessage { id, text, agent } => {
                {
                    let mut state = lock(&self.inner.state);
                    state.last_message = state.last_message.max(id);
                }
                if lock(&self.inner.state).own_messages.contains(&id) {
                    return Flow::Continue;
                }
                let agent =
                    if agent.name.is_some() { agent } else { lock(&self.inner.state).agent.clone().unwrap_or(agent) };
                lock(&self.inner.state).served = true;
                self.emit(Event::AgentMessage { id: id.to_string(), text, agent }).await
            }
            Delivery::Assigned(agent) => {
                let previous = {
                    let mut state = lock(&self.inner.state);
                    state.served = true;
                    state.agent.replace(agent.clone())
                };
                if let Some(previous) = previous.filter(|p| p.id != agent.id)
                    && self.emit(Event::AgentLeft { agent: previous, transfer: true }).await == Flow::Stop
                {
                    return Flow::Stop;
                }
                self.emit(Event::AgentJoined { agent }).await
            }
            Delivery::Unassigned => {
                let previous = {
                    let mut state = lock(&self.inner.state);
                    state.served = false;
                    state.agent.take()
                };
                match previous {
                    Some(agent) => self.emit(Event::AgentLeft { agent, transfer: true }).await,
                    None => Flow::Continue,
                }
            }
            Delivery::Resolved { status } => {
                let by = lock(&self.inner.state).end.ended_by(EndedBy::Agent);
                self.emit(Event::Ended { by, reason: Some(status) }).await
            }
            Delivery::Typing(on) => self.emit(Event::AgentTyping { on }).await,
            Delivery::Ignore(why) => {
                tracing::trace!(why, "ignoring a delivery");
                Flow::Continue
            }
        }
    }

    /// After a resume: messages the agent wrote while no session was attached (the desk
    /// sends each webhook once, §5.4), then the assignment and the status.
    async fn resync(&mut self) -> Flow {
        if self.backfill().await == Flow::Stop {
            return Flow::Stop;
        }
        let conversation = match self.inner.client.conversation(self.inner.conversation).await {
            Ok(conversation) => conversation,
            Err(error) => {
                tracing::warn!(%error, "could not re-read the conversation after a resume");
                return Flow::Continue;
            }
        };
        if let Some(status @ ("resolved" | "abandoned")) = conversation["status"].as_str() {
            return self.on_delivery(Delivery::Resolved { status: status.to_owned() }).await;
        }
        let assignee = &conversation["meta"]["assignee"];
        if assignee["id"].as_u64().is_some() {
            let mut agent = Agent::unknown();
            agent.name = assignee["available_name"].as_str().or_else(|| assignee["name"].as_str()).map(str::to_owned);
            agent.id = assignee["id"].as_u64().map(|id| id.to_string());
            let known = lock(&self.inner.state).agent.as_ref().is_some_and(|a| a.id == agent.id);
            if !known {
                return self.on_delivery(Delivery::Assigned(agent)).await;
            }
        }
        Flow::Continue
    }
}

impl Task {
    /// Reads the conversation's messages after the last one handled, page by page, and
    /// handles the agent's as if delivered (each once: the keys are the webhook's).
    async fn backfill(&mut self) -> Flow {
        loop {
            let after = lock(&self.inner.state).last_message;
            let messages = match self.inner.client.messages_after(self.inner.conversation, after).await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "could not read the messages written while the session was away");
                    return Flow::Continue;
                }
            };
            let mut newest = after;
            for message in &messages {
                let Some(id) = message["id"].as_u64() else { continue };
                newest = newest.max(id);
                let delivery = webhook::message(message);
                if matches!(delivery, Delivery::Ignore(_)) {
                    continue;
                }
                if self.on_item(Item { key: format!("message:{id}"), delivery }).await == Flow::Stop {
                    return Flow::Stop;
                }
            }
            {
                let mut state = lock(&self.inner.state);
                state.last_message = state.last_message.max(newest);
            }
            // A full page may have more behind it; anything else is the end.
            if messages.len() < 100 || newest == after {
                return Flow::Continue;
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn priority_of(config: &LiveAgentConfig, request: &HandoverRequest) -> Option<String> {
    config.priority.clone().or_else(|| match &request.routing.priority {
        Some(Priority::Named(name)) => Some(name.to_lowercase()),
        _ => None,
    })
}

#[async_trait]
impl Provider for LiveAgentProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        let user = &request.user;
        let contact =
            self.client.contact(&user.id, user.name.as_deref(), user.email.as_deref(), user.phone.as_deref()).await?;
        let (conversation, status) =
            self.client.create_conversation(&contact, &self.custom_attributes(&request)).await?;
        // Deliveries for the conversation reach this session from now on, even while the
        // calls below are still in flight (the desk may greet at once and never retries).
        let link = self.link(conversation);
        // §8.5: an inbox locked to one conversation may hand back a resolved one.
        if status != "open" {
            self.client.set_status(conversation, "open").await?;
        }
        if let Some(priority) = priority_of(&self.config, &request)
            && let Err(error) = self.client.set_priority(conversation, &priority).await
        {
            // §8.7: the priority must not abort the handover.
            tracing::warn!(%error, "the conversation's priority could not be set");
        }
        let inner = Arc::new(Inner {
            info: self.info.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
            session_id: request.session_id.clone(),
            conversation,
            contact,
            state: Mutex::default(),
            commands: Mutex::new(None),
        });
        let rendered = transcript::render(&request.transcript);
        if !rendered.is_empty() {
            let chunks = transcript::split(&rendered, NOTE_CHARS)
                .map_err(|e| Error::invalid_input(NAME, "send transcript", e.to_string()))?;
            for chunk in chunks {
                inner.note(chunk).await.map_err(|e| e.in_op("send transcript"))?;
            }
        }
        tracing::info!(conversation, "conversation created");
        Ok(self.open(inner, link, false))
    }

    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session> {
        let saved: Snapshot = snapshot.state_for(NAME)?;
        let inner = Arc::new(Inner {
            info: self.info.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
            session_id: snapshot.session_id().to_owned(),
            conversation: saved.conversation,
            contact: Contact { id: saved.contact_id, source_id: saved.source_id },
            state: Mutex::new(State { end: saved.state.end.resumed(), ..saved.state }),
            commands: Mutex::new(None),
        });
        let link = self.link(saved.conversation);
        Ok(self.open(inner, link, true).resumed_from(&snapshot))
    }

    /// Reads the inbox and its queue: proves the token, the account and the inbox.
    async fn check(&self) -> Result<CheckReport> {
        let inbox = self.client.inbox().await.map_err(|e| e.in_op("check account_id and inbox_id"))?;
        self.client.unassigned(1).await?;
        let channel = inbox["channel_type"].as_str().unwrap_or("unknown");
        let mut report = CheckReport::new()
            .verified(format!("base_url, api_access_token, account_id and inbox_id (a {channel} inbox)"));
        if channel != "Channel::Api" && channel != "unknown" {
            report = report.unverified("the inbox is not an API inbox: incoming messages may be refused");
        }
        Ok(report.unverified("webhook_secret or webhook_token: only a delivery from the desk proves it"))
    }

    /// §5: verify, parse, deduplicate, route. A verified delivery is acknowledged once a
    /// session has it or it is kept for one (the desk never retries: §5.4); unknown events
    /// and deliveries naming no conversation are acknowledged and dropped.
    async fn webhook(&self, request: WebhookRequest) -> WebhookReply {
        if request.method != "POST" {
            return WebhookReply::text(405, "POST only");
        }
        if let Err(error) = webhook::verify(&self.auth, &request, SystemTime::now()) {
            tracing::warn!(%error, "rejected a webhook");
            return WebhookReply::text(401, format!("webhook authentication failed: {error}"));
        }
        let parsed = match webhook::parse(&request.body) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::warn!(%error, "rejected a malformed webhook");
                return WebhookReply::text(400, error.message().to_owned());
            }
        };
        let Some(conversation) = parsed.conversation else {
            tracing::trace!("a delivery naming no conversation; nothing to do");
            return WebhookReply::ok();
        };
        if let Delivery::Ignore(why) = parsed.delivery {
            tracing::trace!(why, "webhook needs no session");
            return WebhookReply::ok();
        }
        let item = Item { key: parsed.dedup_key.clone(), delivery: parsed.delivery };
        let routed = self.router.deliver(&conversation.to_string(), &parsed.dedup_key, item, request.body.len()).await;
        WebhookReply::status(routed.status())
    }
}
