//! Every event shape of `protocols/salesforce-miaw.md` §6, read from fixtures.

use std::time::Duration;

use handover_core::{Agent, Event};
use provider_miaw::events::{Action, WireEntry, interpret, parse_envelope};
use serde_json::Value;

const CONVERSATION: &str = "3b1f0c9e-7a2d-4e5f-9c1b-2d3e4f5a6b7c";

fn fixture(name: &str) -> (String, Value) {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture exists")).expect("JSON");
    (json["event"].as_str().expect("event").to_owned(), json["data"].clone())
}

/// The actions for a fixture, as the session would see them over SSE.
fn actions(name: &str) -> Vec<Action> {
    let (event, data) = fixture(name);
    let envelope = parse_envelope(&data.to_string()).expect("the envelope parses");
    interpret(&envelope.conversation_entry, Some(&event)).expect("the entry is readable")
}

/// The one agent message a fixture yields: its text and agent.
fn message(name: &str) -> (String, Agent) {
    match actions(name).as_slice() {
        [Action::Emit(Event::AgentMessage { text, agent, .. })] => (text.clone(), agent.clone()),
        other => panic!("expected one agent message, got {other:?}"),
    }
}

fn ignored(actions: &[Action]) -> bool {
    actions.iter().all(|a| matches!(a, Action::Ignore(_)))
}

fn jane() -> Agent {
    Agent::named("Jane (Agent)").with_id("005000000000001")
}

#[test]
fn an_agent_message_is_delivered_with_its_entry_id_and_sender() {
    assert_eq!(
        actions("message_agent"),
        [Action::Emit(Event::AgentMessage {
            id: "e-msg-1".into(),
            text: "Hi, I'm Jane from billing.".into(),
            agent: jane()
        })]
    );
}

#[test]
fn a_payload_given_as_an_object_reads_like_one_given_as_a_string() {
    assert_eq!(message("message_object_payload").0, "payload as an object");
}

#[test]
fn own_echoes_are_filtered() {
    assert!(ignored(&actions("message_echo")));
    assert!(ignored(&actions("typing_echo")));
}

#[test]
fn a_salesforce_bot_message_is_relayed_like_an_agent_message() {
    assert_eq!(message("message_chatbot").1.name.as_deref(), Some("Einstein Bot"));
}

#[test]
fn attachments_become_text_with_their_urls() {
    assert_eq!(message("message_attachments").0, "Here is the form\n[attachment] https://files.example/form.pdf");
}

#[test]
fn the_envelope_names_the_conversation_so_others_can_be_ignored() {
    let (_, data) = fixture("message_other_conversation");
    let envelope = parse_envelope(&data.to_string()).unwrap();
    assert_ne!(envelope.conversation_id, CONVERSATION);
    let (_, data) = fixture("message_agent");
    assert_eq!(parse_envelope(&data.to_string()).unwrap().conversation_id, CONVERSATION);
}

#[test]
fn participant_changes_are_joins_and_removals_of_agents_only() {
    assert_eq!(actions("participant_add"), [Action::Emit(Event::AgentJoined { agent: jane() })]);
    assert_eq!(actions("participant_remove"), [Action::AgentRemoved(jane())]);
    assert!(ignored(&actions("participant_chatbot_add")));
}

#[test]
fn routing_results_report_the_estimated_wait_or_fail_the_handover() {
    assert_eq!(
        actions("routing_result"),
        [Action::Emit(Event::Queued { position: None, estimated_wait: Some(Duration::from_secs(240)) })]
    );
    assert_eq!(
        actions("routing_result_no_estimate"),
        [Action::Emit(Event::Queued { position: None, estimated_wait: None })],
        "-1 means no estimate"
    );
    assert_eq!(actions("routing_failed"), [Action::RoutingFailed("No agents available: Queue is closed".into())]);
    assert_eq!(
        actions("routing_transfer"),
        [Action::Emit(Event::Queued { position: None, estimated_wait: Some(Duration::from_secs(30)) })]
    );
    assert!(ignored(&actions("routing_work_result")));
}

#[test]
fn session_status_changes_end_or_queue_the_handover() {
    assert_eq!(actions("session_waiting"), [Action::Emit(Event::Queued { position: None, estimated_wait: None })]);
    assert!(ignored(&actions("session_active")));
    assert!(ignored(&actions("session_inactive")), "inactive is not an end");
    assert_eq!(actions("session_ended"), [Action::SessionEnded]);
    assert_eq!(actions("close_conversation"), [Action::Closed]);
}

#[test]
fn agent_typing_is_relayed() {
    assert_eq!(actions("typing_started"), [Action::Emit(Event::AgentTyping { on: true })]);
    assert_eq!(actions("typing_stopped"), [Action::Emit(Event::AgentTyping { on: false })]);
}

#[test]
fn receipts_progress_client_actions_and_unknown_events_are_ignored() {
    for name in [
        "delivery_acknowledgement",
        "read_acknowledgement",
        "progress_indicator",
        "client_action",
        "unknown_future_event",
    ] {
        assert!(ignored(&actions(name)), "{name}");
    }
}

#[test]
fn queue_positions_are_read_leniently_because_the_payload_is_undocumented() {
    assert_eq!(actions("queue_position"), [Action::Emit(Event::Queued { position: Some(4), estimated_wait: None })]);
    assert!(ignored(&actions("queue_position_unknown_shape")));
}

#[test]
fn entries_list_payloads_are_objects_or_strings() {
    let path = format!("{}/tests/fixtures/entries_page.json", env!("CARGO_MANIFEST_DIR"));
    let page: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let entries: Vec<WireEntry> = serde_json::from_value(page["conversationEntries"].clone()).unwrap();
    let all: Vec<Action> = entries.iter().flat_map(|e| interpret(e, None).unwrap()).collect();
    assert_eq!(all.len(), 2);
    assert!(matches!(&all[0], Action::Emit(Event::AgentMessage { text, .. }) if text == "back-filled"));
    assert_eq!(all[1], Action::SessionEnded);
}

#[test]
fn malformed_payloads_are_typed_errors_not_panics() {
    let (_, mut data) = fixture("message_agent");
    data["conversationEntry"]["entryPayload"] = Value::String("{not json".into());
    let envelope = parse_envelope(&data.to_string()).unwrap();
    let error = interpret(&envelope.conversation_entry, Some("CONVERSATION_MESSAGE")).unwrap_err();
    assert_eq!(error.kind(), handover_core::ErrorKind::Protocol);
    assert!(error.to_string().contains("e-msg-1"), "{error}");
    assert!(parse_envelope("[]").is_err());
    assert!(parse_envelope("0").is_err());
}
