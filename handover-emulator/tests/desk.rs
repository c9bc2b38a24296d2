//! The agent desk's routes, over a real socket: the page and its assets, the protocol, and
//! the live change stream the page listens to.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use futures_util::StreamExt as _;
use handover_emulator::{AgentAction, Emulator, EmulatorOptions};

#[tokio::test]
async fn the_desk_page_and_its_assets_are_served_from_the_binary() {
    let emulator = Emulator::start("liveagent", EmulatorOptions::default()).await.unwrap();
    let page = reqwest::get(format!("{}/_emulator/desk", emulator.url())).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    for id in
        ["id=\"conversations\"", "id=\"answer\"", "id=\"send\"", "id=\"accept\"", "id=\"end\"", "<label for=\"answer\""]
    {
        assert!(html.contains(id), "the page has {id}");
    }
    assert!(!html.contains("https://"), "nothing is loaded from elsewhere");
    for (path, kind) in [("desk.js", "text/javascript"), ("desk.css", "text/css")] {
        let asset = reqwest::get(format!("{}/_emulator/desk/{path}", emulator.url())).await.unwrap();
        assert_eq!(asset.status(), 200, "{path}");
        assert!(asset.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        assert!(!asset.text().await.unwrap().is_empty());
    }
    let info: serde_json::Value =
        reqwest::get(format!("{}/_emulator/info", emulator.url())).await.unwrap().json().await.unwrap();
    assert_eq!(info, serde_json::json!({ "protocol": "liveagent" }));
}

#[tokio::test]
async fn the_change_stream_names_each_conversation_that_changed() {
    let emulator = Emulator::start("miaw", EmulatorOptions::default()).await.unwrap();
    let response = reqwest::get(format!("{}/_emulator/changes", emulator.url())).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let conversation = emulator.hub().create("conv-1", "owner", serde_json::json!({}));
    emulator.hub().agent(&conversation, AgentAction::Joined { agent: "Dana".into() });
    let mut text = String::new();
    while text.matches("event: change").count() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next()).await.unwrap().unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(
        text.matches("event: change\ndata: {\"conversation\":\"conv-1\"}\n\n").count(),
        2,
        "one change for the creation, one for the join: {text}"
    );
}
