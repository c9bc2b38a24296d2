//! The node's rules as a step machine, so a runtime that keeps its state elsewhere (the
//! service's store) applies the same rules as [`Node::run`](super::Node::run).

use handover_core::{
    Attachment, EndReason, EndedBy, Error, ErrorKind, ErrorReason, Event, HandoverStatus, ProviderInfo, SessionHandle,
    UserInput, attachment, transcript,
};
use handover_transport::attachment::fetch;
use handover_transport::reqwest;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::queue::QueueReporter;
use super::{FlowEvent, NodeConfig, NodeInput, NodeOutcome, NodeOutput};

/// How long ending a session on the way out (shutdown, the bot gone) may take.
pub const END_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the node remembers about a handover between steps: enough to pick the handover up
/// in another process with the same behaviour (DESIGN.md §7.1, "the node runtime's own
/// state"). Serializable; unknown fields are ignored, missing ones default.
///
/// Queue-report timers are not kept: after a resume, the next queue value that differs from
/// the last one reported is reported at once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NodeState {
    /// The agent has sent a message: cancel no longer applies.
    pub active: bool,
    /// An agent is assigned (joined and not left): queue reports stop.
    pub assigned: bool,
    /// The queue event was emitted (it is emitted once).
    pub queue_announced: bool,
    /// The alternative text was said (it is said once).
    pub alternative_said: bool,
    /// The last queue position reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_position: Option<u32>,
    /// The last estimated wait reported, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_wait_ms: Option<u64>,
}

/// One handover's node rules, stepped by its runtime.
///
/// Each step takes what happened (an agent-side event, a bot input, a due timer) and
/// appends what the bot must see to `out`, in order; a step that ends the handover returns
/// its [`HandoverStatus`] (then call [`finish`](Self::finish)). Steps that send to the
/// contact center take the session's [`SessionHandle`]. [`state`](Self::state) is what to
/// keep to resume with [`NodeMachine::new`].
///
/// ```
/// use handover::node::{NodeConfig, NodeMachine, NodeOutput, NodeState};
///
/// let mut config = NodeConfig::default();
/// config.accepted_message = "Connecting you to an agent.".into();
/// let machine = NodeMachine::new(config, NodeState::default());
/// let mut out = Vec::new();
/// machine.accepted(&mut out);
/// assert!(matches!(&out[..], [NodeOutput::Say { text, .. }] if text == "Connecting you to an agent."));
/// ```
#[derive(Debug)]
pub struct NodeMachine {
    config: NodeConfig,
    state: NodeState,
    queue: QueueReporter,
    max_chars: Option<usize>,
    presence_unsupported_logged: bool,
}

