//! Every rule of the node runtime, against the in-memory fake provider. Time is tokio's
//! paused clock: intervals pass instantly and deterministically; nothing is timed.

use std::time::Duration;

use handover::node::{Alternative, FlowContinuation, FlowEvent, Node, NodeConfig, NodeInput, NodeOutcome, NodeOutput};
use handover::{Capabilities, EndReason, ErrorKind, ErrorReason, HandoverStatus, UserInput};
use handover_testkit::fake::{FakeContactCenter, FakeConversation, FakeProvider};
use handover_testkit::sample_request;
use handover_transport::CancellationToken;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Longer than any interval used here; with the paused clock it costs nothing.
const GUARD: Duration = Duration::from_secs(24 * 3600);

struct Rig {
    inputs: Option<mpsc::Sender<NodeInput>>,
    outputs: mpsc::Receiver<NodeOutput>,
    center: FakeContactCenter,
    run: JoinHandle<NodeOutcome>,
    shutdown: CancellationToken,
}

impl Rig {
    fn start(config: NodeConfig) -> Self {
        Self::start_with(config, FakeProvider::full_capabilities())
    }

    fn start_with(config: NodeConfig, capabilities: Capabilities) -> Self {
        let (provider, center) = FakeProvider::with_capabilities(capabilities);
        let (input_tx, inputs) = mpsc::channel(16);
        let (outputs, output_rx) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let run =
            tokio::spawn(
                async move { Node::new(config).run(&provider, sample_request(), inputs, outputs, token).await },
            );
        Self { inputs: Some(input_tx), outputs: output_rx, center, run, shutdown }
    }

    async fn conversation(&self) -> FakeConversation {
        tokio::time::timeout(GUARD, self.center.conversation(0)).await.expect("the request reaches the contact center")
    }

    async fn next(&mut self) -> NodeOutput {
        tokio::time::timeout(GUARD, self.outputs.recv())
            .await
            .expect("an output before the guard")
            .expect("the node goes on")
    }

    /// The next output that is not an informational one (joins, typing, connection).
    async fn next_flow(&mut self) -> NodeOutput {
        loop {
            let output = self.next().await;
            if output.is_flow_output() {
                return output;
            }
        }
    }

    async fn send(&self, input: NodeInput) {
        self.inputs.as_ref().expect("inputs open").send(input).await.expect("the node reads input");
    }

    async fn outcome(self) -> (NodeOutcome, Vec<NodeOutput>) {
        let Rig { mut outputs, run, inputs, .. } = self;
        drop(inputs);
        let outcome = tokio::time::timeout(GUARD, run).await.expect("the node finishes").expect("no panic");
        let mut rest = Vec::new();
        while let Some(output) = outputs.recv().await {
            rest.push(output);
        }
        (outcome, rest)
    }
}

/// The inputs the agent side received, once there are `n` (guarded).
async fn received_inputs(conversation: &FakeConversation, n: usize) -> Vec<UserInput> {
    tokio::time::timeout(GUARD, conversation.wait_received(n)).await.expect("the agent side receives the input")
}

/// The texts the agent side received, once there are `n` inputs (guarded).
async fn received(conversation: &FakeConversation, n: usize) -> Vec<String> {
    received_inputs(conversation, n).await;
    conversation.received_texts()
}

fn say(text: &str, quick_replies: &[&str]) -> NodeOutput {
    NodeOutput::Say { text: text.into(), quick_replies: quick_replies.iter().map(|s| (*s).to_owned()).collect() }
}

fn message(text: &str) -> NodeInput {
    NodeInput::Message { text: text.into(), id: None }
}

fn agent_message(text: &str) -> NodeOutput {
    NodeOutput::AgentMessage { text: text.into(), agent: Some("Ann".into()), attachments: Vec::new() }
}

fn event(name: FlowEvent) -> NodeOutput {
    NodeOutput::Event { name, position: None, estimated_wait_time_ms: None, continuation: None }
}

