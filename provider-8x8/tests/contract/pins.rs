//! wiremock pins of every request (`protocols/8x8.md` §4-5), error bodies (§7), and the
//! session's handling of signed deliveries: relay, deduplication, echoes, transfers,
//! out-of-order events, the end, and the catch-up after a resume.

use std::time::Duration;

use handover_core::{
    Agent, Attachment, EndReason, EndedBy, ErrorKind, Event, Provider, Session, UserInput, WebhookRequest,
};
use handover_emulator::eightbyeight::{DeliveryMeta, SigningKey};
use handover_testkit::mock::{body_json, header, requests_to, strict_server};
use handover_testkit::sample_request;
use handover_testkit::scenarios::{assert_stream_ended, events_until, next_event};
use provider_8x8::{ApiError, EightByEightConfig, EightByEightProvider};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate, Times};

use crate::harness::fast_retry;
use crate::signatures::{jwk_path, meta};

const CONV: &str = "/chat-gateway/v1/conversations";

/// Mounts `verb at` answering `response`, named `name`, expected `times` times.
async fn mount(
    server: &MockServer,
    verb: &str,
    at: &str,
    response: ResponseTemplate,
    name: &str,
    times: impl Into<Times>,
) {
    Mock::given(method(verb)).and(path(at)).respond_with(response).named(name).expect(times).mount(server).await;
}

/// How many requests each endpoint of [`server`] must see in a test.
#[derive(Default)]
struct Calls {
    jwk: u64,
    create: u64,
    message: u64,
    typing: u64,
    leave: u64,
    upload: u64,
}

async fn server(calls: Calls) -> MockServer {
    let server = strict_server().await;
    let key = SigningKey::shared();
    let jwk = ResponseTemplate::new(200).set_body_json(key.jwk());
    mount(&server, "GET", &jwk_path(key.kid()), jwk, "jwk", calls.jwk).await;
    let created = ResponseTemplate::new(202)
        .set_body_json(json!({ "conversationId": "ID-0", "createdAt": "2021-01-30T08:30:00Z" }));
    mount(&server, "POST", CONV, created, "create", calls.create).await;
    let messages = format!("{CONV}/ID-0/messages");
    mount(&server, "POST", &messages, ResponseTemplate::new(202), "message", calls.message).await;
    let typing = format!("{CONV}/ID-0/typing");
    mount(&server, "POST", &typing, ResponseTemplate::new(204), "typing", calls.typing).await;
    let leave = format!("{CONV}/ID-0/participants/user");
    mount(&server, "PATCH", &leave, ResponseTemplate::new(204), "leave", calls.leave).await;
    let uploaded = ResponseTemplate::new(200).set_body_json(json!({
        "id": "T6c-pPJYJoeiTZOJ4RxE",
        "filename": "invoice scan.png",
        "sizeInBytes": 6,
        "createdAt": "2021-01-30T08:30:00Z",
    }));
    mount(&server, "POST", UPLOAD, uploaded, "upload", calls.upload).await;
    server
}

const UPLOAD: &str = "/chat-gateway/v1/conversations/ID-0/attachments";

/// The exact multipart body of an upload of `data` named `name` of type `media_type`,
/// with the boundary the request's `content-type` announces.
fn upload_body(boundary: &str, name: &str, media_type: &str, data: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"attachment\"; filename=\"{name}\"\r\nContent-Type: {media_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"authorType\"\r\n\r\nuser\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    body
}

/// Mounts the participants read of a resume (once): the user, and `agent` with whether it
/// was removed.
async fn participants(server: &MockServer, (agent, removed): (&str, bool)) {
    let body = json!({ "_embedded": { "participants": [
        { "id": "user-42", "type": "user", "removed": false },
        { "id": agent, "type": "agent", "removed": removed },
    ] }, "page": { "size": 20, "number": 0, "totalElements": 2, "totalPages": 1 } });
    let path = format!("{CONV}/ID-0/participants");
    mount(server, "GET", &path, ResponseTemplate::new(200).set_body_json(body), "participants", 1).await;
}

