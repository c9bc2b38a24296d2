//! Every node input and output survives JSON both ways: the `--json` lines of `handover
//! chat` and the events of `handover serve` are these types serialized.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use handover::node::{FlowEvent, NodeInput, NodeOutput};
use handover::{ErrorReason, HandoverStatus};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, control characters and quotes included.
    any::<String>()
}

fn input() -> impl Strategy<Value = NodeInput> {
    prop_oneof![
        (text(), proptest::option::of(text())).prop_map(|(text, id)| NodeInput::Message { text, id }),
        text().prop_map(|name| NodeInput::Intent { name }),
        text().prop_map(|text| NodeInput::Button { text }),
        Just(NodeInput::Connected),
        Just(NodeInput::Disconnected),
    ]
}

fn status() -> impl Strategy<Value = HandoverStatus> {
    prop_oneof![
        Just(HandoverStatus::Completed),
        Just(HandoverStatus::Cancelled),
        (prop_oneof![Just(ErrorReason::Unsupported), Just(ErrorReason::Error)], text())
            .prop_map(|(reason, message)| HandoverStatus::Error { reason, message }),
    ]
}

fn output() -> impl Strategy<Value = NodeOutput> {
    let flow = prop_oneof![Just(FlowEvent::Queue), Just(FlowEvent::Active), Just(FlowEvent::Resolve)];
    prop_oneof![
        (text(), proptest::collection::vec(text(), 0..3))
            .prop_map(|(text, quick_replies)| NodeOutput::Say { text, quick_replies }),
        (text(), proptest::option::of(text())).prop_map(|(text, agent)| NodeOutput::AgentMessage {
            text,
            agent,
            attachments: Vec::new()
        }),
        (proptest::option::of(any::<u32>()), proptest::option::of(any::<u64>())).prop_map(
            |(position, estimated_wait_time_ms)| NodeOutput::QueueUpdate { position, estimated_wait_time_ms }
        ),
        (flow, proptest::option::of(any::<u32>()), proptest::option::of(any::<u64>()), proptest::option::of(text()))
            .prop_map(|(name, position, estimated_wait_time_ms, continuation)| NodeOutput::Event {
                name,
                position,
                estimated_wait_time_ms,
                continuation
            }),
        text().prop_map(|agent| NodeOutput::AgentJoined { agent }),
        (text(), any::<bool>()).prop_map(|(agent, transfer)| NodeOutput::AgentLeft { agent, transfer }),
        any::<bool>().prop_map(|typing| NodeOutput::AgentTyping { typing }),
        prop_oneof![Just("reconnecting".to_owned()), Just("resumed".to_owned())]
            .prop_map(|state| NodeOutput::Connection { state }),
        (text(), proptest::option::of(text())).prop_map(|(reason, id)| NodeOutput::InputRejected { reason, id }),
        status().prop_map(|status| NodeOutput::Status { status }),
    ]
}

proptest! {
    #[test]
    fn every_node_input_round_trips(input in input()) {
        let line = serde_json::to_string(&input).unwrap();
        prop_assert!(!line.contains('\n'), "one JSON line: {line}");
        prop_assert_eq!(serde_json::from_str::<NodeInput>(&line).unwrap(), input);
    }

    #[test]
    fn every_node_output_round_trips(output in output()) {
        let line = serde_json::to_string(&output).unwrap();
        prop_assert!(!line.contains('\n'), "one JSON line: {line}");
        prop_assert_eq!(serde_json::from_str::<NodeOutput>(&line).unwrap(), output);
    }
}
