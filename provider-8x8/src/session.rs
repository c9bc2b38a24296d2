//! The provider, its webhook handler and its sessions.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use handover_core::{
    Agent, Capabilities, CheckReport, EndReason, EndedBy, Error, Event, HandoverRequest, Provider, ProviderInfo,
    Result, Session, SessionBackend, SessionSnapshot, Speaker, UserInput, WebhookReply, WebhookRequest, transcript,
};
use handover_transport::dedup::DedupSet;
use handover_transport::events::{self, EndState};
use handover_transport::push::{Link, PendingLimits, PushRouter};
use handover_transport::retry::RetryPolicy;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::NAME;
use crate::client::Client;
use crate::config::EightByEightConfig;
use crate::jws::{self, DetachedJws, JwsError, KeyCache};
use crate::webhook::{self, Delivery};

/// The version of this provider's snapshot state: raise it when the state's shape
/// changes (a snapshot in another version is refused on resume).
const STATE_VERSION: u32 = 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// §5.1: at most 200 history messages and 30 additional properties.
const MAX_HISTORY: usize = 200;
const MAX_PROPERTIES: usize = 30;

/// The languages the Gateway routes on (§5.1).
const LANGUAGES: [&str; 21] = [
    "en", "ru", "de", "ja", "es", "fr", "pt", "it", "pl", "hr", "nl", "ar", "da", "ko", "no", "sv", "vi", "cy", "th",
    "zh-CN", "zh-TW",
];

/// 8x8 Contact Center through the Chat Gateway v1.
pub struct EightByEightProvider {
    info: ProviderInfo,
    config: Arc<EightByEightConfig>,
    client: Arc<Client>,
    keys: KeyCache,
    router: Arc<PushRouter<Item>>,
    capacity: usize,
}

/// What 8x8 supports. The Gateway reports queueing without a position or wait, and has
/// no "stopped typing" call (the indicator times out).
pub fn capabilities() -> Capabilities {
    Capabilities::none().with_typing(true).with_participant_change(true).with_resume(true)
}

/// A delivery on its way to a session.
#[derive(Clone, Debug)]
struct Item {
    event_id: String,
    delivery: Delivery,
}

impl EightByEightProvider {
    /// Checks `config` and builds the provider (no I/O).
    pub fn new(config: EightByEightConfig) -> Result<Self> {
        let client = Client::new(&config)?;
        config.validate()?;
        let keys = KeyCache::new(config.webhook_key_ids.clone(), config.key_fetches_per_minute);
        Ok(Self {
            info: ProviderInfo::new(NAME, "8x8 Contact Center", capabilities()),
            config: Arc::new(config),
            client: Arc::new(client),
            keys,
            router: Arc::default(),
            capacity: events::DEFAULT_CAPACITY,
        })
    }

    /// Sets the retry policy of API calls (tests shorten it).
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        if let Some(client) = Arc::get_mut(&mut self.client) {
            client.retry = policy;
        }
        self
    }

    /// Bounds the webhook deliveries kept for conversations whose `start` has not returned
    /// yet (DESIGN.md §7.2). Call before any session.
    #[must_use]
    pub fn with_pending_limits(mut self, limits: PendingLimits) -> Self {
        self.router = Arc::new(PushRouter::with_limits(4096, limits));
        self
    }

    /// The create-conversation body (§5.1) for `request`.
    pub fn create_body(&self, request: &HandoverRequest) -> Value {
        create_body(&self.config, request)
    }

    /// Registers the conversation for webhooks: call it as soon as its id is known.
    fn link(&self, conversation: &str) -> (Link<Item>, handover_core::EventStream) {
        Link::open(&self.router, conversation, self.capacity)
    }

    fn open(
        &self,
        inner: Arc<Inner>,
        (link, stream): (Link<Item>, handover_core::EventStream),
        catch_up: bool,
    ) -> Session {
        let (commands_tx, commands) = mpsc::channel(4);
        *lock(&inner.commands) = Some(commands_tx);
        let task = Task { inner: inner.clone(), link, commands, pending_leave: None };
        tokio::spawn(task.run(catch_up));
        Session::new(inner, stream)
    }

    /// §6.3: the detached JWS over the body's CRC32 and the delivery headers.
    async fn verify(&self, request: &WebhookRequest) -> Result<(), JwsError> {
        let signature = DetachedJws::parse(request.header(jws::SIGNATURE_HEADER))?;
        let payload = jws::signed_payload(&request.body, |name| request.header(name))?;
        let key = self.keys.get(&signature.kid, &self.client).await?;
        signature.verify(&payload, &key)?;
        // Checked after the signature, so a forged time cannot pass.
        let window = Duration::from_secs(self.config.webhook_replay_window_secs);
        jws::check_transmission_time(request.header("x-8x8-transmission-time"), window, SystemTime::now())
    }
}

