//! The node runtime: the one place the flow semantics of a handover live.
//!
//! [`Node::run`] drives one handover for any [`Provider`]: it starts the session, says the
//! accepted message, relays user input to the agent and agent events to the bot, handles
//! cancel intents and buttons, reports the queue at the configured intervals, emits the
//! queue, active and resolve events the node opted into, and ends with exactly one
//! [`HandoverStatus`]. The rules are those of `protocols/handover-semantics.md` §2–§4, §6.
//! They live in [`NodeMachine`], a step machine whose [`NodeState`] serializes: `Node::run`
//! is a loop over it, and a runtime that keeps the state in a store (the service) steps it
//! itself.
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
mod machine;
mod queue;

use handover_core::{EndReason, Error, ErrorReason, HandoverRequest, HandoverStatus, Provider, SessionHandle};
use handover_transport::CancellationToken;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use self::config::{Alternative, FlowContinuation, NodeConfig, QueueUpdates};
pub use self::io::{FlowEvent, NodeInput, NodeOutput};
pub use self::machine::{END_TIMEOUT, NodeMachine, NodeState, abandon};

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
        let mut run = Run { machine: NodeMachine::new(self.config.clone(), NodeState::default()), outputs };
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
        run.machine.attach(&control);
        let mut out = Vec::new();
        run.machine.accepted(&mut out);
        run.emit_all(&mut out).await;
        run.drive(&control, events, inputs, &shutdown).await
    }
}

/// The status of a handover whose runtime shut down before it ended.
pub fn interrupted() -> HandoverStatus {
    HandoverStatus::Error {
        reason: ErrorReason::Error,
        message: "the handover was interrupted: the runtime shut down".to_owned(),
    }
}

/// [`Node::run`]'s loop: the machine's steps, their outputs sent on a channel.
struct Run {
    machine: NodeMachine,
    outputs: mpsc::Sender<NodeOutput>,
}

impl Run {
    async fn emit_all(&self, out: &mut Vec<NodeOutput>) {
        for output in out.drain(..) {
            // A closed receiver is noticed by the main loop, which ends the session.
            let _ = self.outputs.send(output).await;
        }
    }

    async fn finish(&self, status: HandoverStatus) -> NodeOutcome {
        let mut out = Vec::new();
        let outcome = self.machine.finish(status, &mut out);
        self.emit_all(&mut out).await;
        outcome
    }

    async fn drive(
        &mut self,
        control: &SessionHandle,
        mut events: handover_core::EventStream,
        mut inputs: mpsc::Receiver<NodeInput>,
        shutdown: &CancellationToken,
    ) -> NodeOutcome {
        let mut inputs_open = true;
        let mut out = Vec::new();
        loop {
            let due = self.machine.next_due();
            let outcome = tokio::select! {
                biased;
                () = shutdown.cancelled() => Some(abandon(control, interrupted()).await),
                () = self.outputs.closed() => {
                    let status = HandoverStatus::Error {
                        reason: ErrorReason::Error,
                        message: "the handover was interrupted: nobody reads its output".to_owned(),
                    };
                    Some(abandon(control, status).await)
                }
                item = events.recv() => self.machine.on_stream_item(item, &mut out),
                input = inputs.recv(), if inputs_open => match input {
                    Some(input) => self.machine.on_input(control, input, &mut out).await,
                    None => {
                        inputs_open = false;
                        None
                    }
                },
                () = sleep_until(due), if due.is_some() => {
                    self.machine.on_due(Instant::now(), &mut out);
                    None
                }
            };
            self.emit_all(&mut out).await;
            if let Some(status) = outcome {
                return self.finish(status).await;
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
