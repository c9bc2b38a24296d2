//! Every message type of `protocols/salesforce-chat.md` §7, read from fixtures.

use std::time::Duration;

use handover_core::{Agent, Event};
use provider_salesforce::events::{Action, parse_batch};

fn actions(name: &str) -> (i64, Option<i64>, Vec<Action>) {
    let body = std::fs::read(format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"))).expect("fixture");
    let batch = parse_batch(&body).expect("the batch parses");
    let actions = batch.messages.iter().enumerate().map(|(i, m)| m.interpret(|| format!("id-{i}"))).collect();
    (batch.sequence, batch.offset, actions)
}

fn ann() -> Agent {
    Agent::named("Ann Agent").with_id("005000000000001")
}

#[test]
fn queue_messages_carry_position_and_wait() {
    let (sequence, offset, success) = actions("chat_request_success");
    assert_eq!((sequence, offset), (1, Some(1000)));
    assert_eq!(
        success,
        [Action::Emit(Event::Queued { position: Some(3), estimated_wait: Some(Duration::from_secs(240)) })]
    );
    assert_eq!(
        actions("chat_request_success_no_estimate").2,
        [Action::Emit(Event::Queued { position: Some(1), estimated_wait: None })],
        "-1 means no estimate"
    );
    assert_eq!(
        actions("queue_update").2,
        [Action::Emit(Event::Queued { position: Some(2), estimated_wait: Some(Duration::from_secs(120)) })]
    );
}

#[test]
fn establishment_messages_and_typing() {
    assert_eq!(actions("chat_established").2, [Action::Established(ann())]);
    assert_eq!(
        actions("chat_message").2,
        [Action::Emit(Event::AgentMessage { id: "id-0".into(), text: "Hi, how can I help?".into(), agent: ann() })]
    );
    assert_eq!(
        actions("typing").2,
        [Action::Emit(Event::AgentTyping { on: true }), Action::Emit(Event::AgentTyping { on: false })]
    );
}

#[test]
fn a_disconnect_or_transfer_is_not_an_end() {
    assert_eq!(
        actions("agent_disconnect").2,
        [Action::Emit(Event::AgentLeft { agent: Agent::unknown(), transfer: true })]
    );
    assert_eq!(
        actions("chat_transferred").2,
        [Action::Transferred(Agent::named("Bob Agent").with_id("005000000000002"))]
    );
}

#[test]
fn a_batch_with_the_last_message_and_the_end_keeps_their_order() {
    let (_, _, batch) = actions("message_then_ended");
    assert!(matches!(&batch[0], Action::Emit(Event::AgentMessage { text, .. }) if text == "Goodbye!"));
    assert_eq!(batch[1], Action::Ended);
}

#[test]
fn failures_session_data_and_unknown_types() {
    assert_eq!(actions("chat_request_fail").2, [Action::Failed("Unavailable".into())]);
    assert_eq!(actions("session_data").2, [Action::SessionData]);
    assert_eq!(actions("unknown_and_ignored").2, [Action::Ignore, Action::Ignore, Action::Ignore, Action::Ignore]);
}

#[test]
fn malformed_batches_are_typed_errors() {
    assert!(parse_batch(b"").is_err());
    assert!(parse_batch(b"{\"messages\":[]}").is_err(), "no sequence");
    assert!(parse_batch(b"OK").is_err());
}
