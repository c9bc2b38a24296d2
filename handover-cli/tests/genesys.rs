//! `handover chat` against the Genesys emulator: webhooks into the CLI's listener, the
//! notifications socket, redeliveries, transfers, and a dropped socket.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::time::Duration;

use common::{Proc, agent_message, agent_texts, is_status, runtime, wait, write_config};
use handover_emulator::{AgentAction, AgentScript, Emulator, FaultSettings};
use serde_json::json;

fn setup(name: &str, script: Option<AgentScript>) -> (tokio::runtime::Runtime, Emulator, std::path::PathBuf) {
    let rt = runtime();
    let (emulator, port) = common::emulator(&rt, "genesys", script, true);
    let config = emulator.provider_config();
    let text = format!(
        "provider = \"genesys\"\n\n[user]\nid = \"user-42\"\nname = \"Jane Doe\"\n\n[webhook]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [genesys]\nlogin_url = \"{url}\"\napi_url = \"{url}\"\nclient_id = \"{}\"\nclient_secret_env = \"GENESYS_TEST_SECRET\"\n\
         integration_id = \"{}\"\nwebhook_secret = \"{}\"\ntransfer_grace_ms = 300\nend_drain_ms = 200\nskills = [\"billing\"]\n",
        config["client_id"].as_str().unwrap(),
        config["integration_id"].as_str().unwrap(),
        config["webhook_secret"].as_str().unwrap(),
        url = emulator.url(),
    );
    (rt, emulator, write_config(name, &text))
}

fn chat(config: &std::path::Path) -> Proc {
    // The client secret reaches the child through `client_secret_env`, as users would pass it.
    common::chat(config, &[("GENESYS_TEST_SECRET", handover_emulator::genesys::CLIENT_SECRET)])
}

#[test]
fn a_complete_handover_with_a_redelivered_webhook_shows_each_message_once() {
    let (rt, emulator, config) = setup("genesys-complete", None);
    let mut proc = chat(&config);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    assert_eq!(conversation.meta["customAttributes"]["mySkills"], "billing");
    hub.faults.apply(&FaultSettings { duplicate_deliveries: true, ..FaultSettings::default() });
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "Hello, Ann here".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "second".into() });
    let first = agent_texts(&proc.until(agent_message("second")));
    assert_eq!(first, ["Hello, Ann here", "second"], "each delivered twice, shown once");
    proc.send(&json!({"type":"message","text":"thanks"}));
    wait(&rt, conversation.wait_for(|v| v.customer.len() >= 2));
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "bye now".into() });
    hub.agent(&conversation, AgentAction::Ended);
    let lines = proc.until(is_status);
    let texts = agent_texts(&lines);
    assert_eq!(texts, ["bye now"], "the last message arrives before the end, once: {lines:?}");
    assert_eq!(lines.last().unwrap(), &json!({"type":"status","status":"completed"}));
    assert_eq!(proc.wait(), 0);
}

#[test]
fn a_transfer_does_not_end_the_handover() {
    let mut script = AgentScript::quick(Duration::from_millis(20));
    script.queue_positions = 0;
    let (_rt, _emulator, config) = setup("genesys-transfer", Some(script));
    let mut proc = chat(&config);
    proc.until(agent_message("Hi, I'm Ann. How can I help?"));
    proc.send(&json!({"type":"message","text":"transfer please"}));
    proc.until(agent_message("Hi, I'm Bob. I'll take it from here."));
    proc.send(&json!({"type":"message","text":"bye"}));
    let lines = proc.until(is_status);
    assert!(lines.iter().any(|l| l["text"] == "Goodbye!"), "{lines:?}");
    assert_eq!(lines.last().unwrap()["status"], "completed");
    assert_eq!(proc.wait(), 0);
}

#[test]
fn a_dropped_notifications_socket_is_rebuilt_without_losing_the_end() {
    let (rt, emulator, config) = setup("genesys-drop", None);
    let proc = chat(&config);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "one moment".into() });
    proc.until(agent_message("one moment"));
    // The socket drops, and the agent ends the conversation before it is back.
    hub.faults.drop_streams();
    hub.agent(&conversation, AgentAction::Ended);
    assert_eq!(proc.until(is_status).last().unwrap(), &json!({"type":"status","status":"completed"}));
    assert_eq!(proc.wait(), 0);
}

#[test]
fn the_demo_runs_against_the_genesys_emulator() {
    common::assert_demo_completes("genesys");
}

#[test]
fn sigterm_sighup_and_sigint_each_end_the_handover_at_the_contact_center() {
    for signal in ["TERM", "HUP", "INT"] {
        let (rt, emulator, config) = setup(&format!("g-sigterm-{signal}"), None);
        let proc = chat(&config);
        let conversation = wait(&rt, emulator.hub().conversation(0));
        common::assert_signal_ends_the_handover(&rt, proc, &conversation, signal);
    }
}
