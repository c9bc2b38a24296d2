//! The `handover` binary end to end: the demo, `chat --json` against the MIAW emulator,
//! `check`, bad configs, and the MIAW scenarios of the provider's issue.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{BIN, Proc, agent_message, is_status, runtime, temp_dir, wait};

use handover_emulator::{AgentAction, AgentScript, CustomerAction, Emulator, EmulatorOptions};
use serde_json::{Value, json};

/// Writes a config for the MIAW emulator; `extra` goes into `[miaw]`, `node` into `[node]`.
fn miaw_config(
    dir: &std::path::Path,
    emulator: &Emulator,
    node: &str,
    extra: &str,
    transcript: Option<&str>,
) -> PathBuf {
    let config = emulator.provider_config();
    let mut text = format!(
        "provider = \"miaw\"\n\n[node]\n{node}\n\n[user]\nid = \"user-42\"\nname = \"Jane Doe\"\n\n[miaw]\nscrt_url = \"{}\"\norg_id = \"{}\"\nes_developer_name = \"{}\"\n{extra}\n",
        config["scrt_url"].as_str().unwrap(),
        config["org_id"].as_str().unwrap(),
        config["es_developer_name"].as_str().unwrap(),
    );
    if let Some(transcript) = transcript {
        std::fs::write(dir.join("transcript.jsonl"), transcript).unwrap();
        text.push_str("\n[transcript]\nfile = \"transcript.jsonl\"\n");
    }
    let path = dir.join("handover.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_demo_completes_a_full_handover() {
    let output = Command::new(BIN).args(["demo", "--json", "--step-ms", "20"]).output().expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.first().unwrap()["type"], "say");
    assert!(lines.iter().any(|l| l["type"] == "queue_update"), "{lines:?}");
    assert!(lines.iter().any(|l| l["type"] == "agent_message" && l["text"] == "Goodbye!"), "{lines:?}");
    assert_eq!(lines.last().unwrap(), &json!({"type":"status","status":"completed"}));
}

#[test]
fn the_demo_agent_answers_the_users_file_with_one_where_the_provider_carries_files() {
    for (provider, files) in [("miaw", true), ("genesys", true), ("salesforce", false)] {
        let output = Command::new(BIN)
            .args(["demo", "--json", "--step-ms", "20", "--provider", provider])
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(0), "{provider}: {}", String::from_utf8_lossy(&output.stderr));
        let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        let label = lines.iter().find(|l| l["type"] == "agent_message" && l["attachments"].is_array());
        match (files, label) {
            (true, Some(label)) => {
                assert_eq!(label["text"], "Thanks for invoice-2026-11.txt. Here is your returns label.", "{provider}");
                let file = &label["attachments"][0];
                assert_eq!(
                    (file["name"].as_str(), file["media_type"].as_str()),
                    (Some("returns-label.pdf"), Some("application/pdf"))
                );
                assert!(file["url"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{file}");
            }
            (false, None) => {}
            (_, label) => {
                panic!("{provider}: a file from the agent was {}expected: {label:?}", if files { "" } else { "not " })
            }
        }
        assert_eq!(lines.last().unwrap(), &json!({"type":"status","status":"completed"}), "{provider}");
    }
}

#[test]
fn the_demo_names_the_available_providers_for_an_unknown_one() {
    let output = Command::new(BIN).args(["demo", "--provider", "zendesk"]).output().expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no demo for provider `zendesk`") && stderr.contains("miaw"), "{stderr}");
}

#[test]
fn chat_json_reads_and_writes_the_documented_lines() {
    let rt = runtime();
    let emulator = rt.block_on(Emulator::start("miaw", EmulatorOptions::default())).unwrap();
    let dir = temp_dir("chat-json");
    let node = "accepted_message = \"Connecting you to an agent.\"\ncancel_button_text = \"Cancel\"\nsend_queue_event = true\nsend_active_event = true\nsend_resolve_event = true";
    let config = miaw_config(&dir, &emulator, node, "", None);
    let mut proc = Proc::spawn(&["chat", "--config", config.to_str().unwrap(), "--json"]);
    assert_eq!(proc.next(), json!({"type":"say","text":"Connecting you to an agent.","quick_replies":["Cancel"]}));
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    hub.agent(&conversation, AgentAction::Queued { position: Some(2), wait_secs: Some(120) });
    let lines = proc.until(|l| l["type"] == "queue_update" && l["estimated_wait_time_ms"] == 120_000);
    assert!(lines.iter().any(|l| l["type"] == "event" && l["name"] == "queue"), "{lines:?}");
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "Hi, I'm Ann".into() });
    let lines = proc.until(agent_message("Hi, I'm Ann"));
    assert!(lines.iter().any(|l| *l == json!({"type":"event","name":"active"})), "{lines:?}");
    assert_eq!(lines.last().unwrap(), &json!({"type":"agent_message","text":"Hi, I'm Ann","agent":"Ann"}));
    proc.send(&json!({"type":"message","text":"My invoice is wrong"}));
    proc.send(&json!({"type":"disconnected"}));
    wait(&rt, conversation.wait_for(|v| v.customer.len() >= 2));
    assert_eq!(conversation.customer_texts(), ["My invoice is wrong", "User left the conversation"]);
    hub.agent(&conversation, AgentAction::Ended);
    let lines = proc.until(is_status);
    assert_eq!(lines.last().unwrap(), &json!({"type":"status","status":"completed"}));
    assert!(lines.contains(&json!({"type":"event","name":"resolve","continuation":"below_node"})), "{lines:?}");
    assert_eq!(proc.wait(), 0);
}

