//! `handover chat` against the 8x8 emulator: signed webhooks into the CLI's listener, a
//! complete handover, duplicate and redelivered webhooks shown once, a transfer that does
//! not end the handover, and the demo.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::time::Duration;

use common::{Proc, agent_message, agent_texts, is_status, runtime, wait, write_config};
use handover_emulator::{AgentAction, AgentScript, CustomerAction, Emulator, FaultSettings};
use serde_json::json;

fn setup(name: &str, script: Option<AgentScript>) -> (tokio::runtime::Runtime, Emulator, std::path::PathBuf) {
    let rt = runtime();
    let (emulator, port) = common::emulator(&rt, "8x8", script, true);
    let config = emulator.provider_config();
    let text = format!(
        "provider = \"8x8\"\n\n[node]\nsend_resolve_event = true\n\n[user]\nid = \"user-42\"\nname = \"Jane Doe\"\nlanguage = \"de-DE\"\n\n\
         [webhook]\nlisten = \"127.0.0.1:{port}\"\n\n[8x8]\nbase_url = \"{}\"\napi_key_env = \"EIGHT_TEST_KEY\"\ntenant = \"{}\"\n\
         channel_id = \"{}\"\nqueue_id = \"{}\"\ntransfer_grace_ms = 300\n\n[8x8.additional_properties]\nIntent = \"billing\"\n\n\
         [8x8.agent_names]\nagent-ann = \"Ann\"\nagent-bob = \"Bob\"\n",
        config["base_url"].as_str().unwrap(),
        config["tenant"].as_str().unwrap(),
        config["channel_id"].as_str().unwrap(),
        config["queue_id"].as_str().unwrap(),
    );
    (rt, emulator, write_config(name, &text))
}

fn chat(config: &std::path::Path) -> Proc {
    common::chat(config, &[("EIGHT_TEST_KEY", handover_emulator::eightbyeight::API_KEY)])
}

#[test]
fn a_complete_handover_shows_duplicated_and_redelivered_webhooks_once() {
    let (rt, emulator, config) = setup("8x8-complete", None);
    let mut proc = chat(&config);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    let user = &conversation.meta["user"];
    assert_eq!(user["name"], "Jane Doe");
    assert_eq!(user["language"], "de");
    assert_eq!(user["additionalProperties"][0], json!({ "key": "Intent", "value": "billing" }));

    hub.faults.apply(&FaultSettings { duplicate_deliveries: true, ..FaultSettings::default() });
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "Hello, Ann here".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "second".into() });
    let lines = proc.until(agent_message("second"));
    assert_eq!(agent_texts(&lines), ["Hello, Ann here", "second"], "each delivered twice, shown once");
    hub.faults.apply(&FaultSettings::default());

    // 8x8's own retry of the last event: same event id, next retry number, new signature.
    assert!(wait(&rt, emulator.redeliver_last(&conversation.id)));
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "after the retry".into() });
    let lines = proc.until(agent_message("after the retry"));
    assert_eq!(agent_texts(&lines), ["after the retry"], "the redelivery is dropped: {lines:?}");

    proc.send(&json!({"type":"message","text":"thanks"}));
    wait(
        &rt,
        conversation
            .wait_for(|v| v.customer.iter().any(|c| matches!(c, CustomerAction::Message { text } if text == "thanks"))),
    );
    hub.agent(&conversation, AgentAction::Ended);
    let lines = proc.until(is_status);
    assert!(lines.contains(&json!({"type":"event","name":"resolve","continuation":"below_node"})), "{lines:?}");
    assert_eq!(lines.last().unwrap(), &json!({"type":"status","status":"completed"}));
    assert_eq!(proc.wait(), 0);
}

#[test]
fn a_transfer_does_not_end_the_handover() {
    let mut script = AgentScript::quick(Duration::from_millis(20));
    script.queue_positions = 0;
    let (_rt, _emulator, config) = setup("8x8-transfer", Some(script));
    let mut proc = chat(&config);
    proc.until(agent_message("Hi, I'm Ann. How can I help?"));
    proc.send(&json!({"type":"message","text":"transfer please"}));
    let lines = proc.until(agent_message("Hi, I'm Bob. I'll take it from here."));
    assert!(!lines.iter().any(is_status), "{lines:?}");
    proc.send(&json!({"type":"message","text":"bye"}));
    let lines = proc.until(is_status);
    assert!(lines.iter().any(|l| l["text"] == "Goodbye!"), "{lines:?}");
    assert_eq!(lines.last().unwrap()["status"], "completed");
    assert_eq!(proc.wait(), 0);
}

#[test]
fn forged_webhooks_are_refused_and_the_handover_continues() {
    let (rt, emulator, config) = setup("8x8-forged", None);
    let proc = chat(&config);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    hub.faults.apply(&FaultSettings { bad_signatures: true, ..FaultSettings::default() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "forged".into() });
    wait(&rt, emulator.settled(&conversation.id));
    hub.faults.apply(&FaultSettings::default());
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "genuine".into() });
    let lines = proc.until(agent_message("genuine"));
    assert_eq!(agent_texts(&lines), ["genuine"], "{lines:?}");
    hub.agent(&conversation, AgentAction::Ended);
    assert_eq!(proc.until(is_status).last().unwrap()["status"], "completed");
    assert_eq!(proc.wait(), 0);
}

#[test]
fn the_demo_runs_against_the_8x8_emulator() {
    common::assert_demo_completes("8x8");
}

#[test]
fn sigterm_sighup_and_sigint_each_end_the_handover_at_the_contact_center() {
    for signal in ["TERM", "HUP", "INT"] {
        let (rt, emulator, config) = setup(&format!("8x8-sigterm-{signal}"), None);
        let proc = chat(&config);
        let conversation = wait(&rt, emulator.hub().conversation(0));
        common::assert_signal_ends_the_handover(&rt, proc, &conversation, signal);
    }
}