impl NodeMachine {
    /// A machine with `config`, in `state` ([`NodeState::default`] for a new handover).
    pub fn new(config: NodeConfig, state: NodeState) -> Self {
        let queue = QueueReporter::resumed(&config.queue, &state);
        Self { config, state, queue, max_chars: None, presence_unsupported_logged: false }
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// What to keep to resume this handover elsewhere.
    pub fn state(&self) -> NodeState {
        let mut state = self.state.clone();
        self.queue.save(&mut state);
        state
    }

    /// Whether the agent has sent a message (the handover is `active`).
    pub fn is_active(&self) -> bool {
        self.state.active
    }

    /// Reads the provider's limits from its session (call once the session exists).
    pub fn attach(&mut self, session: &SessionHandle) {
        self.max_chars = session.info().capabilities.max_message_chars();
    }

    /// The accepted message, once the contact center took the request.
    pub fn accepted(&self, out: &mut Vec<NodeOutput>) {
        if self.config.accepted_message.is_empty() {
            return;
        }
        let quick_replies = self.config.cancel_button_text.iter().cloned().collect();
        out.push(NodeOutput::Say { text: self.config.accepted_message.clone(), quick_replies });
    }

    /// The final status: appends it as the last output and says where the flow continues.
    pub fn finish(&self, status: HandoverStatus, out: &mut Vec<NodeOutput>) -> NodeOutcome {
        let continuation = matches!(status, HandoverStatus::Completed).then_some(self.config.flow_continuation);
        tracing::info!(status = status.as_str(), "handover finished");
        out.push(NodeOutput::Status { status: status.clone() });
        NodeOutcome { status, continuation }
    }

    /// An item of the session's event stream: an event, the session's failure, or the end
    /// of the stream (`None`).
    pub fn on_stream_item(
        &mut self,
        item: Option<Result<Event, Error>>,
        out: &mut Vec<NodeOutput>,
    ) -> Option<HandoverStatus> {
        match item {
            Some(Ok(event)) => self.on_event(event, out),
            Some(Err(error)) => {
                tracing::warn!(%error, "the provider session failed");
                Some(HandoverStatus::from_error(&error))
            }
            None => Some(HandoverStatus::Error {
                reason: ErrorReason::Error,
                message: "the provider closed the session without ending the handover".to_owned(),
            }),
        }
    }

    /// An agent-side event.
    pub fn on_event(&mut self, event: Event, out: &mut Vec<NodeOutput>) -> Option<HandoverStatus> {
        tracing::debug!(event = event.kind(), "agent-side event");
        match event {
            Event::Queued { position, estimated_wait } => {
                if self.state.assigned || self.state.active {
                    return None;
                }
                let wait_ms = estimated_wait.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                if !self.state.queue_announced {
                    self.state.queue_announced = true;
                    if self.config.send_queue_event {
                        out.push(NodeOutput::Event {
                            name: FlowEvent::Queue,
                            position,
                            estimated_wait_time_ms: wait_ms,
                            continuation: None,
                        });
                    }
                }
                if let Some(text) = self.queue.offer(position, wait_ms) {
                    out.push(NodeOutput::Say { text, quick_replies: Vec::new() });
                }
                self.on_due(Instant::now(), out);
            }
            Event::AgentJoined { agent } => {
                self.state.assigned = true;
                self.queue.clear_pending();
                out.push(NodeOutput::AgentJoined { agent: agent.display_name().to_owned() });
            }
            Event::AgentMessage { text, agent, attachments, .. } => {
                if !self.state.active {
                    self.state.active = true;
                    self.queue.clear_pending();
                    if self.config.send_active_event {
                        out.push(NodeOutput::Event {
                            name: FlowEvent::Active,
                            position: None,
                            estimated_wait_time_ms: None,
                            continuation: None,
                        });
                    }
                }
                out.push(NodeOutput::AgentMessage { text, agent: agent.name, attachments });
            }
            Event::AgentTyping { on: typing } => out.push(NodeOutput::AgentTyping { typing }),
            Event::AgentLeft { agent, transfer } => {
                self.state.assigned = false;
                out.push(NodeOutput::AgentLeft { agent: agent.display_name().to_owned(), transfer });
            }
            Event::Reconnecting => out.push(NodeOutput::Connection { state: "reconnecting".to_owned() }),
            Event::Resumed { gap } => {
                if gap {
                    tracing::warn!("the connection came back, but events during the drop may be lost");
                }
                out.push(NodeOutput::Connection { state: "resumed".to_owned() });
            }
            Event::Ended { by, reason } => {
                tracing::info!(?by, reason = reason.as_deref().unwrap_or(""), "the handover ended");
                if by == EndedBy::User {
                    tracing::debug!("ended from the user side without a cancel: treated as completed");
                }
                if self.config.send_resolve_event {
                    out.push(NodeOutput::Event {
                        name: FlowEvent::Resolve,
                        position: None,
                        estimated_wait_time_ms: None,
                        continuation: Some(self.config.flow_continuation.as_str().to_owned()),
                    });
                }
                return Some(HandoverStatus::Completed);
            }
            _ => tracing::trace!("ignoring an event kind this runtime does not know"),
        }
        None
    }

    /// When [`on_due`](Self::on_due) should run next (a queue report waits for its
    /// interval), if ever.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.next_due()
    }

    /// Reports the queue if a report is due at `now`.
    pub fn on_due(&mut self, now: Instant, out: &mut Vec<NodeOutput>) {
        if let Some((position, estimated_wait_time_ms)) = self.queue.due(now) {
            out.push(NodeOutput::QueueUpdate { position, estimated_wait_time_ms });
        }
    }

    /// A bot input: relayed to the agent, or a cancel.
    pub async fn on_input(
        &mut self,
        session: &SessionHandle,
        input: NodeInput,
        out: &mut Vec<NodeOutput>,
    ) -> Option<HandoverStatus> {
        match input {
            NodeInput::Message { text, id } => self.user_message(session, text, id, out).await,
            NodeInput::Attachment { name, media_type, url, path, data, caption, fetch, id } => {
                if !self.state.active && self.config.repeat_accepted_message {
                    self.accepted(out);
                }
                let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let source = AttachmentSource { name, media_type, url, path, data, caption, fetch };
                match source.resolve(session.info()).await {
                    Ok(attachment) => {
                        let result = session.send(UserInput::attachment(id.clone(), attachment)).await;
                        after_send(session, result, Some(&id), out).await
                    }
                    Err(reason) => {
                        tracing::warn!(%reason, "a user attachment was not sent");
                        out.push(NodeOutput::InputRejected { reason, id: Some(id) });
                        None
                    }
                }
            }
            NodeInput::Intent { name } => {
                let is_cancel = self.config.cancel_intent.as_deref().is_some_and(|c| c == name);
                if is_cancel && !self.state.active {
                    return Some(cancel(session).await);
                }
                if is_cancel {
                    tracing::debug!("cancel intent ignored: the agent is already active");
                }
                None
            }
            NodeInput::Button { text } => {
                let is_cancel = self.config.cancel_button_text.as_deref().is_some_and(|c| c == text);
                if is_cancel && !self.state.active {
                    return Some(cancel(session).await);
                }
                self.user_message(session, text, None, out).await
            }
            NodeInput::Connected if self.config.user_connects_message => {
                self.presence(session, UserInput::Connected, out).await
            }
            NodeInput::Disconnected if self.config.user_disconnects_message => {
                self.presence(session, UserInput::Disconnected, out).await
            }
            NodeInput::Connected | NodeInput::Disconnected => None,
        }
    }

