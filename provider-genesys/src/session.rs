//! One handover on Genesys: the session backend (send, end, snapshot) and its task, the
//! state machine that turns webhook deliveries and participant changes into events.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{
    Agent, Attachment, EndReason, EndedBy, Error, Event, EventStream, ProviderInfo, Result, Session, SessionBackend,
    SessionSnapshot, UserInput,
};
use handover_transport::dedup::DedupSet;
use handover_transport::events::EndState;
use handover_transport::push::Link;
use handover_transport::session::{CONTINUE, CloseReceiver, CloseSender, Flow, STOP, close_signal, lock, sleep_until};
use handover_transport::time::{instant_at_unix_millis, unix_millis_after};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::NAME;
use crate::auth::TokenCache;
use crate::client::{self, Client, Customer};
use crate::config::GenesysConfig;
use crate::notifications::{DisconnectType, EndDetector, ParticipantEvent};
use crate::wire::{Delivery, Outbound};

/// The version of this provider's snapshot state: raise it when the state's shape
/// changes (a snapshot in another version is refused on resume).
const STATE_VERSION: u32 = 1;

/// The customer of one handover, and what the session knows of the conversation.
pub(crate) struct Inner {
    info: ProviderInfo,
    config: Arc<GenesysConfig>,
    client: Arc<Client>,
    tokens: Arc<TokenCache>,
    session_id: String,
    customer: Customer,
    state: Mutex<State>,
    close: CloseSender,
}

pub(crate) struct State {
    conversation_id: Option<String>,
    agents: HashSet<String>,
    /// The (id, time) keys of every delivery handled: the signature covers them, so a
    /// replay is dropped for as long as the session lives.
    seen: DedupSet,
    end: EndState,
    /// The handover ends at this deadline with this `by`, unless cancelled: after an agent's
    /// end (another agent may still start: a requeue), or after the conversation's end
    /// (agent messages may still arrive as webhooks).
    pending_end: Option<PendingEnd>,
}

/// An end waiting out a grace period; in the snapshot, so a resumed session still ends.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(crate) struct PendingEnd {
    /// The deadline, in Unix milliseconds.
    at_ms: u64,
    by: EndedBy,
}

impl Default for State {
    fn default() -> Self {
        Self {
            conversation_id: None,
            agents: HashSet::new(),
            seen: DedupSet::unbounded(),
            end: EndState::default(),
            pending_end: None,
        }
    }
}

/// What a snapshot keeps: the customer, the conversation, the agents in it and the
/// deliveries handled (a resumed session is not ended).
#[derive(Serialize, Deserialize)]
pub(crate) struct Snapshot {
    customer_id: String,
    nickname: Option<String>,
    email: Option<String>,
    conversation_id: Option<String>,
    agents: Vec<String>,
    #[serde(default)]
    seen: DedupSet,
    #[serde(default)]
    pending_end: Option<PendingEnd>,
}

impl Snapshot {
    /// Reads a snapshot this provider wrote.
    pub(crate) fn read(snapshot: &SessionSnapshot) -> Result<Self> {
        snapshot.state_for(NAME, STATE_VERSION)
    }

    /// The customer and the state to resume with.
    pub(crate) fn into_parts(self) -> (Customer, State) {
        let customer = Customer { id: self.customer_id, nickname: self.nickname, email: self.email };
        let state = State {
            conversation_id: self.conversation_id,
            agents: self.agents.into_iter().collect(),
            seen: self.seen,
            end: EndState::default(),
            pending_end: self.pending_end,
        };
        (customer, state)
    }
}

