//! One handover on the Gateway: the session backend (send, end, snapshot) and its task, the
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
use handover_transport::time::{instant_at_unix_millis, unix_millis_after};
use serde::{Deserialize, Serialize};

use crate::NAME;
use crate::client::Client;
use crate::config::EightByEightConfig;
use crate::wire::{Delivery, Item};

/// The version of this provider's snapshot state: raise it when the state's shape
/// changes (a snapshot in another version is refused on resume).
const STATE_VERSION: u32 = 1;

/// The conversation of one handover, and what the session knows of it.
pub(crate) struct Inner {
    info: ProviderInfo,
    config: Arc<EightByEightConfig>,
    client: Arc<Client>,
    session_id: String,
    conversation: String,
    state: Mutex<State>,
    close: CloseSender,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct State {
    agent: Option<Agent>,
    /// A `TRANSFER` came: the next agent leave is not the end.
    transfer_pending: bool,
    #[serde(flatten)]
    end: EndState,
    /// The event ids of every delivery handled (the signature covers them), oldest first:
    /// a replay is dropped for as long as the session lives.
    #[serde(default)]
    seen: DedupSet,
    /// An agent left without a `TRANSFER`: the end, unless a transfer or the next agent
    /// shows up before the deadline (deliveries may arrive out of order). Kept in the
    /// snapshot, so that a session resumed elsewhere still ends when the deadline passes.
    #[serde(default)]
    pending_leave: Option<PendingLeave>,
}

/// An agent's leave waiting out the transfer grace period.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct PendingLeave {
    agent: Agent,
    /// The deadline, in Unix milliseconds.
    at_ms: u64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            agent: None,
            transfer_pending: false,
            end: EndState::default(),
            seen: DedupSet::unbounded(),
            pending_leave: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub(crate) conversation: String,
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
        provider: (&ProviderInfo, &Arc<EightByEightConfig>, &Arc<Client>),
        session_id: String,
        conversation: String,
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
            state: Mutex::new(state),
            close,
        });
        (inner, closed)
    }
}

#[async_trait]
impl SessionBackend for Inner {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn send(&self, input: UserInput) -> Result<()> {
        lock(&self.state).end.ensure_open(NAME, "send")?;
        match input {
            UserInput::Message { text, .. } => self.client.send_message(&self.conversation, "user", &text).await,
            // §5.2: upload first (row 16), then a message naming the upload, the caption as text.
            UserInput::Attachment { attachment, .. } => {
                let uploaded = self.client.upload_attachment(&self.conversation, &attachment).await?;
                self.client.send_attachment_message(&self.conversation, &uploaded, attachment.caption.as_deref()).await
            }
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
        self.close.close(reason).await;
        Ok(())
    }

    fn snapshot(&self) -> Result<SessionSnapshot> {
        let snapshot = Snapshot { conversation: self.conversation.clone(), state: lock(&self.state).clone() };
        Ok(SessionSnapshot::new(NAME, STATE_VERSION, &self.session_id, &snapshot)?
            .with_conversation_key(self.conversation.clone()))
    }
}

/// Starts the session task for `inner` on its link; `catch_up` after a resume.
pub(crate) fn open(
    inner: Arc<Inner>,
    closed: CloseReceiver,
    (link, stream): (Link<Item>, EventStream),
    catch_up: bool,
) -> Session {
    let task = Task { inner: inner.clone(), events: link.events().clone() };
    tokio::spawn(push::serve(task, link, closed, catch_up));
    Session::new(inner, stream)
}

/// The state machine of one handover.
struct Task {
    inner: Arc<Inner>,
    events: EventSender,
}

#[async_trait]
impl PushTask for Task {
    type Item = Item;

