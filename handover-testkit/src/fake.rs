//! An in-memory provider and contact center.
//!
//! [`FakeProvider`] implements [`Provider`] the way a real pull provider does: a task per
//! session reads "wire" deliveries from the contact center, deduplicates them by id,
//! keeps a watermark for resume, and feeds a bounded [`EventStream`](handover_core::EventStream). The
//! [`FakeContactCenter`] plays the agent side: queue updates, joins, messages,
//! redeliveries, dropped connections, transfers and ends, and records what the customer
//! side sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{
    Agent, Capabilities, EndReason, EndedBy, Error, ErrorKind, Event, HandoverRequest, Provider, ProviderInfo, Result,
    Session, SessionBackend, SessionSnapshot, UserInput, transcript,
};
use handover_transport::dedup::DedupSet;
use handover_transport::events::{self, EventSender};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use crate::harness::Harness;

/// The version of this provider's snapshot state: raise it when the state's shape
/// changes (a snapshot in another version is refused on resume).
const STATE_VERSION: u32 = 1;

/// The provider name.
pub const NAME: &str = "fake";

/// The secret every fake session carries, so tests can look for leaks.
pub const FAKE_TOKEN: &str = "fake-access-token-5f1c2e";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the contact center delivers to a connected session.
#[derive(Clone, Debug)]
enum Wire {
    Event { seq: u64, id: String, event: Event },
    Drop,
    Fail { kind: ErrorKind, message: String },
}

/// The agent side of one conversation.
#[derive(Clone)]
pub struct FakeConversation {
    inner: Arc<Conversation>,
}

struct Conversation {
    id: String,
    request: HandoverRequest,
    state: Mutex<ConversationState>,
    changed: Notify,
}

#[derive(Default)]
struct ConversationState {
    log: Vec<(u64, String, Event)>,
    next_seq: u64,
    received: Vec<UserInput>,
    closed_by: Option<EndReason>,
    ended: bool,
    attached: Option<mpsc::UnboundedSender<Wire>>,
    fail_next_send: Option<Error>,
}

impl FakeConversation {
    /// The conversation id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The request the conversation was created from.
    pub fn request(&self) -> &HandoverRequest {
        &self.inner.request
    }

    fn push(&self, event: Event) -> String {
        let mut state = lock(&self.inner.state);
        state.next_seq += 1;
        let seq = state.next_seq;
        let id = format!("{}-{seq}", self.inner.id);
        if event.is_terminal() {
            state.ended = true;
        }
        state.log.push((seq, id.clone(), event.clone()));
        if let Some(tx) = &state.attached {
            let _ = tx.send(Wire::Event { seq, id: id.clone(), event });
        }
        drop(state);
        self.inner.changed.notify_waiters();
        id
    }

    /// Reports a queue position and wait.
    pub fn queue(&self, position: Option<u32>, estimated_wait: Option<Duration>) {
        self.push(Event::Queued { position, estimated_wait });
    }

    /// An agent joins.
    pub fn join(&self, agent: &str) {
        self.push(Event::AgentJoined { agent: Agent::named(agent) });
    }

    /// The agent writes; returns the message id.
    pub fn say(&self, agent: &str, text: &str) -> String {
        let id = format!("msg-{}", lock(&self.inner.state).next_seq + 1);
        self.push(Event::AgentMessage {
            id: id.clone(),
            text: text.to_owned(),
            agent: Agent::named(agent),
            attachments: Vec::new(),
        });
        id
    }

    /// The agent sends files with `text`; returns the message id.
    pub fn send_files(&self, agent: &str, text: &str, attachments: Vec<handover_core::Attachment>) -> String {
        let id = format!("msg-{}", lock(&self.inner.state).next_seq + 1);
        self.push(Event::AgentMessage {
            id: id.clone(),
            text: text.to_owned(),
            agent: Agent::named(agent),
            attachments,
        });
        id
    }

    /// The agent types.
    pub fn typing(&self, on: bool) {
        self.push(Event::AgentTyping { on });
    }

