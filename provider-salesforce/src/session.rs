//! The provider and its sessions: `SessionId`, `ChasitorInit`, one long-poll loop, sends
//! gated on `ChatEstablished`, failover, end, snapshot and resume.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{
    Agent, Capabilities, CheckReport, EndReason, EndedBy, Error, ErrorKind, Event, HandoverRequest, Provider,
    ProviderInfo, Result, Session, SessionBackend, SessionSnapshot, UserInput, transcript,
};
use handover_transport::CancellationToken;
use handover_transport::events::{self, EndState, EventSender};
use handover_transport::longpoll::{LongPoll, LongPollConfig, PollOutcome};
use handover_transport::retry::RetryPolicy;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::NAME;
use crate::client::{Client, Keys, Polled, Posted, SessionInfo};
use crate::config::SalesforceConfig;
use crate::events::{self as wire, Action};

/// The version of this provider's snapshot state: raise it when the state's shape
/// changes (a snapshot in another version is refused on resume).
const STATE_VERSION: u32 = 1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Salesforce Chat (the legacy Live Agent REST API).
pub struct SalesforceProvider {
    info: ProviderInfo,
    config: Arc<SalesforceConfig>,
    client: Arc<Client>,
    poll: LongPollConfig,
    capacity: usize,
}

/// What Salesforce Chat supports.
pub fn capabilities() -> Capabilities {
    Capabilities::none()
        .with_typing(true)
        .with_queue_position(true)
        .with_estimated_wait(true)
        .with_participant_change(true)
        .with_resume(true)
}

impl SalesforceProvider {
    /// Checks `config` and builds the provider (no I/O).
    pub fn new(config: SalesforceConfig) -> Result<Self> {
        let client = Client::new(&config)?;
        Ok(Self {
            info: ProviderInfo::new(NAME, "Salesforce Chat (Live Agent REST)", capabilities()),
            config: Arc::new(config),
            client: Arc::new(client),
            poll: LongPollConfig::default(),
            capacity: events::DEFAULT_CAPACITY,
        })
    }

    /// Sets the retry policy of POSTs (tests shorten it); 503 is never retried.
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        if let Some(client) = Arc::get_mut(&mut self.client) {
            client.retry = policy.with_retry_unavailable(false);
        }
        self
    }

    /// Sets the long-poll backoff (the server hold comes from `clientPollTimeout`).
    #[must_use]
    pub fn with_poll_config(mut self, config: LongPollConfig) -> Self {
        self.poll = config;
        self
    }

    /// Starts the poll loop. A resumed session first reconnects (§6.1): the process that
    /// wrote the snapshot may have left a poll open on the server, and polling next to it
    /// would end the chat with 409.
    fn open(&self, inner: Arc<Inner>, reconnect_first: bool) -> Session {
        let (sender, stream) = events::channel(self.capacity);
        let hold = Duration::from_secs(lock(&inner.state).poll_timeout);
        let poll = LongPoll::new(self.poll.clone().with_server_hold(hold), inner.cancel.clone());
        inner.failover.store(reconnect_first, Ordering::SeqCst);
        tokio::spawn(run(inner.clone(), poll, sender));
        Session::new(inner, stream)
    }

    /// §5.1: pre-chat details carrying the user, the routing attributes and the transcript.
    fn prechat_details(&self, request: &HandoverRequest) -> Vec<Value> {
        let detail = |label: &str, value: &str, fields: Vec<String>| json!({ "label": label, "value": value, "transcriptFields": fields, "displayToAgent": true });
        let mut details = Vec::new();
        if let Some(name) = &request.user.name {
            details.push(detail("Name", name, Vec::new()));
        }
        if let Some(email) = &request.user.email {
            details.push(detail("Email", email, Vec::new()));
        }
        if !request.routing.skills.is_empty() {
            details.push(detail("Skills", &request.routing.skills.join(", "), Vec::new()));
        }
        for (key, value) in &request.routing.attributes {
            let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
            details.push(detail(key, &value, Vec::new()));
        }
        let rendered = transcript::render(&request.transcript);
        if !rendered.is_empty() {
            let fields = self.config.transcript_field.iter().cloned().collect();
            details.push(detail("Bot transcript", &rendered, fields));
        }
        details
    }
}