impl Inner {
    /// A session of `customer`.
    pub(crate) fn new(
        provider: (&ProviderInfo, &Arc<GenesysConfig>, &Arc<Client>, &Arc<TokenCache>),
        session_id: String,
        customer: Customer,
        state: State,
    ) -> (Arc<Self>, CloseReceiver) {
        let (info, config, client, tokens) = provider;
        let (close, closed) = close_signal();
        let inner = Arc::new(Self {
            info: info.clone(),
            config: config.clone(),
            client: client.clone(),
            tokens: tokens.clone(),
            session_id,
            customer,
            state: Mutex::new(state),
            close,
        });
        (inner, closed)
    }

    /// The customer id: the key webhooks are routed on.
    pub(crate) fn customer_id(&self) -> &str {
        &self.customer.id
    }

    async fn authorized<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.tokens.authorized(call).await
    }

    /// Sends `text` as the customer, with `channel.messageId` derived from `input_id`: the
    /// same input always carries the same message id (genesys.md §5.1; whether Genesys
    /// deduplicates on it is not documented).
    pub(crate) async fn send_text(
        &self,
        input_id: &str,
        text: &str,
        attributes: Option<&Map<String, Value>>,
    ) -> Result<()> {
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

    /// Sends a file as a link Genesys fetches (§5.1), with the message id derived from
    /// `input_id`. When the integration refuses the content (§11 item 7: its
    /// supported-content profile), the file goes once more as a text with its caption and
    /// link, under a message id of its own.
    async fn send_attachment(&self, input_id: &str, attachment: &Attachment) -> Result<()> {
        let id = handover_transport::ids::client_uuid(&self.customer.id, input_id);
        let (client, customer, id) = (&self.client, &self.customer, id.as_str());
        let sent = self
            .authorized(|token| async move { client.send_attachment(&token, customer, id, attachment).await })
            .await;
        match sent {
            Ok(accepted) => {
                if let Some(conversation_id) = accepted.conversation_id {
                    lock(&self.state).conversation_id.get_or_insert(conversation_id);
                }
                Ok(())
            }
            Err(error) if client::refuses_media(&error) => {
                tracing::info!(
                    status = error.status(),
                    "Genesys refused the attachment's content; sending its link as text instead"
                );
                let text = client::attachment_link_text(attachment);
                let url = attachment.url_str().unwrap_or_default();
                self.send_text(&format!("{input_id}#link"), &text, None)
                    .await
                    .map_err(|error| client::without_url(error, url))
            }
            Err(error) => Err(error),
        }
    }

    fn conversation_id(&self) -> Option<String> {
        lock(&self.state).conversation_id.clone()
    }
}

/// A fresh id for an input that has none of its own (presence notes).
fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[async_trait]
impl SessionBackend for Inner {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn send(&self, input: UserInput) -> Result<()> {
        lock(&self.state).end.ensure_open(NAME, "send")?;
        match input {
            UserInput::Message { id, text } => self.send_text(&id, &text, None).await,
            UserInput::Attachment { id, attachment } => self.send_attachment(&id, &attachment).await,
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
        self.close.close(reason).await;
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
            pending_end: state.pending_end,
        };
        Ok(SessionSnapshot::new(NAME, STATE_VERSION, &self.session_id, &snapshot)?
            .with_conversation_key(self.customer.id.clone()))
    }
}

/// Starts the session task for `inner`: its conversation (when its id is known) watched
/// before this returns. On an error the link is dropped, which unregisters it.
pub(crate) async fn open(
    inner: Arc<Inner>,
    closed: CloseReceiver,
    (link, stream): (Link<Outbound>, EventStream),
    detector: Arc<dyn EndDetector>,
    capacity: usize,
    catch_up: bool,
) -> Result<Session> {
    let (participants_tx, participants) = mpsc::channel(capacity);
    let watching = match inner.conversation_id() {
        Some(conversation) => {
            detector.watch(&conversation, participants_tx.clone()).await?;
            true
        }
        None => {
            tracing::warn!(
                "Genesys returned no conversation id; participants are watched from the first agent message"
            );
            false
        }
    };
    let task = Task { inner: inner.clone(), detector, link, participants, participants_tx, watching, agent: None };
    tokio::spawn(task.run(closed, catch_up));
    Ok(Session::new(inner, stream))
}

