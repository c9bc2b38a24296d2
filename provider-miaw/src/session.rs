//! The provider and its sessions: start (token → SSE → conversation → transcript), relay,
//! back-fill, end, snapshot and resume.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{
    Agent, Capabilities, CheckReport, EndReason, EndedBy, Error, ErrorKind, Event, HandoverRequest, Provider,
    ProviderInfo, Result, Session, SessionBackend, SessionSnapshot, UserInput, transcript,
};
use handover_transport::dedup::DedupSet;
use handover_transport::events::{self, EndState, EventSender};
use handover_transport::reqwest::RequestBuilder;
use handover_transport::retry::RetryPolicy;
use handover_transport::sse::{SseConfig, SseConnect, SseItem, SseStream};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::auth::{AccessToken, Identity, is_verified_subject};
use crate::client::{Client, Sent};
use crate::config::MiawConfig;
use crate::events::{self as wire, Action, WireEntry};
use crate::{NAME, TRANSCRIPT_CHUNK_CHARS};

/// The version of this provider's snapshot state: raise it when the state's shape
/// changes (a snapshot in another version is refused on resume).
const STATE_VERSION: u32 = 1;

const SEEN_IDS: usize = 1024;
const SNAPSHOT_SEEN_IDS: usize = 256;
const BACKFILL_PAGE: u32 = 50;
const BACKFILL_MAX_PAGES: usize = 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Salesforce Messaging for In-App and Web.
///
/// One value serves any number of concurrent handovers; each gets its own access token
/// (a Messaging token belongs to one end user).
pub struct MiawProvider {
    info: ProviderInfo,
    config: Arc<MiawConfig>,
    client: Arc<Client>,
    identity: Arc<Identity>,
    sse: SseConfig,
    capacity: usize,
}

impl MiawProvider {
    /// Checks `config` and builds the provider (no I/O).
    pub fn new(config: MiawConfig) -> Result<Self> {
        config.validate()?;
        let identity = Identity::from_config(&config)?;
        let client = Client::new(&config, RetryPolicy::default())?;
        Ok(Self {
            info: ProviderInfo::new(NAME, "Salesforce Messaging for In-App and Web", capabilities()),
            config: Arc::new(config),
            client: Arc::new(client),
            identity: Arc::new(identity),
            sse: SseConfig::default(),
            capacity: events::DEFAULT_CAPACITY,
        })
    }

    /// Sets the retry policy of REST calls (tests shorten the backoff).
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        if let Some(client) = Arc::get_mut(&mut self.client) {
            client.retry = policy;
        }
        self
    }

    /// Sets the SSE reconnect policy and idle timeout.
    #[must_use]
    pub fn with_sse_config(mut self, config: SseConfig) -> Self {
        self.sse = config;
        self
    }

    /// Sets the capacity of each session's event channel.
    #[must_use]
    pub fn with_channel_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    async fn open(&self, inner: Arc<Inner>, last_event_id: Option<String>, catch_up: bool) -> Result<Session> {
        let mut sse = SseStream::new(Connector(inner.clone()), self.sse.clone(), last_event_id);
        // protocols/salesforce-miaw.md §2: the stream is open before anything can happen.
        match sse.next().await {
            Some(Ok(SseItem::Connected { .. })) => {}
            Some(Err(error)) => return Err(error),
            other => {
                return Err(Error::protocol(NAME, "open event stream", format!("unexpected first item {other:?}")));
            }
        }
        let (sender, stream) = events::channel(self.capacity);
        let (commands_tx, commands) = mpsc::channel(4);
        *lock(&inner.commands) = Some(commands_tx);
        Ok(Session::new(inner.clone(), stream)).inspect(|_| {
            tokio::spawn(run(inner, sse, sender, commands, catch_up));
        })
    }
}

/// What MIAW supports (§6.2: queue position payload is undocumented, EWT is).
pub fn capabilities() -> Capabilities {
    Capabilities::none()
        .with_typing(true)
        .with_estimated_wait(true)
        .with_participant_change(true)
        .with_resume(true)
        .with_max_message_chars(Some(TRANSCRIPT_CHUNK_CHARS))
}