struct Inner {
    info: ProviderInfo,
    config: Arc<SalesforceConfig>,
    client: Arc<Client>,
    session_id: String,
    key: SecretString,
    state: Mutex<State>,
    /// One POST at a time, so sequence numbers go out in order.
    post_lock: tokio::sync::Mutex<()>,
    /// A send saw 503: the poll loop reconnects once its current poll is done (abandoning
    /// a poll and opening another would make the server end the chat with 409).
    failover: AtomicBool,
    cancel: CancellationToken,
    /// Why the bot side ended the chat (reported in the final event).
    end_reason: Mutex<Option<EndReason>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct State {
    chat_session_id: String,
    affinity: String,
    /// The last sequence number sent.
    sequence: u64,
    ack: i64,
    offset: i64,
    poll_timeout: u64,
    established: bool,
    resyncing: bool,
    queued: VecDeque<String>,
    agent: Option<String>,
    batches: u64,
    #[serde(flatten)]
    end: EndState,
}

impl Inner {
    /// POSTs `noun` with the next sequence number.
    async fn post(&self, op: &'static str, noun: &str, body: &Value) -> Result<Posted> {
        let _order = self.post_lock.lock().await;
        let (affinity, sequence) = {
            let mut state = lock(&self.state);
            state.sequence += 1;
            (state.affinity.clone(), state.sequence)
        };
        self.client.post(op, noun, &Keys { affinity: &affinity, key: &self.key }, sequence, body).await
    }

    /// Sends a chat message now, or queues it until an agent accepted and the session is in
    /// sync (§2.5: sending earlier makes the server fail with 500).
    async fn send_text(&self, text: String) -> Result<()> {
        {
            let mut state = lock(&self.state);
            if !state.established || state.resyncing || !state.queued.is_empty() {
                state.queued.push_back(text);
                return Ok(());
            }
        }
        self.post_text(text).await
    }

    async fn post_text(&self, text: String) -> Result<()> {
        match self.post("send message", "ChatMessage", &json!({ "text": text })).await? {
            Posted::Done => Ok(()),
            Posted::Failover => {
                let mut state = lock(&self.state);
                state.resyncing = true;
                state.queued.push_front(text);
                drop(state);
                self.failover.store(true, Ordering::SeqCst);
                Ok(())
            }
            Posted::Gone => Err(Error::session_ended(NAME, "send message")),
        }
    }

    /// Sends what was queued, in order.
    async fn flush(&self) -> Result<()> {
        loop {
            let next = {
                let mut state = lock(&self.state);
                if !state.established || state.resyncing {
                    return Ok(());
                }
                state.queued.pop_front()
            };
            let Some(text) = next else { return Ok(()) };
            if let Err(error) = self.post_text(text).await {
                if error.kind() != ErrorKind::SessionEnded {
                    return Err(error);
                }
                // The chat ended before the queue could go out; the next poll delivers the
                // end (ChatEnded, or 403), which is what the session reports.
                let dropped = std::mem::take(&mut lock(&self.state).queued).len() + 1;
                tracing::warn!(dropped, "the chat ended before queued messages could be sent");
                return Ok(());
            }
        }
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
            UserInput::Message { text, .. } => self.send_text(text).await,
            UserInput::Typing { on } => {
                if !lock(&self.state).established {
                    return Ok(());
                }
                let noun = if on { "ChasitorTyping" } else { "ChasitorNotTyping" };
                match self.post("send typing", noun, &json!({})).await? {
                    Posted::Gone => Err(Error::session_ended(NAME, "send typing")),
                    _ => Ok(()),
                }
            }
            UserInput::Connected => self.send_text(UserInput::CONNECTED_TEXT.to_owned()).await,
            UserInput::Disconnected => self.send_text(UserInput::DISCONNECTED_TEXT.to_owned()).await,
            other => Err(Error::unsupported(NAME, other.kind())),
        }
    }

