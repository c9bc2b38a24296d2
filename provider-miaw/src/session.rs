//! One handover on MIAW: the session backend (send, end, snapshot) and its task, which
//! reads the event stream, back-fills after reconnects and renews the token.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use handover_core::{
    Agent, Attachment, EndReason, EndedBy, Error, ErrorKind, Event, ProviderInfo, Result, Session, SessionBackend,
    SessionSnapshot, UserInput,
};
use handover_transport::dedup::DedupSet;
use handover_transport::events::{self, EndState, EventSender};
use handover_transport::reqwest::RequestBuilder;
use handover_transport::session::{CONTINUE, CloseReceiver, CloseSender, Flow, STOP, close_signal, lock, sleep_until};
use handover_transport::sse::{SseConfig, SseConnect, SseItem, SseStream};
use handover_transport::time::deadline_after;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::NAME;
use crate::auth::SessionToken;
use crate::client::{Client, Sent};
use crate::config::MiawConfig;
use crate::wire::{self, Delivery, WireEntry};

/// The version of this provider's snapshot state: raise it when the state's shape
/// changes (a snapshot in another version is refused on resume).
const STATE_VERSION: u32 = 1;

const SEEN_IDS: usize = 1024;
const SNAPSHOT_SEEN_IDS: usize = 256;
const BACKFILL_PAGE: u32 = 50;
const BACKFILL_MAX_PAGES: usize = 20;

/// The conversation of one handover, and what the session knows of it.
pub(crate) struct Inner {
    /// The provider's, shared by its sessions.
    info: Arc<ProviderInfo>,
    config: Arc<MiawConfig>,
    client: Arc<Client>,
    session_id: String,
    conversation_id: String,
    routing_attributes: Map<String, Value>,
    token: SessionToken,
    state: Mutex<State>,
    close: CloseSender,
}

pub(crate) struct State {
    last_event_id: Option<String>,
    watermark_ms: u64,
    seen: DedupSet,
    end: EndState,
}

impl State {
    /// A session's state from the stream position, the back-fill watermark and the entries
    /// already handled (empty for a new session).
    pub(crate) fn new(last_event_id: Option<String>, watermark_ms: u64, seen: &[String]) -> Self {
        let mut ids = DedupSet::new(SEEN_IDS);
        ids.extend(seen);
        Self { last_event_id, watermark_ms, seen: ids, end: EndState::default() }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub(crate) conversation_id: String,
    pub(crate) user_id: String,
    pub(crate) last_event_id: Option<String>,
    pub(crate) watermark_ms: u64,
    pub(crate) seen: Vec<String>,
    pub(crate) routing_attributes: Map<String, Value>,
}

impl Snapshot {
    /// Reads a snapshot this provider wrote (the access token is in its secrets).
    pub(crate) fn read(snapshot: &SessionSnapshot) -> Result<Self> {
        snapshot.state_for(NAME, STATE_VERSION)
    }
}

impl Inner {
    /// A session of `conversation_id`.
    pub(crate) fn new(
        provider: (&Arc<ProviderInfo>, &Arc<MiawConfig>, &Arc<Client>),
        session_id: String,
        conversation_id: String,
        routing_attributes: Map<String, Value>,
        token: SessionToken,
        state: State,
    ) -> (Arc<Self>, CloseReceiver) {
        let (info, config, client) = provider;
        let (close, closed) = close_signal();
        let inner = Arc::new(Self {
            info: info.clone(),
            config: config.clone(),
            client: client.clone(),
            session_id,
            conversation_id,
            routing_attributes,
            token,
            state: Mutex::new(state),
            close,
        });
        (inner, closed)
    }

    /// A resumed session's token may have expired while it was away.
    pub(crate) async fn refresh_if_expired(&self) -> Result<()> {
        if self.token.expired() { self.token.refresh().await } else { Ok(()) }
    }

    /// §3 #5: the conversation, with the routing attributes.
    pub(crate) async fn create_conversation(&self, language: Option<&str>) -> Result<()> {
        let (client, conversation, attributes) = (&self.client, &self.conversation_id, &self.routing_attributes);
        self.token
            .authorized(
                |token| async move { client.create_conversation(&token, conversation, attributes, language).await },
            )
            .await?;
        tracing::info!(conversation = %self.conversation_id, "conversation created");
        Ok(())
    }