fn queue_update(position: Option<u32>, wait_ms: Option<u64>) -> NodeOutput {
    NodeOutput::QueueUpdate { position, estimated_wait_time_ms: wait_ms }
}

fn status(status: HandoverStatus) -> NodeOutput {
    NodeOutput::Status { status }
}

/// A default config changed by `f` (`NodeConfig` is non-exhaustive).
fn config(f: impl FnOnce(&mut NodeConfig)) -> NodeConfig {
    let mut config = NodeConfig::default();
    f(&mut config);
    config
}

fn accepting() -> NodeConfig {
    config(|c| {
        c.accepted_message = "Connecting you to an agent.".into();
        c.cancel_intent = Some("cancel_handover".into());
        c.cancel_button_text = Some("Cancel".into());
    })
}

#[tokio::test(start_paused = true)]
async fn the_accepted_message_is_said_when_the_request_is_made_with_the_cancel_button() {
    let mut rig = Rig::start(accepting());
    assert_eq!(rig.next().await, say("Connecting you to an agent.", &["Cancel"]));
    assert_eq!(rig.conversation().await.request().session_id, "bot-session-1");
}

#[tokio::test(start_paused = true)]
async fn no_accepted_message_is_said_when_it_is_empty() {
    let mut rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    conversation.join("Ann");
    conversation.say("Ann", "Hi");
    assert_eq!(rig.next_flow().await, agent_message("Hi"));
}

#[tokio::test(start_paused = true)]
async fn the_accepted_message_repeats_on_each_user_message_while_queued_when_enabled() {
    let mut config = accepting();
    config.repeat_accepted_message = true;
    let mut rig = Rig::start(config);
    let accepted = say("Connecting you to an agent.", &["Cancel"]);
    assert_eq!(rig.next().await, accepted);
    rig.send(message("hello?")).await;
    assert_eq!(rig.next().await, accepted);
    rig.send(message("anyone?")).await;
    assert_eq!(rig.next().await, accepted);
    let conversation = rig.conversation().await;
    conversation.say("Ann", "Hi, I'm Ann");
    assert_eq!(rig.next_flow().await, agent_message("Hi, I'm Ann"));
    rig.send(message("great")).await;
    conversation.say("Ann", "marker");
    assert_eq!(rig.next_flow().await, agent_message("marker"), "no repeat once the agent is active");
    let received = received(&conversation, 4).await;
    assert_eq!(received[1..], ["hello?", "anyone?", "great"], "the transcript, then the user's messages");
}

#[tokio::test(start_paused = true)]
async fn the_accepted_message_does_not_repeat_when_disabled() {
    let mut rig = Rig::start(accepting());
    rig.next().await;
    rig.send(message("hello?")).await;
    let conversation = rig.conversation().await;
    conversation.say("Ann", "marker");
    assert_eq!(rig.next_flow().await, agent_message("marker"));
}

#[tokio::test(start_paused = true)]
async fn user_messages_reach_the_agent_and_long_ones_are_split_to_the_limit() {
    let caps = FakeProvider::full_capabilities().with_max_message_chars(Some(10));
    let mut rig = Rig::start_with(NodeConfig::default(), caps);
    let conversation = rig.conversation().await;
    let before = conversation.received_texts().len();
    rig.send(message("short")).await;
    rig.send(message("a longer message here")).await;
    received_inputs(&conversation, before + 4).await;
    assert_eq!(conversation.received_texts()[before..], ["short", "a longer ", "message ", "here"]);
    conversation.end();
    assert_eq!(rig.next_flow().await, status(HandoverStatus::Completed));
}

