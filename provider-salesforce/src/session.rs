//! One chat: the session backend (send, end, snapshot) and its task, the one long-poll
//! loop that turns batches into events, with sends gated on `ChatEstablished` and the
//! failover of §6.1.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{
    Agent, EndReason, EndedBy, Error, ErrorKind, Event, ProviderInfo, Result, Session, SessionBackend, SessionSnapshot,
    UserInput,
};
use handover_transport::CancellationToken;
use handover_transport::events::{self, EndState, EventSender};
use handover_transport::longpoll::{LongPoll, LongPollConfig, PollOutcome};
use handover_transport::session::{CONTINUE, CloseReceiver, CloseSender, Flow, STOP, close_signal, lock};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::NAME;
use crate::client::{Chasitor, Client, Keys, Polled, Posted, SessionInfo};
use crate::config::SalesforceConfig;
use crate::wire::{self, Delivery};

/// The version of this provider's snapshot state: raise it when the state's shape
/// changes (a snapshot in another version is refused on resume).
const STATE_VERSION: u32 = 1;

/// The chat of one handover, and what the session knows of it.
pub(crate) struct Inner {
    info: ProviderInfo,
    config: Arc<SalesforceConfig>,
    client: Arc<Client>,
    session_id: String,
    key: SecretString,
    state: Mutex<State>,
    /// One POST at a time, so sequence numbers go out in order (sends, `ChatEnd` and the
    /// resync after a failover alike).
    post_lock: tokio::sync::Mutex<()>,
    /// A send saw 503: the poll loop reconnects once its current poll is done (abandoning
    /// a poll and opening another would make the server end the chat with 409).
    failover: AtomicBool,
    close: CloseSender,
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct State {
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

impl State {
    /// A new chat's state, from the session Salesforce opened.
    pub(crate) fn new(info: &SessionInfo) -> Self {
        Self {
            chat_session_id: info.id.clone(),
            affinity: info.affinity_token.clone(),
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
        }
    }
}

/// A snapshot is the state itself (the session key is in its secrets).
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Snapshot(State);

impl Snapshot {
    /// Reads the state of a snapshot this provider wrote.
    pub(crate) fn read(snapshot: &SessionSnapshot) -> Result<State> {
        snapshot.state_for::<Self>(NAME, STATE_VERSION).map(|Self(state)| state)
    }
}

impl Inner {
    /// A session of the chat `key` opened; `state` is a resumed session's (its end state
    /// reset).
    pub(crate) fn new(
        provider: (&ProviderInfo, &Arc<SalesforceConfig>, &Arc<Client>),
        session_id: String,
        key: SecretString,
        state: State,
    ) -> (Arc<Self>, CloseReceiver) {
        let (info, config, client) = provider;
        let (close, closed) = close_signal();
        let inner = Arc::new(Self {
            info: info.clone(),
            config: config.clone(),
            client: client.clone(),
            session_id,
            key,
            state: Mutex::new(State { end: state.end.resumed(), ..state }),
            post_lock: tokio::sync::Mutex::new(()),
            failover: AtomicBool::new(false),
            close,
        });
        (inner, closed)
    }

    /// POSTs `chasitor` with the next sequence number.
    pub(crate) async fn post(&self, op: &'static str, chasitor: Chasitor<'_>) -> Result<Posted> {
        let _order = self.post_lock.lock().await;
        let (affinity, sequence) = {
            let mut state = lock(&self.state);
            state.sequence += 1;
            (state.affinity.clone(), state.sequence)
        };
        self.client.post(op, &chasitor, &Keys { affinity: &affinity, key: &self.key }, sequence).await
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
        match self.post("send message", Chasitor::Message(&text)).await? {
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
        lock(&self.state).end.ensure_open(NAME, "send")?;
        match input {
            UserInput::Message { text, .. } => self.send_text(text).await,
            UserInput::Typing { on } => {
                if !lock(&self.state).established {
                    return Ok(());
                }
                match self.post("send typing", Chasitor::Typing(on)).await? {
                    Posted::Gone => Err(Error::session_ended(NAME, "send typing")),
                    _ => Ok(()),
                }
            }
            UserInput::Connected => self.send_text(UserInput::CONNECTED_TEXT.to_owned()).await,
            UserInput::Disconnected => self.send_text(UserInput::DISCONNECTED_TEXT.to_owned()).await,
            other => Err(Error::unsupported(NAME, other.kind())),
        }
    }

    /// §9: `ChatEnd` with reason `client`, then the session is deleted. The final event
    /// carries `reason`.
    async fn end(&self, reason: EndReason) -> Result<()> {
        if !lock(&self.state).end.begin_close() {
            return Ok(());
        }
        let ended = self.post("end chat", Chasitor::End).await?;
        let affinity = lock(&self.state).affinity.clone();
        if let Err(error) = self.client.delete_session(&Keys { affinity: &affinity, key: &self.key }).await {
            tracing::debug!(%error, "the session could not be deleted after ChatEnd");
        }
        if ended == Posted::Failover {
            tracing::debug!("ChatEnd met a failover; the session was deleted");
        }
        self.close.close(reason).await;
        Ok(())
    }

    fn snapshot(&self) -> Result<SessionSnapshot> {
        let snapshot = Snapshot(lock(&self.state).clone());
        Ok(SessionSnapshot::new(NAME, STATE_VERSION, &self.session_id, &snapshot)?
            .with_secret("session_key", self.key.expose_secret()))
    }
}

/// Starts the poll loop; `reconnect_first` after a resume (§6.1).
pub(crate) fn open(
    inner: Arc<Inner>,
    closed: CloseReceiver,
    poll: &LongPollConfig,
    capacity: usize,
    reconnect_first: bool,
) -> Session {
    let (events, stream) = events::channel(capacity);
    let hold = Duration::from_secs(lock(&inner.state).poll_timeout);
    let poll = LongPoll::new(poll.clone().with_server_hold(hold), CancellationToken::new());
    inner.failover.store(reconnect_first, Ordering::SeqCst);
    let task = Task { inner: inner.clone(), events };
    tokio::spawn(task.run(poll, closed));
    Session::new(inner, stream)
}

/// The state machine of one chat.
struct Task {
    inner: Arc<Inner>,
    events: EventSender,
}

impl Task {
    /// The one poll loop of a session: exactly one poll in flight, ever (§6: a second one
    /// ends the chat with 409). The bot side's close ends it.
    ///
    /// This future is what every held session keeps: it is an `async` block (an `async fn`
    /// would keep its arguments twice), and what a poll brought is handled in a box of its
    /// own while it runs.
    #[allow(clippy::manual_async_fn, reason = "an `async fn` would keep its arguments twice in its state")]
    fn run(self, mut poll: LongPoll, mut closed: CloseReceiver) -> impl Future<Output = ()> {
        async move {
            let mut flow = CONTINUE;
            while flow.is_continue() {
                let (affinity, ack) = {
                    let state = lock(&self.inner.state);
                    (state.affinity.clone(), state.ack)
                };
                let client = &self.inner.client;
                let key = &self.inner.key;
                let failover = &self.inner.failover;
                flow = tokio::select! {
                    biased;
                    () = self.events.closed() => STOP,
                    reason = closed.recv() => {
                        self.emit(Event::Ended { by: EndedBy::User, reason: Some(reason.as_str().to_owned()) }).await
                    }
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
                                Err(error)
                                    if error.kind() == ErrorKind::Transport || error.kind() == ErrorKind::RateLimited =>
                                {
                                    PollOutcome::Retry(error)
                                }
                                Err(error) => PollOutcome::Fail(error),
                            }
                        }
                    }) => match polled {
                        Some(polled) => Box::pin(self.on_polled(polled)).await,
                        None => STOP,
                    },
                };
            }
        }
    }

    fn emit(&self, event: Event) -> impl Future<Output = Flow> + '_ {
        self.events.emit(event, || lock(&self.inner.state).end.mark_ended())
    }

    /// Ends the session with `error`.
    async fn fail(&self, error: Error) -> Flow {
        lock(&self.inner.state).end.mark_ended();
        self.events.fail(error).await;
        STOP
    }

    async fn on_polled(&self, polled: Result<Polled>) -> Flow {
        match polled {
            Err(error) => self.fail(error).await,
            Ok(Polled::Batch(body)) => self.on_batch(&body).await,
            Ok(Polled::Empty) => CONTINUE,
            Ok(Polled::Failover) => {
                self.inner.failover.store(false, Ordering::SeqCst);
                self.reconnect().await
            }
            Ok(Polled::Gone) => {
                let by = lock(&self.inner.state).end.ended_by(EndedBy::System);
                self.emit(Event::Ended { by, reason: Some("the chat session is no longer valid".to_owned()) }).await
            }
            Ok(Polled::Conflict) => {
                let error = Error::protocol(
                    NAME,
                    "poll messages",
                    "Salesforce ended the chat because a second poll was open for the session (409)",
                );
                self.fail(error).await
            }
        }
    }

    /// Processes every message of a batch in order (§6: a batch can hold a message and the
    /// end).
    async fn on_batch(&self, body: &[u8]) -> Flow {
        let batch = match wire::parse_batch(body) {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "skipping an unreadable batch");
                return CONTINUE;
            }
        };
        let number = {
            let mut state = lock(&self.inner.state);
            if state.ack >= 0 && batch.sequence <= state.ack {
                // A batch served again (a lost response on the server's side): already processed.
                tracing::debug!(sequence = batch.sequence, "dropping a repeated batch");
                return CONTINUE;
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
            match message.interpret(|| format!("{}-{number}-{index}", self.inner.session_id)) {
                Delivery::Emit(event) => self.emit(event).await?,
                Delivery::Established(agent) => {
                    {
                        let mut state = lock(&self.inner.state);
                        state.established = true;
                        state.agent.clone_from(&agent.name);
                    }
                    let flow = self.emit(Event::AgentJoined { agent }).await;
                    if let Err(error) = self.inner.flush().await {
                        return self.fail(error).await;
                    }
                    flow?;
                }
                Delivery::Transferred(agent) => {
                    let previous = lock(&self.inner.state).agent.replace(agent.name.clone().unwrap_or_default());
                    let mut left = Agent::unknown();
                    left.name = previous.filter(|n| !n.is_empty());
                    self.emit(Event::AgentLeft { agent: left, transfer: true }).await?;
                    self.emit(Event::AgentJoined { agent }).await?;
                }
                Delivery::Failed(reason) => {
                    let error = Error::new(
                        ErrorKind::Rejected,
                        NAME,
                        "request chat",
                        format!("Salesforce could not route the chat: {reason}"),
                    );
                    return self.fail(error).await;
                }
                Delivery::Ended => {
                    let by = lock(&self.inner.state).end.ended_by(EndedBy::Agent);
                    self.emit(Event::Ended { by, reason: Some("the chat ended".to_owned()) }).await?;
                }
                Delivery::SessionData => {
                    lock(&self.inner.state).resyncing = false;
                    if let Err(error) = self.inner.flush().await {
                        return self.fail(error).await;
                    }
                    self.emit(Event::Resumed { gap: false }).await?;
                }
                Delivery::FileTransfer(status) => tracing::debug!(
                    status,
                    "the agent's file transfer request changed; this connector uploads no files (Live Agent REST)"
                ),
                Delivery::Ignore => tracing::trace!(kind = %message.kind, "ignoring a message"),
            }
        }
        CONTINUE
    }

    /// §6.1: new affinity for the last offset, sequence reset, state resynced; queued
    /// messages wait for `ChasitorSessionData`.
    async fn reconnect(&self) -> Flow {
        self.emit(Event::Reconnecting).await?;
        let offset = {
            let mut state = lock(&self.inner.state);
            state.resyncing = true;
            state.offset
        };
        let affinity = match self.inner.client.reconnect(&self.inner.key, offset).await {
            Ok(affinity) => affinity,
            Err(error) => return self.fail(error.in_op("reconnect session")).await,
        };
        {
            let mut state = lock(&self.inner.state);
            state.affinity = affinity;
            state.sequence = 0;
        }
        let resync = Chasitor::ResyncState { organization_id: &self.inner.config.organization_id };
        match self.inner.post("resync state", resync).await {
            Ok(Posted::Done) => CONTINUE,
            // The chat ended meanwhile; the next poll still delivers what is pending (the agent's
            // last messages and ChatEnded) before it answers 403.
            Ok(Posted::Gone) => CONTINUE,
            Ok(Posted::Failover) => {
                self.inner.failover.store(true, Ordering::SeqCst);
                CONTINUE
            }
            Err(error) => self.fail(error).await,
        }
    }
}
