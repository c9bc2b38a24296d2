//! Every variant of the public event, input and snapshot types survives a JSON round
//! trip: what a process writes (an event log, a snapshot in a store, a line on stdout)
//! another reads back unchanged.

#![allow(clippy::unwrap_used)] // a panic is the failure report

use std::time::Duration;

use handover_core::{Agent, EndReason, EndedBy, Event, SessionSnapshot, UserInput};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including quotes, control characters and escapes.
    any::<String>()
}

fn agent() -> impl Strategy<Value = Agent> {
    (proptest::option::of(text()), proptest::option::of(text())).prop_map(|(id, name)| {
        let mut agent = Agent::unknown();
        agent.id = id;
        agent.name = name;
        agent
    })
}

fn ended_by() -> impl Strategy<Value = EndedBy> {
    prop_oneof![Just(EndedBy::Agent), Just(EndedBy::User), Just(EndedBy::System)]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (proptest::option::of(any::<u32>()), proptest::option::of(any::<u64>()), any::<u32>()).prop_map(
            |(position, secs, nanos)| Event::Queued {
                position,
                estimated_wait: secs.map(|s| Duration::new(s, nanos % 1_000_000_000)),
            }
        ),
        agent().prop_map(|agent| Event::AgentJoined { agent }),
        (text(), text(), agent()).prop_map(|(id, text, agent)| Event::AgentMessage {
            id,
            text,
            agent,
            attachments: Vec::new()
        }),
        any::<bool>().prop_map(|on| Event::AgentTyping { on }),
        (agent(), any::<bool>()).prop_map(|(agent, transfer)| Event::AgentLeft { agent, transfer }),
        Just(Event::Reconnecting),
        any::<bool>().prop_map(|gap| Event::Resumed { gap }),
        (ended_by(), proptest::option::of(text())).prop_map(|(by, reason)| Event::Ended { by, reason }),
    ]
}

fn user_input() -> impl Strategy<Value = UserInput> {
    prop_oneof![
        (text(), text()).prop_map(|(id, text)| UserInput::Message { id, text }),
        any::<bool>().prop_map(|on| UserInput::Typing { on }),
        Just(UserInput::Connected),
        Just(UserInput::Disconnected),
    ]
}

proptest! {
    #[test]
    fn every_event_round_trips(event in event()) {
        let json = serde_json::to_string(&event).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, event);
    }

    #[test]
    fn every_user_input_round_trips(input in user_input()) {
        let json = serde_json::to_string(&input).unwrap();
        let back: UserInput = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, input);
    }

    #[test]
    fn every_snapshot_round_trips(
        provider in "[a-z0-9]{1,12}",
        session in text(),
        state in proptest::collection::btree_map(text(), text(), 0..4),
        secrets in proptest::collection::btree_map(text(), text(), 0..3),
        sent in proptest::collection::vec(text(), 0..4),
    ) {
        let mut snapshot = SessionSnapshot::new(&provider, 1, &session, &state).unwrap().with_sent_inputs(sent);
        for (name, value) in secrets {
            snapshot = snapshot.with_secret(name, value);
        }
        let json = serde_json::to_string(&snapshot).unwrap();
        let back: SessionSnapshot = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, snapshot);
    }
}

#[test]
fn typing_serializes_as_a_struct_variant() {
    assert_eq!(
        serde_json::to_string(&Event::AgentTyping { on: true }).unwrap(),
        r#"{"type":"agent_typing","on":true}"#
    );
    assert_eq!(serde_json::to_string(&UserInput::Typing { on: false }).unwrap(), r#"{"type":"typing","on":false}"#);
    assert_eq!(serde_json::to_string(&EndReason::Closed).unwrap(), r#""closed""#);
}