/// Obtains an access token for `user_id`, refusing a silent guest fallback (§5).
async fn authenticate(client: &Client, identity: &Identity, user_id: &str) -> Result<(AccessToken, Option<String>)> {
    let response = match identity.identity_jwt(user_id)? {
        None => client.guest_token().await?,
        Some(jwt) => {
            let response = client.authenticated_token(&jwt).await?;
            let subject = response.subject().unwrap_or_default();
            if !is_verified_subject(&subject) {
                return Err(Error::unauthenticated(
                    NAME,
                    "get authenticated access token",
                    "Salesforce rejected the identity token and answered with a guest token; check the keyset, \
                     issuer, audience, key id and expiry of the identity JWT. The handover does not go on as a guest.",
                ));
            }
            response
        }
    };
    let last_event_id = response.last_event_id();
    Ok((AccessToken::new(SecretString::from(response.access_token)), last_event_id))
}

struct Inner {
    info: ProviderInfo,
    client: Arc<Client>,
    identity: Arc<Identity>,
    config: Arc<MiawConfig>,
    session_id: String,
    user_id: String,
    conversation_id: String,
    routing_attributes: Map<String, Value>,
    token: RwLock<AccessToken>,
    state: Mutex<State>,
    send_lock: tokio::sync::Mutex<()>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
}

struct State {
    last_event_id: Option<String>,
    watermark_ms: u64,
    seen: DedupSet,
    end: EndState,
}

enum Command {
    /// The bot side closed the conversation: end the stream with `Ended { by: User }`.
    Closed(EndReason),
}

impl Inner {
    fn token(&self) -> SecretString {
        self.token.read().unwrap_or_else(std::sync::PoisonError::into_inner).token.clone()
    }

    fn token_state(&self) -> AccessToken {
        self.token.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// A new access token for the same user (verified users only: a guest's new token is a
    /// new subject that cannot see the conversation).
    async fn refresh(&self) -> Result<()> {
        if !self.identity.renewable() {
            return Err(Error::unauthenticated(
                NAME,
                "renew access token",
                "the guest access token expired or was rejected, and guest tokens cannot be renewed; \
                 configure an identity token for handovers that outlast the token lifetime",
            ));
        }
        let (token, _) = authenticate(&self.client, &self.identity, &self.user_id).await?;
        tracing::debug!(conversation = %self.conversation_id, "renewed the access token");
        *self.token.write().unwrap_or_else(std::sync::PoisonError::into_inner) = token;
        Ok(())
    }

    /// Runs `call` with the current token; on 401 renews once and runs it again.
    async fn authorized<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match call(self.token()).await {
            Err(error) if error.kind() == ErrorKind::Unauthenticated => {
                self.refresh().await?;
                call(self.token()).await
            }
            other => other,
        }
    }

    /// Sends `text` with `message.id` derived from `input_id`: the same input always
    /// carries the same id (a correlation id; salesforce-miaw.md notes no documented
    /// deduplication on it), also when a 417 makes us send it again.
    async fn send_text(&self, input_id: &str, text: &str) -> Result<()> {
        let id = handover_transport::ids::client_uuid(&self.conversation_id, input_id);
        let id = id.as_str();
        let client = &self.client;
        let conversation = &self.conversation_id;
        let sent =
            self.authorized(|token| async move { client.send_message(&token, conversation, id, text, None).await });
        if sent.await? == Sent::Accepted {
            return Ok(());
        }
        // §3 #7: 417 means no messaging session; start one with the routing attributes.
        tracing::debug!(conversation = %self.conversation_id, "no messaging session (417); starting a new one");
        let attributes = &self.routing_attributes;
        let language = self.config.language.as_deref();
        let resent = self
            .authorized(|token| async move {
                client.send_message(&token, conversation, id, text, Some((attributes, language))).await
            })
            .await?;
        match resent {
            Sent::Accepted => Ok(()),
            Sent::NoMessagingSession => Err(Error::new(
                ErrorKind::SessionEnded,
                NAME,
                "send message",
                "Salesforce refused to start a new messaging session (417 twice)",
            )),
        }
    }