/// Maps a bot-side language (`en-US`, `zh_tw`, `PT`) to one the Gateway accepts.
fn language(tag: &str) -> Option<&'static str> {
    let tag = tag.trim().replace('_', "-");
    let exact = LANGUAGES.iter().find(|l| l.eq_ignore_ascii_case(&tag));
    let primary = tag.split('-').next().unwrap_or_default();
    exact.or_else(|| LANGUAGES.iter().find(|l| !l.contains('-') && l.eq_ignore_ascii_case(primary))).copied()
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn create_body(config: &EightByEightConfig, request: &HandoverRequest) -> Value {
    let user = &request.user;
    let mut user_json = Map::new();
    user_json.insert("userId".into(), json!(user.id));
    for (key, value) in [("name", &user.name), ("email", &user.email), ("phone", &user.phone)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            user_json.insert(key.into(), json!(value));
        }
    }
    let wanted = user.language.iter().chain(&request.routing.languages);
    if let Some(language) = wanted.filter_map(|l| language(l)).next() {
        user_json.insert("language".into(), json!(language));
    }
    let mut properties: Vec<(String, String)> =
        config.additional_properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (key, value) in &request.routing.attributes {
        properties.push((key.clone(), text_of(value)));
    }
    if !request.routing.skills.is_empty() {
        properties.push(("skills".into(), request.routing.skills.join(",")));
    }
    if let Some(priority) = &request.routing.priority {
        properties.push(("priority".into(), text_of(&serde_json::to_value(priority).unwrap_or(Value::Null))));
    }
    properties.push(("botSessionId".into(), request.session_id.clone()));
    user_json.insert("additionalProperties".into(), Value::Array(fold_properties(properties)));

    let mut body = json!({ "channelId": config.channel_id, "user": user_json });
    if let Some(queue) = config.queue_id.as_deref().filter(|q| !q.is_empty()) {
        body["assignment"] = json!({ "type": "queue", "id": queue });
    }
    let history = history(&request.transcript);
    if !history.is_empty() {
        body["history"] = json!({ "messages": history });
    }
    merge(&mut body, &Value::Object(config.json_properties.clone()));
    body
}

/// At most 30 entries: the overflow goes into the last one, so nothing is dropped.
fn fold_properties(properties: Vec<(String, String)>) -> Vec<Value> {
    let entry = |k: &str, v: &str| json!({ "key": k, "value": v });
    if properties.len() <= MAX_PROPERTIES {
        return properties.iter().map(|(k, v)| entry(k, v)).collect();
    }
    let (kept, rest) = properties.split_at(MAX_PROPERTIES - 1);
    let mut out: Vec<Value> = kept.iter().map(|(k, v)| entry(k, v)).collect();
    let folded: Vec<String> = rest.iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.push(entry("more", &folded.join("; ")));
    out
}