fn config(server: &MockServer) -> EightByEightConfig {
    let mut config = EightByEightConfig::new("key-8x8", "chan-1")
        .with_base_url(server.uri())
        .with_tenant("tenant-1")
        .with_queue("112");
    config.additional_properties.insert("source".into(), "bot".into());
    config.agent_names.insert("agent-ann".into(), "Ann".into());
    config.agent_names.insert("agent-bob".into(), "Bob".into());
    config.transfer_grace_ms = 200;
    config
}

fn provider(config: EightByEightConfig) -> EightByEightProvider {
    EightByEightProvider::builder(config).retry(fast_retry()).build().unwrap()
}

async fn start(server: &MockServer) -> (EightByEightProvider, Session) {
    let provider = provider(config(server));
    let session = provider.start(sample_request()).await.expect("start");
    (provider, session)
}

fn event(event_type: &str, data: Option<Value>) -> Value {
    let mut body = json!({ "eventType": event_type, "conversationId": "ID-0", "timestamp": 1_713_100_000_000u64 });
    if let Some(data) = data {
        body["data"] = data;
    }
    body
}

fn signed(body: &Value, event_id: &str) -> WebhookRequest {
    let bytes = body.to_string().into_bytes();
    let meta = DeliveryMeta { event_id: event_id.to_owned(), ..meta() };
    let headers = SigningKey::shared().headers(&bytes, &meta);
    headers.into_iter().fold(WebhookRequest::post(bytes), |r, (k, v)| r.with_header(&k, v))
}

async fn deliver(provider: &EightByEightProvider, body: Value, event_id: &str) -> u16 {
    provider.webhook(signed(&body, event_id)).await.status
}

fn joined(id: &str) -> Value {
    event("MEMBERS_CHANGED", Some(json!({ "memberType": "agent", "change": "joined", "id": id })))
}
fn left(id: &str) -> Value {
    event("MEMBERS_CHANGED", Some(json!({ "memberType": "agent", "change": "left", "id": id })))
}
fn says(id: &str, text: &str) -> Value {
    event("MESSAGE", Some(json!({ "isEcho": false, "sender": { "id": id, "type": "agent" }, "text": text })))
}

fn ann() -> Agent {
    Agent::named("Ann").with_id("agent-ann")
}
fn bob() -> Agent {
    Agent::named("Bob").with_id("agent-bob")
}

#[tokio::test]
async fn start_creates_the_conversation_with_user_routing_and_history() {
    let server = server(Calls { create: 1, ..Calls::default() }).await;
    let _ = start(&server).await;
    let create = &requests_to(&server, "POST", CONV).await[0];
    assert_eq!(header(create, "x-api-key"), "key-8x8");
    assert_eq!(header(create, "x-8x8-tenant"), "tenant-1");
    assert_eq!(header(create, "accept"), "application/hal+json");
    assert_eq!(header(create, "content-type"), "application/json");
    assert_eq!(
        body_json(create),
        json!({
            "channelId": "chan-1",
            "user": {
                "userId": "user-42",
                "name": "Jane Doe",
                "email": "jane@example.com",
                "language": "en",
                "additionalProperties": [
                    { "key": "source", "value": "bot" },
                    { "key": "skills", "value": "billing" },
                    { "key": "botSessionId", "value": "bot-session-1" },
                ],
            },
            "assignment": { "type": "queue", "id": "112" },
            "history": { "messages": [
                { "authorType": "user", "text": "My invoice is wrong" },
                { "authorType": "bot", "text": "I can connect you to an agent." },
                { "authorType": "user", "text": "Ja, bitte — schnell 👍🏽" },
            ] },
        })
    );
}