    /// Sends `text` with `message.id` derived from `input_id`: the same input always
    /// carries the same id (a correlation id; salesforce-miaw.md notes no documented
    /// deduplication on it), also when a 417 makes us send it again.
    pub(crate) async fn send_text(&self, input_id: &str, text: &str) -> Result<()> {
        let id = handover_transport::ids::client_uuid(&self.conversation_id, input_id);
        let id = id.as_str();
        let client = &self.client;
        let conversation = &self.conversation_id;
        let sent = self
            .token
            .authorized(|token| async move { client.send_message(&token, conversation, id, text, None).await });
        if sent.await? == Sent::Accepted {
            return Ok(());
        }
        // §3 #7: 417 means no messaging session; start one with the routing attributes.
        tracing::debug!(conversation = %self.conversation_id, "no messaging session (417); starting a new one");
        let attributes = &self.routing_attributes;
        let language = self.config.language.as_deref();
        let resent = self
            .token
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

    /// §3 #10: sends the end user's file (with its caption), `message.id` derived from
    /// `input_id` like a text message's, and `fileId` derived from it too, so a resend
    /// carries the same ids.
    pub(crate) async fn send_file(&self, input_id: &str, attachment: &Attachment) -> Result<()> {
        let message_id = handover_transport::ids::client_uuid(&self.conversation_id, input_id);
        let file_id = handover_transport::ids::client_uuid(&self.conversation_id, &format!("file:{input_id}"));
        let (client, conversation) = (&self.client, &self.conversation_id);
        let ids = (message_id.as_str(), file_id.as_str());
        self.token
            .authorized(|token| async move { client.send_file(&token, conversation, ids, attachment).await })
            .await?;
        tracing::debug!(conversation = %self.conversation_id, name = %attachment.name, "file sent");
        Ok(())
    }

    /// Records `entry` as handled (and its time as the back-fill watermark): `false` when it
    /// was already.
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
        lock(&self.state).end.ensure_open(NAME, "send")?;
        match input {
            UserInput::Message { id, text } => self.send_text(&id, &text).await,
            UserInput::Attachment { id, attachment } => self.send_file(&id, &attachment).await,
            UserInput::Typing { on } => {
                let client = &self.client;
                let conversation = &self.conversation_id;
                self.token.authorized(|token| async move { client.send_typing(&token, conversation, on).await }).await
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
        self.token.authorized(|token| async move { client.close_conversation(&token, conversation).await }).await?;
        self.close.close(reason).await;
        Ok(())
    }

    fn snapshot(&self) -> Result<SessionSnapshot> {
        let state = lock(&self.state);
        let seen: Vec<String> = state.seen.ids().map(str::to_owned).collect();
        let skip = seen.len().saturating_sub(SNAPSHOT_SEEN_IDS);
        let snapshot = Snapshot {
            conversation_id: self.conversation_id.clone(),
            user_id: self.token.user_id().to_owned(),
            last_event_id: state.last_event_id.clone(),
            watermark_ms: state.watermark_ms,
            seen: seen.into_iter().skip(skip).collect(),
            routing_attributes: self.routing_attributes.clone(),
        };
        drop(state);
        Ok(SessionSnapshot::new(NAME, STATE_VERSION, &self.session_id, &snapshot)?
            .with_secret("access_token", self.token.token().expose_secret()))
    }
}

/// The event stream's request, with the session's current token.
struct Connector(Arc<Inner>);

#[async_trait]
impl SseConnect for Connector {
    fn provider(&self) -> &'static str {
        NAME
    }

    async fn request(&self, last_event_id: Option<&str>) -> Result<RequestBuilder> {
        Ok(self.0.client.sse_request(&self.0.token.token(), last_event_id))
    }

    async fn refresh_auth(&self) -> Result<()> {
        self.0.token.refresh().await
    }
}

/// Opens the event stream (§2: before anything can happen) and starts the session task;
/// `catch_up` after a resume.
pub(crate) async fn open(
    inner: Arc<Inner>,
    closed: CloseReceiver,
    last_event_id: Option<String>,
    sse: &SseConfig,
    capacity: usize,
    catch_up: bool,
) -> Result<Session> {
    let mut stream = SseStream::new(Connector(inner.clone()), sse.clone(), last_event_id);
    match stream.next().await {
        Some(Ok(SseItem::Connected { .. })) => {}
        Some(Err(error)) => return Err(error),
        other => {
            return Err(Error::protocol(NAME, "open event stream", format!("unexpected first item {other:?}")));
        }
    }
    let (events, receiver) = events::channel(capacity);
    let task = Task { inner: inner.clone(), events };
    tokio::spawn(task.run(stream, closed, catch_up));
    Ok(Session::new(inner, receiver))
}

/// The state machine of one handover.
struct Task {
    inner: Arc<Inner>,
    events: EventSender,
}

/// How a back-fill went.
enum Backfill {
    /// Every unseen entry was handled.
    Done,
    /// The session ended or the consumer left.
    Stopped,
    /// The entries could not be read: events may be missing.
    Failed,
}

impl Task {
    /// The stream, the bot side's close and the token's renewal, in one `select!`, until
    /// the session is over.
    ///
    /// This future is what every held session keeps: it is an `async` block (an `async fn`
    /// would keep its arguments twice, the stream among them), and the rare or large steps
    /// (the back-fill, the token's renewal, an event's handling) are boxed while they run.
    #[allow(clippy::manual_async_fn, reason = "an `async fn` would keep its arguments twice in its state")]
    fn run(
        self,
        mut stream: SseStream<Connector>,
        mut closed: CloseReceiver,
        catch_up: bool,
    ) -> impl Future<Output = ()> {
        async move {
            if catch_up && matches!(Box::pin(self.backfill()).await, Backfill::Stopped) {
                return;
            }
            let mut flow = CONTINUE;
            while flow.is_continue() {
                let renew_at = self.inner.token.renew_in().map(|after| deadline_after(Instant::now(), after));
                flow = tokio::select! {
                    biased;
                    () = self.events.closed() => STOP,
                    reason = closed.recv() => {
                        self.emit(Event::Ended { by: EndedBy::User, reason: Some(reason.as_str().to_owned()) }).await
                    }
                    item = stream.next() => match item {
                        None => STOP,
                        Some(Err(error)) => {
                            self.events.fail(error).await;
                            STOP
                        }
                        Some(Ok(SseItem::Connected { reconnect: false })) => CONTINUE,
                        Some(Ok(SseItem::Connected { reconnect: true })) => match Box::pin(self.backfill()).await {
                            Backfill::Stopped => STOP,
                            Backfill::Done => self.emit(Event::Resumed { gap: false }).await,
                            Backfill::Failed => self.emit(Event::Resumed { gap: true }).await,
                        },
                        Some(Ok(SseItem::Disconnected)) => self.emit(Event::Reconnecting).await,
                        Some(Ok(SseItem::Event(event))) => {
                            lock(&self.inner.state).last_event_id.clone_from(&event.id);
                            Box::pin(self.on_sse_event(&event.event, &event.data)).await
                        }
                    },
                    () = sleep_until(renew_at) => {
                        if let Err(error) = Box::pin(self.inner.token.refresh()).await {
                            tracing::warn!(%error, "could not renew the access token ahead of expiry");
                        }
                        CONTINUE
                    }
                };
            }
        }
    }

