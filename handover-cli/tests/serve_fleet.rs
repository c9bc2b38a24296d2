//! Two `handover serve` instances on one store: a handover started on one, its webhooks
//! posted to the other, its events read from either; the owner killed with SIGKILL, or
//! drained with SIGTERM, and the other takes over with no event lost or repeated.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod serve_kit;

use std::time::Duration;

use handover_emulator::AgentAction;
use serde_json::{Value, json};
use serve_kit::*;

/// Short leases, so a takeover after a crash comes within a test's patience.
const FAST: &str = "lease_ttl_ms = 1500\nclaim_interval_ms = 200";

/// Runs one takeover for `provider`; `signal` is how the owner goes (`KILL` or `TERM`).
async fn takeover(provider: &str, signal: &str) {
    let (port_a, port_b) = (free_port(), free_port());
    // Push providers deliver to B only: B keeps what A's sessions need.
    let emulators = emulators(&[provider], port_b).await;
    let emulator = &emulators[provider];
    let dir = temp_dir(&format!("fleet-{provider}-{signal}"));
    let store = format!("sqlite://{}/store.db", dir.display());
    let mut a = Service::start(&dir, "a", &config("a", port_a, &store, &emulators, FAST)).await;
    let b = Service::start(&dir, "b", &config("b", port_b, &store, &emulators, FAST)).await;
    let (api_a, api_b) = (a.api(), b.api());
    let callbacks = Callbacks::start(0).await;

    let id = api_a.create(handover(provider, Some(&callbacks))).await;
    api_b.wait_state(&id, "queued").await;
    agent(emulator, AgentAction::Joined { agent: "Ann".into() });
    agent(emulator, AgentAction::Message { agent: "Ann".into(), text: "one".into() });
    // Read from B what A's session got.
    api_b.poll_until(&id, 0, |e| e["text"] == "one").await;
    assert_eq!(api_b.input(&id, json!({ "type": "message", "text": "from the bot", "id": "b-1" })).await.status, 202);
    let deadline = tokio::time::Instant::now() + GUARD;
    while !customer_texts(emulator).contains(&"from the bot".to_owned()) {
        assert!(tokio::time::Instant::now() < deadline, "A never sent the input taken by B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A has recorded it as sent (killed between its send and that record, a new owner
    // would send it again: exactly once only where the contact center takes a client id it
    // deduplicates on; see the README's "What a takeover cannot make exactly-once").
    let deadline = tokio::time::Instant::now() + GUARD;
    while api_b.get(&id).await["pending_inputs"] != 0 {
        assert!(tokio::time::Instant::now() < deadline, "A never recorded the input as sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    a.signal(signal);
    if signal == "TERM" {
        assert_eq!(a.exit_code(), 0, "{}", a.log());
    } else {
        a.exit_code();
    }
    // While nobody owns it (KILL) or right after the drain (TERM), the agent goes on.
    agent(emulator, AgentAction::Message { agent: "Ann".into(), text: "two".into() });
    // The same input again (a bot retrying after A vanished): still sent once.
    assert_eq!(api_b.input(&id, json!({ "type": "message", "text": "from the bot", "id": "b-1" })).await.status, 202);
    assert_eq!(api_b.input(&id, json!({ "type": "message", "text": "after", "id": "b-2" })).await.status, 202);
    api_b.poll_until(&id, 0, |e| e["text"] == "two").await;
    let deadline = tokio::time::Instant::now() + GUARD;
    while !customer_texts(emulator).contains(&"after".to_owned()) {
        assert!(tokio::time::Instant::now() < deadline, "B never sent the input after the takeover: {}", b.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent(emulator, AgentAction::Message { agent: "Ann".into(), text: "three".into() });
    agent(emulator, AgentAction::Ended);

    let events: Vec<Value> = api_b.sse(&id, None).await.into_iter().map(|f| f.data).collect();
    assert_gap_free(&events);
    let texts: Vec<&str> =
        events.iter().filter(|e| e["type"] == "agent_message").map(|e| e["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["one", "two", "three"], "{provider}/{signal}: every agent message once, in order: {events:#?}");
    assert_eq!(events.last().unwrap()["status"], "completed");
    let sent = customer_texts(emulator);
    assert_eq!(sent.iter().filter(|t| *t == "from the bot").count(), 1, "{provider}/{signal}: {sent:?}");
    assert_eq!(api_b.get(&id).await["status"], json!({ "status": "completed" }));
    // The callbacks, sent by A then by B, are the log exactly.
    assert_eq!(callbacks.until_status().await, events, "{provider}/{signal}: callbacks");
    assert!(b.log().contains("claimed orphaned handovers"), "B took it over: {}", b.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_is_taken_over_push_provider() {
    takeover("liveagent", "KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_is_taken_over_stream_provider() {
    takeover("miaw", "KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_owner_hands_over_at_once() {
    takeover("8x8", "TERM").await;
}
