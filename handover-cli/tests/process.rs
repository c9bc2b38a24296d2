//! The `handover` binary driven as a bot drives it: stdin held open, signals from a
//! supervisor, a bot that goes away (stdout closed), and lines that are not inputs.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Proc, agent_message, assert_signal_ends_the_handover, is_status, runtime, temp_dir, wait};
use handover_emulator::{AgentAction, CustomerAction, Emulator, EmulatorOptions};
use serde_json::json;

fn miaw_config(name: &str, emulator: &Emulator) -> std::path::PathBuf {
    let config = emulator.provider_config();
    let text = format!(
        "provider = \"miaw\"\n\n[node]\naccepted_message = \"Connecting you to an agent.\"\n\n[user]\nid = \"user-42\"\n\n[miaw]\nscrt_url = \"{}\"\norg_id = \"{}\"\nes_developer_name = \"{}\"\n",
        config["scrt_url"].as_str().unwrap(),
        config["org_id"].as_str().unwrap(),
        config["es_developer_name"].as_str().unwrap(),
    );
    let path = temp_dir(name).join("handover.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn chat(config: &std::path::Path) -> Proc {
    Proc::spawn(&["chat", "--config", config.to_str().unwrap(), "--json"])
}

#[test]
fn chat_exits_after_its_final_status_while_stdin_stays_open() {
    let rt = runtime();
    let emulator = rt.block_on(Emulator::start("miaw", EmulatorOptions::default())).unwrap();
    let mut proc = chat(&miaw_config("stdin-open", &emulator));
    let hub = emulator.hub().clone();
    let conversation = wait(&rt, hub.conversation(0));
    hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: "All done".into() });
    proc.until(agent_message("All done"));
    hub.agent(&conversation, AgentAction::Ended);
    let lines = proc.until(is_status);
    assert_eq!(lines.last().unwrap(), &json!({"type":"status","status":"completed"}));
    // Stdin is still open: a bot keeps its pipe. The process must exit on its own.
    assert_eq!(proc.exit_code_within(Duration::from_secs(5)), 0);
}

#[test]
fn sigterm_sighup_and_sigint_each_end_the_handover_at_the_provider() {
    for signal in ["TERM", "HUP", "INT"] {
        let rt = runtime();
        let emulator = rt.block_on(Emulator::start("miaw", EmulatorOptions::default())).unwrap();
        let proc = chat(&miaw_config(&format!("signal-{signal}"), &emulator));
        let conversation = wait(&rt, emulator.hub().conversation(0));
        assert_eq!(proc.next()["type"], "say", "started before the signal");
        assert_signal_ends_the_handover(&rt, proc, &conversation, signal);
    }
}

#[test]
fn a_closed_stdout_ends_the_handover_at_the_provider_and_exits_non_zero() {
    let rt = runtime();
    let emulator = rt.block_on(Emulator::start("miaw", EmulatorOptions::default())).unwrap();
    let config = miaw_config("stdout-closed", &emulator);
    let mut child = Command::new(BIN)
        .args(["chat", "--config", config.to_str().unwrap(), "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.contains("\"say\""), "{first}");
    let conversation = wait(&rt, emulator.hub().conversation(0));
    // The bot goes away: its end of stdout closes, and the agent stays silent.
    drop(stdout);
    let closed = wait(&rt, conversation.wait_for(|v| v.closed_by_customer));
    assert!(closed.closed_by_customer, "the conversation is closed at the contact center");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(std::time::Instant::now() < deadline, "the process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("stdout was closed"), "{stderr}");
}

#[test]
fn a_line_that_is_not_an_input_is_answered_with_input_rejected_and_reading_goes_on() {
    let rt = runtime();
    let emulator = rt.block_on(Emulator::start("miaw", EmulatorOptions::default())).unwrap();
    let mut proc = chat(&miaw_config("rejected", &emulator));
    assert_eq!(proc.next()["type"], "say");
    let conversation = wait(&rt, emulator.hub().conversation(0));
    proc.send_raw(b"{\"type\":\"dance\"}\n");
    let rejected = proc.next();
    assert_eq!(rejected["type"], "input_rejected", "{rejected}");
    assert!(rejected["reason"].as_str().unwrap().contains("not an input object"), "{rejected}");
    proc.send_raw(b"\xff\xfe not utf-8\n");
    assert_eq!(proc.next()["type"], "input_rejected");
    proc.send(&json!({"type":"message","text":"still here","id":"m-1"}));
    proc.send(&json!({"type":"message","text":"still here","id":"m-1"}));
    proc.send(&json!({"type":"message","text":"after","id":"m-2"}));
    wait(&rt, conversation.wait_for(|v| v.customer.contains(&CustomerAction::Message { text: "after".into() })));
    let texts = conversation.customer_texts();
    assert_eq!(texts.iter().filter(|t| *t == "still here").count(), 1, "{texts:?}");
    assert_eq!(texts.last().map(String::as_str), Some("after"));
    emulator.hub().agent(&conversation, AgentAction::Ended);
    proc.until(is_status);
    assert_eq!(proc.exit_code_within(Duration::from_secs(5)), 0);
}

#[test]
fn the_interactive_demo_exits_after_its_status_while_stdin_stays_open() {
    let mut child = Command::new(BIN)
        .args(["demo", "--interactive", "--json", "--step-ms", "20"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = stdout.lines();
    // The scripted agent answers; the user says bye once, and the agent ends. The reader
    // of stdin is then waiting for a line that never comes.
    let mut said_bye = false;
    loop {
        let line = lines.next().expect("a line before the end").unwrap();
        if line.contains("\"agent_message\"") && !said_bye {
            said_bye = true;
            writeln!(stdin, "{}", json!({"type":"message","text":"bye"})).unwrap();
            stdin.flush().unwrap();
        }
        if line.contains("\"status\"") {
            assert!(line.contains("completed"), "{line}");
            break;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(std::time::Instant::now() < deadline, "the demo did not exit with stdin open");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    drop(stdin);
}
