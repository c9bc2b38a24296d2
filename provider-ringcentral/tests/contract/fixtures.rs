//! Every callback (`protocols/ringcentral-engage.md` §3) and webhook event (§7) shape the
//! provider reads.

use std::time::Duration;

use handover_core::Agent;
use provider_ringcentral::webhook::{Callback, EngageEvent, EventKind, parse_callback, parse_events};

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn callback(name: &str) -> Callback {
    parse_callback(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn events(name: &str) -> Vec<EngageEvent> {
    parse_events(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn the_documented_implementation_info_request() {
    assert_eq!(callback("callback_implementation_info"), Callback::ImplementationInfo);
}

#[test]
fn agent_replies_with_sender_attachments_and_ids() {
    let mut agent = Agent::unknown();
    agent.name = Some("Jane from RingCentral".into());
    agent.id = Some("agent-identity".into());
    assert_eq!(
        callback("callback_messages_create"),
        Callback::AgentReply {
            content_id: "5e1f0c8a4f1ab2000a8c1234".into(),
            thread_id: Some("h-7b1e".into()),
            in_reply_to_id: Some("h-7b1e:m:42".into()),
            text: "Hello Jane, I'm looking at your invoice.\n[attachment] invoice.pdf https://acme.digital.ringcentral.com/attachments/5e1f/invoice.pdf".into(),
            agent: agent.clone(),
        }
    );
    assert_eq!(
        callback("callback_private_messages_create"),
        Callback::AgentReply {
            content_id: "5e1f0c8a4f1ab2000a8c9999".into(),
            thread_id: None,
            in_reply_to_id: Some("h-7b1e:m:43".into()),
            text: "Private follow-up".into(),
            agent,
        }
    );
}

#[test]
fn queue_updates_in_seconds_as_numbers_or_strings() {
    assert_eq!(
        callback("callback_queuing_update"),
        Callback::QueuingUpdate {
            thread_id: Some("h-7b1e".into()),
            in_reply_to_id: Some("h-7b1e:m:42".into()),
            position: Some(3),
            wait: Some(Duration::from_secs(120)),
        }
    );
    assert_eq!(
        callback("callback_queuing_update_doc"),
        Callback::QueuingUpdate {
            thread_id: None,
            in_reply_to_id: Some("h-7b1e:m:1".into()),
            position: Some(1),
            wait: Some(Duration::from_secs(10)),
        }
    );
}

#[test]
fn realtime_only_answers_and_unknown_actions() {
    assert_eq!(callback("callback_threads_list"), Callback::List);
    assert_eq!(callback("callback_messages_show"), Callback::Show);
    assert_eq!(callback("callback_unknown_action"), Callback::Unknown("messages.delete".into()));
}

#[test]
fn intervention_events_carry_engage_thread_and_source() {
    let closed = events("event_intervention_closed");
    assert_eq!(
        closed,
        [EngageEvent {
            id: "9a1b2c3d-0000-4000-8000-000000000001".into(),
            event_type: "intervention.closed".into(),
            kind: EventKind::InterventionClosed,
            resource_id: Some("5f0d000000000000000000i1".into()),
            source_id: Some("5f0c0ffee0000000000000aa".into()),
            thread_id: Some("5f0d000000000000000000t1".into()),
        }]
    );
    let several = events("event_intervention_opened_and_content");
    assert_eq!(several.len(), 2);
    assert_eq!(several[0].kind, EventKind::InterventionOpen);
    assert_eq!(several[1].kind, EventKind::Other, "content.imported includes our own pushes (§9.9)");
    assert_eq!(events("event_intervention_canceled")[0].kind, EventKind::InterventionCanceled);
    assert_eq!(events("event_task_completed")[0].kind, EventKind::Other);
}

#[test]
fn malformed_bodies_are_typed_errors() {
    for body in [&b"nope"[..], br#"{"params":{}}"#, br#"{"action":"messages.create","params":{"body":"x"}}"#] {
        assert_eq!(parse_callback(body).unwrap_err().kind(), handover_core::ErrorKind::Protocol);
    }
    for body in [&b"[]"[..], br#"{"events":[{"type":"intervention.closed"}]}"#, br#"{"id":"x"}"#] {
        assert_eq!(parse_events(body).unwrap_err().kind(), handover_core::ErrorKind::Protocol);
    }
}