    fn mark_seen(&self, entry: &WireEntry) -> bool {
        let mut state = lock(&self.state);
        if let Some(at) = entry.transcripted_timestamp {
            state.watermark_ms = state.watermark_ms.max(at);
        }
        state.seen.insert(&entry.identifier)
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
            UserInput::Message { id, text } => self.send_text(&id, &text).await,
            UserInput::Typing { on } => {
                let client = &self.client;
                let conversation = &self.conversation_id;
                self.authorized(|token| async move { client.send_typing(&token, conversation, on).await }).await
            }
            UserInput::Connected => self.send_text(&uuid::Uuid::new_v4().to_string(), UserInput::CONNECTED_TEXT).await,
            UserInput::Disconnected => {
                self.send_text(&uuid::Uuid::new_v4().to_string(), UserInput::DISCONNECTED_TEXT).await
            }
            other => Err(Error::unsupported(NAME, other.kind())),
        }
    }

    async fn end(&self, reason: EndReason) -> Result<()> {
        if !lock(&self.state).end.begin_close() {
            return Ok(());
        }
        let client = &self.client;
        let conversation = &self.conversation_id;
        self.authorized(|token| async move { client.close_conversation(&token, conversation).await }).await?;
        let commands = lock(&self.commands).clone();
        if let Some(commands) = commands {
            let _ = commands.send(Command::Closed(reason)).await;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<SessionSnapshot> {
        let state = lock(&self.state);
        let seen: Vec<String> = state.seen.ids().map(str::to_owned).collect();
        let skip = seen.len().saturating_sub(SNAPSHOT_SEEN_IDS);
        let snapshot = Snapshot {
            conversation_id: self.conversation_id.clone(),
            user_id: self.user_id.clone(),
            last_event_id: state.last_event_id.clone(),
            watermark_ms: state.watermark_ms,
            seen: seen.into_iter().skip(skip).collect(),
            routing_attributes: self.routing_attributes.clone(),
        };
        drop(state);
        Ok(SessionSnapshot::new(NAME, STATE_VERSION, &self.session_id, &snapshot)?
            .with_secret("access_token", self.token().expose_secret()))
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    conversation_id: String,
    user_id: String,
    last_event_id: Option<String>,
    watermark_ms: u64,
    seen: Vec<String>,
    routing_attributes: Map<String, Value>,
}

struct Connector(Arc<Inner>);

#[async_trait]
impl SseConnect for Connector {
    fn provider(&self) -> &'static str {
        NAME
    }

    async fn request(&self, last_event_id: Option<&str>) -> Result<RequestBuilder> {
        Ok(self.0.client.sse_request(&self.0.token(), last_event_id))
    }

    async fn refresh_auth(&self) -> Result<()> {
        self.0.refresh().await
    }
}

/// The session task: reads the stream, back-fills after reconnects, renews the token.
async fn run(
    inner: Arc<Inner>,
    mut sse: SseStream<Connector>,
    sender: EventSender,
    mut commands: mpsc::Receiver<Command>,
    catch_up: bool,
) {
    if catch_up && !backfill(&inner, &sender).await.unwrap_or(true) {
        return;
    }
    loop {
        let renew_in = if inner.identity.renewable() { inner.token_state().renew_in() } else { None };
        let flow = tokio::select! {
            biased;
            () = sender.closed() => Flow::Stop,
            command = commands.recv() => match command {
                Some(Command::Closed(reason)) => {
                    emit(&inner, &sender, Event::Ended { by: EndedBy::User, reason: Some(reason.as_str().to_owned()) }).await
                }
                None => Flow::Continue,
            },
            item = sse.next() => match item {
                None => Flow::Stop,
                Some(Err(error)) => {
                    sender.fail(error).await;
                    Flow::Stop
                }
                Some(Ok(SseItem::Connected { reconnect: false })) => Flow::Continue,
                Some(Ok(SseItem::Connected { reconnect: true })) => match backfill(&inner, &sender).await {
                    Some(false) => Flow::Stop,
                    Some(true) => emit(&inner, &sender, Event::Resumed { gap: false }).await,
                    None => emit(&inner, &sender, Event::Resumed { gap: true }).await,
                },
                Some(Ok(SseItem::Disconnected)) => emit(&inner, &sender, Event::Reconnecting).await,
                Some(Ok(SseItem::Event(event))) => {
                    lock(&inner.state).last_event_id.clone_from(&event.id);
                    on_sse_event(&inner, &sender, &event.event, &event.data).await
                }
            },
            () = sleep(renew_in) => {
                if let Err(error) = inner.refresh().await {
                    tracing::warn!(%error, "could not renew the access token ahead of expiry");
                }
                Flow::Continue
            }
        };
        if flow == Flow::Stop {
            return;
        }
    }
}

async fn sleep(after: Option<Duration>) {
    match after {
        Some(after) => tokio::time::sleep(after).await,
        None => std::future::pending().await,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

async fn emit(inner: &Inner, sender: &EventSender, event: Event) -> Flow {
    if sender.emit(event, || lock(&inner.state).end.mark_ended()).await.is_continue() {
        Flow::Continue
    } else {
        Flow::Stop
    }
}

async fn on_sse_event(inner: &Inner, sender: &EventSender, name: &str, data: &str) -> Flow {
    if name == "ping" || !name.starts_with("CONVERSATION_") {
        tracing::trace!(event = name, "ignoring a non-conversation event");
        return Flow::Continue;
    }
    let envelope = match wire::parse_envelope(data) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::warn!(%error, event = name, "skipping an unreadable event");
            return Flow::Continue;
        }
    };
    if envelope.conversation_id != inner.conversation_id {
        tracing::trace!("ignoring an event of another conversation");
        return Flow::Continue;
    }
    on_entry(inner, sender, &envelope.conversation_entry, Some(name)).await
}

async fn on_entry(inner: &Inner, sender: &EventSender, entry: &WireEntry, event: Option<&str>) -> Flow {
    if !inner.mark_seen(entry) {
        tracing::trace!(id = %entry.identifier, "dropping a repeated entry");
        return Flow::Continue;
    }
    let actions = match wire::interpret(entry, event) {
        Ok(actions) => actions,
        Err(error) => {
            tracing::warn!(%error, "skipping an unreadable entry");
            return Flow::Continue;
        }
    };
    for action in actions {
        let flow = match action {
            Action::Emit(event) => emit(inner, sender, event).await,
            Action::Ignore(why) => {
                tracing::trace!(id = %entry.identifier, entry_type = %entry.entry_type, why, "ignoring entry");
                Flow::Continue
            }
            Action::AgentRemoved(agent) => agent_removed(inner, sender, agent).await,
            Action::Closed => {
                emit(inner, sender, Event::Ended { by: EndedBy::User, reason: Some("conversation closed".to_owned()) })
                    .await
            }
            Action::SessionEnded => {
                let by = lock(&inner.state).end.ended_by(EndedBy::Agent);
                emit(inner, sender, Event::Ended { by, reason: Some("session ended".to_owned()) }).await
            }
            Action::RoutingFailed(reason) => {
                lock(&inner.state).end.mark_ended();
                sender
                    .fail(Error::protocol(
                        NAME,
                        "route conversation",
                        format!("Salesforce could not route the conversation: {reason}"),
                    ))
                    .await;
                Flow::Stop
            }
        };
        if flow == Flow::Stop {
            return Flow::Stop;
        }
    }
    Flow::Continue
}

/// §9: a removed agent left for good only when the routing status says `NEEDS_ROUTING`;
/// `TRANSFER` (moving), `ROUTED` (already with the next agent) and `INITIAL` keep the
/// handover open.
async fn agent_removed(inner: &Inner, sender: &EventSender, agent: Agent) -> Flow {
    let client = &inner.client;
    let conversation = &inner.conversation_id;
    let status = inner.authorized(|token| async move { client.routing_status(&token, conversation).await }).await;
    let transfer = match status.as_deref() {
        Ok("NEEDS_ROUTING") => false,
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(%error, "could not tell a transfer from a leave; assuming the agent left");
            let flow = emit(inner, sender, Event::AgentLeft { agent, transfer: false }).await;
            return flow;
        }
    };
    if !transfer && inner.config.end_on_participant_change {
        let flow = emit(inner, sender, Event::AgentLeft { agent, transfer: false }).await;
        if flow == Flow::Stop {
            return flow;
        }
        return emit(inner, sender, Event::Ended { by: EndedBy::Agent, reason: Some("the agent left".to_owned()) })
            .await;
    }
    emit(inner, sender, Event::AgentLeft { agent, transfer }).await
}