#[tokio::test]
async fn messages_typing_and_presence_lines_are_posted() {
    let server = server(Calls { create: 1, message: 2, typing: 1, ..Calls::default() }).await;
    let (_provider, session) = start(&server).await;
    session.send(UserInput::message("u-1", "Hello — 你好")).await.unwrap();
    session.send(UserInput::Typing { on: true }).await.unwrap();
    session.send(UserInput::Typing { on: false }).await.unwrap();
    session.send(UserInput::Connected).await.unwrap();
    let messages = requests_to(&server, "POST", &format!("{CONV}/ID-0/messages")).await;
    assert_eq!(body_json(&messages[0]), json!({ "authorType": "user", "text": "Hello — 你好" }));
    assert_eq!(header(&messages[0], "x-api-key"), "key-8x8");
    assert_eq!(body_json(&messages[1]), json!({ "authorType": "bot", "text": "User joined the conversation" }));
    let typing = requests_to(&server, "POST", &format!("{CONV}/ID-0/typing")).await;
    assert_eq!(typing.len(), 1, "the Gateway has no stopped-typing call");
    assert_eq!(body_json(&typing[0]), json!({ "authorType": "user" }));
}

#[tokio::test]
async fn cancelling_removes_the_user_and_ends_the_stream() {
    let server = server(Calls { create: 1, leave: 1, ..Calls::default() }).await;
    let (_provider, mut session) = start(&server).await;
    session.end(EndReason::Cancelled).await.unwrap();
    let leave = requests_to(&server, "PATCH", &format!("{CONV}/ID-0/participants/user")).await;
    assert_eq!(body_json(&leave[0]), json!({ "removed": true }));
    assert_eq!(header(&leave[0], "x-8x8-tenant"), "tenant-1");
    assert_eq!(
        next_event(session.events()).await,
        Event::Ended { by: EndedBy::User, reason: Some("cancelled".into()) }
    );
    let error = session.send(UserInput::message("u-9", "late")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::SessionEnded);
}

#[tokio::test]
async fn check_reads_the_channel() {
    let server = strict_server().await;
    mount(
        &server,
        "GET",
        "/chat-gateway/v1/channels/chan-1",
        ResponseTemplate::new(200).set_body_json(json!({ "id": "chan-1", "type": "ChatAPI" })),
        "channel",
        1,
    )
    .await;
    provider(config(&server)).check().await.unwrap();
    let read = &requests_to(&server, "GET", "/chat-gateway/v1/channels/chan-1").await[0];
    assert_eq!(header(read, "x-api-key"), "key-8x8");
}

#[tokio::test]
async fn every_error_shape_becomes_a_typed_error() {
    for (status, body, kind, text) in [
        (
            400,
            json!({ "message": "Bad Request", "errors": [{ "code": "invalid_queue", "message": "Queue ID 112 is invalid." }] }),
            ErrorKind::InvalidInput,
            "invalid_queue: Queue ID 112 is invalid.",
        ),
        (
            400,
            json!({ "message": "Bad Request", "errors": { "code": "invalid_json_object", "message": "bad" }, "referenceId": "r-1" }),
            ErrorKind::InvalidInput,
            "invalid_json_object: bad (reference r-1)",
        ),
        (
            401,
            json!({ "message": "Access Denied", "errors": [{ "message": "Invalid key", "code": "access_denied" }], "referenceId": "r-2" }),
            ErrorKind::Unauthenticated,
            "check `api_key`",
        ),
        (
            403,
            json!({ "message": "The tenant does not belong to customer.", "errors": ["Header X-8x8-Tenant doesn't match tenant information for customerId=c"] }),
            ErrorKind::PermissionDenied,
            "Header X-8x8-Tenant doesn't match",
        ),
        (
            404,
            json!({ "message": "Resource of type Channel with id chan-1 was not found.", "errors": ["Tenant t does not belong to customer c"] }),
            ErrorKind::SessionNotFound,
            "was not found",
        ),
    ] {
        let server = strict_server().await;
        let refused = ResponseTemplate::new(status).set_body_json(body.clone());
        mount(&server, "POST", CONV, refused, "create", 1).await;
        let Err(error) = provider(config(&server)).start(sample_request()).await else { panic!("refused") };
        assert_eq!(error.kind(), kind, "{status} {body}");
        assert!(error.message().contains(text), "{status}: {}", error.message());
        let api = std::error::Error::source(&error).and_then(|s| s.downcast_ref::<ApiError>()).expect("typed body");
        assert_eq!(api.status, status);
        assert_eq!(requests_to(&server, "POST", CONV).await.len(), 1, "{status} is not retried");
    }
}