/// The transcript as history messages; beyond 200, the oldest lines are rendered into the
/// first message.
fn history(entries: &[handover_core::TranscriptEntry]) -> Vec<Value> {
    let entries: Vec<&handover_core::TranscriptEntry> = entries.iter().filter(|e| !e.text.trim().is_empty()).collect();
    let message = |e: &handover_core::TranscriptEntry| match e.from {
        Speaker::User => json!({ "authorType": "user", "text": e.text }),
        Speaker::Bot => json!({ "authorType": "bot", "text": e.text }),
        Speaker::Agent => json!({ "authorType": "bot", "text": format!("{}: {}", e.from.label(), e.text) }),
    };
    if entries.len() <= MAX_HISTORY {
        return entries.into_iter().map(message).collect();
    }
    let split = entries.len() - (MAX_HISTORY - 1);
    let older: Vec<handover_core::TranscriptEntry> = entries[..split].iter().map(|e| (*e).clone()).collect();
    let mut out = vec![json!({ "authorType": "bot", "text": transcript::render(&older) })];
    out.extend(entries[split..].iter().map(|e| message(e)));
    out
}

/// Merges `extra` into `body`: objects key by key, `additionalProperties` arrays appended,
/// anything else replaced.
fn merge(body: &mut Value, extra: &Value) {
    let (Value::Object(target), Value::Object(extra)) = (body, extra) else { return };
    for (key, value) in extra {
        match (target.get_mut(key), value) {
            (Some(existing @ Value::Object(_)), Value::Object(_)) => merge(existing, value),
            (Some(Value::Array(existing)), Value::Array(more)) if key == "additionalProperties" => {
                existing.extend(more.iter().cloned());
            }
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

struct Inner {
    info: ProviderInfo,
    config: Arc<EightByEightConfig>,
    client: Arc<Client>,
    session_id: String,
    conversation: String,
    state: Mutex<State>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct State {
    agent: Option<Agent>,
    /// A `TRANSFER` came: the next agent leave is not the end.
    transfer_pending: bool,
    #[serde(flatten)]
    end: EndState,
    /// The event ids of every delivery handled (the signature covers them), oldest first:
    /// a replay is dropped for as long as the session lives.
    #[serde(default)]
    seen: DedupSet,
}

impl Default for State {
    fn default() -> Self {
        Self { agent: None, transfer_pending: false, end: EndState::default(), seen: DedupSet::unbounded() }
    }
}

enum Command {
    Closed(EndReason),
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
            UserInput::Message { text, .. } => self.client.send_message(&self.conversation, "user", &text).await,
            UserInput::Typing { on: true } => self.client.typing(&self.conversation).await,
            // The Gateway has no "stopped typing": the agent's indicator times out.
            UserInput::Typing { on: false } => Ok(()),
            // Shown to the agent as bot lines (the user's side of a Chat API channel is us).
            UserInput::Connected => {
                self.client.send_message(&self.conversation, "bot", UserInput::CONNECTED_TEXT).await
            }
            UserInput::Disconnected => {
                self.client.send_message(&self.conversation, "bot", UserInput::DISCONNECTED_TEXT).await
            }
            other => Err(Error::unsupported(NAME, other.kind())),
        }
    }

    /// Removes the user, which ends the interaction (§3 step 7).
    async fn end(&self, reason: EndReason) -> Result<()> {
        if !lock(&self.state).end.begin_close() {
            return Ok(());
        }
        self.client.remove_user(&self.conversation).await?;
        let commands = lock(&self.commands).clone();
        if let Some(commands) = commands {
            let _ = commands.send(Command::Closed(reason)).await;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<SessionSnapshot> {
        let snapshot = Snapshot { conversation: self.conversation.clone(), state: lock(&self.state).clone() };
        SessionSnapshot::new(NAME, STATE_VERSION, &self.session_id, &snapshot)
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    conversation: String,
    state: State,
}

struct Task {
    inner: Arc<Inner>,
    link: Link<Item>,
    commands: mpsc::Receiver<Command>,
    /// An agent left without a `TRANSFER`: the end, unless a transfer or the next agent
    /// shows up before the deadline (deliveries may arrive out of order).
    pending_leave: Option<(Agent, Instant)>,
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
            let deadline = self.pending_leave.as_ref().map(|(_, at)| *at);
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
                    Some(item) => self.on_delivery(item).await,
                    None => Flow::Stop,
                },
                () = sleep_until(deadline) => self.agent_finished().await,
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

    /// The agent's display name: from the event, else the configured roster.
    fn named(&self, mut agent: Agent) -> Agent {
        if agent.name.is_none()
            && let Some(id) = &agent.id
        {
            agent.name = self.inner.config.agent_names.get(id).cloned();
        }
        agent
    }

    async fn on_delivery(&mut self, item: Item) -> Flow {
        if !item.event_id.is_empty() && !lock(&self.inner.state).seen.insert(&item.event_id) {
            tracing::debug!("dropping a replayed delivery");
            return Flow::Continue;
        }
        match item.delivery {
            Delivery::Queued { queue } => {
                tracing::debug!(queue = queue.as_deref().unwrap_or("?"), "queued");
                self.emit(Event::Queued { position: None, estimated_wait: None }).await
            }
            Delivery::AgentJoined(agent) => self.agent_joined(self.named(agent)).await,
            Delivery::AgentLeft { id } => self.agent_left(id).await,
            Delivery::Transfer => {
                if let Some((agent, _)) = self.pending_leave.take() {
                    return self.emit(Event::AgentLeft { agent, transfer: true }).await;
                }
                lock(&self.inner.state).transfer_pending = true;
                Flow::Continue
            }
            Delivery::AgentMessage { text, agent } => {
                let agent = self.named(agent);
                let current = lock(&self.inner.state).agent.clone();
                let agent = match (&current, &self.pending_leave) {
                    (Some(current), _) if current.id == agent.id || agent.id.is_none() => current.clone(),
                    (_, Some((leaving, _))) if leaving.id == agent.id => leaving.clone(),
                    // §8.3: a message may overtake the join it follows.
                    (None, None) => {
                        if self.agent_joined(agent.clone()).await == Flow::Stop {
                            return Flow::Stop;
                        }
                        agent
                    }
                    _ => agent,
                };
                self.emit(Event::AgentMessage { id: item.event_id, text, agent }).await
            }
            Delivery::Typing(on) => self.emit(Event::AgentTyping { on }).await,
            Delivery::UserLeft => {
                if let Some((agent, _)) = self.pending_leave.take()
                    && self.emit(Event::AgentLeft { agent, transfer: false }).await == Flow::Stop
                {
                    return Flow::Stop;
                }
                let by = lock(&self.inner.state).end.ended_by(EndedBy::System);
                self.emit(Event::Ended { by, reason: Some("the user was removed from the conversation".to_owned()) })
                    .await
            }
            Delivery::Verify => Flow::Continue,
            Delivery::Ignore(why) => {
                tracing::trace!(why, "ignoring a delivery");
                Flow::Continue
            }
        }
    }

    async fn agent_joined(&mut self, agent: Agent) -> Flow {
        if let Some((leaving, _)) = self.pending_leave.take()
            && leaving.id != agent.id
            && self.emit(Event::AgentLeft { agent: leaving, transfer: true }).await == Flow::Stop
        {
            return Flow::Stop;
        }
        let previous = {
            let mut state = lock(&self.inner.state);
            state.transfer_pending = false;
            state.agent.replace(agent.clone())
        };
        if let Some(previous) = previous {
            if previous.id == agent.id {
                return Flow::Continue;
            }
            if self.emit(Event::AgentLeft { agent: previous, transfer: true }).await == Flow::Stop {
                return Flow::Stop;
            }
        }
        self.emit(Event::AgentJoined { agent }).await
    }

    async fn agent_left(&mut self, id: Option<String>) -> Flow {
        let (agent, transfer) = {
            let mut state = lock(&self.inner.state);
            let Some(current) = &state.agent else { return Flow::Continue };
            // A stale leave of an earlier agent (its successor is already in).
            if id.is_some() && current.id.is_some() && current.id != id {
                return Flow::Continue;
            }
            let transfer = std::mem::take(&mut state.transfer_pending);
            (state.agent.take().unwrap_or_else(Agent::unknown), transfer)
        };
        if transfer {
            return self.emit(Event::AgentLeft { agent, transfer: true }).await;
        }
        let grace = Duration::from_millis(self.inner.config.transfer_grace_ms);
        self.pending_leave = Some((agent, Instant::now() + grace));
        Flow::Continue
    }

    /// The agent left and no transfer or next agent followed: the agent finished.
    async fn agent_finished(&mut self) -> Flow {
        let Some((agent, _)) = self.pending_leave.take() else { return Flow::Continue };
        if self.emit(Event::AgentLeft { agent, transfer: false }).await == Flow::Stop {
            return Flow::Stop;
        }
        if self.inner.config.leave_after_agent
            && let Err(error) = self.inner.client.remove_user(&self.inner.conversation).await
        {
            tracing::warn!(%error, "could not remove the user after the agent left");
        }
        self.emit(Event::Ended { by: EndedBy::Agent, reason: Some("the agent left the conversation".to_owned()) }).await
    }

    /// After a resume: the agent may have joined or left, or the user been removed.
    async fn resync(&mut self) -> Flow {
        let participants = match self.inner.client.participants(&self.inner.conversation).await {
            Ok(participants) => participants,
            Err(error) => {
                tracing::warn!(%error, "could not re-read the participants after a resume");
                return Flow::Continue;
            }
        };
        if participants.iter().any(|p| p.kind == "user" && p.removed) {
            return self.on_delivery(Item { event_id: String::new(), delivery: Delivery::UserLeft }).await;
        }
        let present = participants.iter().find(|p| p.kind == "agent" && !p.removed);
        let known = lock(&self.inner.state).agent.clone();
        match (present, known) {
            (Some(p), known) if known.as_ref().and_then(|k| k.id.as_deref()) != Some(p.id.as_str()) => {
                let mut agent = Agent::unknown();
                agent.id = Some(p.id.clone());
                self.agent_joined(self.named(agent)).await
            }
            (None, Some(known)) => self.agent_left(known.id).await,
            _ => Flow::Continue,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl Provider for EightByEightProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        let body = self.create_body(&request);
        let conversation = self.client.create_conversation(&body).await?;
        let link = self.link(&conversation);
        tracing::info!(%conversation, "conversation created");
        let inner = Arc::new(Inner {
            info: self.info.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
            session_id: request.session_id.clone(),
            conversation,
            state: Mutex::default(),
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
            conversation: saved.conversation,
            state: Mutex::new(State { end: saved.state.end.resumed(), ..saved.state }),
            commands: Mutex::new(None),
        });
        let link = self.link(&inner.conversation);
        Ok(self.open(inner, link, true).resumed_from(&snapshot))
    }

    /// Reads the configured channel: proves the key, the tenant and the channel id.
    async fn check(&self) -> Result<CheckReport> {
        self.client.channel(&self.config.channel_id).await?;
        let mut report = CheckReport::new().verified("base_url, api_key, tenant and channel_id: the channel was read");
        if self.config.queue_id.is_some() {
            report = report.unverified("queue_id: only a conversation shows that it routes");
        }
        Ok(report.unverified("the webhook signing keys: only a delivery from 8x8 proves them"))
    }

    /// §6: verify the signature, parse, deduplicate on `x-8x8-event-id` (which the
    /// signature covers), route. A verified delivery for a conversation no session has
    /// registered yet is kept for it; deliveries naming no conversation, and unknown
    /// events, are acknowledged and dropped.
    async fn webhook(&self, request: WebhookRequest) -> WebhookReply {
        if request.method != "POST" {
            return WebhookReply::text(405, "POST only");
        }
        if let Err(error) = self.verify(&request).await {
            tracing::warn!(%error, "rejected a webhook");
            return WebhookReply::text(error.status(), format!("webhook signature check failed: {error}"));
        }
        let parsed = match webhook::parse(&request.body) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::warn!(%error, "rejected a malformed webhook");
                return WebhookReply::text(400, error.message().to_owned());
            }
        };
        let (Some(conversation), event_id) = (parsed.conversation, request.header("x-8x8-event-id")) else {
            tracing::trace!("a delivery naming no conversation; nothing to do");
            return WebhookReply::ok();
        };
        if let Delivery::Ignore(why) = parsed.delivery {
            tracing::trace!(why, "webhook needs no session");
            return WebhookReply::ok();
        }
        // The signature covers the event id, so it is present here.
        let event_id = event_id.unwrap_or_default().to_owned();
        let item = Item { event_id: event_id.clone(), delivery: parsed.delivery };
        let routed = self.router.deliver(&conversation, &event_id, item, request.body.len()).await;
        WebhookReply::status(routed.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handover_core::{EndUser, Routing, TranscriptEntry};

    #[test]
    fn languages_map_to_the_allowed_list() {
        assert_eq!(language("en-US"), Some("en"));
        assert_eq!(language("zh_tw"), Some("zh-TW"));
        assert_eq!(language("PT-br"), Some("pt"));
        assert_eq!(language("tlh"), None);
    }

    #[test]
    fn properties_beyond_thirty_are_folded_not_dropped() {
        let many: Vec<(String, String)> = (0..33).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
        let folded = fold_properties(many);
        assert_eq!(folded.len(), 30);
        assert_eq!(folded[28], json!({ "key": "k28", "value": "v28" }));
        assert_eq!(folded[29], json!({ "key": "more", "value": "k29=v29; k30=v30; k31=v31; k32=v32" }));
    }

    #[test]
    fn long_transcripts_keep_every_line_within_two_hundred_messages() {
        let lines: Vec<TranscriptEntry> = (0..205)
            .map(|i| TranscriptEntry::new(if i % 2 == 0 { Speaker::User } else { Speaker::Bot }, format!("line {i}")))
            .collect();
        let history = history(&lines);
        assert_eq!(history.len(), 200);
        let first = history[0]["text"].as_str().unwrap();
        for i in 0..6 {
            assert!(first.contains(&format!("line {i}\n")) || first.ends_with(&format!("line {i}")), "{first}");
        }
        assert_eq!(history[1], json!({ "authorType": "user", "text": "line 6" }));
        assert_eq!(history[199], json!({ "authorType": "user", "text": "line 204" }));
    }

    #[test]
    fn json_properties_merge_into_the_body() {
        let mut config = EightByEightConfig::new("k", "chan");
        config.json_properties = serde_json::from_value(json!({
            "user": { "company": "ACME", "additionalProperties": [{ "key": "tier", "value": "gold" }] },
            "assignment": { "type": "script", "id": "s1" },
        }))
        .unwrap();
        config.queue_id = Some("q1".into());
        let request = HandoverRequest::new("s-1", EndUser::new("u-1").with_name("Jo"))
            .with_routing(Routing::new().with_skills(["billing"]));
        let body = create_body(&config, &request);
        assert_eq!(body["user"]["company"], "ACME");
        assert_eq!(body["user"]["name"], "Jo");
        assert_eq!(body["assignment"], json!({ "type": "script", "id": "s1" }));
        assert_eq!(
            body["user"]["additionalProperties"],
            json!([
                { "key": "skills", "value": "billing" },
                { "key": "botSessionId", "value": "s-1" },
                { "key": "tier", "value": "gold" },
            ])
        );
        assert!(body.get("history").is_none());
    }
}