#[test]
fn chat_cancel_button_cancels_and_closes_the_conversation() {
    let rt = runtime();
    let emulator = rt.block_on(Emulator::start("miaw", EmulatorOptions::default())).unwrap();
    let dir = temp_dir("chat-cancel");
    let config = miaw_config(&dir, &emulator, "cancel_button_text = \"Cancel\"", "", None);
    let mut proc = Proc::spawn(&["chat", "--config", config.to_str().unwrap(), "--json"]);
    let conversation = wait(&rt, emulator.hub().conversation(0));
    proc.send(&json!({"type":"button","text":"Cancel"}));
    assert_eq!(proc.until(is_status).last().unwrap(), &json!({"type":"status","status":"cancelled"}));
    assert_eq!(proc.wait(), 0);
    assert!(conversation.view().closed_by_customer);
}

#[test]
fn chat_ends_with_an_error_status_and_exit_1_when_the_provider_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = temp_dir("chat-down");
    let text = format!(
        "provider = \"miaw\"\n[user]\nid = \"u\"\n[miaw]\nscrt_url = \"http://127.0.0.1:{port}\"\norg_id = \"00D\"\nes_developer_name = \"X\"\n"
    );
    std::fs::write(dir.join("handover.toml"), text).unwrap();
    let mut proc = Proc::spawn(&["chat", "--config", dir.join("handover.toml").to_str().unwrap(), "--json"]);
    proc.close_stdin();
    let status = proc.until(is_status).pop().unwrap();
    assert_eq!(status["status"], "error");
    assert_eq!(status["error"]["reason"], "error");
    assert!(status["error"]["message"].as_str().unwrap().contains("could not connect"), "{status}");
    assert_eq!(proc.wait(), 1);
}

