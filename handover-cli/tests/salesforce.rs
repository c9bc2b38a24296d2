//! `handover chat` against the Salesforce Chat emulator: queue updates, a 503 failover
//! mid-chat, and a batch that holds the last message and the end.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use common::{Proc, agent_message, is_status, runtime, wait, write_config};
use handover_emulator::{AgentAction, Emulator, FaultSettings};
use serde_json::json;

fn setup(name: &str) -> (tokio::runtime::Runtime, Emulator, std::path::PathBuf) {
    let rt = runtime();
    let (emulator, _) = common::emulator(&rt, "salesforce", None, false);
    let config = emulator.provider_config();
    let text = format!(
        "provider = \"salesforce\"\n\n[node]\nsend_queue_event = true\n\n[user]\nid = \"user-42\"\nname = \"Jane Doe\"\n\n\
         [salesforce]\nbase_url = \"{}\"\napi_version = 52\norganization_id = \"{}\"\ndeployment_id = {}\nbutton_id = \"{}\"\n",
        config["base_url"].as_str().unwrap(),
        config["organization_id"].as_str().unwrap(),
        config["deployment_id"].as_str().unwrap(),
        config["button_id"].as_str().unwrap(),
    );
    (rt, emulator, write_config(name, &text))
}

fn chat(config: &std::path::Path) -> Proc {
    common::chat(config, &[])
}

#[test]
fn a_complete_handover_with_queue_updates() {
    let (rt, emulator, config) = setup("sf-complete");
    let mut proc = chat(&config);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    for position in [3, 2, 1] {
        hub.agent(
            &conversation,
            AgentAction::Queued { position: Some(position), wait_secs: Some(u64::from(position) * 60) },
        );
    }
    let lines = proc.until(|l| l["type"] == "queue_update" && l["position"] == 1);
    assert_eq!(lines.iter().filter(|l| l["type"] == "event" && l["name"] == "queue").count(), 1);
    assert!(
        lines.iter().any(|l| *l == json!({"type":"queue_update","position":3,"estimated_wait_time_ms":180_000})),
        "{lines:?}"
    );
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "Hi, Ann here".into() });
    proc.until(agent_message("Hi, Ann here"));
    proc.send(&json!({"type":"message","text":"My invoice is wrong"}));
    wait(&rt, conversation.wait_for(|v| v.customer_texts_len() >= 1));
    hub.agent(&conversation, AgentAction::Ended);
    assert_eq!(proc.until(is_status).last().unwrap(), &json!({"type":"status","status":"completed"}));
    assert_eq!(proc.wait(), 0);
}

#[test]
fn a_503_mid_chat_recovers_with_no_lost_or_repeated_message() {
    let (rt, emulator, config) = setup("sf-failover");
    let mut proc = chat(&config);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "one".into() });
    proc.until(agent_message("one"));
    // The next request (the poll or a send) meets a server move.
    hub.faults.apply(&FaultSettings { fail_status: Some(503), fail_count: 1, ..FaultSettings::default() });
    hub.faults.drop_streams();
    proc.send(&json!({"type":"message","text":"sent across the move"}));
    // Queued during the failover, it goes out once the session is back in sync.
    wait(&rt, conversation.wait_for(|v| v.customer_texts_len() >= 1));
    for text in ["two", "three"] {
        hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: text.into() });
    }
    hub.agent(&conversation, AgentAction::Ended);
    let lines = proc.until(is_status);
    let texts: Vec<&str> =
        lines.iter().filter(|l| l["type"] == "agent_message").map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["two", "three"]);
    assert_eq!(lines.last().unwrap()["status"], "completed");
    assert!(
        conversation.customer_texts().contains(&"sent across the move".to_owned()),
        "{:?}",
        conversation.customer_texts()
    );
    assert_eq!(proc.wait(), 0);
}

#[test]
fn a_batch_holding_the_last_message_and_the_end_shows_the_message_first() {
    let (rt, emulator, config) = setup("sf-batch");
    let proc = chat(&config);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    // Both land in one batch: nothing polls in between.
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "Bye, and thanks!".into() });
    hub.agent(&conversation, AgentAction::Ended);
    let lines = proc.until(is_status);
    let n = lines.len();
    assert_eq!(lines[n - 2], json!({"type":"agent_message","text":"Bye, and thanks!","agent":"Ann"}));
    assert_eq!(lines[n - 1], json!({"type":"status","status":"completed"}));
}

#[test]
fn the_demo_runs_against_the_salesforce_emulator() {
    common::assert_demo_completes("salesforce");
}

#[test]
fn sigterm_sighup_and_sigint_each_end_the_handover_at_the_contact_center() {
    for signal in ["TERM", "HUP", "INT"] {
        let (rt, emulator, config) = setup(&format!("sf-sigterm-{signal}"));
        let proc = chat(&config);
        let conversation = wait(&rt, emulator.hub().conversation(0));
        common::assert_signal_ends_the_handover(&rt, proc, &conversation, signal);
    }
}

#[test]
fn check_refuses_a_wrong_organization_or_deployment_and_says_what_it_could_not_check() {
    let (_rt, _emulator, config) = setup("sf-check");
    let run = |path: &std::path::Path| {
        std::process::Command::new(common::BIN).args(["check", "--config", path.to_str().unwrap()]).output().unwrap()
    };
    let output = run(&config);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("verified: organization_id, deployment_id and button_id"), "{stdout}");
    assert!(stdout.contains("not verified: the pre-chat details and routing"), "{stdout}");
    let text = std::fs::read_to_string(&config).unwrap();
    let organization = text.lines().find(|l| l.starts_with("organization_id")).unwrap().to_owned();
    let deployment = text.lines().find(|l| l.starts_with("deployment_id")).unwrap().to_owned();
    for (line, wrong) in
        [(organization, "organization_id = \"00DWRONG0000001\""), (deployment, "deployment_id = \"572WRONG0000001\"")]
    {
        std::fs::write(&config, text.replace(&line, wrong)).unwrap();
        let output = run(&config);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{wrong}: {stderr}");
        assert!(stderr.contains("check organization_id, deployment_id and button_id"), "{stderr}");
    }
}