    /// The agent leaves; `transfer` keeps the handover going.
    pub fn leave(&self, agent: &str, transfer: bool) {
        self.push(Event::AgentLeft { agent: Agent::named(agent), transfer });
    }

    /// The agent ends the conversation.
    pub fn end(&self) {
        self.push(Event::Ended { by: EndedBy::Agent, reason: Some("resolved".to_owned()) });
    }

    /// The contact center fails the request (routing failed).
    pub fn fail_routing(&self, reason: &str) {
        self.push(Event::Ended { by: EndedBy::System, reason: Some(reason.to_owned()) });
    }

    /// Delivers the last event again with the same id (a redelivered webhook).
    pub fn redeliver_last(&self) -> bool {
        let state = lock(&self.inner.state);
        match (state.log.last(), &state.attached) {
            (Some((seq, id, event)), Some(tx)) => {
                tx.send(Wire::Event { seq: *seq, id: id.clone(), event: event.clone() }).is_ok()
            }
            _ => false,
        }
    }

    /// Drops the session's connection; the session reconnects and back-fills.
    pub fn drop_connection(&self) -> bool {
        let mut state = lock(&self.inner.state);
        match state.attached.take() {
            Some(tx) => tx.send(Wire::Drop).is_ok(),
            None => false,
        }
    }

    /// Fails the session's event stream with an error of `kind` (the provider broke).
    pub fn fail_session(&self, kind: ErrorKind, message: &str) -> bool {
        let state = lock(&self.inner.state);
        match &state.attached {
            Some(tx) => tx.send(Wire::Fail { kind, message: message.to_owned() }).is_ok(),
            None => false,
        }
    }

    /// Makes the next `send` fail with `error`.
    pub fn fail_next_send(&self, error: Error) {
        lock(&self.inner.state).fail_next_send = Some(error);
    }

    /// What the customer side sent, in order.
    pub fn received(&self) -> Vec<UserInput> {
        lock(&self.inner.state).received.clone()
    }

    /// The texts of the messages the customer side sent, in order.
    pub fn received_texts(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter_map(|input| match input {
                UserInput::Message { text, .. } => Some(text),
                _ => None,
            })
            .collect()
    }

    /// Why the customer side closed the conversation, if it did.
    pub fn closed_by_customer(&self) -> Option<EndReason> {
        lock(&self.inner.state).closed_by
    }

    /// Waits until the customer side has sent at least `n` inputs.
    pub async fn wait_received(&self, n: usize) -> Vec<UserInput> {
        loop {
            let notified = self.inner.changed.notified();
            {
                let state = lock(&self.inner.state);
                if state.received.len() >= n {
                    return state.received.clone();
                }
            }
            notified.await;
        }
    }

    /// Waits until the customer side closes the conversation.
    pub async fn wait_closed(&self) -> EndReason {
        loop {
            let notified = self.inner.changed.notified();
            if let Some(reason) = lock(&self.inner.state).closed_by {
                return reason;
            }
            notified.await;
        }
    }

    fn attach(&self, after_seq: u64) -> (Vec<Wire>, mpsc::UnboundedReceiver<Wire>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = lock(&self.inner.state);
        state.attached = Some(tx);
        let backlog = state
            .log
            .iter()
            .filter(|(seq, _, _)| *seq > after_seq)
            .map(|(seq, id, event)| Wire::Event { seq: *seq, id: id.clone(), event: event.clone() })
            .collect();
        (backlog, rx)
    }
}

/// The contact center: creates conversations and plays the agent side.
#[derive(Clone, Default)]
pub struct FakeContactCenter {
    inner: Arc<Center>,
}

#[derive(Default)]
struct Center {
    state: Mutex<CenterState>,
    created: Notify,
}

#[derive(Default)]
struct CenterState {
    conversations: Vec<FakeConversation>,
    fail_next_start: Option<Error>,
    reject_credentials: bool,
    auth_requests: u32,
}

impl FakeContactCenter {
    /// Makes the next `start` fail with `error`.
    pub fn fail_next_start(&self, error: Error) {
        lock(&self.inner.state).fail_next_start = Some(error);
    }