    /// §9: `ChatEnd` with reason `client` (the one value the API documents for a visitor's
    /// end), then the session is deleted. The final event carries `reason`.
    async fn end(&self, reason: EndReason) -> Result<()> {
        if !lock(&self.state).end.begin_close() {
            return Ok(());
        }
        *lock(&self.end_reason) = Some(reason);
        let ended = self.post("end chat", "ChatEnd", &json!({ "reason": "client" })).await?;
        let affinity = lock(&self.state).affinity.clone();
        if let Err(error) = self.client.delete_session(&Keys { affinity: &affinity, key: &self.key }).await {
            tracing::debug!(%error, "the session could not be deleted after ChatEnd");
        }
        if ended == Posted::Failover {
            tracing::debug!("ChatEnd met a failover; the session was deleted");
        }
        self.cancel.cancel();
        Ok(())
    }

    fn snapshot(&self) -> Result<SessionSnapshot> {
        let state = lock(&self.state).clone();
        Ok(SessionSnapshot::new(NAME, STATE_VERSION, &self.session_id, &state)?
            .with_secret("session_key", self.key.expose_secret()))
    }
}

#[derive(PartialEq, Eq)]
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

async fn fail(inner: &Inner, sender: &EventSender, error: Error) -> Flow {
    lock(&inner.state).end.mark_ended();
    sender.fail(error).await;
    Flow::Stop
}

/// The one poll loop of a session: exactly one poll in flight, ever (§6: a second one ends
/// the chat with 409).
async fn run(inner: Arc<Inner>, mut poll: LongPoll, sender: EventSender) {
    loop {
        let (affinity, ack) = {
            let state = lock(&inner.state);
            (state.affinity.clone(), state.ack)
        };
        let client = &inner.client;
        let key = &inner.key;
        let failover = &inner.failover;
        let polled = tokio::select! {
            biased;
            () = sender.closed() => return,
            polled = poll.next(|timeout| {
                let affinity = affinity.clone();
                async move {
                    // Checked between polls only: a poll in flight is never abandoned.
                    if failover.swap(false, Ordering::SeqCst) {
                        return PollOutcome::Data(Polled::Failover);
                    }
                    match client.poll(&Keys { affinity: &affinity, key }, ack, timeout).await {
                        Ok(Polled::Empty) => PollOutcome::Empty,
                        Ok(polled) => PollOutcome::Data(polled),
                        Err(error) if error.kind() == ErrorKind::Transport || error.kind() == ErrorKind::RateLimited => {
                            PollOutcome::Retry(error)
                        }
                        Err(error) => PollOutcome::Fail(error),
                    }
                }
            }) => polled,
        };
        let flow = match polled {
            // Cancelled: the bot side ended the chat.
            None => {
                let reason = lock(&inner.end_reason).map(|reason| reason.as_str().to_owned());
                emit(&inner, &sender, Event::Ended { by: EndedBy::User, reason }).await;
                Flow::Stop
            }
            Some(Err(error)) => fail(&inner, &sender, error).await,
            Some(Ok(Polled::Batch(body))) => on_batch(&inner, &sender, &body).await,
            Some(Ok(Polled::Empty)) => Flow::Continue,
            Some(Ok(Polled::Failover)) => {
                inner.failover.store(false, Ordering::SeqCst);
                reconnect(&inner, &sender).await
            }
            Some(Ok(Polled::Gone)) => {
                let by = lock(&inner.state).end.ended_by(EndedBy::System);
                emit(
                    &inner,
                    &sender,
                    Event::Ended { by, reason: Some("the chat session is no longer valid".to_owned()) },
                )
                .await
            }
            Some(Ok(Polled::Conflict)) => {
                let error = Error::protocol(
                    NAME,
                    "poll messages",
                    "Salesforce ended the chat because a second poll was open for the session (409)",
                );
                fail(&inner, &sender, error).await
            }
        };
        if flow == Flow::Stop {
            return;
        }
    }
}

