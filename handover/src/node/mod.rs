//! The node runtime: the one place the flow semantics of a handover live.
//!
//! [`Node::run`] drives one handover for any [`Provider`]: it starts the session, says the
//! accepted message, relays user input to the agent and agent events to the bot, handles
//! cancel intents and buttons, reports the queue at the configured intervals, emits the
//! queue, active and resolve events the node opted into, and ends with exactly one
//! [`HandoverStatus`]. The rules are those of `protocols/handover-semantics.md` §2–§4, §6.
//!
//! ```no_run
//! # async fn demo(provider: std::sync::Arc<dyn handover::Provider>, request: handover::HandoverRequest) {
//! use handover::node::{Node, NodeConfig, NodeInput};
//! use tokio::sync::mpsc;
//!
//! let (input_tx, inputs) = mpsc::channel(16);
//! let (outputs, mut output_rx) = mpsc::channel(16);
//! let node = Node::new(NodeConfig::default());
//! let run = tokio::spawn(async move {
//!     node.run(provider.as_ref(), request, inputs, outputs, Default::default()).await
//! });
//! input_tx.send(NodeInput::Message { text: "Hello".into(), id: None }).await.ok();
//! while let Some(output) = output_rx.recv().await {
//!     println!("{}", serde_json::to_string(&output).unwrap());
//! }
//! let outcome = run.await.unwrap();
//! println!("final status: {}", outcome.status.as_str());
//! # }
//! ```

mod config;
mod io;
mod queue;

use handover_core::{
    EndReason, EndedBy, Error, ErrorKind, ErrorReason, Event, HandoverRequest, HandoverStatus, Provider, SessionHandle,
    UserInput, transcript,
};
use handover_transport::CancellationToken;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use self::config::{Alternative, FlowContinuation, NodeConfig, QueueUpdates};
pub use self::io::{FlowEvent, NodeInput, NodeOutput};
use self::queue::QueueReporter;

/// How a handover ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeOutcome {
    /// The final status, also sent as the last [`NodeOutput::Status`].
    pub status: HandoverStatus,
    /// Where the flow continues (only for `completed`).
    pub continuation: Option<FlowContinuation>,
}

/// Runs handovers with one node configuration.
#[derive(Clone, Debug, Default)]
pub struct Node {
    config: NodeConfig,
}

impl Node {
    /// A node with `config`.
    pub fn new(config: NodeConfig) -> Self {
        Self { config }
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Runs one handover to its final status.
    ///
    /// `inputs` closing means no more user input; the handover goes on until it ends.
    /// `outputs` receives everything to show or emit, the final status last; if its
    /// receiver is dropped, or `shutdown` is cancelled, the provider session is ended
    /// cleanly and the status is `error`.
    pub async fn run(
        &self,
        provider: &dyn Provider,
        request: HandoverRequest,
        inputs: mpsc::Receiver<NodeInput>,
        outputs: mpsc::Sender<NodeOutput>,
        shutdown: CancellationToken,
    ) -> NodeOutcome {
        let mut run = Run::new(&self.config, outputs);
        let provider_name = provider.info().name;
        tracing::info!(provider = provider_name, session = %request.session_id, "handover requested");
        let start = provider.start(request);
        tokio::pin!(start);
        let started = tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                // The conversation may exist at the contact center already: let the start
                // finish (bounded) and end what it started, so nothing is left open there.
                if let Ok(Ok(session)) = tokio::time::timeout(END_TIMEOUT, &mut start).await
                    && let Err(error) = tokio::time::timeout(END_TIMEOUT, session.end(EndReason::Shutdown))
                        .await
                        .unwrap_or_else(|_| Err(Error::transport(provider_name, "end", "timed out")))
                {
                    tracing::warn!(%error, "could not end the session started during the shutdown");
                }
                return run.finish(interrupted()).await;
            }
            started = &mut start => started,
        };
        let session = match started {
            Ok(session) => session,
            Err(error) => {
                tracing::warn!(%error, "handover could not be requested");
                return run.finish(HandoverStatus::from_error(&error)).await;
            }
        };
        let (control, events) = session.into_parts();
        run.max_chars = control.info().capabilities.max_message_chars();
        run.say_accepted().await;
        run.drive(&control, events, inputs, &shutdown).await
    }
}