    /// Makes `check` fail as with wrong credentials.
    pub fn reject_credentials(&self, reject: bool) {
        lock(&self.inner.state).reject_credentials = reject;
    }

    /// How many times credentials were checked.
    pub fn auth_requests(&self) -> u32 {
        lock(&self.inner.state).auth_requests
    }

    /// All conversations created so far.
    pub fn conversations(&self) -> Vec<FakeConversation> {
        lock(&self.inner.state).conversations.clone()
    }

    /// The most recent conversation.
    pub fn last(&self) -> Option<FakeConversation> {
        lock(&self.inner.state).conversations.last().cloned()
    }

    /// Waits for conversation number `index` (0-based) to be created.
    pub async fn conversation(&self, index: usize) -> FakeConversation {
        loop {
            let notified = self.inner.created.notified();
            if let Some(conversation) = lock(&self.inner.state).conversations.get(index) {
                return conversation.clone();
            }
            notified.await;
        }
    }

    fn find(&self, id: &str) -> Option<FakeConversation> {
        lock(&self.inner.state).conversations.iter().find(|c| c.id() == id).cloned()
    }

    fn create(&self, request: HandoverRequest) -> Result<FakeConversation> {
        let mut state = lock(&self.inner.state);
        if let Some(error) = state.fail_next_start.take() {
            return Err(error);
        }
        let conversation = FakeConversation {
            inner: Arc::new(Conversation {
                id: format!("conv-{}", state.conversations.len() + 1),
                request,
                state: Mutex::default(),
                changed: Notify::new(),
            }),
        };
        state.conversations.push(conversation.clone());
        drop(state);
        self.inner.created.notify_waiters();
        Ok(conversation)
    }
}

/// Deliberate bugs, so tests can show that the contract suite catches them.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct Flaws {
    /// Deliver redelivered events again instead of deduplicating them.
    pub no_dedup: bool,
    /// Resume from the beginning of the conversation, ignoring the snapshot's watermark.
    pub resume_from_start: bool,
    /// Report a transfer as a plain leave.
    pub transfer_as_leave: bool,
}

/// An in-memory [`Provider`].
pub struct FakeProvider {
    info: ProviderInfo,
    center: FakeContactCenter,
    capacity: usize,
    flaws: Flaws,
}

/// The largest file the fake takes (1 MiB).
pub const FAKE_MAX_ATTACHMENT_BYTES: u64 = 1024 * 1024;

impl FakeProvider {
    /// The capabilities of a fully capable fake, with a 1000-character message limit.
    pub fn full_capabilities() -> Capabilities {
        Capabilities::none()
            .with_typing(true)
            .with_queue_position(true)
            .with_estimated_wait(true)
            .with_participant_change(true)
            .with_resume(true)
            .with_max_message_chars(Some(1000))
            .with_attachment_uploads(true)
            .with_max_attachment_bytes(Some(FAKE_MAX_ATTACHMENT_BYTES))
    }

    /// A fully capable fake and its contact center.
    pub fn new() -> (Self, FakeContactCenter) {
        Self::with_capabilities(Self::full_capabilities())
    }

    /// A fake with the given capabilities.
    pub fn with_capabilities(capabilities: Capabilities) -> (Self, FakeContactCenter) {
        let center = FakeContactCenter::default();
        (
            Self {
                info: ProviderInfo::new(NAME, "In-memory fake contact center", capabilities),
                center: center.clone(),
                capacity: events::DEFAULT_CAPACITY,
                flaws: Flaws::default(),
            },
            center,
        )
    }

    /// Sets the event channel capacity (for backpressure tests).
    #[must_use]
    pub fn with_channel_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Builds in deliberate bugs.
    #[must_use]
    pub fn with_flaws(mut self, flaws: Flaws) -> Self {
        self.flaws = flaws;
        self
    }

    fn open(&self, conversation: FakeConversation, session_id: String, watermark: u64, seen: DedupSet) -> Session {
        let (sender, stream) = events::channel(self.capacity);
        let shared = Arc::new(Mutex::new(SessionState { watermark, seen }));
        let (backlog, rx) = conversation.attach(watermark);
        tokio::spawn(pump(conversation.clone(), shared.clone(), backlog, rx, sender, self.flaws));
        let handle = FakeSession { info: self.info.clone(), conversation, session_id, shared };
        Session::new(Arc::new(handle), stream)
    }
}

