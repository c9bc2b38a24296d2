//! `handover chat` against the Live Agent emulator: queue updates at the interval until the
//! agent joins, the alternative text, a duplicate webhook, and resolve.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use common::{Proc, agent_message, agent_texts, is_status, runtime, wait, write_config};
use handover_emulator::{AgentAction, Emulator, FaultSettings};
use serde_json::json;

fn setup(name: &str, extra: &str) -> (tokio::runtime::Runtime, Emulator, std::path::PathBuf) {
    let rt = runtime();
    let (emulator, port) = common::emulator(&rt, "liveagent", None, true);
    let config = emulator.provider_config();
    let text = format!(
        "provider = \"liveagent\"\n\n[node]\nsend_queue_event = true\nsend_resolve_event = true\n\n[user]\nid = \"user-42\"\nname = \"Jane Doe\"\n\n\
         [webhook]\nlisten = \"127.0.0.1:{port}\"\n\n[liveagent]\nbase_url = \"{}\"\naccount_id = \"{}\"\napi_access_token_env = \"LIVEAGENT_TEST_TOKEN\"\n\
         inbox_id = {}\nwebhook_secret = \"{}\"\nskills = [\"billing\"]\npriority = \"urgent\"\n{extra}\n",
        config["base_url"].as_str().unwrap(),
        config["account_id"],
        config["inbox_id"],
        config["webhook_secret"].as_str().unwrap(),
    );
    (rt, emulator, write_config(name, &text))
}

fn chat(config: &std::path::Path) -> Proc {
    common::chat(config, &[("LIVEAGENT_TEST_TOKEN", handover_emulator::liveagent::TOKEN)])
}

#[test]
fn queue_position_updates_every_interval_until_the_agent_joins_with_the_alternative_text() {
    let extra = "get_queue_position = true\nqueue_update_interval = 1\nalternative_update = true\nmax_queue_position = 4\n\
                 alternative_text = \"It is busy right now; an agent will be with you soon.\"";
    let (rt, emulator, config) = setup("la-queue", extra);
    let proc = chat(&config);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    assert_eq!(conversation.meta["custom_attributes"]["skills"], "billing");
    hub.agent(&conversation, AgentAction::Queued { position: Some(6), wait_secs: None });
    let lines = proc.until(|l| l["type"] == "queue_update" && l["position"] == 6);
    assert!(lines.iter().any(|l| l["type"] == "event" && l["name"] == "queue"), "{lines:?}");
    let says: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "say").collect();
    assert_eq!(says.len(), 1, "{lines:?}");
    assert_eq!(says[0]["text"], "It is busy right now; an agent will be with you soon.");
    hub.agent(&conversation, AgentAction::Queued { position: Some(2), wait_secs: None });
    proc.until(|l| l["type"] == "queue_update" && l["position"] == 2);
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "Hi, Ann here".into() });
    let lines = proc.until(agent_message("Hi, Ann here"));
    assert!(!lines.iter().any(|l| l["type"] == "say"), "the alternative text is said once: {lines:?}");
    hub.agent(&conversation, AgentAction::Ended);
    let lines = proc.until(is_status);
    assert!(!lines.iter().any(|l| l["type"] == "queue_update"), "no queue updates once the agent joined: {lines:?}");
    assert_eq!(lines.last().unwrap(), &json!({"type":"status","status":"completed"}));
    assert_eq!(proc.wait(), 0);
}

#[test]
fn a_duplicate_webhook_shows_one_message_and_resolve_completes() {
    let (rt, emulator, config) = setup("la-dup", "");
    let mut proc = chat(&config);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    hub.faults.apply(&FaultSettings { duplicate_deliveries: true, ..FaultSettings::default() });
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "only once".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "marker".into() });
    let texts = agent_texts(&proc.until(agent_message("marker")));
    assert_eq!(texts, ["only once", "marker"]);
    proc.send(&json!({"type":"message","text":"thanks"}));
    wait(&rt, conversation.wait_for(|v| v.customer_texts_len() >= 1));
    hub.agent(&conversation, AgentAction::Ended);
    let lines = proc.until(is_status);
    assert!(lines.contains(&json!({"type":"event","name":"resolve","continuation":"below_node"})), "{lines:?}");
    assert_eq!(lines.last().unwrap(), &json!({"type":"status","status":"completed"}));
    assert_eq!(proc.wait(), 0);
}

#[test]
fn the_demo_runs_against_the_live_agent_emulator() {
    common::assert_demo_completes("liveagent");
}

#[test]
fn sigterm_sighup_and_sigint_each_end_the_handover_at_the_contact_center() {
    for signal in ["TERM", "HUP", "INT"] {
        let (rt, emulator, config) = setup(&format!("la-sigterm-{signal}"), "");
        let proc = chat(&config);
        let conversation = wait(&rt, emulator.hub().conversation(0));
        common::assert_signal_ends_the_handover(&rt, proc, &conversation, signal);
    }
}

#[test]
fn idle_connections_to_the_webhook_listener_do_not_stop_a_genuine_delivery() {
    // More idle sockets than the inherited limit of 1,024 open files allowed before.
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    rlimit::Resource::NOFILE.set(hard, hard).unwrap();
    let (rt, emulator, config) = setup("la-idle-flood", "");
    let listen = std::fs::read_to_string(&config).unwrap();
    let addr = listen.lines().find_map(|l| l.strip_prefix("listen = ")).unwrap().trim_matches('"').to_owned();
    // Started with the inherited default of 1,024 open files, as under systemd or Docker.
    let proc = Proc::spawn_with_open_file_limit(
        &["chat", "--config", config.to_str().unwrap(), "--json"],
        &[("LIVEAGENT_TEST_TOKEN", handover_emulator::liveagent::TOKEN)],
        1024,
    );
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    let mut idle = Vec::new();
    for _ in 0..1_100 {
        match std::net::TcpStream::connect(&addr) {
            Ok(stream) => idle.push(stream),
            Err(error) => panic!("could not open idle connection {}: {error}", idle.len()),
        }
    }
    // The desk posts the agent's message once (Chatwoot never retries): it must land.
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "Hi, Ann here".into() });
    proc.until(agent_message("Hi, Ann here"));
    hub.agent(&conversation, AgentAction::Ended);
    let lines = proc.until(is_status);
    assert_eq!(lines.last().unwrap(), &json!({"type":"status","status":"completed"}));
    drop(idle);
}