/// The state machine of one handover.
struct Task {
    inner: Arc<Inner>,
    detector: Arc<dyn EndDetector>,
    link: Link<Outbound>,
    participants: mpsc::Receiver<ParticipantEvent>,
    participants_tx: mpsc::Sender<ParticipantEvent>,
    /// Whether the detector watches the conversation (its id may come only with a delivery).
    watching: bool,
    /// The agent currently handling the conversation.
    agent: Option<Agent>,
}

impl Task {
    /// Webhook deliveries, participant changes, the bot side's close and the pending end, in
    /// one `select!`, until the session is over.
    ///
    /// This future is what every held session keeps: it is an `async` block (an `async fn`
    /// would keep its arguments twice), and the steps (a delivery, a participant change, a
    /// resync) are boxed while they run.
    #[allow(clippy::manual_async_fn, reason = "an `async fn` would keep its arguments twice in its state")]
    fn run(mut self, mut closed: CloseReceiver, catch_up: bool) -> impl Future<Output = ()> {
        async move {
            let events = self.link.events().clone();
            let mut flow = if self.watching && catch_up { Box::pin(self.resync()).await } else { CONTINUE };
            while flow.is_continue() {
                let pending_end = self.pending_end_at();
                flow = tokio::select! {
                    biased;
                    () = events.closed() => STOP,
                    reason = closed.recv() => {
                        self.emit(Event::Ended { by: EndedBy::User, reason: Some(reason.as_str().to_owned()) }).await
                    }
                    delivery = self.link.recv() => match delivery {
                        Some(delivery) => {
                            let flow = Box::pin(self.on_delivery(delivery)).await;
                            self.link.handled();
                            flow
                        }
                        None => STOP,
                    },
                    event = self.participants.recv() => match event {
                        Some(event) => Box::pin(self.on_participant(event)).await,
                        None => CONTINUE,
                    },
                    () = sleep_until(pending_end) => {
                        let by = lock(&self.inner.state).pending_end.take().map_or(EndedBy::Agent, |p| p.by);
                        self.emit(Event::Ended { by, reason: Some("the conversation ended".to_owned()) }).await
                    }
                };
            }
            // A resumed session may have taken the route over: that one is left alone. After the
            // end, late deliveries are acknowledged and dropped.
            let ended = lock(&self.inner.state).end.is_ended();
            self.link.finish(ended);
            if let Some(conversation) = self.inner.conversation_id() {
                self.detector.unwatch(&conversation, &self.participants_tx);
            }
        }
    }

    /// When the pending end is due, if one is pending.
    fn pending_end_at(&self) -> Option<Instant> {
        lock(&self.inner.state).pending_end.map(|p| instant_at_unix_millis(p.at_ms))
    }

