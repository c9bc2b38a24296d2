//! Every webhook shape of `protocols/liveagent-chatwoot.md` §5 the provider reads, including
//! private notes, echoes and bots it must not forward.

use handover_core::Agent;
use provider_liveagent::webhook::{Delivery, parse};

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/webhook_{name}.json", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn delivery(name: &str) -> Delivery {
    let parsed = parse(&read(name)).expect("the fixture parses");
    assert_eq!(parsed.conversation, Some(1042), "{name}");
    parsed.delivery
}

#[test]
fn public_outgoing_messages_of_human_agents_are_forwarded() {
    let mut ann = Agent::named("Ann").with_id("17");
    assert_eq!(
        delivery("message_agent"),
        Delivery::AgentMessage { id: 5001, text: "Hi, I'm Ann.".into(), agent: ann.clone() }
    );
    ann.name = Some("Ann Agent".into());
    assert_eq!(
        delivery("message_attachment"),
        Delivery::AgentMessage {
            id: 5005,
            text: "[attachment] https://desk.example/rails/active_storage/blobs/invoice.pdf".into(),
            agent: ann
        }
    );
}

#[test]
fn private_notes_echoes_bots_and_edits_are_not() {
    for name in ["message_private_note", "message_incoming_echo", "message_agent_bot", "message_updated"] {
        assert!(matches!(delivery(name), Delivery::Ignore(_)), "{name}");
    }
}

#[test]
fn assignment_changes() {
    assert_eq!(delivery("assigned"), Delivery::Assigned(Agent::named("Ann").with_id("17")));
    assert_eq!(delivery("unassigned"), Delivery::Unassigned);
}

#[test]
fn resolution_through_either_event() {
    assert_eq!(delivery("resolved"), Delivery::Resolved { status: "resolved".into() });
    assert_eq!(delivery("resolved_via_update"), Delivery::Resolved { status: "resolved".into() });
    assert!(matches!(delivery("status_snoozed"), Delivery::Ignore(_)), "snoozed is still active");
}

#[test]
fn typing_and_other_events() {
    assert_eq!(delivery("typing_on"), Delivery::Typing(true));
    assert!(matches!(delivery("typing_private"), Delivery::Ignore(_)));
    assert!(matches!(delivery("conversation_created"), Delivery::Ignore(_)));
    assert!(matches!(delivery("webwidget_triggered"), Delivery::Ignore(_)));
}

#[test]
fn dedup_keys_come_from_the_signed_body() {
    assert_eq!(parse(&read("message_agent")).unwrap().dedup_key, "message:5001");
    let assigned = parse(&read("assigned")).unwrap().dedup_key;
    assert!(assigned.starts_with("body:"), "{assigned}");
    assert_eq!(parse(&read("assigned")).unwrap().dedup_key, assigned, "the same body, the same key");
    assert_ne!(parse(&read("unassigned")).unwrap().dedup_key, assigned);
}

#[test]
fn malformed_payloads_are_typed_errors_and_strangers_name_no_conversation() {
    assert!(parse(b"nope").is_err());
    assert!(parse(b"[1,2]").is_err());
    let stranger = parse(br#"{"event":"message_created","id":1}"#).unwrap();
    assert_eq!(stranger.conversation, None, "no conversation: nothing for a session");
    let unknown = parse(br#"{"event":"contact_merged","id":3}"#).unwrap();
    assert!(matches!(unknown.delivery, Delivery::Ignore(_)));
}
