//! The floors: the smallest clients that make the same protocol calls with bare reqwest and
//! tokio, no library logic (no retries, no state machine, no event types).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::StreamExt;
use handover_transport::reqwest;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::remote::Remote;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends `request` and reads its JSON answer.
async fn json_of(request: reqwest::RequestBuilder) -> Result<Value, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    response.json().await.map_err(|e| e.to_string())
}

/// A bare HTTP client like the library's (rustls, pooled).
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap_or_default()
}

/// Unix time in microseconds.
pub(crate) fn now_us() -> u64 {
    handover_emulator::model::now_us()
}

/// Latencies from ` @<µs>` stamps found after `marker` in `text`, in ms.
pub(crate) fn stamps(text: &str, marker: &str, now: u64) -> Vec<f64> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        rest = &rest[at + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(stamp) = digits.parse::<u64>() {
            found.push(now.saturating_sub(stamp) as f64 / 1000.0);
        }
    }
    found
}

/// The text of an agent message frame (`CONVERSATION_MESSAGE`, entry payload as a string
/// or an object).
fn miaw_agent_text(frame: &str) -> Option<String> {
    let mut event = "";
    let mut data = String::new();
    for line in frame.lines() {
        if let Some(name) = line.strip_prefix("event:") {
            event = name.trim();
        } else if let Some(more) = line.strip_prefix("data:") {
            data.push_str(more.strip_prefix(' ').unwrap_or(more));
        }
    }
    if event != "CONVERSATION_MESSAGE" {
        return None;
    }
    let envelope: Value = serde_json::from_str(&data).ok()?;
    let entry = &envelope["conversationEntry"];
    if entry["sender"]["role"].as_str() == Some("EndUser") {
        return None;
    }
    let payload = match &entry["entryPayload"] {
        Value::String(text) => serde_json::from_str(text).ok()?,
        other => other.clone(),
    };
    payload["abstractMessage"]["staticContent"]["text"].as_str().map(str::to_owned)
}

/// A bare MIAW visitor: token, SSE stream (read by a task), conversation, messages.
pub(crate) struct MiawFloor {
    token: String,
    conversation: String,
    reader: JoinHandle<()>,
}