#[tokio::test(start_paused = true)]
async fn the_cancel_intent_before_the_agent_is_active_cancels_and_closes_the_conversation() {
    let mut rig = Rig::start(accepting());
    rig.next().await;
    let conversation = rig.conversation().await;
    conversation.join("Ann");
    rig.send(NodeInput::Intent { name: "cancel_handover".into() }).await;
    assert_eq!(rig.next_flow().await, status(HandoverStatus::Cancelled));
    assert_eq!(conversation.closed_by_customer(), Some(EndReason::Cancelled));
    let (outcome, rest) = rig.outcome().await;
    assert_eq!(outcome.status, HandoverStatus::Cancelled);
    assert_eq!(outcome.continuation, None);
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test(start_paused = true)]
async fn other_intents_do_not_cancel() {
    let mut rig = Rig::start(accepting());
    rig.next().await;
    rig.send(NodeInput::Intent { name: "smalltalk".into() }).await;
    let conversation = rig.conversation().await;
    conversation.say("Ann", "still here");
    assert_eq!(rig.next_flow().await, agent_message("still here"));
    assert_eq!(conversation.closed_by_customer(), None);
}

#[tokio::test(start_paused = true)]
async fn the_cancel_button_before_the_agent_is_active_cancels() {
    let mut rig = Rig::start(accepting());
    rig.next().await;
    let conversation = rig.conversation().await;
    rig.send(NodeInput::Button { text: "Cancel".into() }).await;
    assert_eq!(rig.next_flow().await, status(HandoverStatus::Cancelled));
    assert_eq!(conversation.closed_by_customer(), Some(EndReason::Cancelled));
}

#[tokio::test(start_paused = true)]
async fn cancel_after_the_agent_is_active_is_ignored_and_the_button_text_is_forwarded() {
    let mut rig = Rig::start(accepting());
    rig.next().await;
    let conversation = rig.conversation().await;
    conversation.say("Ann", "Hello");
    assert_eq!(rig.next_flow().await, agent_message("Hello"));
    let before = conversation.received_texts().len();
    rig.send(NodeInput::Intent { name: "cancel_handover".into() }).await;
    rig.send(NodeInput::Button { text: "Cancel".into() }).await;
    received_inputs(&conversation, before + 1).await;
    assert_eq!(conversation.received_texts()[before..], ["Cancel"]);
    assert_eq!(conversation.closed_by_customer(), None);
    conversation.end();
    assert_eq!(rig.next_flow().await, status(HandoverStatus::Completed));
}

#[tokio::test(start_paused = true)]
async fn the_queue_event_is_sent_once_when_enabled() {
    let mut rig = Rig::start(config(|c| c.send_queue_event = true));
    let conversation = rig.conversation().await;
    conversation.queue(Some(3), Some(Duration::from_secs(90)));
    assert_eq!(
        rig.next().await,
        NodeOutput::Event {
            name: FlowEvent::Queue,
            position: Some(3),
            estimated_wait_time_ms: Some(90_000),
            continuation: None
        }
    );
    assert_eq!(rig.next().await, queue_update(Some(3), Some(90_000)));
    conversation.queue(Some(2), None);
    assert_eq!(rig.next().await, queue_update(Some(2), None), "no second queue event");
}

#[tokio::test(start_paused = true)]
async fn no_queue_event_when_disabled() {
    let mut rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    conversation.queue(Some(3), None);
    assert_eq!(rig.next().await, queue_update(Some(3), None));
}

#[tokio::test(start_paused = true)]
async fn position_updates_come_at_most_once_per_interval_with_the_newest_value() {
    let mut config = NodeConfig::default();
    config.queue.position_interval = Duration::from_secs(30);
    config.queue.wait_time = false;
    let mut rig = Rig::start(config);
    let conversation = rig.conversation().await;
    conversation.queue(Some(5), Some(Duration::from_secs(60)));
    assert_eq!(rig.next().await, queue_update(Some(5), None));
    let first = tokio::time::Instant::now();
    conversation.queue(Some(4), None);
    conversation.queue(Some(3), None);
    assert_eq!(rig.next().await, queue_update(Some(3), None), "the newest value, once");
    assert!(tokio::time::Instant::now() - first >= Duration::from_secs(30), "not before the interval");
    // An unchanged position is not reported again.
    conversation.queue(Some(3), None);
    conversation.say("Ann", "marker");
    assert_eq!(rig.next().await, agent_message("marker"));
}