struct SessionState {
    watermark: u64,
    seen: DedupSet,
}

/// The session task: dedup by id, advance the watermark, reconnect and back-fill on drops.
async fn pump(
    conversation: FakeConversation,
    shared: Arc<Mutex<SessionState>>,
    backlog: Vec<Wire>,
    mut rx: mpsc::UnboundedReceiver<Wire>,
    sender: EventSender,
    flaws: Flaws,
) {
    let mut queue: VecDeque<Wire> = backlog.into();
    loop {
        let wire = match queue.pop_front() {
            Some(wire) => wire,
            None => match rx.recv().await {
                Some(wire) => wire,
                None => return,
            },
        };
        match wire {
            Wire::Event { seq, id, event } => {
                {
                    let mut state = lock(&shared);
                    if !state.seen.insert(&id) && !flaws.no_dedup {
                        continue;
                    }
                    state.watermark = state.watermark.max(seq);
                }
                let event = match event {
                    Event::AgentLeft { agent, .. } if flaws.transfer_as_leave => {
                        Event::AgentLeft { agent, transfer: false }
                    }
                    other => other,
                };
                let terminal = event.is_terminal();
                if !sender.send(event).await || terminal {
                    return;
                }
            }
            Wire::Fail { kind, message } => {
                sender.fail(Error::new(kind, NAME, "read events", message)).await;
                return;
            }
            Wire::Drop => {
                if !sender.send(Event::Reconnecting).await {
                    return;
                }
                let watermark = lock(&shared).watermark;
                let (backlog, new_rx) = conversation.attach(watermark);
                rx = new_rx;
                queue.extend(backlog);
                if !sender.send(Event::Resumed { gap: false }).await {
                    return;
                }
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct FakeState {
    conversation_id: String,
    watermark: u64,
    seen: Vec<String>,
}

struct FakeSession {
    info: ProviderInfo,
    conversation: FakeConversation,
    session_id: String,
    shared: Arc<Mutex<SessionState>>,
}

#[async_trait]
impl SessionBackend for FakeSession {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn send(&self, input: UserInput) -> Result<()> {
        let mut state = lock(&self.conversation.inner.state);
        if let Some(error) = state.fail_next_send.take() {
            return Err(error);
        }
        if state.ended {
            return Err(Error::session_ended(NAME, "send"));
        }
        state.received.push(input);
        drop(state);
        self.conversation.inner.changed.notify_waiters();
        Ok(())
    }

    async fn end(&self, reason: EndReason) -> Result<()> {
        {
            let mut state = lock(&self.conversation.inner.state);
            if state.ended {
                return Ok(());
            }
            state.closed_by = Some(reason);
        }
        self.conversation.push(Event::Ended { by: EndedBy::User, reason: Some(reason.as_str().to_owned()) });
        Ok(())
    }

    fn snapshot(&self) -> Result<SessionSnapshot> {
        let state = lock(&self.shared);
        let fake = FakeState {
            conversation_id: self.conversation.id().to_owned(),
            watermark: state.watermark,
            seen: state.seen.ids().map(str::to_owned).collect(),
        };
        Ok(SessionSnapshot::new(NAME, STATE_VERSION, &self.session_id, &fake)?.with_secret("access_token", FAKE_TOKEN))
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        let session_id = request.session_id.clone();
        let transcript = transcript::render(&request.transcript);
        let conversation = self.center.create(request)?;
        if !transcript.is_empty() {
            let max = self.info.capabilities.max_message_chars().unwrap_or(usize::MAX);
            let chunks = transcript::split(&transcript, max)
                .map_err(|e| Error::invalid_input(NAME, "send transcript", e.to_string()))?;
            let mut state = lock(&conversation.inner.state);
            for (i, chunk) in chunks.into_iter().enumerate() {
                state.received.push(UserInput::message(format!("transcript-{i}"), chunk));
            }
        }
        Ok(self.open(conversation, session_id, 0, DedupSet::default()))
    }

    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session> {
        let state: FakeState = snapshot.state_for(NAME, STATE_VERSION)?;
        let token = snapshot.require_secret(NAME, "access_token")?;
        if token != FAKE_TOKEN {
            return Err(Error::unauthenticated(NAME, "resume", "the snapshot's token is not valid"));
        }
        let conversation = self.center.find(&state.conversation_id).ok_or_else(|| {
            Error::new(
                ErrorKind::SessionNotFound,
                NAME,
                "resume",
                format!("conversation {} does not exist", state.conversation_id),
            )
        })?;
        if self.flaws.resume_from_start {
            return Ok(self.open(conversation, snapshot.session_id().to_owned(), 0, DedupSet::default()));
        }
        let mut seen = DedupSet::default();
        seen.extend(state.seen);
        Ok(self.open(conversation, snapshot.session_id().to_owned(), state.watermark, seen))
    }

    async fn check(&self) -> Result<handover_core::CheckReport> {
        let mut state = lock(&self.center.inner.state);
        state.auth_requests += 1;
        if state.reject_credentials {
            return Err(Error::unauthenticated(NAME, "authenticate", "the credentials were rejected"));
        }
        Ok(handover_core::CheckReport::new().verified("the credentials"))
    }
}

/// The contract-suite harness for the fake provider.
pub struct FakeHarness {
    provider: Arc<FakeProvider>,
    center: FakeContactCenter,
}

impl FakeHarness {
    /// A harness around a fake with deliberate bugs.
    pub fn with_flaws(flaws: Flaws) -> Self {
        let (provider, center) = FakeProvider::new();
        Self { provider: Arc::new(provider.with_flaws(flaws)), center }
    }

    fn current(&self) -> FakeConversation {
        self.center.last().expect("the scenario starts a session before acting as the agent")
    }
}

#[async_trait]
impl Harness for FakeHarness {
    async fn setup() -> Self {
        Self::with_flaws(Flaws::default())
    }

    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn secrets(&self) -> Vec<String> {
        vec![FAKE_TOKEN.to_owned()]
    }

    async fn queue(&self, position: Option<u32>, estimated_wait: Option<Duration>) -> bool {
        self.current().queue(position, estimated_wait);
        true
    }

    async fn agent_joins(&self, name: &str) {
        self.current().join(name);
    }

    async fn agent_says(&self, name: &str, text: &str) {
        self.current().say(name, text);
    }

    async fn redeliver_last(&self) -> bool {
        self.current().redeliver_last()
    }

    async fn agent_typing(&self, on: bool) -> bool {
        self.current().typing(on);
        true
    }

    async fn agent_transfers(&self, from: &str) -> bool {
        self.current().leave(from, true);
        true
    }

    async fn agent_ends(&self) {
        self.current().end();
    }

    async fn drop_connection(&self) -> bool {
        self.current().drop_connection()
    }

    async fn customer_texts(&self, at_least: usize) -> Vec<String> {
        let conversation = self.current();
        loop {
            let texts = conversation.received_texts();
            if texts.len() >= at_least {
                return texts;
            }
            conversation.wait_received(conversation.received().len() + 1).await;
        }
    }

    async fn closed_by_customer(&self) -> bool {
        self.current().wait_closed().await;
        true
    }

    async fn customer_files(&self, at_least: usize) -> Vec<crate::harness::ReceivedFile> {
        let conversation = self.current();
        loop {
            let files: Vec<_> = conversation
                .received()
                .into_iter()
                .filter_map(|input| match input {
                    UserInput::Attachment { attachment, .. } => Some(crate::harness::ReceivedFile {
                        name: attachment.name.clone(),
                        media_type: attachment.media_type.clone(),
                        size: attachment.known_size().unwrap_or_default(),
                        sha256: crate::harness::sha256_hex(attachment.data().unwrap_or_default()),
                    }),
                    _ => None,
                })
                .collect();
            if files.len() >= at_least {
                return files;
            }
            conversation.wait_received(conversation.received().len() + 1).await;
        }
    }
}