/// How long ending a session on the way out (shutdown, the bot gone) may take.
pub const END_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn interrupted() -> HandoverStatus {
    HandoverStatus::Error {
        reason: ErrorReason::Error,
        message: "the handover was interrupted: the runtime shut down".to_owned(),
    }
}

struct Run<'a> {
    config: &'a NodeConfig,
    outputs: mpsc::Sender<NodeOutput>,
    /// The agent has sent a message: cancel no longer applies.
    active: bool,
    /// An agent is assigned (joined and not left): queue reports stop.
    assigned: bool,
    queue_announced: bool,
    queue: QueueReporter,
    max_chars: Option<usize>,
    presence_unsupported_logged: bool,
}

impl<'a> Run<'a> {
    fn new(config: &'a NodeConfig, outputs: mpsc::Sender<NodeOutput>) -> Self {
        Self {
            config,
            outputs,
            active: false,
            assigned: false,
            queue_announced: false,
            queue: QueueReporter::new(&config.queue),
            max_chars: None,
            presence_unsupported_logged: false,
        }
    }

    async fn emit(&self, output: NodeOutput) {
        // A closed receiver is noticed by the main loop, which ends the session.
        let _ = self.outputs.send(output).await;
    }

    async fn say(&self, text: &str, quick_replies: Vec<String>) {
        self.emit(NodeOutput::Say { text: text.to_owned(), quick_replies }).await;
    }

    async fn say_accepted(&self) {
        if self.config.accepted_message.is_empty() {
            return;
        }
        let quick_replies = self.config.cancel_button_text.iter().cloned().collect();
        self.say(&self.config.accepted_message, quick_replies).await;
    }

    async fn finish(&self, status: HandoverStatus) -> NodeOutcome {
        let continuation = matches!(status, HandoverStatus::Completed).then_some(self.config.flow_continuation);
        tracing::info!(status = status.as_str(), "handover finished");
        self.emit(NodeOutput::Status { status: status.clone() }).await;
        NodeOutcome { status, continuation }
    }

    async fn drive(
        &mut self,
        control: &SessionHandle,
        mut events: handover_core::EventStream,
        mut inputs: mpsc::Receiver<NodeInput>,
        shutdown: &CancellationToken,
    ) -> NodeOutcome {
        let mut inputs_open = true;
        loop {
            let due = self.queue.next_due();
            let outcome = tokio::select! {
                biased;
                () = shutdown.cancelled() => Some(self.abandon(control, interrupted()).await),
                () = self.outputs.closed() => {
                    let status = HandoverStatus::Error {
                        reason: ErrorReason::Error,
                        message: "the handover was interrupted: nobody reads its output".to_owned(),
                    };
                    Some(self.abandon(control, status).await)
                }
                item = events.recv() => match item {
                    Some(Ok(event)) => self.on_event(event).await,
                    Some(Err(error)) => {
                        tracing::warn!(%error, "the provider session failed");
                        Some(HandoverStatus::from_error(&error))
                    }
                    None => Some(HandoverStatus::Error {
                        reason: ErrorReason::Error,
                        message: "the provider closed the session without ending the handover".to_owned(),
                    }),
                },
                input = inputs.recv(), if inputs_open => match input {
                    Some(input) => self.on_input(control, input).await,
                    None => {
                        inputs_open = false;
                        None
                    }
                },
                () = sleep_until(due), if due.is_some() => {
                    self.report_queue(Instant::now()).await;
                    None
                }
            };
            if let Some(status) = outcome {
                return self.finish(status).await;
            }
        }
    }

