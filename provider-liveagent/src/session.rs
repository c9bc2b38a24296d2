//! One handover on the desk: the session backend (send, end, snapshot) and its task, the
//! state machine that turns deliveries into events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{
    Agent, EndReason, EndedBy, Error, Event, EventStream, ProviderInfo, Result, Session, SessionBackend,
    SessionSnapshot, UserInput,
};
use handover_transport::dedup::DedupSet;
use handover_transport::events::{EndState, EventSender};
use handover_transport::push::{self, Link, PushTask};
use handover_transport::session::{CONTINUE, CloseReceiver, CloseSender, Flow, close_signal, lock};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::NAME;
use crate::client::{Client, Contact};
use crate::config::LiveAgentConfig;
use crate::wire::{self, Delivery, Item};

/// The version of this provider's snapshot state: raise it when the state's shape
/// changes (a snapshot in another version is refused on resume).
const STATE_VERSION: u32 = 1;

/// The conversation of one handover, and what the session knows of it.
pub(crate) struct Inner {
    pub(crate) info: ProviderInfo,
    pub(crate) config: Arc<LiveAgentConfig>,
    pub(crate) client: Arc<Client>,
    pub(crate) session_id: String,
    pub(crate) conversation: u64,
    pub(crate) contact: Contact,
    pub(crate) state: Mutex<State>,
    pub(crate) close: CloseSender,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct State {
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

#[derive(Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub(crate) conversation: u64,
    pub(crate) contact_id: u64,
    pub(crate) source_id: String,
    pub(crate) state: State,
}

impl Snapshot {
    /// Reads a snapshot this provider wrote.
    pub(crate) fn read(snapshot: &SessionSnapshot) -> Result<Self> {
        snapshot.state_for(NAME, STATE_VERSION)
    }
}

impl Inner {
    /// A session of `conversation`; `state` is a resumed session's (its end state reset).
    pub(crate) fn new(
        provider: (&ProviderInfo, &Arc<LiveAgentConfig>, &Arc<Client>),
        session_id: String,
        conversation: u64,
        contact: Contact,
        state: State,
    ) -> (Arc<Self>, CloseReceiver) {
        let (info, config, client) = provider;
        let (close, closed) = close_signal();
        let state = State { end: state.end.resumed(), ..state };
        let inner = Arc::new(Self {
            info: info.clone(),
            config: config.clone(),
            client: client.clone(),
            session_id,
            conversation,
            contact,
            state: Mutex::new(state),
            close,
        });
        (inner, closed)
    }