    /// Relays a user message, split to the provider's limit. Each part carries a client id
    /// derived from the bot's input id (one is made when the bot gave none), so a resend of
    /// the same input is delivered once.
    async fn user_message(
        &mut self,
        session: &SessionHandle,
        text: String,
        id: Option<String>,
        out: &mut Vec<NodeOutput>,
    ) -> Option<HandoverStatus> {
        if !self.state.active && self.config.repeat_accepted_message {
            self.accepted(out);
        }
        let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let chunks: Vec<String> = match self.max_chars {
            Some(max) => match transcript::split(&text, max) {
                Ok(chunks) => chunks.into_iter().map(str::to_owned).collect(),
                Err(error) => {
                    tracing::warn!(%error, "a user message could not be split to the provider's limit");
                    out.push(NodeOutput::InputRejected { reason: error.to_string(), id: Some(id) });
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
            let result = session.send(UserInput::message(part_id, chunk)).await;
            if let Some(status) = after_send(session, result, Some(&id), out).await {
                return Some(status);
            }
        }
        None
    }

    async fn presence(
        &mut self,
        session: &SessionHandle,
        input: UserInput,
        out: &mut Vec<NodeOutput>,
    ) -> Option<HandoverStatus> {
        match session.send(input).await {
            Err(error) if error.kind() == ErrorKind::Unsupported => {
                if !self.presence_unsupported_logged {
                    self.presence_unsupported_logged = true;
                    tracing::info!(%error, "this provider cannot carry user connect/disconnect messages");
                }
                None
            }
            other => after_send(session, other, None, out).await,
        }
    }
}

/// Where a bot's attachment input says its file is, before it is an [`Attachment`].
struct AttachmentSource {
    name: Option<String>,
    media_type: Option<String>,
    url: Option<String>,
    path: Option<std::path::PathBuf>,
    data: Option<String>,
    caption: Option<String>,
    fetch: bool,
}

/// The most this process reads or fetches for one attachment when the provider names no
/// limit.
const MAX_ATTACHMENT_BYTES: u64 = 100 * 1024 * 1024;

impl AttachmentSource {
    /// The attachment to send, or why it cannot be (for `input_rejected`). Reads the disk
    /// only for `path`, and fetches only with `fetch`.
    async fn resolve(self, info: &ProviderInfo) -> Result<Attachment, String> {
        use base64::Engine as _;

        let limit = info.capabilities.max_attachment_bytes().unwrap_or(MAX_ATTACHMENT_BYTES).min(MAX_ATTACHMENT_BYTES);
        let name = self
            .name
            .or_else(|| self.path.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| !n.trim().is_empty())
            .ok_or("an attachment needs a `name` (or a `path` to take it from)")?;
        let media_type = self.media_type.unwrap_or_else(|| attachment::guess_media_type(&name).to_owned());
        let mut file = match (self.url, self.path, self.data) {
            (Some(url), None, None) => {
                let link = Attachment::url(name, media_type, url);
                if self.fetch {
                    let client = attachment_client().map_err(|e| e.to_string())?;
                    fetch(&client, link, limit).await.map_err(|e| e.to_string())?
                } else {
                    link
                }
            }
            (None, Some(path), None) => {
                let size = tokio::fs::metadata(&path)
                    .await
                    .map_err(|e| format!("the attachment file {} cannot be read: {e}", path.display()))?
                    .len();
                if size > limit {
                    return Err(format!("the attachment file has {size} bytes, more than the limit of {limit} bytes"));
                }
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|e| format!("the attachment file {} cannot be read: {e}", path.display()))?;
                Attachment::bytes(name, media_type, bytes)
            }
            (None, None, Some(data)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.as_bytes())
                    .map_err(|e| format!("the attachment's `data` is not standard base64: {e}"))?;
                Attachment::bytes(name, media_type, bytes)
            }
            _ => return Err("an attachment needs exactly one of `url`, `path` or `data`".to_owned()),
        };
        file.caption = self.caption;
        Ok(file)
    }
}

