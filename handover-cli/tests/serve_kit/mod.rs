//! Black-box helpers for `handover serve`: the built binary as a child process (stdin held
//! open), the emulators in this test process, a real HTTP client, and a callback endpoint
//! that checks Standard Webhooks signatures.

#![allow(clippy::unwrap_used, clippy::print_stderr, dead_code, unreachable_pub)] // test helpers: a panic is the failure report

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt as _;
use handover_emulator::{Emulator, EmulatorOptions};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub const BIN: &str = env!("CARGO_BIN_EXE_handover");
/// A hang guard, not a timing assertion.
pub const GUARD: Duration = Duration::from_secs(30);
pub const API_KEY: &str = "test-key-0123456789abcdef";
/// 32 zero bytes would do; any fixed key keeps runs reproducible.
pub const STORE_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
pub const CALLBACK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A port nobody listens on right now (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("handover-serve-{name}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Emulators for `providers`, manual agents, their webhooks aimed at `webhook_port`.
pub async fn emulators(providers: &[&str], webhook_port: u16) -> BTreeMap<String, Emulator> {
    let mut map = BTreeMap::new();
    for provider in providers {
        let options =
            EmulatorOptions::default().with_webhook_url(format!("http://127.0.0.1:{webhook_port}/webhooks/{provider}"));
        map.insert((*provider).to_owned(), Emulator::start(provider, options).await.unwrap());
    }
    map
}

/// A `server.toml` for instance `instance` on `port` over `store`, with a provider
/// configuration per emulator (named after its provider).
pub fn config(instance: &str, port: u16, store: &str, emulators: &BTreeMap<String, Emulator>, extra: &str) -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nstore = \"{store}\"\ninstance_id = \"{instance}\"\n\
         api_keys_env = \"TEST_API_KEYS\"\nencryption_key_env = \"TEST_STORE_KEY\"\n{extra}\n\
         [node]\naccepted_message = \"Connecting you to an agent.\"\ncancel_intent = \"cancel_handover\"\n\
         send_queue_event = true\nsend_active_event = true\nsend_resolve_event = true\n\n"
    );
    for (name, emulator) in emulators {
        let mut section = toml::Table::new();
        section.insert("type".into(), toml::Value::String(name.clone()));
        if let toml::Value::Table(keys) = toml::Value::try_from(emulator.provider_config()).unwrap() {
            section.extend(keys);
        }
        let mut providers = toml::Table::new();
        providers.insert(name.clone(), toml::Value::Table(section));
        let mut root = toml::Table::new();
        root.insert("providers".into(), toml::Value::Table(providers));
        text.push_str(&toml::to_string(&root).unwrap());
        text.push('\n');
    }
    text
}

/// A running `handover serve`.
pub struct Service {
    child: Child,
    pub url: String,
    pub port: u16,
    pub stderr: PathBuf,
}

