//! `handover chat` against the Engage emulator: Source SDK callbacks and REST events into
//! the CLI's listener; queue updates, an agent reply, the intervention closed → completed;
//! a callback with a bad signature is rejected and changes nothing.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use common::{Proc, agent_message, agent_texts, is_status, runtime, wait, write_config};
use handover_emulator::{AgentAction, Emulator, FaultSettings};
use serde_json::json;

fn setup(name: &str) -> (tokio::runtime::Runtime, Emulator, std::path::PathBuf) {
    let rt = runtime();
    let (emulator, port) = common::emulator(&rt, "ringcentral", None, true);
    let config = emulator.provider_config();
    let text = format!(
        "provider = \"ringcentral\"\n\n[node]\nsend_queue_event = true\nsend_resolve_event = true\n\n\
         [user]\nid = \"user-42\"\nname = \"Jane Doe\"\n\n[webhook]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [ringcentral]\napi_url = \"{}\"\nrealtime_url = \"{}\"\nsource_id = \"{}\"\nsource_token_env = \"ENGAGE_SOURCE_TOKEN\"\n\
         access_token_env = \"ENGAGE_API_TOKEN\"\nbot_category_id = \"{}\"\nagent_category_id = \"{}\"\n\
         additional_category_ids = [\"{}\"]\nwebhook_secret = \"{}\"\nend_drain_ms = 200\n\
         get_queue_position = true\nqueue_update_interval = 1\nget_estimated_wait_time = true\nwait_time_update_interval = 1\n",
        config["api_url"].as_str().unwrap(),
        config["realtime_url"].as_str().unwrap(),
        config["source_id"].as_str().unwrap(),
        config["bot_category_id"].as_str().unwrap(),
        config["agent_category_id"].as_str().unwrap(),
        config["additional_category_ids"][0].as_str().unwrap(),
        config["webhook_secret"].as_str().unwrap(),
    );
    (rt, emulator, write_config(name, &text))
}

fn chat(config: &std::path::Path) -> Proc {
    use handover_emulator::ringcentral::{API_TOKEN, SOURCE_TOKEN};
    common::chat(config, &[("ENGAGE_SOURCE_TOKEN", SOURCE_TOKEN), ("ENGAGE_API_TOKEN", API_TOKEN)])
}

#[test]
fn queue_updates_an_agent_reply_and_the_closed_intervention_complete_the_handover() {
    let (rt, emulator, config) = setup("rc-complete");
    let mut proc = chat(&config);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    assert_eq!(
        conversation.meta["categories"],
        json!([handover_emulator::ringcentral::AGENT_CATEGORY, handover_emulator::ringcentral::PRIORITY_CATEGORY])
    );
    hub.agent(&conversation, AgentAction::Queued { position: Some(4), wait_secs: Some(240) });
    // Engage reports seconds; the node reports milliseconds.
    let lines = proc.until(|l| l["type"] == "queue_update" && l["position"] == 4);
    assert_eq!(lines.last().unwrap()["estimated_wait_time_ms"], 240_000);
    assert!(lines.iter().any(|l| l["type"] == "event" && l["name"] == "queue"), "{lines:?}");
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "Hi, Ann here".into() });
    proc.until(agent_message("Hi, Ann here"));
    proc.send(&json!({"type":"message","text":"thanks"}));
    wait(&rt, conversation.wait_for(|v| v.customer_texts_len() >= 2));
    assert!(conversation.customer_texts().contains(&"thanks".to_owned()));
    hub.agent(&conversation, AgentAction::Ended);
    let lines = proc.until(is_status);
    assert!(lines.contains(&json!({"type":"event","name":"resolve","continuation":"below_node"})), "{lines:?}");
    assert_eq!(lines.last().unwrap(), &json!({"type":"status","status":"completed"}));
    assert_eq!(proc.wait(), 0);
}

#[test]
fn a_callback_with_a_bad_signature_is_rejected_and_changes_nothing() {
    let (rt, emulator, config) = setup("rc-forged");
    let proc = chat(&config);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    hub.faults.apply(&FaultSettings { bad_signatures: true, ..FaultSettings::default() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "forged".into() });
    // A forged close too: the handover must survive it.
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "still forged".into() });
    wait(&rt, emulator.settled(&conversation.id));
    hub.faults.apply(&FaultSettings::default());
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "genuine".into() });
    let lines = proc.until(agent_message("genuine"));
    assert_eq!(agent_texts(&lines), ["genuine"], "{lines:?}");
    assert!(!lines.iter().any(is_status), "{lines:?}");
    hub.agent(&conversation, AgentAction::Ended);
    assert_eq!(proc.until(is_status).last().unwrap()["status"], "completed");
    assert_eq!(proc.wait(), 0);
}

#[test]
fn the_demo_runs_against_the_engage_emulator() {
    common::assert_demo_completes("ringcentral");
}

#[test]
fn sigterm_sighup_and_sigint_each_end_the_handover_at_the_contact_center() {
    for signal in ["TERM", "HUP", "INT"] {
        let (rt, emulator, config) = setup(&format!("rc-sigterm-{signal}"));
        let proc = chat(&config);
        let conversation = wait(&rt, emulator.hub().conversation(0));
        common::assert_signal_ends_the_handover(&rt, proc, &conversation, signal);
    }
}