impl Drop for MiawFloor {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl MiawFloor {
    /// Opens a conversation; the SSE reader records agent-message stamp latencies into
    /// `latencies`.
    pub(crate) async fn open(
        http: &reqwest::Client,
        remote: &Remote,
        transcript: &[String],
        latencies: Arc<Mutex<Vec<f64>>>,
    ) -> Result<Self, String> {
        let base = &remote.url;
        let org = remote.config["org_id"].as_str().unwrap_or_default();
        let deployment = remote.config["es_developer_name"].as_str().unwrap_or_default();
        let token =
            json_of(http.post(format!("{base}/iamessage/api/v2/authorization/unauthenticated/access-token")).json(
                &json!({ "orgId": org, "esDeveloperName": deployment, "capabilitiesVersion": "1", "platform": "Web" }),
            ))
            .await?;
        let access = token["accessToken"].as_str().ok_or("no accessToken")?.to_owned();
        let last = token["lastEventId"].as_str().unwrap_or("0").to_owned();
        let stream = http
            .get(format!("{base}/eventrouter/v1/sse"))
            .bearer_auth(&access)
            .header("X-Org-Id", org)
            .header("Last-Event-Id", last)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !stream.status().is_success() {
            return Err(format!("sse: {}", stream.status()));
        }
        // The least a client must do to hand an agent's text on: cut the stream into
        // frames, read the event's JSON and the entry payload in it, take the text.
        let reader = tokio::spawn(async move {
            let mut body = stream.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let frame: String = buffer.drain(..end + 2).collect();
                    if let Some(text) = miaw_agent_text(&frame) {
                        let found = stamps(&text, "agent-msg @", now_us());
                        lock(&latencies).extend(found);
                    }
                }
            }
        });
        let conversation = uuid::Uuid::new_v4().to_string();
        let created = http
            .post(format!("{base}/iamessage/api/v2/conversation"))
            .bearer_auth(&access)
            .json(&json!({ "conversationId": conversation, "esDeveloperName": deployment, "routingAttributes": {} }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !created.status().is_success() {
            return Err(format!("create: {}", created.status()));
        }
        let floor = Self { token: access, conversation, reader };
        for chunk in transcript {
            floor.send(http, remote, chunk).await?;
        }
        Ok(floor)
    }

    /// A user message.
    pub(crate) async fn send(&self, http: &reqwest::Client, remote: &Remote, text: &str) -> Result<(), String> {
        let deployment = remote.config["es_developer_name"].as_str().unwrap_or_default();
        let body = json!({
            "message": {
                "id": uuid::Uuid::new_v4().to_string(),
                "messageType": "StaticContentMessage",
                "staticContent": { "formatType": "Text", "text": text },
            },
            "esDeveloperName": deployment,
        });
        let sent = http
            .post(format!("{}/iamessage/api/v2/conversation/{}/message", remote.url, self.conversation))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if sent.status().is_success() { Ok(()) } else { Err(format!("message: {}", sent.status())) }
    }
}

/// A bare Genesys integration: one token and one notifications channel and socket; per
/// handover the inbound messages, the topic subscription and its routing entry.
pub(crate) struct GenesysFloor {
    token: String,
    channel: String,
    handovers: std::sync::atomic::AtomicUsize,
    /// What any push client keeps per live handover to hand a webhook to it: the customer
    /// id Genesys addresses its deliveries to → the conversation and its inbox.
    routes: Mutex<HashMap<String, GenesysRoute>>,
    _socket: JoinHandle<()>,
}

/// One handover's routing entry: its conversation, and the deliveries not yet read (a
/// consumer drains it).
struct GenesysRoute {
    _conversation: String,
    _inbox: Vec<Value>,
}

impl GenesysFloor {
    pub(crate) async fn connect(http: &reqwest::Client, remote: &Remote) -> Result<Self, String> {
        use handover_transport::reqwest::header::AUTHORIZATION;
        let config = &remote.config;
        let basic = format!(
            "{}:{}",
            config["client_id"].as_str().unwrap_or_default(),
            config["client_secret"].as_str().unwrap_or_default()
        );
        let token = json_of(
            http.post(format!("{}/oauth/token", remote.url))
                .header(AUTHORIZATION, format!("Basic {}", BASE64.encode(basic.as_bytes())))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials"),
        )
        .await?;
        let token = token["access_token"].as_str().ok_or("no access_token")?.to_owned();
        let channel = json_of(
            http.post(format!("{}/api/v2/notifications/channels", remote.url)).bearer_auth(&token).json(&json!({})),
        )
        .await?;
        let uri = channel["connectUri"].as_str().ok_or("no connectUri")?.to_owned();
        let (mut socket, _) = tokio_tungstenite::connect_async(uri.as_str()).await.map_err(|e| e.to_string())?;
        let socket = tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} });
        Ok(Self {
            token,
            channel: channel["id"].as_str().unwrap_or_default().to_owned(),
            handovers: std::sync::atomic::AtomicUsize::new(0),
            routes: Mutex::default(),
            _socket: socket,
        })
    }

    /// One handover: the first message with attributes (asking for the conversation id),
    /// the transcript, the subscription.
    pub(crate) async fn handover(
        &self,
        http: &reqwest::Client,
        remote: &Remote,
        transcript: &[String],
    ) -> Result<(), String> {
        let integration = remote.config["integration_id"].as_str().unwrap_or_default();
        let path = format!("{}/api/v2/conversations/messages/{integration}/inbound/open/message", remote.url);
        let customer = json!({ "id": uuid::Uuid::new_v4().to_string(), "idType": "Opaque", "nickname": "Jane", "firstName": "Jane" });
        let message = |text: &str, first: bool| {
            let mut channel = json!({
                "messageId": uuid::Uuid::new_v4().to_string(),
                "time": handover_transport::time::now_iso8601(),
                "from": customer,
            });
            if first {
                channel["metadata"] = json!({ "customAttributes": { "mySkills": "billing" } });
            }
            json!({ "channel": channel, "text": text })
        };
        let first = json_of(
            http.post(&path)
                .query(&[("prefetchConversationId", "true")])
                .bearer_auth(&self.token)
                .json(&message("The customer asked for a human agent.", true)),
        )
        .await?;
        for chunk in transcript {
            let sent = http.post(&path).bearer_auth(&self.token).json(&message(chunk, false)).send().await;
            sent.map_err(|e| e.to_string())?;
        }
        let conversation = first["conversationId"].as_str().ok_or("no conversationId")?;
        let customer_id = customer["id"].as_str().unwrap_or_default().to_owned();
        let route = GenesysRoute { _conversation: conversation.to_owned(), _inbox: Vec::new() };
        lock(&self.routes).insert(customer_id, route);
        let topics: Vec<Value> =
            handover::genesys::notifications::topics(conversation).iter().map(|t| json!({ "id": t })).collect();
        // A channel holds 1000 topics: like the library, replace the list with the live
        // conversations' topics (here just this one's) once 100 finished ones are on it.
        let url = format!("{}/api/v2/notifications/channels/{}/subscriptions", remote.url, self.channel);
        let replace = self.handovers.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100 == 99;
        let subscribe = if replace { http.put(url) } else { http.post(url) };
        let subscribed = subscribe.bearer_auth(&self.token).json(&topics).send().await.map_err(|e| e.to_string())?;
        if !subscribed.status().is_success() {
            return Err(format!("subscribe: {}", subscribed.status()));
        }
        Ok(())
    }
}