#[test]
fn a_bad_config_exits_2_naming_the_key_and_the_file() {
    let dir = temp_dir("bad-config");
    let path = dir.join("handover.toml");
    std::fs::write(&path, "provider = \"miaw\"\n[node]\naccepted_mesage = \"x\"\n[user]\nid = \"u\"\n[miaw]\n")
        .unwrap();
    for command in ["chat", "check"] {
        let output = Command::new(BIN).args([command, "--config", path.to_str().unwrap()]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("accepted_mesage") && stderr.contains("handover.toml"), "{stderr}");
        assert!(output.stdout.is_empty(), "diagnostics stay off stdout");
    }
    std::fs::write(&path, "provider = \"miaw\"\n[user]\nid = \"u\"\n[miaw]\nscrt_url = \"https://x.example\"\n")
        .unwrap();
    let output = Command::new(BIN).args(["check", "--config", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("org_id"), "a missing key is named");
    let output = Command::new(BIN).args(["chat"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "missing --config is bad usage");
}

#[test]
fn check_authenticates_against_the_provider() {
    let rt = runtime();
    let emulator = rt.block_on(Emulator::start("miaw", EmulatorOptions::default())).unwrap();
    let dir = temp_dir("check");
    let config = miaw_config(&dir, &emulator, "", "", None);
    let output = Command::new(BIN).args(["check", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("ok: miaw"));
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("es_developer_name = \"Handover_Demo\"", "es_developer_name = \"Nope\"");
    std::fs::write(&config, text).unwrap();
    let output = Command::new(BIN).args(["check", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("esDeveloperName"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_7500_character_transcript_arrives_as_three_chunks_in_order() {
    let rt = runtime();
    let emulator = rt.block_on(Emulator::start("miaw", EmulatorOptions::default())).unwrap();
    let dir = temp_dir("transcript");
    // 75 lines of 100 rendered characters ("User: " + 93 + "\n").
    let mut lines = String::new();
    let mut rendered = Vec::new();
    for i in 0..75 {
        let speaker = if i % 2 == 0 { "user" } else { "bot" };
        let label = if i % 2 == 0 { "User" } else { "Bot" };
        let body: String =
            format!("{i:03} ü ").chars().chain(std::iter::repeat('x')).take(100 - label.len() - 3).collect();
        lines.push_str(&json!({"from": speaker, "text": body}).to_string());
        lines.push('\n');
        rendered.push(format!("{label}: {body}"));
    }
    let original = rendered.join("\n");
    assert_eq!(original.chars().count(), 7499);
    let config = miaw_config(&dir, &emulator, "", "", Some(&lines));
    let mut proc = Proc::spawn(&["chat", "--config", config.to_str().unwrap(), "--json"]);
    let conversation = wait(&rt, emulator.hub().conversation(0));
    wait(&rt, conversation.wait_for(|v| v.customer.len() >= 3));
    let chunks = conversation.customer_texts();
    assert_eq!(chunks.len(), 3, "{:?}", chunks.iter().map(|c| c.chars().count()).collect::<Vec<_>>());
    assert!(chunks.iter().all(|c| c.chars().count() <= 3000));
    assert_eq!(chunks.concat(), original);
    proc.send(&json!({"type":"message","text":"after the transcript"}));
    wait(&rt, conversation.wait_for(|v| v.customer.len() >= 4));
    assert_eq!(conversation.customer_texts()[3], "after the transcript");
    emulator.hub().agent(&conversation, AgentAction::Ended);
    assert_eq!(proc.until(is_status).last().unwrap()["status"], "completed");
}

#[test]
fn an_sse_drop_mid_conversation_loses_and_repeats_no_agent_message() {
    let rt = runtime();
    let emulator = rt.block_on(Emulator::start("miaw", EmulatorOptions::default())).unwrap();
    let dir = temp_dir("sse-drop");
    let config = miaw_config(&dir, &emulator, "", "", None);
    let proc = Proc::spawn(&["chat", "--config", config.to_str().unwrap(), "--json"]);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    let say = |text: &str| hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: text.into() });
    say("one");
    proc.until(agent_message("one"));
    hub.faults.drop_streams();
    for text in ["two", "three", "four"] {
        say(text);
    }
    hub.faults.drop_streams();
    say("five");
    hub.agent(&conversation, AgentAction::Ended);
    let lines = proc.until(is_status);
    let texts: Vec<&str> =
        lines.iter().filter(|l| l["type"] == "agent_message").map(|l| l["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["two", "three", "four", "five"]);
    assert_eq!(lines.last().unwrap()["status"], "completed");
    assert!(hub.faults.drops() >= 2);
}

#[test]
fn an_agent_transfer_does_not_end_the_handover() {
    let rt = runtime();
    let mut script = AgentScript::quick(Duration::from_millis(20));
    script.queue_positions = 0;
    let emulator = rt.block_on(Emulator::start("miaw", EmulatorOptions::default().scripted(script))).unwrap();
    let dir = temp_dir("transfer");
    let config = miaw_config(&dir, &emulator, "", "end_on_participant_change = true", None);
    let mut proc = Proc::spawn(&["chat", "--config", config.to_str().unwrap(), "--json"]);
    proc.until(agent_message("Hi, I'm Ann. How can I help?"));
    proc.send(&json!({"type":"message","text":"please transfer me"}));
    proc.until(agent_message("Hi, I'm Bob. I'll take it from here."));
    proc.send(&json!({"type":"message","text":"still here?"}));
    proc.until(agent_message("You said: still here?"));
    proc.send(&json!({"type":"message","text":"bye"}));
    assert_eq!(proc.until(is_status).last().unwrap()["status"], "completed");
    assert_eq!(proc.wait(), 0);
}

#[test]
fn an_agent_leaving_with_end_on_participant_change_completes_the_handover() {
    let rt = runtime();
    let emulator = rt.block_on(Emulator::start("miaw", EmulatorOptions::default())).unwrap();
    let dir = temp_dir("leave");
    let config = miaw_config(&dir, &emulator, "", "end_on_participant_change = true", None);
    let proc = Proc::spawn(&["chat", "--config", config.to_str().unwrap(), "--json"]);
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "Hello".into() });
    proc.until(agent_message("Hello"));
    hub.agent(&conversation, AgentAction::Left { agent: "Ann".into(), transfer: false });
    assert_eq!(proc.until(is_status).last().unwrap(), &json!({"type":"status","status":"completed"}));
    assert_eq!(proc.wait(), 0);
    assert!(!conversation.view().customer.contains(&CustomerAction::Closed), "the agent ended it, not us");
}

/// Writes `provider = "<provider>"`, a user and `table` as the provider's table.
fn config_with(name: &str, provider: &str, table: &str, extra: &str) -> PathBuf {
    let path = temp_dir(name).join("handover.toml");
    std::fs::write(&path, format!("provider = \"{provider}\"\n[user]\nid = \"u\"\n{extra}\n[{provider}]\n{table}\n"))
        .unwrap();
    path
}

#[test]
fn a_config_that_loads_also_runs_and_errors_name_table_key_and_range() {
    let liveagent = "base_url = \"https://desk.example/api/v1\"\naccount_id = 1\napi_access_token = \"t\"\n\
                     inbox_id = 2\nwebhook_secret = \"s\"\n";
    let ringcentral = "api_url = \"https://x.api.engagement.dimelo.com/1.0\"\nrealtime_url = \"https://x.example/realtime\"\n\
                       source_id = \"src\"\nsource_token = \"tok\"\naccess_token = \"acc\"\nagent_category_id = \"cat\"\n\
                       webhook_secret = \"s\"\n";
    let genesys = "region = \"mypurecloud.de\"\nclient_id = \"c\"\nclient_secret = \"s\"\nintegration_id = \"i\"\n\
                   webhook_secret = \"w\"\n";
    let cases = [
        (
            "liveagent",
            format!("{liveagent}get_queue_position = true\nqueue_update_interval = 9223372036854775807\n"),
            "",
            "[liveagent] `queue_update_interval` is 9223372036854775807; it must be 1 to 86400",
        ),
        (
            "liveagent",
            format!("{liveagent}wait_per_position_secs = 9223372036854775807\n"),
            "",
            "[liveagent] `wait_per_position_secs` is 9223372036854775807; it must be 0 to 86400",
        ),
        (
            "ringcentral",
            format!("{ringcentral}thread_lookup_timeout_secs = 9223372036854775807\n"),
            "",
            "[ringcentral] `thread_lookup_timeout_secs` is 9223372036854775807; it must be 0 to 3600",
        ),
        ("genesys", format!("{genesys}priority = \"high\"\n"), "", "[genesys] `priority`: invalid type: string"),
        ("genesys", format!("{genesys}transfer_grace_ms = -5\n"), "", "[genesys] `transfer_grace_ms`"),
        (
            "liveagent",
            liveagent.to_owned(),
            "[webhook]\nlisten = \"127.0.0.1:0\"\nheader_timeout_ms = 0\n",
            "[webhook] `header_timeout_ms` is 0; it must be 100 to 600000",
        ),
        ("liveagent", liveagent.to_owned(), "[webhook]\nlisten = 5\n", "[webhook] `listen`: invalid type"),
    ];
    for (n, (provider, table, extra, want)) in cases.iter().enumerate() {
        let path = config_with(&format!("ranges-{n}"), provider, table, extra);
        let output = Command::new(BIN).args(["chat", "--config", path.to_str().unwrap()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{provider}: {stderr}");
        assert!(stderr.contains(want), "expected {want:?} in {stderr}");
    }
}