/// Processes every message of a batch in order (§6: a batch can hold a message and the end).
async fn on_batch(inner: &Inner, sender: &EventSender, body: &[u8]) -> Flow {
    let batch = match wire::parse_batch(body) {
        Ok(batch) => batch,
        Err(error) => {
            tracing::warn!(%error, "skipping an unreadable batch");
            return Flow::Continue;
        }
    };
    let number = {
        let mut state = lock(&inner.state);
        if state.ack >= 0 && batch.sequence <= state.ack {
            // A batch served again (a lost response on the server's side): already processed.
            tracing::debug!(sequence = batch.sequence, "dropping a repeated batch");
            return Flow::Continue;
        }
        // §6: ack advances only with a 200; the offset only with a non-empty batch.
        state.ack = batch.sequence;
        if !batch.messages.is_empty()
            && let Some(offset) = batch.offset
        {
            state.offset = offset;
        }
        state.batches += 1;
        batch.sequence
    };
    for (index, message) in batch.messages.iter().enumerate() {
        let action = message.interpret(|| format!("{}-{number}-{index}", inner.session_id));
        let flow = match action {
            Action::Emit(event) => emit(inner, sender, event).await,
            Action::Established(agent) => {
                {
                    let mut state = lock(&inner.state);
                    state.established = true;
                    state.agent.clone_from(&agent.name);
                }
                let flow = emit(inner, sender, Event::AgentJoined { agent }).await;
                if let Err(error) = inner.flush().await {
                    return fail(inner, sender, error).await;
                }
                flow
            }
            Action::Transferred(agent) => {
                let previous = lock(&inner.state).agent.replace(agent.name.clone().unwrap_or_default());
                let mut left = Agent::unknown();
                left.name = previous.filter(|n| !n.is_empty());
                if emit(inner, sender, Event::AgentLeft { agent: left, transfer: true }).await == Flow::Stop {
                    return Flow::Stop;
                }
                emit(inner, sender, Event::AgentJoined { agent }).await
            }
            Action::Failed(reason) => {
                let error = Error::new(
                    ErrorKind::Rejected,
                    NAME,
                    "request chat",
                    format!("Salesforce could not route the chat: {reason}"),
                );
                fail(inner, sender, error).await
            }
            Action::Ended => {
                let by = lock(&inner.state).end.ended_by(EndedBy::Agent);
                emit(inner, sender, Event::Ended { by, reason: Some("the chat ended".to_owned()) }).await
            }
            Action::SessionData => {
                lock(&inner.state).resyncing = false;
                if let Err(error) = inner.flush().await {
                    return fail(inner, sender, error).await;
                }
                emit(inner, sender, Event::Resumed { gap: false }).await
            }
            Action::Ignore => {
                tracing::trace!(kind = %message.kind, "ignoring a message");
                Flow::Continue
            }
        };
        if flow == Flow::Stop {
            return Flow::Stop;
        }
    }
    Flow::Continue
}

/// §6.1: new affinity for the last offset, sequence reset, state resynced; queued messages
/// wait for `ChasitorSessionData`.
async fn reconnect(inner: &Inner, sender: &EventSender) -> Flow {
    if emit(inner, sender, Event::Reconnecting).await == Flow::Stop {
        return Flow::Stop;
    }
    let offset = {
        let mut state = lock(&inner.state);
        state.resyncing = true;
        state.offset
    };
    let affinity = match inner.client.reconnect(&inner.key, offset).await {
        Ok(affinity) => affinity,
        Err(error) => return fail(inner, sender, error.in_op("reconnect session")).await,
    };
    {
        let mut state = lock(&inner.state);
        state.affinity = affinity;
        state.sequence = 0;
    }
    let body = json!({ "organizationId": inner.config.organization_id });
    match inner.post("resync state", "ChasitorResyncState", &body).await {
        Ok(Posted::Done) => Flow::Continue,
        // The chat ended meanwhile; the next poll still delivers what is pending (the agent's
        // last messages and ChatEnded) before it answers 403.
        Ok(Posted::Gone) => Flow::Continue,
        Ok(Posted::Failover) => {
            inner.failover.store(true, Ordering::SeqCst);
            Flow::Continue
        }
        Err(error) => fail(inner, sender, error).await,
    }
}