impl Service {
    /// Starts `handover serve --config <dir>/<instance>.toml` and waits for `/readyz`.
    pub async fn start(dir: &Path, instance: &str, config: &str) -> Self {
        let path = dir.join(format!("{instance}.toml"));
        std::fs::write(&path, config).unwrap();
        let port: u16 = config
            .lines()
            .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
            .and_then(|rest| rest.trim_end_matches('"').parse().ok())
            .unwrap();
        let stderr = dir.join(format!("{instance}.stderr"));
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&path)
            .args(["--log", "info,handover_server=debug"])
            .env("TEST_API_KEYS", API_KEY)
            .env("TEST_STORE_KEY", STORE_KEY)
            // Held open and never written, as a supervisor leaves it.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let service = Self { child, url: format!("http://127.0.0.1:{port}"), port, stderr };
        service.wait_ready().await;
        service
    }

    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            if let Ok(response) = client.get(format!("{}/readyz", self.url)).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "not ready: {}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn api(&self) -> Api {
        Api::new(&self.url)
    }

    /// Sends a signal by name with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// The exit code within the guard.
    pub fn exit_code(&mut self) -> i32 {
        let deadline = std::time::Instant::now() + GUARD;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(std::time::Instant::now() < deadline, "did not exit: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The API, as a bot calls it.
#[derive(Clone)]
pub struct Api {
    pub url: String,
    pub client: reqwest::Client,
}

/// A status and a JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Api {
    pub fn new(url: &str) -> Self {
        Self { url: url.to_owned(), client: reqwest::Client::new() }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Answer {
        let mut request =
            self.client.request(method.parse().unwrap(), format!("{}{path}", self.url)).bearer_auth(API_KEY);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body }
    }

    pub async fn create(&self, body: Value) -> String {
        let answer = self.call("POST", "/v1/handovers", Some(body), &[]).await;
        assert_eq!(answer.status, 201, "{answer:?}");
        answer.body["id"].as_str().unwrap().to_owned()
    }

    pub async fn input(&self, id: &str, input: Value) -> Answer {
        self.call("POST", &format!("/v1/handovers/{id}/inputs"), Some(input), &[]).await
    }

    pub async fn get(&self, id: &str) -> Value {
        let answer = self.call("GET", &format!("/v1/handovers/{id}"), None, &[]).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body
    }

    /// One long-poll.
    pub async fn poll(&self, id: &str, after: u64, wait_ms: u64) -> (Vec<Value>, u64) {
        let answer =
            self.call("GET", &format!("/v1/handovers/{id}/events?after={after}&wait_ms={wait_ms}"), None, &[]).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        (answer.body["events"].as_array().unwrap().clone(), answer.body["last_seq"].as_u64().unwrap())
    }

    /// Long-polls until an event matches `until` (inclusive), from `after`.
    pub async fn poll_until(&self, id: &str, after: u64, until: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + GUARD;
        let mut seen = Vec::new();
        let mut after = after;
        loop {
            let (events, last) = self.poll(id, after, 5_000).await;
            after = last;
            for event in events {
                let done = until(&event);
                seen.push(event);
                if done {
                    return seen;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no matching event; seen {seen:#?}");
        }
    }

    /// Waits for the handover's state to be `state`.
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            let body = self.get(id).await;
            if body["state"] == state {
                return body;
            }
            assert!(tokio::time::Instant::now() < deadline, "state never {state}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reads SSE after `last_event_id` until the stream ends (or the guard).
    pub async fn sse(&self, id: &str, last_event_id: Option<u64>) -> Vec<SseFrame> {
        let mut request = self
            .client
            .get(format!("{}/v1/handovers/{id}/events", self.url))
            .bearer_auth(API_KEY)
            .header("accept", "text/event-stream");
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        let mut frames = Vec::new();
        let read = async {
            while let Some(chunk) = stream.next().await {
                buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    if let Some(frame) = SseFrame::parse(&block) {
                        frames.push(frame);
                    }
                }
            }
        };
        tokio::time::timeout(GUARD, read).await.expect("the SSE stream ends after the status event");
        frames
    }
}

/// One SSE event.
#[derive(Clone, Debug, PartialEq)]
pub struct SseFrame {
    pub id: u64,
    pub event: String,
    pub data: Value,
}

impl SseFrame {
    fn parse(block: &str) -> Option<Self> {
        let (mut id, mut event, mut data) = (None, None, None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = serde_json::from_str(v).ok();
            }
        }
        Some(Self { id: id?, event: event?, data: data? })
    }
}

/// A bot's callback endpoint: checks every signature (Standard Webhooks), keeps what came,
/// and fails the first `fail_first` POSTs with 503.
#[derive(Clone)]
pub struct Callbacks {
    pub url: String,
    pub received: Arc<Mutex<Vec<Value>>>,
    pub bad_signatures: Arc<Mutex<u32>>,
    failures_left: Arc<Mutex<u32>>,
}

impl Callbacks {
    pub async fn start(fail_first: u32) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let this = Self {
            url: format!("http://{addr}/hook"),
            received: Arc::default(),
            bad_signatures: Arc::default(),
            failures_left: Arc::new(Mutex::new(fail_first)),
        };
        let state = this.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move { state.receive(&headers, &body) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        this
    }

    fn receive(&self, headers: &axum::http::HeaderMap, body: &[u8]) -> axum::http::StatusCode {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let (id, timestamp, signature) =
            (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
        if signature != sign(CALLBACK_SECRET, &id, &timestamp, body) {
            *self.bad_signatures.lock().unwrap() += 1;
            return axum::http::StatusCode::UNAUTHORIZED;
        }
        {
            let mut left = self.failures_left.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return axum::http::StatusCode::SERVICE_UNAVAILABLE;
            }
        }
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(id, format!("{}:{}", event["handover_id"].as_str().unwrap(), event["seq"]));
        self.received.lock().unwrap().push(event);
        axum::http::StatusCode::NO_CONTENT
    }

    pub fn events(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until the status event came.
    pub async fn until_status(&self) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let events = self.events();
            if events.iter().any(|e| e["type"] == "status") {
                return events;
            }
            assert!(tokio::time::Instant::now() < deadline, "no status callback; got {events:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The Standard Webhooks signature, computed independently of the service's code.
pub fn sign(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// The request body of a handover for `provider`, with a callback to `callback`.
pub fn handover(provider: &str, callback: Option<&Callbacks>) -> Value {
    let mut body = json!({
        "provider": provider,
        "session_id": format!("s-{}", uuid_like()),
        "user": { "id": "u-1", "name": "Jane Doe", "email": "jane@example.com" },
        "transcript": [{ "from": "user", "text": "I was charged twice" }, { "from": "bot", "text": "Let me get someone." }],
    });
    if let Some(callback) = callback {
        body["callback"] = json!({ "url": callback.url, "secret": CALLBACK_SECRET });
    }
    body
}

fn uuid_like() -> String {
    format!("{:x}{:x}", std::process::id(), free_port())
}

/// The texts the user side sent in `emulator`'s latest conversation.
pub fn customer_texts(emulator: &Emulator) -> Vec<String> {
    emulator.hub().latest().unwrap().customer_texts()
}

/// Acts as the agent in `emulator`'s latest conversation.
pub fn agent(emulator: &Emulator, action: handover_emulator::AgentAction) {
    let conversation = emulator.hub().latest().unwrap();
    emulator.hub().agent(&conversation, action).expect("the conversation is open");
}

/// Event types in order.
pub fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap_or_default().to_owned()).collect()
}

/// Asserts seqs 1..=n with no gap and no repeat.
pub fn assert_gap_free(events: &[Value]) {
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "seqs must be 1..=n: {events:#?}");
}
