//! wiremock pins of every request (`protocols/liveagent-chatwoot.md` §3) and the webhook
//! handler's verification, filtering, deduplication and routing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use handover_core::{EndReason, EndedBy, ErrorKind, Event, Provider, Session, UserInput, WebhookRequest};
use handover_testkit::mock::{body_json, header, requests_to, strict_server};
use handover_testkit::sample_request;
use handover_testkit::scenarios::{events_until, next_event};
use provider_liveagent::{LiveAgentConfig, LiveAgentProvider, webhook};
use serde_json::{Value, json};
use wiremock::matchers::{body_json as has_body, header as has_header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::fast_retry;

const BASE: &str = "/api/v1/accounts/3";
const SECRET: &str = "whsec-live";

/// How many requests each endpoint of [`server`] must see in a test.
#[derive(Default)]
struct Calls {
    contact: u64,
    conversation: u64,
    /// Messages and notes (the transcript note is one).
    message: u64,
    priority: u64,
}

impl Calls {
    /// A `start`: the contact, the conversation, its priority and the transcript note.
    fn start() -> Self {
        Self { contact: 1, conversation: 1, message: 1, priority: 1 }
    }
}

async fn server(calls: Calls) -> MockServer {
    let server = strict_server().await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/contacts").as_str()))
        .and(has_header("api_access_token", "tok-live"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "payload": {
            "contact": { "id": 55, "identifier": "user-42" },
            "contact_inbox": { "inbox": { "id": 9 }, "source_id": "src-55" },
        } })))
        .named("create contact")
        .expect(calls.contact)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/conversations").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": 1042, "status": "open", "inbox_id": 9 })))
        .named("create conversation")
        .expect(calls.conversation)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/conversations/1042/messages").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": 9001 })))
        .named("post message")
        .expect(calls.message)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/conversations/1042/toggle_priority").as_str()))
        .respond_with(ResponseTemplate::new(200))
        .named("toggle priority")
        .expect(calls.priority)
        .mount(&server)
        .await;
    server
}

fn config(server: &MockServer) -> LiveAgentConfig {
    let mut config = LiveAgentConfig::new(format!("{}/api/v1", server.uri()), 3, "tok-live", 9);
    config.skills = vec!["technical support".into()];
    config.languages = vec!["english".into()];
    config.priority = Some("high".into());
    config.webhook_secret = Some(SECRET.to_owned().into());
    config
}

fn provider(config: LiveAgentConfig) -> LiveAgentProvider {
    LiveAgentProvider::builder(config).retry(fast_retry()).build().unwrap()
}

async fn start(server: &MockServer) -> (LiveAgentProvider, Session) {
    let provider = provider(config(server));
    let session = provider.start(sample_request()).await.expect("start");
    (provider, session)
}

fn signed(body: &Value) -> WebhookRequest {
    let bytes = body.to_string().into_bytes();
    let timestamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs().to_string();
    let signature = webhook::sign(SECRET.as_bytes(), &timestamp, &bytes);
    WebhookRequest::post(bytes)
        .with_header("X-Chatwoot-Timestamp", timestamp)
        .with_header("X-Chatwoot-Signature", signature)
        .with_header("X-Chatwoot-Delivery", uuid::Uuid::new_v4().to_string())
}

fn agent_message(id: u64, text: &str) -> Value {
    json!({
        "event": "message_created", "id": id, "content": text, "message_type": "outgoing", "private": false,
        "sender": { "id": 17, "name": "Ann", "type": "user" }, "conversation": { "id": 1042 },
    })
}