#[async_trait]
impl Provider for SalesforceProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        let info: SessionInfo = self.client.session_id().await?;
        let inner = Arc::new(Inner {
            info: self.info.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
            session_id: request.session_id.clone(),
            key: SecretString::from(info.key),
            state: Mutex::new(State {
                chat_session_id: info.id.clone(),
                affinity: info.affinity_token,
                sequence: 0,
                ack: -1,
                offset: 0,
                poll_timeout: info.client_poll_timeout.max(1),
                established: false,
                resyncing: false,
                queued: VecDeque::new(),
                agent: None,
                batches: 0,
                end: EndState::default(),
            }),
            post_lock: tokio::sync::Mutex::new(()),
            failover: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            end_reason: Mutex::new(None),
        });
        let language = self.config.language.clone().or_else(|| request.user.language.clone()).unwrap_or_default();
        let body = json!({
            "organizationId": self.config.organization_id,
            "deploymentId": self.config.deployment_id,
            "buttonId": self.config.button_id,
            "agentId": self.config.agent_id.clone().unwrap_or_default(),
            "doFallback": self.config.agent_id.is_some(),
            "sessionId": info.id,
            "userAgent": concat!("handover/", env!("CARGO_PKG_VERSION")),
            "language": language,
            "screenResolution": "",
            "visitorName": request.user.display_name(),
            "prechatDetails": self.prechat_details(&request),
            "prechatEntities": [],
            "buttonOverrides": [],
            "receiveQueueUpdates": true,
            "isPost": true,
        });
        match inner.post("request chat", "ChasitorInit", &body).await? {
            Posted::Done => {}
            Posted::Failover => {
                return Err(Error::transport(
                    NAME,
                    "request chat",
                    "the chat server moved during ChasitorInit (503); retry",
                ));
            }
            Posted::Gone => {
                return Err(Error::new(
                    ErrorKind::SessionNotFound,
                    NAME,
                    "request chat",
                    "the new session was refused (403)",
                ));
            }
        }
        Ok(self.open(inner, false))
    }

    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session> {
        let state: State = snapshot.state_for(NAME, STATE_VERSION)?;
        let key = SecretString::from(snapshot.require_secret(NAME, "session_key")?.to_owned());
        let inner = Arc::new(Inner {
            info: self.info.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
            session_id: snapshot.session_id().to_owned(),
            key,
            state: Mutex::new(State { end: state.end.resumed(), ..state }),
            post_lock: tokio::sync::Mutex::new(()),
            failover: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            end_reason: Mutex::new(None),
        });
        Ok(self.open(inner, true).resumed_from(&snapshot))
    }

    /// There are no credentials: a new session proves the endpoint and the API version, and
    /// the button's availability proves the organization, deployment and button ids.
    async fn check(&self) -> Result<CheckReport> {
        let info = self.client.session_id().await?;
        let key = SecretString::from(info.key);
        self.client.delete_session(&Keys { affinity: &info.affinity_token, key: &key }).await?;
        let config = &self.config;
        let available = self
            .client
            .availability(&config.organization_id, &config.deployment_id, &config.button_id)
            .await
            .map_err(|e| e.in_op("check organization_id and deployment_id"))?;
        let Some(available) = available else {
            return Err(Error::config(
                NAME,
                format!(
                    "[salesforce] Salesforce reports nothing for button `{}` of deployment `{}` in organization `{}`: \
                     check organization_id, deployment_id and button_id",
                    config.button_id, config.deployment_id, config.organization_id
                ),
            ));
        };
        let agents = if available { "agents are online now" } else { "no agent is online now" };
        Ok(CheckReport::new()
            .verified(format!("base_url and api_version {}: a session was opened and closed", config.api_version))
            .verified(format!("organization_id, deployment_id and button_id: the button is known ({agents})"))
            .unverified("the pre-chat details and routing: only a chat request shows how they are routed"))
    }
}