/// On a running clock too: the first update goes out at once, not one tick later.
#[tokio::test]
async fn the_first_queue_update_is_reported_at_once_on_a_running_clock() {
    let mut rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    conversation.queue(None, Some(Duration::from_secs(180)));
    conversation.queue(Some(2), None);
    assert_eq!(rig.next().await, queue_update(None, Some(180_000)));
    assert_eq!(rig.next().await, queue_update(Some(2), None));
}

#[tokio::test(start_paused = true)]
async fn wait_time_is_reported_in_milliseconds_at_its_own_interval() {
    let mut config = NodeConfig::default();
    config.queue.position = false;
    config.queue.wait_time_interval = Duration::from_secs(60);
    let mut rig = Rig::start(config);
    let conversation = rig.conversation().await;
    conversation.queue(Some(5), Some(Duration::from_secs(300)));
    assert_eq!(rig.next().await, queue_update(None, Some(300_000)));
    let first = tokio::time::Instant::now();
    conversation.queue(Some(4), Some(Duration::from_millis(240_500)));
    assert_eq!(rig.next().await, queue_update(None, Some(240_500)));
    assert!(tokio::time::Instant::now() - first >= Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn the_alternative_text_is_said_once_when_the_position_passes_the_maximum() {
    let mut config = NodeConfig::default();
    config.queue.alternative = Some(Alternative::new("We are busy; try later.", Some(5), None));
    let mut rig = Rig::start(config);
    let conversation = rig.conversation().await;
    conversation.queue(Some(5), None);
    assert_eq!(rig.next().await, queue_update(Some(5), None));
    conversation.queue(Some(7), None);
    assert_eq!(rig.next().await, say("We are busy; try later.", &[]));
    assert_eq!(rig.next().await, queue_update(Some(7), None));
    conversation.queue(Some(8), None);
    assert_eq!(rig.next().await, queue_update(Some(8), None), "said once only");
}

#[tokio::test(start_paused = true)]
async fn the_alternative_text_is_said_when_the_wait_passes_the_maximum() {
    let mut config = NodeConfig::default();
    config.queue.alternative = Some(Alternative::new("Long wait.", None, Some(Duration::from_secs(600))));
    let mut rig = Rig::start(config);
    let conversation = rig.conversation().await;
    conversation.queue(None, Some(Duration::from_secs(601)));
    assert_eq!(rig.next().await, say("Long wait.", &[]));
    assert_eq!(rig.next().await, queue_update(None, Some(601_000)));
}

#[tokio::test(start_paused = true)]
async fn queue_reports_stop_once_an_agent_joins() {
    let mut config = NodeConfig::default();
    config.queue.position_interval = Duration::from_secs(30);
    let mut rig = Rig::start(config);
    let conversation = rig.conversation().await;
    conversation.queue(Some(2), None);
    assert_eq!(rig.next().await, queue_update(Some(2), None));
    conversation.queue(Some(1), None);
    conversation.join("Ann");
    assert_eq!(rig.next().await, NodeOutput::AgentJoined { agent: "Ann".into() });
    conversation.queue(Some(1), None);
    conversation.say("Ann", "Hi");
    assert_eq!(rig.next().await, agent_message("Hi"), "the pending update was dropped");
}

#[tokio::test(start_paused = true)]
async fn the_active_event_comes_on_the_first_agent_message_not_on_assignment() {
    let mut rig = Rig::start(config(|c| c.send_active_event = true));
    let conversation = rig.conversation().await;
    conversation.join("Ann");
    assert_eq!(rig.next().await, NodeOutput::AgentJoined { agent: "Ann".into() });
    conversation.typing(true);
    assert_eq!(rig.next().await, NodeOutput::AgentTyping { typing: true });
    conversation.say("Ann", "Hi");
    assert_eq!(rig.next().await, event(FlowEvent::Active));
    assert_eq!(rig.next().await, agent_message("Hi"));
    conversation.say("Ann", "again");
    assert_eq!(rig.next().await, agent_message("again"), "only once");
}

#[tokio::test(start_paused = true)]
async fn no_active_event_when_disabled() {
    let mut rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    conversation.say("Ann", "Hi");
    assert_eq!(rig.next().await, agent_message("Hi"));
}

#[tokio::test(start_paused = true)]
async fn user_connect_and_disconnect_messages_are_relayed_when_enabled() {
    let rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    let before = conversation.received().len();
    rig.send(NodeInput::Disconnected).await;
    rig.send(NodeInput::Connected).await;
    let received = received_inputs(&conversation, before + 2).await;
    assert_eq!(received[before..], [UserInput::Disconnected, UserInput::Connected]);
}

#[tokio::test(start_paused = true)]
async fn user_connect_and_disconnect_messages_are_not_relayed_when_disabled() {
    let config = config(|c| {
        c.user_connects_message = false;
        c.user_disconnects_message = false;
    });
    let rig = Rig::start(config);
    let conversation = rig.conversation().await;
    let before = conversation.received().len();
    rig.send(NodeInput::Disconnected).await;
    rig.send(NodeInput::Connected).await;
    rig.send(NodeInput::Message { text: "marker".into(), id: Some("m-1".into()) }).await;
    let received = received_inputs(&conversation, before + 1).await;
    assert_eq!(received[before..], [UserInput::message("m-1", "marker")]);
}

#[tokio::test(start_paused = true)]
async fn the_agent_ending_completes_with_the_resolve_event_and_the_continuation() {
    let config = config(|c| {
        c.send_resolve_event = true;
        c.flow_continuation = FlowContinuation::AgentInjectEntrypoint;
    });
    let mut rig = Rig::start(config);
    let conversation = rig.conversation().await;
    conversation.say("Ann", "Done, bye");
    conversation.end();
    assert_eq!(rig.next().await, agent_message("Done, bye"));
    assert_eq!(
        rig.next().await,
        NodeOutput::Event {
            name: FlowEvent::Resolve,
            position: None,
            estimated_wait_time_ms: None,
            continuation: Some("agent_inject_entrypoint".into())
        }
    );
    assert_eq!(rig.next().await, status(HandoverStatus::Completed));
    let (outcome, _) = rig.outcome().await;
    assert_eq!(outcome.continuation, Some(FlowContinuation::AgentInjectEntrypoint));
}

#[tokio::test(start_paused = true)]
async fn no_resolve_event_when_disabled() {
    let mut rig = Rig::start(NodeConfig::default());
    rig.conversation().await.end();
    assert_eq!(rig.next().await, status(HandoverStatus::Completed));
}

#[tokio::test(start_paused = true)]
async fn a_request_the_provider_cannot_take_is_an_error_status_with_its_reason() {
    let (provider, center) = FakeProvider::new();
    center.fail_next_start(handover::Error::unsupported("fake", "handover on this channel"));
    let (_in_tx, inputs) = mpsc::channel(1);
    let (outputs, mut output_rx) = mpsc::channel(8);
    let node = Node::new(accepting());
    let outcome = node.run(&provider, sample_request(), inputs, outputs, CancellationToken::new()).await;
    let HandoverStatus::Error { reason, message } = &outcome.status else { panic!("{outcome:?}") };
    assert_eq!(*reason, ErrorReason::Unsupported);
    assert!(message.contains("handover on this channel"), "{message}");
    assert_eq!(output_rx.recv().await, Some(status(outcome.status.clone())), "no accepted message on failure");

    center.fail_next_start(handover::Error::transport("fake", "create conversation", "connection refused"));
    let (_in_tx, inputs) = mpsc::channel(1);
    let (outputs, _output_rx) = mpsc::channel(8);
    let outcome = node.run(&provider, sample_request(), inputs, outputs, CancellationToken::new()).await;
    assert!(matches!(outcome.status, HandoverStatus::Error { reason: ErrorReason::Error, .. }));
}

#[tokio::test(start_paused = true)]
async fn a_provider_failure_mid_session_is_an_error_status() {
    let mut rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    assert!(conversation.fail_session(ErrorKind::Transport, "event stream lost for good"));
    let NodeOutput::Status { status: HandoverStatus::Error { reason, message } } = rig.next().await else {
        panic!("expected an error status")
    };
    assert_eq!(reason, ErrorReason::Error);
    assert!(message.contains("event stream lost for good"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn a_message_that_cannot_reach_the_provider_ends_with_an_error_status() {
    let mut rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    conversation.fail_next_send(handover::Error::transport("fake", "send message", "HTTP 503 after 4 attempts"));
    rig.send(message("hello")).await;
    let NodeOutput::Status { status: HandoverStatus::Error { reason: ErrorReason::Error, message } } = rig.next().await
    else {
        panic!("expected an error status")
    };
    assert!(message.contains("HTTP 503"), "{message}");
    assert_eq!(conversation.closed_by_customer(), Some(EndReason::Shutdown), "the session is ended cleanly");
}

#[tokio::test(start_paused = true)]
async fn a_refused_input_is_reported_to_the_bot_and_the_handover_goes_on() {
    let mut rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    conversation.fail_next_send(handover::Error::invalid_input("fake", "send message", "the desk refused it"));
    rig.send(NodeInput::Message { text: "hello".into(), id: Some("m-1".into()) }).await;
    let output = rig.next_flow().await;
    let NodeOutput::InputRejected { reason, id } = output else { panic!("expected input_rejected, got {output:?}") };
    assert!(reason.contains("the desk refused it"), "{reason}");
    assert_eq!(id.as_deref(), Some("m-1"));
    rig.send(message("still here")).await;
    let texts = received(&conversation, 2).await;
    assert_eq!(texts.last().map(String::as_str), Some("still here"), "the handover goes on: {texts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_message_carries_the_bots_id_and_a_resend_with_it_is_delivered_once() {
    let rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    rig.send(NodeInput::Message { text: "once".into(), id: Some("bot-7".into()) }).await;
    rig.send(NodeInput::Message { text: "once".into(), id: Some("bot-7".into()) }).await;
    rig.send(message("without an id")).await;
    rig.send(message("sentinel")).await;
    // The transcript, "once" (once), "without an id", "sentinel".
    let inputs = received_inputs(&conversation, 4).await;
    assert!(matches!(inputs.last(), Some(UserInput::Message { text, .. }) if text == "sentinel"), "{inputs:?}");
    let ids: Vec<&str> = inputs
        .iter()
        .filter_map(|input| match input {
            UserInput::Message { id, text } if text != "sentinel" && !id.starts_with("transcript") => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 2, "{inputs:?}");
    assert_eq!(ids[0], "bot-7");
    assert!(!ids[1].is_empty() && ids[1] != "bot-7", "the runtime makes an id when the bot gave none");
}

#[tokio::test(start_paused = true)]
async fn exactly_one_final_status_and_late_events_are_ignored() {
    let rig = Rig::start(config(|c| c.send_active_event = true));
    let conversation = rig.conversation().await;
    conversation.end();
    conversation.say("Ann", "late");
    conversation.end();
    let (outcome, rest) = rig.outcome().await;
    assert_eq!(outcome.status, HandoverStatus::Completed);
    assert_eq!(rest, [status(HandoverStatus::Completed)]);
}

#[tokio::test(start_paused = true)]
async fn a_transfer_does_not_end_the_handover() {
    let mut rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    conversation.join("Ann");
    conversation.leave("Ann", true);
    conversation.join("Bob");
    conversation.say("Bob", "Bob here");
    assert_eq!(rig.next().await, NodeOutput::AgentJoined { agent: "Ann".into() });
    assert_eq!(rig.next().await, NodeOutput::AgentLeft { agent: "Ann".into(), transfer: true });
    assert_eq!(rig.next().await, NodeOutput::AgentJoined { agent: "Bob".into() });
    assert_eq!(
        rig.next().await,
        NodeOutput::AgentMessage { text: "Bob here".into(), agent: Some("Bob".into()), attachments: Vec::new() }
    );
}

#[tokio::test(start_paused = true)]
async fn end_of_input_does_not_end_the_handover() {
    let mut rig = Rig::start(NodeConfig::default());
    rig.inputs = None;
    let conversation = rig.conversation().await;
    conversation.say("Ann", "still there?");
    assert_eq!(rig.next().await, agent_message("still there?"));
    conversation.end();
    assert_eq!(rig.next().await, status(HandoverStatus::Completed));
}

#[tokio::test(start_paused = true)]
async fn shutting_down_ends_the_provider_session_cleanly() {
    let mut rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    rig.shutdown.cancel();
    let NodeOutput::Status { status: HandoverStatus::Error { message, .. } } = rig.next().await else {
        panic!("expected an error status")
    };
    assert!(message.contains("shut down"), "{message}");
    assert_eq!(conversation.closed_by_customer(), Some(EndReason::Shutdown));
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_goes_away_ends_the_provider_session() {
    let rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    let Rig { outputs, run, inputs: _inputs, .. } = rig;
    drop(outputs);
    let outcome = tokio::time::timeout(GUARD, run).await.unwrap().unwrap();
    assert!(matches!(outcome.status, HandoverStatus::Error { .. }));
    assert_eq!(conversation.closed_by_customer(), Some(EndReason::Shutdown));
}

fn attachment_input(fields: serde_json::Value) -> NodeInput {
    let serde_json::Value::Object(mut object) = fields else { panic!("fields are an object") };
    object.insert("type".into(), "attachment".into());
    serde_json::from_value(serde_json::Value::Object(object)).expect("an attachment input")
}

#[tokio::test(start_paused = true)]
async fn a_file_from_data_reaches_the_agent_with_its_id_name_guessed_type_and_caption() {
    let rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    rig.send(attachment_input(serde_json::json!({
        "name": "scan.PNG", "data": "iVBORw0KGgo=", "caption": "my invoice", "id": "f-1"
    })))
    .await;
    // The transcript first, then the file.
    let inputs = received_inputs(&conversation, 2).await;
    let expected =
        handover::Attachment::bytes("scan.PNG", "image/png", b"\x89PNG\r\n\x1a\n".to_vec()).with_caption("my invoice");
    assert_eq!(inputs[1..], [UserInput::attachment("f-1", expected)]);
    // A repeat of the same id is delivered once.
    rig.send(attachment_input(serde_json::json!({ "name": "scan.PNG", "data": "iVBORw0KGgo=", "id": "f-1" }))).await;
    rig.send(message("after")).await;
    let inputs = received_inputs(&conversation, 3).await;
    assert_eq!(inputs.len(), 3, "{inputs:?}");
    assert!(matches!(&inputs[2], UserInput::Message { text, .. } if text == "after"), "{inputs:?}");
}

#[tokio::test(start_paused = true)]
async fn a_file_from_a_path_is_read_from_disk_and_named_after_it() {
    let dir = std::env::temp_dir().join(format!("handover-node-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("label.pdf");
    std::fs::write(&path, b"%PDF-1.4 test").unwrap();
    let rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    rig.send(NodeInput::Attachment {
        name: None,
        media_type: None,
        url: None,
        path: Some(path),
        data: None,
        caption: None,
        fetch: false,
        id: Some("f-2".into()),
    })
    .await;
    let inputs = received_inputs(&conversation, 2).await;
    assert_eq!(
        inputs[1..],
        [UserInput::attachment(
            "f-2",
            handover::Attachment::bytes("label.pdf", "application/pdf", b"%PDF-1.4 test".to_vec())
        )]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_file_input_that_is_wrong_is_rejected_with_its_id_and_nothing_is_sent() {
    let mut rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    let cases = [
        (
            serde_json::json!({ "name": "a.png", "data": "AAAA", "url": "https://x/a.png", "id": "two" }),
            "exactly one of",
        ),
        (serde_json::json!({ "name": "a.png", "data": "not base64!", "id": "bad" }), "not standard base64"),
        (serde_json::json!({ "data": "AAAA", "id": "nameless" }), "needs a `name`"),
        (serde_json::json!({ "path": "/nonexistent/handover/file.pdf", "id": "missing" }), "cannot be read"),
        // The fake takes uploads only: a URL is refused before any I/O.
        (
            serde_json::json!({ "name": "a.png", "url": "https://files.example/a.png?sig=s3cr3t", "id": "link" }),
            "not a URL",
        ),
    ];
    for (fields, expected) in cases {
        let id = fields["id"].as_str().unwrap().to_owned();
        rig.send(attachment_input(fields)).await;
        match rig.next_flow().await {
            NodeOutput::InputRejected { reason, id: rejected } => {
                assert_eq!(rejected.as_deref(), Some(id.as_str()));
                assert!(reason.contains(expected), "{reason} should say {expected}");
                assert!(!reason.contains("s3cr3t"), "the URL's query stays out of the reason: {reason}");
            }
            other => panic!("expected input_rejected for {id}, got {other:?}"),
        }
    }
    let big = handover_testkit::fake::FAKE_MAX_ATTACHMENT_BYTES as usize + 1;
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, vec![0u8; big]);
    rig.send(attachment_input(serde_json::json!({ "name": "big.png", "data": data, "id": "big" }))).await;
    match rig.next_flow().await {
        NodeOutput::InputRejected { reason, .. } => {
            assert!(reason.contains(&handover_testkit::fake::FAKE_MAX_ATTACHMENT_BYTES.to_string()), "{reason}");
        }
        other => panic!("expected input_rejected, got {other:?}"),
    }
    rig.send(message("still here")).await;
    let inputs = received_inputs(&conversation, 2).await;
    assert_eq!(inputs.len(), 2, "only the transcript and the message: {inputs:?}");
    assert_eq!(received(&conversation, 2).await[1], "still here");
}

#[tokio::test(start_paused = true)]
async fn agent_files_reach_the_bot_with_the_message() {
    let mut rig = Rig::start(NodeConfig::default());
    let conversation = rig.conversation().await;
    let file = handover::Attachment::url("label.pdf", "application/pdf", "https://files.example/l.pdf?token=t")
        .with_size(Some(1500));
    conversation.send_files("Ann", "Your label", vec![file.clone()]);
    loop {
        if let NodeOutput::AgentMessage { text, agent, attachments } = rig.next().await {
            assert_eq!((text.as_str(), agent.as_deref()), ("Your label", Some("Ann")));
            assert_eq!(attachments, [file]);
            break;
        }
    }
    let line = serde_json::to_value(NodeOutput::AgentMessage {
        text: "Your label".into(),
        agent: None,
        attachments: vec![handover::Attachment::url("l.pdf", "application/pdf", "https://f/l.pdf")],
    })
    .unwrap();
    assert_eq!(
        line,
        serde_json::json!({"type": "agent_message", "text": "Your label", "agent": null,
            "attachments": [{"name": "l.pdf", "media_type": "application/pdf", "url": "https://f/l.pdf"}]})
    );
}
