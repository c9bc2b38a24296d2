//! The node's parameters.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the flow continues after the agent resolves the handover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FlowContinuation {
    /// At the node below the handover node.
    #[default]
    BelowNode,
    /// At the entrypoint the agent set with AgentInject.
    AgentInjectEntrypoint,
}

impl FlowContinuation {
    /// The config and output spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowContinuation::BelowNode => "below_node",
            FlowContinuation::AgentInjectEntrypoint => "agent_inject_entrypoint",
        }
    }
}

/// The "Handover to Agent" node's parameters (`protocols/handover-semantics.md` §2).
///
/// The defaults are the node's documented defaults: user connect and disconnect messages
/// on, every event off, no accepted message, no cancel intent or button, continue below
/// the node.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Said to the user when the request is made; empty for none.
    pub accepted_message: String,
    /// Say the accepted message again each time the user writes while queued.
    pub repeat_accepted_message: bool,
    /// An intent that cancels the handover before an agent is active.
    pub cancel_intent: Option<String>,
    /// The label of a quick reply that cancels the handover before an agent is active.
    pub cancel_button_text: Option<String>,
    /// Where the flow continues after the agent resolves.
    pub flow_continuation: FlowContinuation,
    /// Emit a `resolve` event when the agent resolves.
    pub send_resolve_event: bool,
    /// Emit a `queue` event when the request enters the queue.
    pub send_queue_event: bool,
    /// Emit an `active` event on the agent's first message.
    pub send_active_event: bool,
    /// Tell the agent when the user comes back.
    pub user_connects_message: bool,
    /// Tell the agent when the user leaves.
    pub user_disconnects_message: bool,
    /// Queue position and wait-time updates.
    pub queue: QueueUpdates,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            accepted_message: String::new(),
            repeat_accepted_message: false,
            cancel_intent: None,
            cancel_button_text: None,
            flow_continuation: FlowContinuation::BelowNode,
            send_resolve_event: false,
            send_queue_event: false,
            send_active_event: false,
            user_connects_message: true,
            user_disconnects_message: true,
            queue: QueueUpdates::default(),
        }
    }
}

/// How queue position and estimated wait are reported to the user.
///
/// Updates are sent when a value changes, at most once per interval; a change inside the
/// interval is sent when the interval has passed (the newest value).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct QueueUpdates {
    /// Report the queue position.
    pub position: bool,
    /// Least time between two position updates.
    pub position_interval: Duration,
    /// Report the estimated wait.
    pub wait_time: bool,
    /// Least time between two wait-time updates.
    pub wait_time_interval: Duration,
    /// Say an alternative text once when the queue is too long.
    pub alternative: Option<Alternative>,
}

impl Default for QueueUpdates {
    fn default() -> Self {
        Self {
            position: true,
            position_interval: Duration::ZERO,
            wait_time: true,
            wait_time_interval: Duration::ZERO,
            alternative: None,
        }
    }
}

/// The alternative text and its thresholds (Live Agent's "Alternative Update").
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Alternative {
    /// Say the text when the position is greater than this.
    pub max_position: Option<u32>,
    /// Say the text when the estimated wait is longer than this.
    pub max_wait: Option<Duration>,
    /// The text.
    pub text: String,
}

impl Alternative {
    /// An alternative text with thresholds.
    pub fn new(text: impl Into<String>, max_position: Option<u32>, max_wait: Option<Duration>) -> Self {
        Self { max_position, max_wait, text: text.into() }
    }
}
