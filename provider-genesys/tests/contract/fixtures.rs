//! Webhook and notification shapes of `protocols/genesys.md` §6 and §7, from fixtures.

use provider_genesys::notifications::{DisconnectType, Frame, ParticipantEvent, parse_frame};
use provider_genesys::webhook::{Delivery, parse};

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"))).expect("fixture exists")
}

fn delivery(name: &str) -> Delivery {
    parse(&read(&format!("webhook_{name}"))).expect("the fixture parses").interpret()
}

#[test]
fn human_text_is_a_message() {
    assert_eq!(
        delivery("text_human"),
        Delivery::Message { text: "Hi, this is Ann from billing.".into(), from_bot: false }
    );
}

#[test]
fn bot_text_is_marked_as_such() {
    assert_eq!(delivery("text_bot"), Delivery::Message { text: "You are now connected.".into(), from_bot: true });
}

#[test]
fn attachments_and_quick_replies_become_text() {
    assert_eq!(
        delivery("text_attachment"),
        Delivery::Message {
            text: "Here is the invoice.\n[attachment] https://api-downloads.usw2.pure.cloud/api/v2/downloads/abc"
                .into(),
            from_bot: false
        }
    );
    assert_eq!(
        delivery("structured_quick_replies"),
        Delivery::Message { text: "Pick one\n[option] Yes\n[option] No".into(), from_bot: false }
    );
}

#[test]
fn typing_receipts_and_unknown_types() {
    assert_eq!(delivery("event_typing"), Delivery::Typing);
    assert_eq!(delivery("receipt_delivered"), Delivery::Receipt { status: "Delivered".into() });
    assert_eq!(delivery("receipt_failed"), Delivery::Receipt { status: "Failed".into() });
    assert!(matches!(delivery("unknown_type"), Delivery::Ignore(_)));
}

#[test]
fn both_spellings_of_the_sender_nickname_are_read() {
    let message = parse(&read("webhook_nickname_spelled_nickName")).unwrap();
    assert_eq!(message.channel.from.unwrap().nickname.as_deref(), Some("Acme Integration"));
    let message = parse(&read("webhook_text_human")).unwrap();
    assert_eq!(message.channel.from.unwrap().nickname.as_deref(), Some("Acme Integration"));
}

#[test]
fn the_dedup_key_is_id_and_time() {
    let message = parse(&read("webhook_text_human")).unwrap();
    assert_eq!(message.dedup_key(), "gm-text@2026-01-21T16:47:08.592Z");
    assert_eq!(message.channel.to.id, "handover-1c7e");
}

#[test]
fn malformed_bodies_are_typed_errors() {
    assert!(parse(b"not json").is_err());
    assert!(parse(br#"{"id":"x"}"#).is_err(), "no channel");
    assert!(parse(&[0xff, 0xfe]).is_err());
}

fn frame(name: &str) -> Frame {
    parse_frame(&String::from_utf8(read(&format!("notification_{name}"))).unwrap())
}

#[test]
fn notification_frames() {
    assert_eq!(frame("heartbeat"), Frame::Heartbeat);
    assert_eq!(frame("pong"), Frame::Heartbeat);
    assert_eq!(frame("socket_closing"), Frame::SocketClosing);
    assert_eq!(frame("acw"), Frame::Ignore);
    assert_eq!(
        frame("user_start"),
        Frame::Event {
            conversation_id: "conv-1".into(),
            event: ParticipantEvent::AgentStarted {
                participant_id: "p-agent-1".into(),
                user_id: Some("user-ann".into())
            }
        }
    );
    assert_eq!(
        frame("user_end_transfer"),
        Frame::Event {
            conversation_id: "conv-1".into(),
            event: ParticipantEvent::AgentEnded {
                participant_id: "p-agent-1".into(),
                disconnect: DisconnectType::Transfer("TRANSFER".into())
            }
        }
    );
    assert!(matches!(
        frame("user_end_client"),
        Frame::Event { event: ParticipantEvent::AgentEnded { disconnect: DisconnectType::Other(_), .. }, .. }
    ));
    assert!(matches!(frame("customer_end"), Frame::Event { event: ParticipantEvent::CustomerEnded { .. }, .. }));
}