    /// Posts a private note (shown to the agent, never to a channel).
    pub(crate) async fn note(&self, text: &str) -> Result<()> {
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
impl SessionBackend for Inner {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn send(&self, input: UserInput) -> Result<()> {
        // §8.4: a message to a resolved conversation would silently reopen it.
        lock(&self.state).end.ensure_open(NAME, "send")?;
        match input {
            UserInput::Message { id, text } => {
                // Derived from the input's id: a resend carries the same echo id.
                let echo_id = handover_transport::ids::client_uuid(&self.conversation.to_string(), &id);
                let id = self.client.post_message(self.conversation, &text, "incoming", false, &echo_id).await?;
                lock(&self.state).own_messages.extend(id);
                Ok(())
            }
            UserInput::Attachment { id, attachment } => {
                // §3: the same "create message" call, as multipart, the file under
                // `attachments[]`; the echo id derived like a text's.
                let echo_id = handover_transport::ids::client_uuid(&self.conversation.to_string(), &id);
                let id = self.client.post_attachment(self.conversation, &attachment, &echo_id).await?;
                lock(&self.state).own_messages.extend(id);
                Ok(())
            }
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
        self.close.close(reason).await;
        Ok(())
    }

    fn snapshot(&self) -> Result<SessionSnapshot> {
        let snapshot = Snapshot {
            conversation: self.conversation,
            contact_id: self.contact.id,
            source_id: self.contact.source_id.clone(),
            state: lock(&self.state).clone(),
        };
        Ok(SessionSnapshot::new(NAME, STATE_VERSION, &self.session_id, &snapshot)?
            .with_conversation_key(self.conversation.to_string()))
    }
}

/// Starts the session task for `inner` on its link; `catch_up` after a resume.
pub(crate) fn open(
    inner: Arc<Inner>,
    closed: CloseReceiver,
    (link, stream): (Link<Item>, EventStream),
    catch_up: bool,
) -> Session {
    let interval = queue_interval(&inner.config);
    let task = Task {
        inner: inner.clone(),
        events: link.events().clone(),
        interval,
        next_check: interval.map(|_| Instant::now()),
    };
    tokio::spawn(push::serve(task, link, closed, catch_up));
    Session::new(inner, stream)
}

/// How often the queue is read: the shorter of the position and wait intervals in use.
fn queue_interval(config: &LiveAgentConfig) -> Option<Duration> {
    let intervals = [
        config.get_queue_position.then_some(config.queue_update_interval),
        config.get_estimated_wait_time.then_some(config.wait_time_update_interval),
    ];
    intervals.into_iter().flatten().min().map(|secs| Duration::from_secs(secs.max(1)))
}

/// The state machine of one handover.
struct Task {
    inner: Arc<Inner>,
    events: EventSender,
    interval: Option<Duration>,
    next_check: Option<Instant>,
}

#[async_trait]
impl PushTask for Task {
    type Item = Item;

    /// After a resume: messages the agent wrote while no session was attached (the desk
    /// sends each webhook once, §5.4), then the assignment and the status.
    async fn catch_up(&mut self) -> Flow {
        self.backfill().await?;
        self.resync().await
    }

    async fn on_delivery(&mut self, item: Item) -> Flow {
        self.on_item(item).await
    }

    async fn on_close(&mut self, reason: EndReason) -> Flow {
        self.emit(Event::Ended { by: EndedBy::User, reason: Some(reason.as_str().to_owned()) }).await
    }

    fn next_timer(&self) -> Option<Instant> {
        self.next_check.filter(|_| !lock(&self.inner.state).served)
    }

    async fn on_timer(&mut self) -> Flow {
        self.next_check = self.interval.map(|i| handover_transport::time::deadline_after(Instant::now(), i));
        self.report_queue().await
    }

    fn is_ended(&self) -> bool {
        lock(&self.inner.state).end.is_ended()
    }
}

impl Task {
    async fn emit(&self, event: Event) -> Flow {
        self.events.emit(event, || lock(&self.inner.state).end.mark_ended()).await
    }

    /// A delivery from the webhook or the message list, once per signed key.
    async fn on_item(&mut self, Item { key, delivery }: Item) -> Flow {
        if !lock(&self.inner.state).seen.insert(&key) {
            tracing::debug!("dropping a replayed delivery");
            return CONTINUE;
        }
        self.on_delivery(delivery).await
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
                    return CONTINUE;
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
            return CONTINUE;
        }
        let position = older + 1;
        let config = &self.inner.config;
        let estimated_wait = config
            .get_estimated_wait_time
            .then(|| Duration::from_secs(u64::from(position).saturating_mul(config.wait_per_position_secs)));
        let position = config.get_queue_position.then_some(position);
        self.emit(Event::Queued { position, estimated_wait }).await
    }

    async fn on_delivery(&mut self, delivery: Delivery) -> Flow {
        match delivery {
            Delivery::AgentMessage { id, text, agent, attachments } => {
                let (own, known_agent) = {
                    let mut state = lock(&self.inner.state);
                    state.last_message = state.last_message.max(id);
                    (state.own_messages.contains(&id), state.agent.clone())
                };
                if own {
                    return CONTINUE;
                }
                let agent = if agent.name.is_some() { agent } else { known_agent.unwrap_or(agent) };
                lock(&self.inner.state).served = true;
                self.emit(Event::AgentMessage { id: id.to_string(), text, agent, attachments }).await
            }
            Delivery::Assigned(agent) => {
                let previous = {
                    let mut state = lock(&self.inner.state);
                    state.served = true;
                    state.agent.replace(agent.clone())
                };
                if let Some(previous) = previous.filter(|p| p.id != agent.id) {
                    self.emit(Event::AgentLeft { agent: previous, transfer: true }).await?;
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
                    None => CONTINUE,
                }
            }
            Delivery::Resolved { status } => {
                let by = lock(&self.inner.state).end.ended_by(EndedBy::Agent);
                self.emit(Event::Ended { by, reason: Some(status) }).await
            }
            Delivery::Typing(on) => self.emit(Event::AgentTyping { on }).await,
            Delivery::Ignore(why) => {
                tracing::trace!(why, "ignoring a delivery");
                CONTINUE
            }
        }
    }

    /// Reads the conversation's messages after the last one handled, page by page, and
    /// handles the agent's as if delivered (each once: the keys are the webhook's).
    async fn backfill(&mut self) -> Flow {
        loop {
            let after = lock(&self.inner.state).last_message;
            let messages = match self.inner.client.messages_after(self.inner.conversation, after).await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, "could not read the messages written while the session was away");
                    return CONTINUE;
                }
            };
            let mut newest = after;
            for message in &messages {
                let Some(id) = message["id"].as_u64() else { continue };
                newest = newest.max(id);
                let delivery = wire::message(message);
                if !matches!(delivery, Delivery::Ignore(_)) {
                    self.on_item(Item { key: format!("message:{id}"), delivery }).await?;
                }
            }
            {
                let mut state = lock(&self.inner.state);
                state.last_message = state.last_message.max(newest);
            }
            // A full page may have more behind it; anything else is the end.
            if messages.len() < 100 || newest == after {
                return CONTINUE;
            }
        }
    }

    /// The conversation may have been resolved or assigned while no session was attached.
    async fn resync(&mut self) -> Flow {
        let conversation = match self.inner.client.conversation(self.inner.conversation).await {
            Ok(conversation) => conversation,
            Err(error) => {
                tracing::warn!(%error, "could not re-read the conversation after a resume");
                return CONTINUE;
            }
        };
        if let Some(status @ ("resolved" | "abandoned")) = conversation["status"].as_str() {
            return self.on_delivery(Delivery::Resolved { status: status.to_owned() }).await;
        }
        let assignee = &conversation["meta"]["assignee"];
        if assignee["id"].as_u64().is_some() {
            let agent = wire::agent_of(assignee);
            let known = lock(&self.inner.state).agent.as_ref().is_some_and(|a| a.id == agent.id);
            if !known {
                return self.on_delivery(Delivery::Assigned(agent)).await;
            }
        }
        CONTINUE
    }
}