    /// After a resume: the agent may have joined or left, or the user been removed.
    async fn catch_up(&mut self) -> Flow {
        let participants = match self.inner.client.participants(&self.inner.conversation).await {
            Ok(participants) => participants,
            Err(error) => {
                tracing::warn!(%error, "could not re-read the participants after a resume");
                return CONTINUE;
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
            _ => CONTINUE,
        }
    }

    /// A delivery, once per event id.
    async fn on_delivery(&mut self, item: Item) -> Flow {
        if !item.event_id.is_empty() && !lock(&self.inner.state).seen.insert(&item.event_id) {
            tracing::debug!("dropping a replayed delivery");
            return CONTINUE;
        }
        match item.delivery {
            Delivery::Queued { queue } => {
                tracing::debug!(queue = queue.as_deref().unwrap_or("?"), "queued");
                self.emit(Event::Queued { position: None, estimated_wait: None }).await
            }
            Delivery::AgentJoined(agent) => self.agent_joined(self.named(agent)).await,
            Delivery::AgentLeft { id } => self.agent_left(id).await,
            Delivery::Transfer => {
                if let Some(agent) = self.take_pending_leave() {
                    return self.emit(Event::AgentLeft { agent, transfer: true }).await;
                }
                lock(&self.inner.state).transfer_pending = true;
                CONTINUE
            }
            Delivery::AgentMessage { text, agent, attachments } => {
                let agent = self.named(agent);
                let (current, leaving) = {
                    let state = lock(&self.inner.state);
                    (state.agent.clone(), state.pending_leave.as_ref().map(|p| p.agent.clone()))
                };
                let agent = match (&current, &leaving) {
                    (Some(current), _) if current.id == agent.id || agent.id.is_none() => current.clone(),
                    (_, Some(leaving)) if leaving.id == agent.id => leaving.clone(),
                    // §8.3: a message may overtake the join it follows.
                    (None, None) => {
                        self.agent_joined(agent.clone()).await?;
                        agent
                    }
                    _ => agent,
                };
                self.emit(Event::AgentMessage { id: item.event_id, text, agent, attachments }).await
            }
            Delivery::Typing(on) => self.emit(Event::AgentTyping { on }).await,
            Delivery::UserLeft => {
                if let Some(agent) = self.take_pending_leave() {
                    self.emit(Event::AgentLeft { agent, transfer: false }).await?;
                }
                let by = lock(&self.inner.state).end.ended_by(EndedBy::System);
                self.emit(Event::Ended { by, reason: Some("the user was removed from the conversation".to_owned()) })
                    .await
            }
            Delivery::Verify => CONTINUE,
            Delivery::Ignore(why) => {
                tracing::trace!(why, "ignoring a delivery");
                CONTINUE
            }
        }
    }

    async fn on_close(&mut self, reason: EndReason) -> Flow {
        self.emit(Event::Ended { by: EndedBy::User, reason: Some(reason.as_str().to_owned()) }).await
    }

    fn next_timer(&self) -> Option<tokio::time::Instant> {
        lock(&self.inner.state).pending_leave.as_ref().map(|p| instant_at_unix_millis(p.at_ms))
    }

    /// The agent left and no transfer or next agent followed: the agent finished.
    async fn on_timer(&mut self) -> Flow {
        let Some(agent) = self.take_pending_leave() else { return CONTINUE };
        self.emit(Event::AgentLeft { agent, transfer: false }).await?;
        if self.inner.config.leave_after_agent
            && let Err(error) = self.inner.client.remove_user(&self.inner.conversation).await
        {
            tracing::warn!(%error, "could not remove the user after the agent left");
        }
        self.emit(Event::Ended { by: EndedBy::Agent, reason: Some("the agent left the conversation".to_owned()) }).await
    }

    fn is_ended(&self) -> bool {
        lock(&self.inner.state).end.is_ended()
    }
}

impl Task {
    async fn emit(&self, event: Event) -> Flow {
        self.events.emit(event, || lock(&self.inner.state).end.mark_ended()).await
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

    async fn agent_joined(&mut self, agent: Agent) -> Flow {
        if let Some(leaving) = self.take_pending_leave()
            && leaving.id != agent.id
        {
            self.emit(Event::AgentLeft { agent: leaving, transfer: true }).await?;
        }
        let previous = {
            let mut state = lock(&self.inner.state);
            state.transfer_pending = false;
            state.agent.replace(agent.clone())
        };
        if let Some(previous) = previous {
            if previous.id == agent.id {
                return CONTINUE;
            }
            self.emit(Event::AgentLeft { agent: previous, transfer: true }).await?;
        }
        self.emit(Event::AgentJoined { agent }).await
    }

    /// An agent left: the end after the grace period, unless a transfer came first.
    async fn agent_left(&mut self, id: Option<String>) -> Flow {
        let (agent, transfer) = {
            let mut state = lock(&self.inner.state);
            let Some(current) = &state.agent else { return CONTINUE };
            // A stale leave of an earlier agent (its successor is already in).
            if id.is_some() && current.id.is_some() && current.id != id {
                return CONTINUE;
            }
            let transfer = std::mem::take(&mut state.transfer_pending);
            (state.agent.take().unwrap_or_else(Agent::unknown), transfer)
        };
        if transfer {
            return self.emit(Event::AgentLeft { agent, transfer: true }).await;
        }
        let grace = Duration::from_millis(self.inner.config.transfer_grace_ms);
        lock(&self.inner.state).pending_leave = Some(PendingLeave { agent, at_ms: unix_millis_after(grace) });
        CONTINUE
    }

    /// The agent whose leave was pending, if any; no longer pending.
    fn take_pending_leave(&self) -> Option<Agent> {
        lock(&self.inner.state).pending_leave.take().map(|p| p.agent)
    }
}