#[tokio::test]
async fn rate_limits_are_retried_and_a_missing_id_is_a_protocol_error() {
    let server = strict_server().await;
    Mock::given(method("POST"))
        .and(path(CONV))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .named("create: rate limited")
        .expect(1)
        .mount(&server)
        .await;
    let no_id = ResponseTemplate::new(202).set_body_json(json!({ "createdAt": "x" }));
    mount(&server, "POST", CONV, no_id, "create", 1).await;
    let Err(error) = provider(config(&server)).start(sample_request()).await else { panic!("no id") };
    assert_eq!(error.kind(), ErrorKind::Protocol);
    assert_eq!(requests_to(&server, "POST", CONV).await.len(), 2, "the 429 was retried");
}

#[tokio::test]
async fn agent_messages_are_relayed_once_and_echoes_dropped() {
    let server = server(Calls { jwk: 1, create: 1, ..Calls::default() }).await;
    let (provider, mut session) = start(&server).await;
    let queued = event("QUEUED", Some(json!({ "queueId": "112", "queueName": "Billing" })));
    assert_eq!(deliver(&provider, queued, "e-0").await, 200);
    assert_eq!(next_event(session.events()).await, Event::Queued { position: None, estimated_wait: None });
    assert_eq!(deliver(&provider, joined("agent-ann"), "e-1").await, 200);
    assert_eq!(next_event(session.events()).await, Event::AgentJoined { agent: ann() });
    assert_eq!(deliver(&provider, says("agent-ann", "Hi, I'm Ann"), "e-2").await, 200);
    assert_eq!(deliver(&provider, says("agent-ann", "Hi, I'm Ann"), "e-2").await, 200, "a redelivery is acknowledged");
    let echo = event(
        "MESSAGE",
        Some(json!({ "isEcho": false, "sender": { "id": "user-42", "type": "user" }, "text": "mine" })),
    );
    assert_eq!(deliver(&provider, echo, "e-3").await, 200);
    let typing = event(
        "ACTIVITY",
        Some(json!({ "name": "typing", "value": { "users": [{ "type": "agent", "id": "agent-ann" }] } })),
    );
    assert_eq!(deliver(&provider, typing, "e-4").await, 200);
    assert_eq!(deliver(&provider, says("agent-ann", "sentinel"), "e-5").await, 200);
    let events =
        events_until(session.events(), |e| matches!(e, Event::AgentMessage { text, .. } if text == "sentinel")).await;
    assert_eq!(
        events,
        [
            Event::AgentMessage { id: "e-2".into(), text: "Hi, I'm Ann".into(), agent: ann(), attachments: Vec::new() },
            Event::AgentTyping { on: true },
            Event::AgentMessage { id: "e-5".into(), text: "sentinel".into(), agent: ann(), attachments: Vec::new() },
        ]
    );
}