/// The HTTP client attachments are fetched with (one per process).
fn attachment_client() -> Result<reqwest::Client, Error> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    let client = handover_transport::http::client("attachment", &handover_transport::http::HttpConfig::default())?;
    Ok(CLIENT.get_or_init(|| client).clone())
}

async fn cancel(session: &SessionHandle) -> HandoverStatus {
    if let Err(error) = session.end(EndReason::Cancelled).await {
        tracing::warn!(%error, "the cancelled handover could not be closed at the contact center");
    }
    HandoverStatus::Cancelled
}

/// What a failed send means: the input is rejected (the handover goes on), or the provider
/// is unreachable (the handover ends in `error`).
async fn after_send(
    session: &SessionHandle,
    result: Result<(), Error>,
    id: Option<&str>,
    out: &mut Vec<NodeOutput>,
) -> Option<HandoverStatus> {
    let error = result.err()?;
    match error.kind() {
        // The event stream reports the end; nothing to decide here.
        ErrorKind::SessionEnded => None,
        ErrorKind::Unsupported | ErrorKind::InvalidInput | ErrorKind::Rejected => {
            tracing::warn!(%error, "user input was not delivered");
            out.push(NodeOutput::InputRejected { reason: error.to_string(), id: id.map(str::to_owned) });
            None
        }
        _ => {
            tracing::warn!(%error, "the provider could not be reached");
            Some(abandon(session, HandoverStatus::from_error(&error)).await)
        }
    }
}

/// Ends the provider session on the way out (shutdown, consumer gone, send failure),
/// waiting at most [`END_TIMEOUT`] for the contact center, and returns `status`.
pub async fn abandon(session: &SessionHandle, status: HandoverStatus) -> HandoverStatus {
    match tokio::time::timeout(END_TIMEOUT, session.end(EndReason::Shutdown)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not end the provider session"),
        Err(_) => tracing::warn!(
            timeout_secs = END_TIMEOUT.as_secs(),
            "the provider did not end the session in time; the conversation may stay open at the contact center"
        ),
    }
    status
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use handover_core::Agent;

    use super::*;
    use crate::node::Alternative;

    fn queued(position: u32) -> Event {
        Event::Queued { position: Some(position), estimated_wait: Some(Duration::from_secs(60)) }
    }

    fn config() -> NodeConfig {
        let mut config = NodeConfig { send_queue_event: true, ..NodeConfig::default() };
        config.queue.alternative = Some(Alternative::new("Try email", Some(5), None));
        config
    }

    #[test]
    fn a_resumed_machine_repeats_no_queue_report_event_or_alternative_already_given() {
        let mut first = NodeMachine::new(config(), NodeState::default());
        let mut out = Vec::new();
        assert_eq!(first.on_event(queued(9), &mut out), None);
        assert_eq!(out.len(), 3, "queue event, alternative text, queue update: {out:?}");
        let saved = first.state();
        assert_eq!(saved.reported_position, Some(9));
        assert_eq!(saved.reported_wait_ms, Some(60_000));
        assert!(saved.queue_announced && saved.alternative_said && !saved.active);

        // The state goes through JSON (the store) and back.
        let restored: NodeState = serde_json::from_value(serde_json::to_value(&saved).unwrap()).unwrap();
        let mut second = NodeMachine::new(config(), restored);
        let mut out = Vec::new();
        assert_eq!(second.on_event(queued(9), &mut out), None);
        assert!(out.is_empty(), "nothing new to report: {out:?}");
        second.on_event(queued(8), &mut out);
        assert_eq!(out, [NodeOutput::QueueUpdate { position: Some(8), estimated_wait_time_ms: None }]);
    }

    #[test]
    fn an_active_handover_stays_active_after_a_resume_and_reports_no_queue() {
        let mut first = NodeMachine::new(config(), NodeState::default());
        let mut out = Vec::new();
        let message = Event::AgentMessage {
            id: "m1".into(),
            text: "Hi".into(),
            agent: Agent::named("Ann"),
            attachments: Vec::new(),
        };
        first.on_event(message, &mut out);
        let mut second = NodeMachine::new(config(), first.state());
        assert!(second.is_active());
        let mut out = Vec::new();
        second.on_event(queued(2), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(serde_json::from_str::<NodeState>("{}").unwrap(), NodeState::default(), "missing fields default");
    }
}