/// Fetches entries from the watermark on and handles the unseen ones. `Some(true)`: done;
/// `Some(false)`: the session ended or the consumer left; `None`: back-fill failed.
async fn backfill(inner: &Inner, sender: &EventSender) -> Option<bool> {
    let client = &inner.client;
    let conversation = &inner.conversation_id;
    for _ in 0..BACKFILL_MAX_PAGES {
        let start = lock(&inner.state).watermark_ms;
        let start = (start > 0).then_some(start);
        let page = match inner
            .authorized(|token| async move { client.entries(&token, conversation, start, BACKFILL_PAGE).await })
            .await
        {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "back-fill after reconnect failed; events may be missing");
                return None;
            }
        };
        let full = page.len() >= BACKFILL_PAGE as usize;
        let mut sorted = page;
        sorted.sort_by_key(|e| e.transcripted_timestamp.unwrap_or(0));
        let mut new = 0;
        for entry in &sorted {
            if lock(&inner.state).seen.contains(&entry.identifier) {
                continue;
            }
            new += 1;
            if on_entry(inner, sender, entry, None).await == Flow::Stop {
                return Some(false);
            }
        }
        if !full || new == 0 {
            return Some(true);
        }
    }
    Some(true)
}

/// Merges the configured routing attributes with the request's (the request wins).
fn routing_attributes(config: &MiawConfig, request: &HandoverRequest) -> Map<String, Value> {
    let mut attributes = config.routing_attributes.clone();
    for (key, value) in &request.routing.attributes {
        attributes.insert(key.clone(), value.clone());
    }
    attributes
}