#[tokio::test]
async fn start_creates_the_contact_the_conversation_the_priority_and_the_transcript_note() {
    let server = server(Calls::start()).await;
    let _ = start(&server).await;
    let contact = &requests_to(&server, "POST", &format!("{BASE}/contacts")).await[0];
    assert_eq!(header(contact, "api_access_token"), "tok-live");
    assert_eq!(
        body_json(contact),
        json!({ "inbox_id": 9, "identifier": "user-42", "name": "Jane Doe", "email": "jane@example.com" })
    );
    let conversation = body_json(&requests_to(&server, "POST", &format!("{BASE}/conversations")).await[0]);
    assert_eq!(conversation["source_id"], "src-55");
    assert_eq!(conversation["inbox_id"], 9);
    assert_eq!(conversation["contact_id"], 55);
    assert_eq!(conversation["status"], "open");
    assert!(conversation.get("priority").is_none(), "not accepted on create");
    assert_eq!(
        conversation["custom_attributes"],
        json!({ "skills": "technical support,billing", "languages": "english,en", "bot_session_id": "bot-session-1" })
    );
    let priority = &requests_to(&server, "POST", &format!("{BASE}/conversations/1042/toggle_priority")).await[0];
    assert_eq!(body_json(priority), json!({ "priority": "high" }));
    let note = body_json(&requests_to(&server, "POST", &format!("{BASE}/conversations/1042/messages")).await[0]);
    assert_eq!(note["message_type"], "outgoing");
    assert_eq!(note["private"], true, "the transcript is for the agent only");
    assert!(note["content"].as_str().unwrap().starts_with("User: My invoice is wrong\n"));
    assert!(note["echo_id"].as_str().unwrap().starts_with("handover-"));
}

#[tokio::test]
async fn an_existing_contact_is_found_and_a_resolved_locked_conversation_reopened() {
    let server = strict_server().await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/contacts").as_str()))
        .respond_with(
            ResponseTemplate::new(422)
                .set_body_json(json!({ "message": "Identifier has already been taken", "attributes": ["identifier"] })),
        )
        .named("create contact: taken")
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/contacts/search").as_str()))
        .and(query_param("q", "user-42"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "payload": [
            { "id": 56, "identifier": "user-42", "contact_inboxes": [{ "inbox": { "id": 9 }, "source_id": "src-56" }] },
        ] })))
        .named("find contact")
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/conversations").as_str()))
        .and(wiremock::matchers::body_partial_json(json!({ "source_id": "src-56", "contact_id": 56 })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": 1042, "status": "resolved" })))
        .named("create conversation: locked and resolved")
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/conversations/1042/toggle_status").as_str()))
        .and(has_body(json!({ "status": "open" })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "payload": { "success": true, "current_status": "open" } })),
        )
        .expect(1)
        .named("reopen")
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.priority = None;
    let mut request = sample_request();
    request.transcript.clear();
    provider(config).start(request).await.expect("start");
}