    fn emit(&self, event: Event) -> impl Future<Output = Flow> + '_ {
        self.link.emit(event, || lock(&self.inner.state).end.mark_ended())
    }

    /// Starts watching `conversation`; a failure fails the event stream (the session goes
    /// on without participant changes).
    async fn watch(&mut self, conversation: &str) {
        match self.detector.watch(conversation, self.participants_tx.clone()).await {
            Ok(()) => self.watching = true,
            Err(error) => {
                self.link.events().fail(error.in_op("watch participants")).await;
            }
        }
    }

    /// A webhook delivery, once per (id, time).
    async fn on_delivery(&mut self, delivery: Outbound) -> Flow {
        if !self.watching
            && let Some(conversation) = delivery.conversation_id.clone()
        {
            // No id came back from the first message: learn it from a delivery.
            lock(&self.inner.state).conversation_id.get_or_insert(conversation.clone());
            Box::pin(self.watch(&conversation)).await;
        }
        if !lock(&self.inner.state).seen.insert(&delivery.dedup_key()) {
            tracing::debug!("dropping a replayed delivery");
            return CONTINUE;
        }
        match delivery.interpret() {
            Delivery::Message { text, attachments, from_bot } => {
                if from_bot && !self.inner.config.forward_bot_messages {
                    tracing::debug!("suppressing a message from the Genesys flow or a bot");
                    return CONTINUE;
                }
                let agent = if from_bot { Agent::named("Bot") } else { self.current_agent() };
                self.emit(Event::AgentMessage { id: delivery.id, text, agent, attachments }).await
            }
            Delivery::Typing => self.emit(Event::AgentTyping { on: true }).await,
            Delivery::Receipt { status } => {
                if status == "Failed" {
                    tracing::warn!(reasons = ?delivery.reasons, "Genesys could not deliver a customer message");
                }
                CONTINUE
            }
            Delivery::Ignore(why) => {
                tracing::trace!(why, "ignoring a webhook delivery");
                CONTINUE
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
                    return CONTINUE;
                }
                let requeued = lock(&self.inner.state).pending_end.take_if(|p| p.by == EndedBy::Agent).is_some();
                if requeued {
                    // The earlier agent's end was a requeue or transfer after all.
                    self.emit(Event::AgentLeft { agent: self.current_agent(), transfer: true }).await?;
                }
                let agent = self.agent_for(user_id).await;
                self.agent = Some(agent.clone());
                self.emit(Event::AgentJoined { agent }).await
            }
            ParticipantEvent::AgentEnded { participant_id, disconnect } => {
                if !lock(&self.inner.state).agents.remove(&participant_id) {
                    // An offer the agent never accepted, or a repeat.
                    return CONTINUE;
                }
                if disconnect.is_transfer() {
                    return self.emit(Event::AgentLeft { agent: self.current_agent(), transfer: true }).await;
                }
                // §7.1: a requeue also ends the agent's session; wait before deciding.
                let at_ms = unix_millis_after(Duration::from_millis(self.inner.config.transfer_grace_ms));
                lock(&self.inner.state).pending_end.get_or_insert(PendingEnd { at_ms, by: EndedBy::Agent });
                CONTINUE
            }
            ParticipantEvent::CustomerEnded { .. } => {
                let by = lock(&self.inner.state).end.ended_by(EndedBy::Agent);
                if by == EndedBy::User {
                    return self.emit(Event::Ended { by, reason: Some("the conversation ended".to_owned()) }).await;
                }
                // The conversation is over, but the agent's last messages may still be on their way.
                let at_ms = unix_millis_after(Duration::from_millis(self.inner.config.end_drain_ms));
                let mut state = lock(&self.inner.state);
                let at_ms = state.pending_end.map_or(at_ms, |pending| pending.at_ms.min(at_ms));
                state.pending_end = Some(PendingEnd { at_ms, by });
                CONTINUE
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
                STOP
            }
        }
    }

    /// Re-reads the conversation after events may have been missed.
    async fn resync(&mut self) -> Flow {
        let Some(conversation) = self.inner.conversation_id() else { return CONTINUE };
        let client = &self.inner.client;
        let id = conversation.as_str();
        let participants =
            match self.inner.authorized(|token| async move { client.participants(&token, id).await }).await {
                Ok(participants) => participants,
                Err(error) => {
                    tracing::warn!(%error, "could not re-read the conversation after a reconnect");
                    return CONTINUE;
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
                    disconnect: DisconnectType::parse(
                        participant.disconnect_type.as_deref().map(str::to_ascii_uppercase).as_deref(),
                    ),
                },
                ("customer", "disconnected" | "terminated", _) => ParticipantEvent::CustomerEnded {
                    disconnect: DisconnectType::parse(participant.disconnect_type.as_deref()),
                },
                _ => continue,
            };
            Box::pin(self.on_participant(event)).await?;
        }
        CONTINUE
    }
}
