//! One handover on Engage: the session backend (send, end, snapshot) and its task, the
//! state machine that turns deliveries into events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{
    EndReason, EndedBy, Error, ErrorKind, Event, EventStream, ProviderInfo, Result, Session, SessionBackend,
    SessionSnapshot, UserInput,
};
use handover_transport::dedup::DedupSet;
use handover_transport::events::{EndState, EventSender};
use handover_transport::push::{self, Link, PushTask};
use handover_transport::session::{CONTINUE, CloseReceiver, CloseSender, Flow, close_signal, lock};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::NAME;
use crate::client::{self, Client, is_refused};
use crate::config::RingCentralConfig;
use crate::wire::{Delivery, Item};

/// The version of this provider's snapshot state: raise it when the state's shape
/// changes (a snapshot in another version is refused on resume).
const STATE_VERSION: u32 = 1;

/// The thread of one handover, and what the session knows of it.
pub(crate) struct Inner {
    info: ProviderInfo,
    config: Arc<RingCentralConfig>,
    client: Arc<Client>,
    session_id: String,
    /// Our thread id (`foreign_id` in Engage).
    thread: String,
    user: Value,
    state: Mutex<State>,
    close: CloseSender,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct State {
    engage_thread: Option<String>,
    intervention: Option<String>,
    /// An agent replied: the intervention can be closed, not canceled (§9.7).
    agent_replied: bool,
    /// The keys of every delivery handled, so a replay is dropped for as long as the
    /// session lives.
    #[serde(default)]
    seen: DedupSet,
    #[serde(flatten)]
    end: EndState,
}

impl Default for State {
    fn default() -> Self {
        Self {
            engage_thread: None,
            intervention: None,
            agent_replied: false,
            seen: DedupSet::unbounded(),
            end: EndState::default(),
        }
    }
}

impl State {
    /// A new session's state on Engage's thread `engage`.
    pub(crate) fn on(engage: String) -> Self {
        Self { engage_thread: Some(engage), ..Self::default() }
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub(crate) thread: String,
    pub(crate) user: Value,
    pub(crate) state: State,
}

impl Snapshot {
    /// Reads a snapshot this provider wrote.
    pub(crate) fn read(snapshot: &SessionSnapshot) -> Result<Self> {
        snapshot.state_for(NAME, STATE_VERSION)
    }
}

impl Inner {
    /// A session of our `thread`; `state` is a resumed session's (its end state reset).
    pub(crate) fn new(
        provider: (&ProviderInfo, &Arc<RingCentralConfig>, &Arc<Client>),
        session_id: String,
        thread: String,
        user: Value,
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
            thread,
            user,
            state: Mutex::new(state),
            close,
        });
        (inner, closed)
    }

    /// Our thread id.
    pub(crate) fn thread(&self) -> &str {
        &self.thread
    }

    /// Engage's id of the thread, once known.
    pub(crate) fn engage_thread(&self) -> Option<String> {
        lock(&self.state).engage_thread.clone()
    }

    async fn presence(&self, text: &str) -> Result<()> {
        if text.trim().is_empty() {
            return Ok(());
        }
        let bot = client::bot_object(&self.config);
        let id = uuid::Uuid::new_v4().to_string();
        self.client.post_message("send presence", &self.thread, &id, &bot, text).await
    }

    /// The open intervention: known from events, else listed.
    async fn open_intervention(&self) -> Result<Option<String>> {
        let (known, engage) = {
            let state = lock(&self.state);
            (state.intervention.clone(), state.engage_thread.clone())
        };
        if known.is_some() {
            return Ok(known);
        }
        let Some(engage) = engage else { return Ok(None) };
        let listed = self.client.interventions(&engage).await?;
        Ok(listed.iter().find(|i| i["closed"] != true).and_then(|i| i["id"].as_str()).map(str::to_owned))
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
            UserInput::Message { id, text } => {
                let id = handover_transport::ids::client_uuid(&self.thread, &id);
                self.client.post_message("send message", &self.thread, &id, &self.user, &text).await
            }
            UserInput::Attachment { id, attachment } => {
                // §4: a Message with `attachments`, its id derived like a text's.
                let id = handover_transport::ids::client_uuid(&self.thread, &id);
                self.client.post_attachment(&self.thread, &id, &self.user, &attachment).await
            }
            UserInput::Typing { on } => match self.client.typing(&self.thread, on).await {
                // §4: one typing.start per thread every 2 s; typing is best effort.
                Err(error) if error.kind() == ErrorKind::RateLimited => Ok(()),
                other => other,
            },
            UserInput::Connected => self.presence(&self.config.user_connects_text).await,
            UserInput::Disconnected => self.presence(&self.config.user_disconnects_text).await,
            other => Err(Error::unsupported(NAME, other.kind())),
        }
    }

    /// Closes the intervention when an agent replied, cancels it otherwise (§9.7); with no
    /// intervention yet, moves the thread back to the bot category.
    async fn end(&self, reason: EndReason) -> Result<()> {
        let (replied, engage) = {
            let mut state = lock(&self.state);
            if !state.end.begin_close() {
                return Ok(());
            }
            (state.agent_replied, state.engage_thread.clone())
        };
        match self.open_intervention().await? {
            Some(id) => match self.client.finish_intervention(&id, replied).await {
                // The other call fits what Engage knows (a reply we have not seen yet).
                Err(error) if is_refused(&error) => self.client.finish_intervention(&id, !replied).await?,
                other => other?,
            },
            None => {
                if let (Some(engage), Some(bot)) = (engage, &self.config.bot_category_id) {
                    self.client.set_thread_categories(&engage, std::slice::from_ref(bot)).await?;
                }
            }
        }
        self.close.close(reason).await;
        Ok(())
    }

    fn snapshot(&self) -> Result<SessionSnapshot> {
        let snapshot =
            Snapshot { thread: self.thread.clone(), user: self.user.clone(), state: lock(&self.state).clone() };
        Ok(SessionSnapshot::new(NAME, STATE_VERSION, &self.session_id, &snapshot)?
            .with_conversation_key(self.thread.clone()))
    }
}