#[tokio::test]
async fn a_failed_priority_does_not_abort_the_handover() {
    let server = strict_server().await;
    for (p, body) in [
        ("contacts", json!({ "payload": { "contact": { "id": 55 }, "contact_inbox": { "source_id": "s" } } })),
        ("conversations", json!({ "id": 1042, "status": "open" })),
        ("conversations/1042/messages", json!({ "id": 1 })),
    ] {
        Mock::given(method("POST"))
            .and(path(format!("{BASE}/{p}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .named(p)
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/conversations/1042/toggle_priority").as_str()))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({ "error": "Priority is invalid" })))
        .named("toggle priority: refused")
        .expect(1)
        .mount(&server)
        .await;
    provider(config(&server)).start(sample_request()).await.expect("start goes on");
}

#[tokio::test]
async fn user_messages_are_incoming_and_presence_private_notes() {
    // The transcript note, the message and the presence note.
    let server = server(Calls { message: 3, ..Calls::start() }).await;
    let (_provider, session) = start(&server).await;
    session.send(UserInput::message("m1", "Hello?")).await.unwrap();
    session.send(UserInput::Disconnected).await.unwrap();
    let posts = requests_to(&server, "POST", &format!("{BASE}/conversations/1042/messages")).await;
    let user = body_json(&posts[1]);
    assert_eq!(
        (user["content"].as_str(), user["message_type"].as_str(), user["private"].as_bool()),
        (Some("Hello?"), Some("incoming"), Some(false))
    );
    // The echo id is derived from the input's id: a resend carries the same one.
    assert_eq!(user["echo_id"], handover_transport::ids::client_uuid("1042", "m1").as_str());
    let presence = body_json(&posts[2]);
    assert_eq!(
        (presence["content"].as_str(), presence["private"].as_bool()),
        (Some("User left the conversation"), Some(true))
    );
    assert_eq!(session.send(UserInput::Typing { on: true }).await.unwrap_err().kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn the_webhook_verifies_filters_deduplicates_and_routes() {
    let server = server(Calls::start()).await;
    let (provider, mut session) = start(&server).await;
    let first = signed(&agent_message(7001, "Hi, Ann here"));
    assert_eq!(provider.webhook(first.clone()).await.status, 200);
    assert_eq!(provider.webhook(first).await.status, 200, "a redelivery (same X-Chatwoot-Delivery) is acknowledged");
    let mut tampered = signed(&agent_message(7002, "x"));
    tampered.body = agent_message(7002, "injected").to_string().into_bytes();
    assert_eq!(provider.webhook(tampered).await.status, 401);
    assert_eq!(provider.webhook(WebhookRequest::post(agent_message(7003, "unsigned").to_string())).await.status, 401);
    let mut note = agent_message(7004, "private");
    note["private"] = json!(true);
    assert_eq!(provider.webhook(signed(&note)).await.status, 200);
    assert_eq!(
        provider.webhook(signed(&json!({ "event": "message_created" }))).await.status,
        200,
        "verified, but for no conversation: acknowledged and dropped"
    );
    assert_eq!(provider.webhook(signed(&json!({ "event": "contact_merged", "id": 5 }))).await.status, 200);
    assert_eq!(provider.webhook(signed(&json!(["not", "an", "object"]))).await.status, 400);
    provider.webhook(signed(&agent_message(7005, "second"))).await;
    let events =
        events_until(session.events(), |e| matches!(e, Event::AgentMessage { text, .. } if text == "second")).await;
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::AgentMessage { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["Hi, Ann here", "second"]);
}

#[tokio::test]
async fn a_delivery_posted_while_start_is_in_flight_reaches_the_session_first() {
    // The slow priority mock of this test answers the priority.
    let server = server(Calls { priority: 0, ..Calls::start() }).await;
    // The priority call is slow: the desk's greeting arrives before `start` returns.
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/conversations/1042/toggle_priority").as_str()))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .with_priority(1)
        .named("slow priority")
        .expect(1)
        .mount(&server)
        .await;
    let provider = Arc::new(provider(config(&server)));
    let starting = tokio::spawn({
        let provider = provider.clone();
        async move { provider.start(sample_request()).await }
    });
    while requests_to(&server, "POST", &format!("{BASE}/conversations")).await.is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let greeting = signed(&agent_message(7100, "Hello, I'm Ann"));
    assert_eq!(provider.webhook(greeting).await.status, 200, "kept for the session being started");
    assert!(!starting.is_finished(), "the delivery must arrive while start is in flight");
    let mut session = starting.await.unwrap().expect("start");
    let event = next_event(session.events()).await;
    assert!(matches!(&event, Event::AgentMessage { text, .. } if text == "Hello, I'm Ann"), "{event:?}");
}

#[tokio::test]
async fn deliveries_for_a_conversation_nobody_started_are_kept_not_refused() {
    let server = server(Calls::default()).await;
    let provider = provider(config(&server));
    let mut message = agent_message(7010, "late");
    message["conversation"]["id"] = json!(99);
    assert_eq!(provider.webhook(signed(&message)).await.status, 200);
}

#[tokio::test]
async fn a_replayed_signed_message_is_dropped_whatever_its_headers_and_however_late() {
    let server = server(Calls::start()).await;
    let (provider, mut session) = start(&server).await;
    let original = signed(&agent_message(7200, "once"));
    assert_eq!(provider.webhook(original.clone()).await.status, 200);
    let mut new_header = original.clone();
    new_header.headers.retain(|(name, _)| name != "x-chatwoot-delivery");
    let without_header = new_header.clone();
    new_header = new_header.with_header("X-Chatwoot-Delivery", "forged-new-delivery-id");
    assert_eq!(provider.webhook(new_header).await.status, 200);
    assert_eq!(provider.webhook(without_header).await.status, 200);
    // More deliveries than any bounded memory of delivery ids holds.
    let reader = tokio::spawn(async move {
        let events =
            events_until(session.events(), |e| matches!(e, Event::AgentMessage { text, .. } if text == "sentinel"))
                .await;
        (session, events)
    });
    for n in 0..4_200u64 {
        assert_eq!(provider.webhook(signed(&agent_message(8000 + n, &format!("flood {n}")))).await.status, 200);
    }
    assert_eq!(provider.webhook(original).await.status, 200, "a replay is acknowledged");
    provider.webhook(signed(&agent_message(7201, "sentinel"))).await;
    let (_session, events) = reader.await.unwrap();
    let once = events.iter().filter(|e| matches!(e, Event::AgentMessage { text, .. } if text == "once")).count();
    assert_eq!(once, 1, "the replayed message was delivered again");
}

#[tokio::test]
async fn resolution_ends_the_stream_and_no_message_reopens_it() {
    let server = server(Calls::start()).await;
    let (provider, mut session) = start(&server).await;
    provider
        .webhook(signed(&json!({ "event": "conversation_status_changed", "id": 1042, "status": "resolved" })))
        .await;
    let events = events_until(session.events(), Event::is_terminal).await;
    assert!(matches!(events.last(), Some(Event::Ended { by: EndedBy::Agent, .. })));
    let before = requests_to(&server, "POST", &format!("{BASE}/conversations/1042/messages")).await.len();
    let error = session.send(UserInput::message("late", "are you there?")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::SessionEnded);
    assert_eq!(requests_to(&server, "POST", &format!("{BASE}/conversations/1042/messages")).await.len(), before);
}

#[tokio::test]
async fn cancel_resolves_the_conversation() {
    let server = server(Calls::start()).await;
    Mock::given(method("POST"))
        .and(path(format!("{BASE}/conversations/1042/toggle_status").as_str()))
        .and(has_body(json!({ "status": "resolved" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "payload": { "success": true } })))
        .named("resolve")
        .expect(1)
        .mount(&server)
        .await;
    let (_provider, mut session) = start(&server).await;
    session.end(EndReason::Cancelled).await.unwrap();
    assert!(matches!(next_event(session.events()).await, Event::Ended { by: EndedBy::User, .. }));
}

#[tokio::test]
async fn the_queue_is_computed_from_older_unassigned_conversations_of_the_inbox() {
    let server = server(Calls::start()).await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/conversations").as_str()))
        .and(query_param("inbox_id", "9"))
        .and(query_param("status", "open"))
        .and(query_param("assignee_type", "unassigned"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": { "meta": {}, "payload": [
            { "id": 1001 }, { "id": 1030 }, { "id": 1042 }, { "id": 1050 },
        ] } })))
        .named("unassigned conversations")
        .expect(1..)
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.get_queue_position = true;
    config.get_estimated_wait_time = true;
    config.wait_per_position_secs = 90;
    let mut session = provider(config).start(sample_request()).await.unwrap();
    assert_eq!(
        next_event(session.events()).await,
        Event::Queued { position: Some(3), estimated_wait: Some(Duration::from_secs(270)) }
    );
}

#[test]
fn webhooks_must_be_authenticated_unless_explicitly_allowed() {
    let mut config = LiveAgentConfig::new("https://desk.example/api/v1", 1, "t", 2);
    let error = LiveAgentProvider::new(config.clone()).err().unwrap();
    assert!(error.to_string().contains("webhook_secret"), "{error}");
    config.allow_unsigned_webhooks = true;
    assert!(LiveAgentProvider::new(config.clone()).is_ok());
    config.priority = Some("asap".into());
    assert!(LiveAgentProvider::new(config.clone()).err().unwrap().to_string().contains("asap"));
    let config = LiveAgentConfig::new("https://desk.example/", 1, "t", 2);
    assert!(LiveAgentProvider::new(config).err().unwrap().to_string().contains("/api/v1"));
}

#[tokio::test]
async fn a_resumed_session_reads_the_messages_written_while_it_was_away_once() {
    let server = server(Calls::start()).await;
    let (provider, mut session) = start(&server).await;
    provider.webhook(signed(&agent_message(7300, "before"))).await;
    events_until(session.events(), |e| matches!(e, Event::AgentMessage { text, .. } if text == "before")).await;
    let snapshot = session.snapshot().unwrap();
    drop(session);
    // While no session was attached the agent wrote twice; the desk sent each webhook once,
    // to nobody. The list holds the message seen before, a private note and the two new ones.
    let mut note = agent_message(7302, "note to self");
    note["private"] = json!(true);
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/conversations/1042/messages").as_str()))
        .and(query_param("after", "7300"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "meta": {}, "payload": [
            agent_message(7301, "while away 1"), note, agent_message(7303, "while away 2"),
        ] })))
        .expect(1)
        .named("messages after the last seen")
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/conversations/1042").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": 1042, "status": "open", "meta": {} })))
        .expect(1)
        .named("conversation after a resume")
        .mount(&server)
        .await;
    let provider = self::provider(config(&server));
    let mut resumed = provider.resume(snapshot).await.unwrap();
    // The desk did deliver the second one after all: it is not shown twice.
    provider.webhook(signed(&agent_message(7303, "while away 2"))).await;
    provider.webhook(signed(&agent_message(7304, "after"))).await;
    let events =
        events_until(resumed.events(), |e| matches!(e, Event::AgentMessage { text, .. } if text == "after")).await;
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::AgentMessage { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["while away 1", "while away 2", "after"]);
}