    /// Ends the provider session on the way out (shutdown, consumer gone, send failure),
    /// waiting at most [`END_TIMEOUT`] for the contact center.
    async fn abandon(&self, control: &SessionHandle, status: HandoverStatus) -> HandoverStatus {
        match tokio::time::timeout(END_TIMEOUT, control.end(EndReason::Shutdown)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "could not end the provider session"),
            Err(_) => tracing::warn!(
                timeout_secs = END_TIMEOUT.as_secs(),
                "the provider did not end the session in time; the conversation may stay open at the contact center"
            ),
        }
        status
    }

    async fn on_event(&mut self, event: Event) -> Option<HandoverStatus> {
        tracing::debug!(event = event.kind(), "agent-side event");
        match event {
            Event::Queued { position, estimated_wait } => {
                if self.assigned || self.active {
                    return None;
                }
                let wait_ms = estimated_wait.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                if !self.queue_announced {
                    self.queue_announced = true;
                    if self.config.send_queue_event {
                        self.emit(NodeOutput::Event {
                            name: FlowEvent::Queue,
                            position,
                            estimated_wait_time_ms: wait_ms,
                            continuation: None,
                        })
                        .await;
                    }
                }
                if let Some(text) = self.queue.offer(position, wait_ms) {
                    self.say(&text, Vec::new()).await;
                }
                self.report_queue(Instant::now()).await;
            }
            Event::AgentJoined { agent } => {
                self.assigned = true;
                self.queue.clear_pending();
                self.emit(NodeOutput::AgentJoined { agent: agent.display_name().to_owned() }).await;
            }
            Event::AgentMessage { text, agent, .. } => {
                if !self.active {
                    self.active = true;
                    self.queue.clear_pending();
                    if self.config.send_active_event {
                        self.emit(NodeOutput::Event {
                            name: FlowEvent::Active,
                            position: None,
                            estimated_wait_time_ms: None,
                            continuation: None,
                        })
                        .await;
                    }
                }
                self.emit(NodeOutput::AgentMessage { text, agent: agent.name }).await;
            }
            Event::AgentTyping { on: typing } => self.emit(NodeOutput::AgentTyping { typing }).await,
            Event::AgentLeft { agent, transfer } => {
                self.assigned = false;
                self.emit(NodeOutput::AgentLeft { agent: agent.display_name().to_owned(), transfer }).await;
            }
            Event::Reconnecting => self.emit(NodeOutput::Connection { state: "reconnecting".to_owned() }).await,
            Event::Resumed { gap } => {
                if gap {
                    tracing::warn!("the connection came back, but events during the drop may be lost");
                }
                self.emit(NodeOutput::Connection { state: "resumed".to_owned() }).await;
            }
            Event::Ended { by, reason } => {
                tracing::info!(?by, reason = reason.as_deref().unwrap_or(""), "the handover ended");
                if by == EndedBy::User {
                    tracing::debug!("ended from the user side without a cancel: treated as completed");
                }
                if self.config.send_resolve_event {
                    self.emit(NodeOutput::Event {
                        name: FlowEvent::Resolve,
                        position: None,
                        estimated_wait_time_ms: None,
                        continuation: Some(self.config.flow_continuation.as_str().to_owned()),
                    })
                    .await;
                }
                return Some(HandoverStatus::Completed);
            }
            _ => tracing::trace!("ignoring an event kind this runtime does not know"),
        }
        None
    }

    async fn report_queue(&mut self, now: Instant) {
        if let Some((position, estimated_wait_time_ms)) = self.queue.due(now) {
            self.emit(NodeOutput::QueueUpdate { position, estimated_wait_time_ms }).await;
        }
    }

    async fn on_input(&mut self, control: &SessionHandle, input: NodeInput) -> Option<HandoverStatus> {
        match input {
            NodeInput::Message { text, id } => self.user_message(control, text, id).await,
            NodeInput::Intent { name } => {
                let is_cancel = self.config.cancel_intent.as_deref().is_some_and(|c| c == name);
                if is_cancel && !self.active {
                    return Some(self.cancel(control).await);
                }
                if is_cancel {
                    tracing::debug!("cancel intent ignored: the agent is already active");
                }
                None
            }
            NodeInput::Button { text } => {
                let is_cancel = self.config.cancel_button_text.as_deref().is_some_and(|c| c == text);
                if is_cancel && !self.active {
                    return Some(self.cancel(control).await);
                }
                self.user_message(control, text, None).await
            }
            NodeInput::Connected if self.config.user_connects_message => {
                self.presence(control, UserInput::Connected).await
            }
            NodeInput::Disconnected if self.config.user_disconnects_message => {
                self.presence(control, UserInput::Disconnected).await
            }
            NodeInput::Connected | NodeInput::Disconnected => None,
        }
    }

    async fn cancel(&self, control: &SessionHandle) -> HandoverStatus {
        if let Err(error) = control.end(EndReason::Cancelled).await {
            tracing::warn!(%error, "the cancelled handover could not be closed at the contact center");
        }
        HandoverStatus::Cancelled
    }

    /// Relays a user message, split to the provider's limit. Each part carries a client id
    /// derived from the bot's input id (one is made when the bot gave none), so a resend of
    /// the same input is delivered once.
    async fn user_message(
        &mut self,
        control: &SessionHandle,
        text: String,
        id: Option<String>,
    ) -> Option<HandoverStatus> {
        if !self.active && self.config.repeat_accepted_message {
            self.say_accepted().await;
        }
        let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let chunks: Vec<String> = match self.max_chars {
            Some(max) => match transcript::split(&text, max) {
                Ok(chunks) => chunks.into_iter().map(str::to_owned).collect(),
                Err(error) => {
                    tracing::warn!(%error, "a user message could not be split to the provider's limit");
                    self.reject(error.to_string(), Some(id)).await;
                    return None;
                }
            },
            None => vec![text],
        };
        let parts = chunks.len();
        for (n, chunk) in chunks.into_iter().enumerate() {
            if chunk.trim().is_empty() {
                continue;
            }
            let part_id = if parts == 1 { id.clone() } else { format!("{id}#{n}") };
            let input = UserInput::message(part_id, chunk);
            if let Some(status) = self.forward(control, input, Some(&id)).await {
                return Some(status);
            }
        }
        None
    }

    /// Tells the bot an input was not delivered (the handover goes on).
    async fn reject(&self, reason: String, id: Option<String>) {
        self.emit(NodeOutput::InputRejected { reason, id }).await;
    }

    async fn presence(&mut self, control: &SessionHandle, input: UserInput) -> Option<HandoverStatus> {
        match control.send(input).await {
            Err(error) if error.kind() == ErrorKind::Unsupported => {
                if !self.presence_unsupported_logged {
                    self.presence_unsupported_logged = true;
                    tracing::info!(%error, "this provider cannot carry user connect/disconnect messages");
                }
                None
            }
            other => self.after_send(control, other, None).await,
        }
    }

    async fn forward(&self, control: &SessionHandle, input: UserInput, id: Option<&str>) -> Option<HandoverStatus> {
        let result = control.send(input).await;
        self.after_send(control, result, id).await
    }

    async fn after_send(
        &self,
        control: &SessionHandle,
        result: Result<(), Error>,
        id: Option<&str>,
    ) -> Option<HandoverStatus> {
        let error = result.err()?;
        match error.kind() {
            // The event stream reports the end; nothing to decide here.
            ErrorKind::SessionEnded => None,
            ErrorKind::Unsupported | ErrorKind::InvalidInput | ErrorKind::Rejected => {
                tracing::warn!(%error, "user input was not delivered");
                self.reject(error.to_string(), id.map(str::to_owned)).await;
                None
            }
            _ => {
                tracing::warn!(%error, "the provider could not be reached");
                Some(self.abandon(control, HandoverStatus::from_error(&error)).await)
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