/// A bare Salesforce Chat visitor: session, ChasitorInit, then one long poll after another.
pub(crate) async fn salesforce_visitor(
    http: reqwest::Client,
    base: String,
    config: Value,
) -> Result<JoinHandle<()>, String> {
    let version = "52";
    let session = json_of(
        http.get(format!("{base}/chat/rest/System/SessionId"))
            .header("X-LIVEAGENT-API-VERSION", version)
            .header("X-LIVEAGENT-AFFINITY", "null"),
    )
    .await?;
    let key = session["key"].as_str().ok_or("no key")?.to_owned();
    let affinity = session["affinityToken"].as_str().ok_or("no affinity")?.to_owned();
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    let init = json!({
        "organizationId": config["organization_id"], "deploymentId": config["deployment_id"],
        "buttonId": config["button_id"], "sessionId": id, "userAgent": "floor", "language": "en",
        "screenResolution": "", "visitorName": "Jane", "prechatDetails": [], "prechatEntities": [],
        "receiveQueueUpdates": true, "isPost": true,
    });
    let posted = http
        .post(format!("{base}/chat/rest/Chasitor/ChasitorInit"))
        .header("X-LIVEAGENT-API-VERSION", version)
        .header("X-LIVEAGENT-AFFINITY", &affinity)
        .header("X-LIVEAGENT-SESSION-KEY", &key)
        .header("X-LIVEAGENT-SEQUENCE", "1")
        .json(&init)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !posted.status().is_success() {
        return Err(format!("ChasitorInit: {}", posted.status()));
    }
    Ok(tokio::spawn(async move {
        let mut ack = -1i64;
        loop {
            let polled = http
                .get(format!("{base}/chat/rest/System/Messages"))
                .query(&[("ack", ack.to_string())])
                .header("X-LIVEAGENT-API-VERSION", version)
                .header("X-LIVEAGENT-AFFINITY", &affinity)
                .header("X-LIVEAGENT-SESSION-KEY", &key)
                .timeout(Duration::from_secs(60))
                .send()
                .await;
            let Ok(response) = polled else { return };
            match response.status().as_u16() {
                200 => {
                    let Ok(batch) = response.json::<Value>().await else { return };
                    ack = batch["sequence"].as_i64().unwrap_or(ack);
                }
                204 => {}
                _ => return,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_read_after_their_marker() {
        assert_eq!(stamps("x agent-msg @1000 y agent-msg @1500", "agent-msg @", 2000), [1.0, 0.5]);
        assert!(stamps("user-msg @1000", "agent-msg @", 2000).is_empty());
    }
}