#[tokio::test]
async fn check_reads_the_inbox_and_its_queue() {
    let server = server(Calls::default()).await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/inboxes/9").as_str()))
        .and(has_header("api_access_token", "tok-live"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": 9, "channel_type": "Channel::Api" })))
        .expect(1)
        .named("read inbox")
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/conversations").as_str()))
        .and(query_param("inbox_id", "9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "data": { "meta": {}, "payload": [] } })))
        .expect(1)
        .named("read queue")
        .mount(&server)
        .await;
    let report = provider(config(&server)).check().await.expect("check");
    assert!(report.verified_items()[0].contains("inbox_id (a Channel::Api inbox)"), "{report}");
}

#[tokio::test]
async fn check_names_an_inbox_the_account_does_not_have() {
    let server = server(Calls::default()).await;
    Mock::given(method("GET"))
        .and(path(format!("{BASE}/inboxes/9").as_str()))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "error": "Resource could not be found" })))
        .expect(1)
        .named("no such inbox")
        .mount(&server)
        .await;
    let error = provider(config(&server)).check().await.unwrap_err();
    assert_eq!(error.op(), "check account_id and inbox_id", "{error}");
}

/// The exact `multipart/form-data` body reqwest writes for `fields` and one file part.
fn multipart_body(boundary: &str, fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    let (filename, media_type, data) = file;
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"{filename}\"\r\n\
             Content-Type: {media_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

fn boundary_of(request: &wiremock::Request) -> String {
    let content_type = header(request, "content-type");
    let boundary = content_type.strip_prefix("multipart/form-data; boundary=");
    boundary.unwrap_or_else(|| panic!("not a multipart body: {content_type}")).to_owned()
}

#[tokio::test]
async fn a_user_file_is_uploaded_as_an_incoming_multipart_message_with_a_derived_echo_id() {
    // The transcript note and the two uploads.
    let server = server(Calls { message: 3, ..Calls::start() }).await;
    let (_provider, session) = start(&server).await;
    let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let scan =
        handover_core::Attachment::bytes("invoice scan.png", "image/png", data.clone()).with_caption("See the scan");
    session.send(UserInput::attachment("file-1", scan)).await.unwrap();
    let bare = handover_core::Attachment::bytes("notes.txt", "text/plain", b"line\r\n".to_vec());
    session.send(UserInput::attachment("file-2", bare)).await.unwrap();
    let posts = requests_to(&server, "POST", &format!("{BASE}/conversations/1042/messages")).await;
    let upload = &posts[1];
    assert_eq!(header(upload, "api_access_token"), "tok-live");
    let echo_id = handover_transport::ids::client_uuid("1042", "file-1");
    assert_eq!(
        upload.body,
        multipart_body(
            &boundary_of(upload),
            &[("content", "See the scan"), ("message_type", "incoming"), ("echo_id", &echo_id)],
            ("invoice scan.png", "image/png", &data),
        ),
        "{}",
        String::from_utf8_lossy(&upload.body)
    );
    let without_caption = &posts[2];
    let echo_id = handover_transport::ids::client_uuid("1042", "file-2");
    assert_eq!(
        without_caption.body,
        multipart_body(
            &boundary_of(without_caption),
            &[("content", ""), ("message_type", "incoming"), ("echo_id", &echo_id)],
            ("notes.txt", "text/plain", b"line\r\n"),
        ),
        "{}",
        String::from_utf8_lossy(&without_caption.body)
    );
}

#[tokio::test]
async fn a_file_the_desk_refuses_as_too_large_or_of_a_wrong_type_is_invalid_input() {
    let server = server(Calls::start()).await;
    let (_provider, session) = start(&server).await;
    let refusals = [(413, "too large"), (415, "type `image/png`")];
    // Each refusal answers once, in this order.
    for (status, _) in refusals {
        Mock::given(method("POST"))
            .and(path(format!("{BASE}/conversations/1042/messages").as_str()))
            .respond_with(ResponseTemplate::new(status).set_body_string("<html>refused</html>"))
            .with_priority(1)
            .up_to_n_times(1)
            .named(format!("upload refused with {status}"))
            .expect(1)
            .mount(&server)
            .await;
    }
    for (status, expected) in refusals {
        let file = handover_core::Attachment::bytes("scan.png", "image/png", vec![1, 2, 3]);
        let error = session.send(UserInput::attachment(format!("refused-{status}"), file)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
        assert_eq!(error.status(), Some(status));
        assert!(error.to_string().contains(expected), "{error}");
    }
}

#[tokio::test]
async fn agent_files_arrive_as_urls_with_the_caption_as_text() {
    let server = server(Calls::start()).await;
    let (provider, mut session) = start(&server).await;
    let url = "https://desk.example/rails/active_storage/blobs/redirect/eyJfcmFpbHMi--0c5f/returns%20label.pdf";
    let mut message = agent_message(7400, "Your returns label");
    message["attachments"] = json!([
        { "id": 9, "message_id": 7400, "file_type": "file", "account_id": 3, "extension": null,
          "data_url": url, "thumb_url": "", "file_size": 1500 },
    ]);
    assert_eq!(provider.webhook(signed(&message)).await.status, 200);
    let mut bare = agent_message(7401, "");
    bare["content"] = Value::Null;
    bare["attachments"] = message["attachments"].clone();
    assert_eq!(provider.webhook(signed(&bare)).await.status, 200);
    let label = handover_core::Attachment::url("returns label.pdf", "application/pdf", url).with_size(Some(1500));
    let ann = handover_core::Agent::named("Ann").with_id("17");
    assert_eq!(
        next_event(session.events()).await,
        Event::AgentMessage {
            id: "7400".into(),
            text: "Your returns label".into(),
            agent: ann.clone(),
            attachments: vec![label.clone()]
        }
    );
    assert_eq!(
        next_event(session.events()).await,
        Event::AgentMessage { id: "7401".into(), text: String::new(), agent: ann, attachments: vec![label] },
        "a file without text is still a message"
    );
}