/// Starts the session task for `inner` on its link; `catch_up` after a resume.
pub(crate) fn open(
    inner: Arc<Inner>,
    closed: CloseReceiver,
    (link, stream): (Link<Item>, EventStream),
    catch_up: bool,
) -> Session {
    let task = Task { inner: inner.clone(), events: link.events().clone(), closing: None };
    tokio::spawn(push::serve(task, link, closed, catch_up));
    Session::new(inner, stream)
}

/// The state machine of one handover.
struct Task {
    inner: Arc<Inner>,
    events: EventSender,
    /// The intervention closed: the end once replies still on their way had time to come.
    closing: Option<Instant>,
}

#[async_trait]
impl PushTask for Task {
    type Item = Item;

    /// After a resume: the intervention may have been closed while no session was attached.
    async fn catch_up(&mut self) -> Flow {
        let Some(engage) = lock(&self.inner.state).engage_thread.clone() else { return CONTINUE };
        let listed = match self.inner.client.interventions(&engage).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(%error, "could not re-read the interventions after a resume");
                return CONTINUE;
            }
        };
        if let Some(open) = listed.iter().find(|i| i["closed"] != true) {
            lock(&self.inner.state).intervention = open["id"].as_str().map(str::to_owned);
            return CONTINUE;
        }
        if !listed.is_empty() {
            return self.on(Delivery::InterventionClosed).await;
        }
        CONTINUE
    }

    /// A delivery, once per key.
    async fn on_delivery(&mut self, Item { key, delivery }: Item) -> Flow {
        if !lock(&self.inner.state).seen.insert(&key) {
            tracing::debug!("dropping a replayed delivery");
            return CONTINUE;
        }
        self.on(delivery).await
    }

    async fn on_close(&mut self, reason: EndReason) -> Flow {
        self.emit(Event::Ended { by: EndedBy::User, reason: Some(reason.as_str().to_owned()) }).await
    }

    fn next_timer(&self) -> Option<Instant> {
        self.closing
    }

    /// The drain after the close is over.
    async fn on_timer(&mut self) -> Flow {
        self.emit(Event::Ended { by: EndedBy::Agent, reason: Some("the agent closed the intervention".to_owned()) })
            .await
    }

    fn is_ended(&self) -> bool {
        lock(&self.inner.state).end.is_ended()
    }
}

impl Task {
    async fn emit(&self, event: Event) -> Flow {
        self.events.emit(event, || lock(&self.inner.state).end.mark_ended()).await
    }

    async fn on(&mut self, delivery: Delivery) -> Flow {
        match delivery {
            Delivery::AgentReply { content_id, text, agent, attachments } => {
                lock(&self.inner.state).agent_replied = true;
                if text.is_empty() && attachments.is_empty() {
                    return CONTINUE;
                }
                self.emit(Event::AgentMessage { id: content_id, text, agent, attachments }).await
            }
            Delivery::Queued { position, wait } => {
                if lock(&self.inner.state).agent_replied {
                    return CONTINUE;
                }
                self.emit(Event::Queued { position, estimated_wait: wait }).await
            }
            Delivery::InterventionOpen(id) => {
                // Reopened while closing: the handover goes on.
                self.closing = None;
                if id.is_some() {
                    lock(&self.inner.state).intervention = id;
                }
                CONTINUE
            }
            Delivery::InterventionClosed => {
                let drain = Duration::from_millis(self.inner.config.end_drain_ms);
                self.closing.get_or_insert(Instant::now() + drain);
                CONTINUE
            }
            Delivery::InterventionCanceled => {
                let by = lock(&self.inner.state).end.ended_by(EndedBy::System);
                self.emit(Event::Ended { by, reason: Some("the intervention was canceled".to_owned()) }).await
            }
        }
    }
}