#[tokio::test]
async fn a_transfer_is_not_an_end_in_either_order() {
    let server = server(Calls { jwk: 1, create: 1, ..Calls::default() }).await;
    let (provider, mut session) = start(&server).await;
    deliver(&provider, joined("agent-ann"), "e-1").await;
    assert_eq!(next_event(session.events()).await, Event::AgentJoined { agent: ann() });
    // As documented: TRANSFER, then the leave, then the next agent.
    deliver(&provider, event("TRANSFER", None), "e-2").await;
    deliver(&provider, left("agent-ann"), "e-3").await;
    assert_eq!(next_event(session.events()).await, Event::AgentLeft { agent: ann(), transfer: true });
    deliver(&provider, joined("agent-bob"), "e-4").await;
    assert_eq!(next_event(session.events()).await, Event::AgentJoined { agent: bob() });
    // Out of order: the leave first, the TRANSFER within the grace period.
    deliver(&provider, left("agent-bob"), "e-5").await;
    deliver(&provider, event("TRANSFER", None), "e-6").await;
    assert_eq!(next_event(session.events()).await, Event::AgentLeft { agent: bob(), transfer: true });
    // Or only the next agent's join.
    deliver(&provider, joined("agent-ann"), "e-7").await;
    assert_eq!(next_event(session.events()).await, Event::AgentJoined { agent: ann() });
    deliver(&provider, left("agent-ann"), "e-8").await;
    deliver(&provider, joined("agent-bob"), "e-9").await;
    assert_eq!(next_event(session.events()).await, Event::AgentLeft { agent: ann(), transfer: true });
    assert_eq!(next_event(session.events()).await, Event::AgentJoined { agent: bob() });
    // A stale leave of the earlier agent changes nothing.
    deliver(&provider, left("agent-ann"), "e-10").await;
    deliver(&provider, says("agent-bob", "still here"), "e-11").await;
    assert!(matches!(next_event(session.events()).await, Event::AgentMessage { text, .. } if text == "still here"));
    assert!(requests_to(&server, "PATCH", &format!("{CONV}/ID-0/participants/user")).await.is_empty());
}

#[tokio::test]
async fn the_agent_leaving_ends_the_handover_and_frees_the_agent() {
    let server = server(Calls { jwk: 1, create: 1, leave: 1, ..Calls::default() }).await;
    let (provider, mut session) = start(&server).await;
    // A message may overtake its join.
    deliver(&provider, says("agent-ann", "early"), "e-1").await;
    assert_eq!(next_event(session.events()).await, Event::AgentJoined { agent: ann() });
    assert!(matches!(next_event(session.events()).await, Event::AgentMessage { text, .. } if text == "early"));
    deliver(&provider, joined("agent-ann"), "e-2").await;
    deliver(&provider, left("agent-ann"), "e-3").await;
    assert_eq!(next_event(session.events()).await, Event::AgentLeft { agent: ann(), transfer: false });
    assert_eq!(
        next_event(session.events()).await,
        Event::Ended { by: EndedBy::Agent, reason: Some("the agent left the conversation".into()) }
    );
    let leave = requests_to(&server, "PATCH", &format!("{CONV}/ID-0/participants/user")).await;
    assert_eq!(leave.len(), 1);
    assert_eq!(body_json(&leave[0]), json!({ "removed": true }));
    // Late deliveries for the ended handover are acknowledged, not refused.
    assert_eq!(deliver(&provider, says("agent-ann", "late"), "e-4").await, 200);
    assert_stream_ended(session.events()).await;
}