    fn emit(&self, event: Event) -> impl Future<Output = Flow> + '_ {
        self.events.emit(event, || lock(&self.inner.state).end.mark_ended())
    }

    async fn on_sse_event(&self, name: &str, data: &str) -> Flow {
        if name == "ping" || !name.starts_with("CONVERSATION_") {
            tracing::trace!(event = name, "ignoring a non-conversation event");
            return CONTINUE;
        }
        let envelope = match wire::parse_envelope(data) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(%error, event = name, "skipping an unreadable event");
                return CONTINUE;
            }
        };
        if envelope.conversation_id != self.inner.conversation_id {
            tracing::trace!("ignoring an event of another conversation");
            return CONTINUE;
        }
        self.on_entry(&envelope.conversation_entry, Some(name)).await
    }

    /// An entry from the stream (`event` its name) or the back-fill, once per id.
    async fn on_entry(&self, entry: &WireEntry, event: Option<&str>) -> Flow {
        if !self.inner.mark_seen(entry) {
            tracing::trace!(id = %entry.identifier, "dropping a repeated entry");
            return CONTINUE;
        }
        let deliveries = match wire::interpret(entry, event) {
            Ok(deliveries) => deliveries,
            Err(error) => {
                tracing::warn!(%error, "skipping an unreadable entry");
                return CONTINUE;
            }
        };
        for delivery in deliveries {
            match delivery {
                Delivery::Emit(event) => self.emit(event).await?,
                Delivery::Ignore(why) => {
                    tracing::trace!(id = %entry.identifier, entry_type = %entry.entry_type, why, "ignoring entry");
                }
                Delivery::AgentRemoved(agent) => Box::pin(self.agent_removed(agent)).await?,
                Delivery::Closed => {
                    self.emit(Event::Ended { by: EndedBy::User, reason: Some("conversation closed".to_owned()) })
                        .await?;
                }
                Delivery::SessionEnded => {
                    let by = lock(&self.inner.state).end.ended_by(EndedBy::Agent);
                    self.emit(Event::Ended { by, reason: Some("session ended".to_owned()) }).await?;
                }
                Delivery::RoutingFailed(reason) => {
                    lock(&self.inner.state).end.mark_ended();
                    let message = format!("Salesforce could not route the conversation: {reason}");
                    self.events.fail(Error::protocol(NAME, "route conversation", message)).await;
                    return STOP;
                }
            }
        }
        CONTINUE
    }

    /// §9: a removed agent left for good only when the routing status says `NEEDS_ROUTING`;
    /// `TRANSFER` (moving), `ROUTED` (already with the next agent) and `INITIAL` keep the
    /// handover open.
    async fn agent_removed(&self, agent: Agent) -> Flow {
        let client = &self.inner.client;
        let conversation = &self.inner.conversation_id;
        let status =
            self.inner.token.authorized(|token| async move { client.routing_status(&token, conversation).await }).await;
        let transfer = match status.as_deref() {
            Ok("NEEDS_ROUTING") => false,
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "could not tell a transfer from a leave; assuming the agent left");
                return self.emit(Event::AgentLeft { agent, transfer: false }).await;
            }
        };
        if !transfer && self.inner.config.end_on_participant_change {
            self.emit(Event::AgentLeft { agent, transfer: false }).await?;
            return self.emit(Event::Ended { by: EndedBy::Agent, reason: Some("the agent left".to_owned()) }).await;
        }
        self.emit(Event::AgentLeft { agent, transfer }).await
    }

    /// Fetches entries from the watermark on and handles the unseen ones.
    async fn backfill(&self) -> Backfill {
        let client = &self.inner.client;
        let conversation = &self.inner.conversation_id;
        for _ in 0..BACKFILL_MAX_PAGES {
            let start = lock(&self.inner.state).watermark_ms;
            let start = (start > 0).then_some(start);
            let page = match self
                .inner
                .token
                .authorized(|token| async move { client.entries(&token, conversation, start, BACKFILL_PAGE).await })
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "back-fill after reconnect failed; events may be missing");
                    return Backfill::Failed;
                }
            };
            let full = page.len() >= BACKFILL_PAGE as usize;
            let mut sorted = page;
            sorted.sort_by_key(|e| e.transcripted_timestamp.unwrap_or(0));
            let mut new = 0;
            for entry in &sorted {
                if lock(&self.inner.state).seen.contains(&entry.identifier) {
                    continue;
                }
                new += 1;
                if self.on_entry(entry, None).await.is_break() {
                    return Backfill::Stopped;
                }
            }
            if !full || new == 0 {
                return Backfill::Done;
            }
        }
        Backfill::Done
    }
}