#[async_trait]
impl Provider for MiawProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        if request.user.id.trim().is_empty() {
            return Err(Error::invalid_input(NAME, "start", "the end user needs an id"));
        }
        let (token, last_event_id) = authenticate(&self.client, &self.identity, &request.user.id).await?;
        let conversation_id = uuid::Uuid::new_v4().to_string();
        let inner = Arc::new(Inner {
            info: self.info.clone(),
            client: self.client.clone(),
            identity: self.identity.clone(),
            config: self.config.clone(),
            session_id: request.session_id.clone(),
            user_id: request.user.id.clone(),
            conversation_id: conversation_id.clone(),
            routing_attributes: routing_attributes(&self.config, &request),
            token: RwLock::new(token),
            state: Mutex::new(State {
                last_event_id: last_event_id.clone(),
                watermark_ms: 0,
                seen: DedupSet::new(SEEN_IDS),
                end: EndState::default(),
            }),
            send_lock: tokio::sync::Mutex::new(()),
            commands: Mutex::new(None),
        });
        let session = self.open(inner.clone(), last_event_id, false).await?;
        let language = self.config.language.clone().or_else(|| request.user.language.clone());
        let client = &self.client;
        let attributes = &inner.routing_attributes;
        let language = language.as_deref();
        let conversation = &conversation_id;
        inner
            .authorized(
                |token| async move { client.create_conversation(&token, conversation, attributes, language).await },
            )
            .await?;
        tracing::info!(conversation = %conversation_id, "conversation created");
        if self.config.send_transcript_as_first_message && !request.transcript.is_empty() {
            let text = transcript::render(&request.transcript);
            let chunks = transcript::split(&text, TRANSCRIPT_CHUNK_CHARS)
                .map_err(|e| Error::invalid_input(NAME, "send transcript", e.to_string()))?;
            for (n, chunk) in chunks.into_iter().enumerate() {
                if let Err(error) = inner.send_text(&format!("transcript-{n}"), chunk).await {
                    let _ = session.end(EndReason::Closed).await;
                    return Err(error.in_op("send transcript"));
                }
            }
        }
        Ok(session)
    }

    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session> {
        let state: Snapshot = snapshot.state_for(NAME, STATE_VERSION)?;
        let token = AccessToken::new(SecretString::from(snapshot.require_secret(NAME, "access_token")?.to_owned()));
        let mut seen = DedupSet::new(SEEN_IDS);
        seen.extend(&state.seen);
        let inner = Arc::new(Inner {
            info: self.info.clone(),
            client: self.client.clone(),
            identity: self.identity.clone(),
            config: self.config.clone(),
            session_id: snapshot.session_id().to_owned(),
            user_id: state.user_id,
            conversation_id: state.conversation_id,
            routing_attributes: state.routing_attributes,
            token: RwLock::new(token.clone()),
            state: Mutex::new(State {
                last_event_id: state.last_event_id.clone(),
                watermark_ms: state.watermark_ms,
                seen,
                end: EndState::default(),
            }),
            send_lock: tokio::sync::Mutex::new(()),
            commands: Mutex::new(None),
        });
        if token.expires_at.is_some_and(|exp| exp <= crate::auth::unix_now()) {
            inner.refresh().await?;
        }
        Ok(self.open(inner, state.last_event_id, true).await?.resumed_from(&snapshot))
    }

    /// Takes an access token as the deployment's users would: proves the host, the org and
    /// the deployment (and the identity setup, when configured).
    async fn check(&self) -> Result<CheckReport> {
        let probe_user = "handover-check";
        authenticate(&self.client, &self.identity, probe_user).await?;
        let report = CheckReport::new()
            .verified("scrt_url, org_id and es_developer_name: Salesforce issued an access token for the deployment");
        let report = if self.identity.renewable() {
            report.verified("the identity token or signing key: Salesforce accepted it for a verified user")
        } else {
            report.unverified("identity: none is configured, so handovers run as unverified guests")
        };
        Ok(report.unverified(
            "routing_attributes and the routing flow: only a conversation shows where Salesforce routes it",
        ))
    }
}