#[tokio::test]
async fn leave_after_agent_can_be_turned_off_and_a_removed_user_ends_it() {
    let server = server(Calls { jwk: 1, create: 1, ..Calls::default() }).await;
    let mut config = config(&server);
    config.leave_after_agent = false;
    let provider = provider(config);
    let mut session = provider.start(sample_request()).await.unwrap();
    let user_left = event("MEMBERS_CHANGED", Some(json!({ "memberType": "user", "change": "left", "id": "user-42" })));
    deliver(&provider, user_left, "e-1").await;
    assert_eq!(
        next_event(session.events()).await,
        Event::Ended { by: EndedBy::System, reason: Some("the user was removed from the conversation".into()) }
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(requests_to(&server, "PATCH", &format!("{CONV}/ID-0/participants/user")).await.is_empty());
}

#[tokio::test]
async fn deliveries_without_a_live_session_are_kept_and_strangers_acknowledged() {
    let server = server(Calls { jwk: 1, ..Calls::default() }).await;
    let provider = provider(config(&server));
    assert_eq!(deliver(&provider, says("agent-ann", "nobody"), "e-1").await, 200, "kept for its session");
    let unknown = json!({ "eventType": "SOMETHING_NEW", "conversationId": "ID-9" });
    assert_eq!(deliver(&provider, unknown, "e-5").await, 200, "an unknown event type is acknowledged");
    let stranger = json!({ "eventType": "MESSAGE", "data": {} });
    assert_eq!(deliver(&provider, stranger, "e-6").await, 200, "no conversation: acknowledged");
    let verify = json!({ "notificationVersion": "Chat Gateway v1.0", "eventType": "WEB_HOOK_VERIFY" });
    assert_eq!(deliver(&provider, verify, "e-2").await, 200);
    let mut get = signed(&json!({}), "e-3");
    get.method = "GET".into();
    assert_eq!(provider.webhook(get).await.status, 405);
    assert_eq!(deliver(&provider, json!({ "no": "type" }), "e-4").await, 400);
}

#[tokio::test]
async fn a_resumed_session_catches_up_and_drops_redeliveries() {
    // One key fetch per provider: the first and the resumed one.
    let server = server(Calls { jwk: 2, create: 1, ..Calls::default() }).await;
    participants(&server, ("agent-bob", false)).await;
    let (provider, mut session) = start(&server).await;
    deliver(&provider, joined("agent-ann"), "e-1").await;
    deliver(&provider, says("agent-ann", "before"), "e-2").await;
    let _ = events_until(session.events(), |e| matches!(e, Event::AgentMessage { .. })).await;
    let snapshot = session.snapshot().unwrap();
    drop(session);

    // A new process: a fresh provider, and the last delivery comes again.
    let provider = self::provider(config(&server));
    let mut resumed = provider.resume(snapshot).await.unwrap();
    assert_eq!(next_event(resumed.events()).await, Event::AgentLeft { agent: ann(), transfer: true });
    assert_eq!(next_event(resumed.events()).await, Event::AgentJoined { agent: bob() });
    assert_eq!(deliver(&provider, says("agent-ann", "before"), "e-2").await, 200);
    deliver(&provider, says("agent-bob", "after"), "e-3").await;
    assert_eq!(
        next_event(resumed.events()).await,
        Event::AgentMessage { id: "e-3".into(), text: "after".into(), agent: bob(), attachments: Vec::new() }
    );
    let participants = requests_to(&server, "GET", &format!("{CONV}/ID-0/participants")).await;
    assert_eq!(header(&participants[0], "x-api-key"), "key-8x8");
}

#[tokio::test]
async fn a_session_resumed_while_the_agent_leave_is_pending_still_ends() {
    // Only the first provider verifies a delivery; the resumed one receives none.
    let server = server(Calls { jwk: 1, create: 1, leave: 1, ..Calls::default() }).await;
    participants(&server, ("agent-ann", true)).await;
    let (provider, mut session) = start(&server).await;
    deliver(&provider, joined("agent-ann"), "e-1").await;
    assert_eq!(next_event(session.events()).await, Event::AgentJoined { agent: ann() });
    // The leave waits out the transfer grace period; the process dies during it.
    deliver(&provider, left("agent-ann"), "e-2").await;
    // A last line of the leaving agent: once it is out, the leave before it was handled.
    deliver(&provider, says("agent-ann", "bye"), "e-3").await;
    assert_eq!(
        next_event(session.events()).await,
        Event::AgentMessage { id: "e-3".into(), text: "bye".into(), agent: ann(), attachments: Vec::new() }
    );
    let snapshot = session.snapshot().unwrap();
    drop(session);
    drop(provider);

    let provider = self::provider(config(&server));
    let mut resumed = provider.resume(snapshot).await.unwrap();
    assert_eq!(next_event(resumed.events()).await, Event::AgentLeft { agent: ann(), transfer: false });
    assert_eq!(
        next_event(resumed.events()).await,
        Event::Ended { by: EndedBy::Agent, reason: Some("the agent left the conversation".into()) }
    );
    assert_stream_ended(resumed.events()).await;
}

#[tokio::test]
async fn configuration_mistakes_are_explained() {
    for (config, text) in [
        (EightByEightConfig::new("k", "c").with_base_url("https://api.8x8.com/chat-gateway/v1"), "host only"),
        (EightByEightConfig::new("", "c"), "`api_key` is empty"),
        (EightByEightConfig::new("k", " "), "`channel_id` is empty"),
        (EightByEightConfig::new("k", "c").with_base_url("http://api.example.com"), "http"),
    ] {
        let Err(error) = EightByEightProvider::new(config) else { panic!("refused") };
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(error.message().contains(text), "{}", error.message());
    }
    let unknown =
        serde_json::from_value::<EightByEightConfig>(json!({ "api_key": "k", "channel_id": "c", "queue": "q" }));
    assert!(unknown.unwrap_err().to_string().contains("unknown field `queue`"));
}

#[tokio::test]
async fn a_file_is_uploaded_then_sent_in_a_message_with_its_caption() {
    let server = server(Calls { create: 1, upload: 2, message: 2, ..Calls::default() }).await;
    let (_provider, session) = start(&server).await;
    let data = vec![0x89, b'P', b'N', b'G', 0, 0xff];
    let file = Attachment::bytes("invoice scan.png", "image/png", data.clone()).with_caption("My invoice — page 1");
    session.send(UserInput::attachment("file-1", file)).await.unwrap();
    let plain = Attachment::bytes("notes \"v2\".txt", "text/plain", b"hello".to_vec());
    session.send(UserInput::attachment("file-2", plain)).await.unwrap();

    let all: Vec<String> =
        server.received_requests().await.unwrap().iter().map(|r| format!("{} {}", r.method, r.url.path())).collect();
    let message_path = format!("{CONV}/ID-0/messages");
    assert_eq!(
        all[1..],
        [
            format!("POST {UPLOAD}"),
            format!("POST {message_path}"),
            format!("POST {UPLOAD}"),
            format!("POST {message_path}")
        ],
        "each file is uploaded, then referenced"
    );

    let uploads = requests_to(&server, "POST", UPLOAD).await;
    for (upload, (name, media_type, data)) in uploads
        .iter()
        .zip([("invoice scan.png", "image/png", &data[..]), ("notes \\\"v2\\\".txt", "text/plain", b"hello")])
    {
        assert_eq!(header(upload, "x-api-key"), "key-8x8");
        assert_eq!(header(upload, "x-8x8-tenant"), "tenant-1");
        assert_eq!(header(upload, "accept"), "application/hal+json");
        let content_type = header(upload, "content-type");
        let boundary = content_type.strip_prefix("multipart/form-data; boundary=").expect(content_type);
        assert_eq!(
            String::from_utf8_lossy(&upload.body),
            String::from_utf8_lossy(&upload_body(boundary, name, media_type, data)),
        );
        assert_eq!(upload.body, upload_body(boundary, name, media_type, data), "the exact bytes");
    }

    let messages = requests_to(&server, "POST", &message_path).await;
    assert_eq!(header(&messages[0], "content-type"), "application/json");
    assert_eq!(
        body_json(&messages[0]),
        json!({ "authorType": "user", "text": "My invoice — page 1", "attachments": [{ "id": "T6c-pPJYJoeiTZOJ4RxE" }] })
    );
    assert_eq!(
        body_json(&messages[1]),
        json!({ "authorType": "user", "attachments": [{ "id": "T6c-pPJYJoeiTZOJ4RxE" }] }),
        "no caption, no text"
    );
}

#[tokio::test]
async fn a_refused_upload_is_invalid_input_and_sends_no_message() {
    for (status, text) in [(413, "larger than the Chat Gateway accepts"), (415, "does not accept this type of file")] {
        let server = server(Calls { create: 1, ..Calls::default() }).await;
        let refused = ResponseTemplate::new(status).set_body_json(json!({
            "message": "Bad Request",
            "errors": [{ "code": "invalid_attachment", "message": "The attachment was refused." }],
        }));
        Mock::given(method("POST"))
            .and(path(UPLOAD))
            .respond_with(refused)
            .with_priority(1)
            .named("upload: refused")
            .expect(1)
            .mount(&server)
            .await;
        let (_provider, session) = start(&server).await;
        let file = Attachment::bytes("big.png", "image/png", vec![7; 64]);
        let error = session.send(UserInput::attachment("file-1", file)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{status}: {error}");
        assert!(error.message().contains(text), "{status}: {}", error.message());
        assert!(error.message().contains("invalid_attachment: The attachment was refused."), "{}", error.message());
        assert_eq!(requests_to(&server, "POST", UPLOAD).await.len(), 1, "{status} is not retried");
        // The strict server proves that no message followed.
    }
}

#[tokio::test]
async fn an_upload_answer_without_an_id_is_a_protocol_error() {
    let server = server(Calls { create: 1, ..Calls::default() }).await;
    let no_id = ResponseTemplate::new(200).set_body_json(json!({ "filename": "a.png", "sizeInBytes": 1 }));
    Mock::given(method("POST"))
        .and(path(UPLOAD))
        .respond_with(no_id)
        .with_priority(1)
        .named("upload: no id")
        .expect(1)
        .mount(&server)
        .await;
    let (_provider, session) = start(&server).await;
    let error = session.send(UserInput::attachment("file-1", Attachment::bytes("a.png", "image/png", vec![1]))).await;
    assert_eq!(error.unwrap_err().kind(), ErrorKind::Protocol);
}

#[tokio::test]
async fn agent_files_arrive_as_urls_with_the_caption_as_text() {
    let server = server(Calls { jwk: 1, create: 1, ..Calls::default() }).await;
    let (provider, mut session) = start(&server).await;
    deliver(&provider, joined("agent-ann"), "e-1").await;
    let url = "https://storage.example.com/attachments/att-7?X-Amz-Signature=t0k3n";
    let file = |text: Option<&str>| {
        let mut data = json!({
            "isEcho": false,
            "sender": { "id": "agent-ann", "type": "agent" },
            "attachments": [{ "id": "att-7", "type": "file", "preSignedUrl": url, "fileName": "returns-label.pdf" }],
        });
        if let Some(text) = text {
            data["text"] = json!(text);
        }
        event("MESSAGE", Some(data))
    };
    deliver(&provider, file(Some("Your returns label")), "e-2").await;
    deliver(&provider, file(None), "e-3").await;
    let events = events_until(session.events(), |e| matches!(e, Event::AgentMessage { id, .. } if id == "e-3")).await;
    let label = Attachment::url("returns-label.pdf", "application/pdf", url);
    assert_eq!(
        events,
        [
            Event::AgentJoined { agent: ann() },
            Event::AgentMessage {
                id: "e-2".into(),
                text: "Your returns label".into(),
                agent: ann(),
                attachments: vec![label.clone()]
            },
            Event::AgentMessage { id: "e-3".into(), text: String::new(), agent: ann(), attachments: vec![label] },
        ]
    );
    assert!(!format!("{events:?}").contains("t0k3n"), "Debug hides the URL's signature");
}
