//! wiremock pins of every request (`protocols/genesys.md` §3, §4, §12), the webhook router,
//! and end detection over a scripted notifications socket.

use std::sync::Arc;

use base64::Engine as _;
use handover_core::{EndReason, EndedBy, ErrorKind, Event, Provider, Session, UserInput, WebhookRequest};
use handover_testkit::mock::{body_json, header, requests_to, strict_server};
use handover_testkit::sample_request;
use handover_testkit::scenarios::{events_until, next_event};
use handover_testkit::ws_server::WsServer;
use handover_transport::ws::WsConfig;
use provider_genesys::{GenesysConfig, GenesysProvider, webhook};
use serde_json::{Value, json};
use wiremock::matchers::{body_string, header as has_header, method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::fast_retry;

const INTEGRATION: &str = "int-0001";
const SECRET: &str = "whsec-test";
const MESSAGE_PATH: &str = "/api/v2/conversations/messages/int-0001/inbound/open/message";

struct Rig {
    server: MockServer,
    socket: WsServer,
}

/// How many requests each endpoint of a [`Rig`] must see in a test.
#[derive(Default)]
struct Calls {
    token: u64,
    message: u64,
    channel: u64,
    subscriptions: u64,
    integration: u64,
    user: u64,
}

impl Calls {
    /// A `start`: one token, the first message, a notification channel and its topics.
    fn start() -> Self {
        Self { token: 1, message: 1, channel: 1, subscriptions: 1, ..Self::default() }
    }
}

impl Rig {
    /// The API and the notifications socket, each endpoint expecting its count of `calls`.
    async fn new(calls: Calls) -> Self {
        let server = strict_server().await;
        let socket = WsServer::start().await;
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({ "access_token": "tok-1", "token_type": "bearer", "expires_in": 86400 })),
            )
            .named("token")
            .expect(calls.token)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(MESSAGE_PATH))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({ "id": "gid", "type": "Text", "conversationId": "conv-1" })),
            )
            .named("inbound message")
            .expect(calls.message)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/api/v2/notifications/channels"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "id": "streaming-0-abc",
                "connectUri": format!("{}/channels/streaming-0-abc", socket.url()),
                "expires": "2026-11-25T12:00:00.000Z",
            })))
            .named("create channel")
            .expect(calls.channel)
            .mount(&server)
            .await;
        Mock::given(path("/api/v2/notifications/channels/streaming-0-abc/subscriptions"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "entities": [] })))
            .named("subscriptions")
            .expect(calls.subscriptions)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/api/v2/conversations/messaging/integrations/open/{INTEGRATION}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": INTEGRATION, "name": "Bot" })))
            .named("integration")
            .expect(calls.integration)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex("^/api/v2/users/"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "user-ann", "name": "Ann Agent" })))
            .named("user")
            .expect(calls.user)
            .mount(&server)
            .await;
        Self { server, socket }
    }

    fn config(&self) -> GenesysConfig {
        let mut config = GenesysConfig::new("eu_central_1", "client-1", "client-secret-1", INTEGRATION, SECRET);
        config.login_url = Some(self.server.uri());
        config.api_url = Some(self.server.uri());
        config.language = Some("english".into());
        config.skills = vec!["escalation".into()];
        config.priority = Some(1);
        config.custom_attributes.insert("queueId".into(), json!("q-77"));
        config.custom_attributes.insert("vip".into(), json!(true));
        config.transfer_grace_ms = 200;
        config.end_drain_ms = 50;
        config
    }

    fn provider(&self, f: impl FnOnce(&mut GenesysConfig)) -> GenesysProvider {
        let mut config = self.config();
        f(&mut config);
        let ws = WsConfig::default().with_reconnect(fast_retry().with_max_attempts(20));
        GenesysProvider::builder(config).ws(ws).retry(fast_retry()).build().unwrap()
    }
}

fn signed(body: &Value) -> WebhookRequest {
    let bytes = body.to_string().into_bytes();
    let signature = webhook::sign(SECRET.as_bytes(), &bytes);
    WebhookRequest::post(bytes).with_header("X-Hub-Signature-256", signature)
}

fn outbound(to: &str, id: &str, kind: &str, extra: Value) -> Value {
    let mut body = json!({
        "id": id,
        "channel": { "id": INTEGRATION, "platform": "Open", "type": "Private", "to": { "id": to, "idType": "Opaque" }, "time": format!("2026-01-21T16:47:08.{:03}Z", id.len()) },
        "type": kind,
        "direction": "Outbound",
        "conversationId": "conv-1",
    });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

fn customer_id(rig_requests: &[wiremock::Request]) -> String {
    body_json(&rig_requests[0])["channel"]["from"]["id"].as_str().unwrap().to_owned()
}

async fn start(provider: &GenesysProvider) -> Session {
    provider.start(sample_request()).await.expect("start")
}

#[tokio::test]
async fn one_token_with_basic_auth_serves_every_session() {
    // Two sessions, one token, one channel.
    let rig = Rig::new(Calls { message: 2, ..Calls::start() }).await;
    let provider = rig.provider(|_| {});
    let _a = start(&provider).await;
    let _b = start(&provider).await;
    let tokens = requests_to(&rig.server, "POST", "/oauth/token").await;
    assert_eq!(tokens.len(), 1, "the token is shared");
    assert_eq!(provider.token_requests(), 1);
    let basic = base64::engine::general_purpose::STANDARD.encode("client-1:client-secret-1");
    assert_eq!(header(&tokens[0], "authorization"), format!("Basic {basic}"));
    assert_eq!(header(&tokens[0], "content-type"), "application/x-www-form-urlencoded");
    assert_eq!(String::from_utf8_lossy(&tokens[0].body), "grant_type=client_credentials");
}

#[tokio::test]
async fn the_first_message_carries_the_customer_and_the_routing_attributes_and_asks_for_the_conversation_id() {
    let rig = Rig::new(Calls::start()).await;
    let _session = start(&rig.provider(|_| {})).await;
    let sent = requests_to(&rig.server, "POST", MESSAGE_PATH).await;
    let first = &sent[0];
    assert_eq!(header(first, "authorization"), "Bearer tok-1");
    assert_eq!(first.url.query(), Some("prefetchConversationId=true"));
    let body = body_json(first);
    let channel = &body["channel"];
    let from = channel["from"]["id"].as_str().unwrap();
    assert!(
        from.starts_with("handover-") && uuid::Uuid::parse_str(&from[9..]).is_ok(),
        "a fresh id per handover: {from}"
    );
    assert_eq!(
        channel["from"],
        json!({ "id": from, "idType": "Opaque", "nickname": "Jane Doe", "firstName": "Jane", "lastName": "Doe", "email": "jane@example.com" })
    );
    assert!(handover_transport::time::parse_iso8601_millis(channel["time"].as_str().unwrap()).is_some());
    assert!(channel["messageId"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(
        channel["metadata"]["customAttributes"],
        json!({ "myLanguage": "english", "mySkills": "escalation,billing", "myPriority": "1", "queueId": "q-77", "vip": "true", "userId": "user-42" }),
        "string values under the configured keys, config and request merged"
    );
    assert_eq!(
        body["text"],
        "User: My invoice is wrong\nBot: I can connect you to an agent.\nUser: Ja, bitte — schnell 👍🏽"
    );
}

#[tokio::test]
async fn attribute_keys_are_configurable_and_no_transcript_sends_the_handover_message() {
    let rig = Rig::new(Calls::start()).await;
    let provider = rig.provider(|c| {
        c.language_attribute = "lang".into();
        c.skills_attribute = "skillset".into();
        c.priority_attribute = "prio".into();
        c.send_transcript = false;
    });
    let _session = start(&provider).await;
    let body = body_json(&requests_to(&rig.server, "POST", MESSAGE_PATH).await[0]);
    let attributes = body["channel"]["metadata"]["customAttributes"].as_object().unwrap();
    assert!(attributes.contains_key("lang") && attributes.contains_key("skillset") && attributes.contains_key("prio"));
    assert_eq!(body["text"], "The customer asked for a human agent.");
}

#[tokio::test]
async fn the_conversation_is_watched_on_a_fresh_channel_with_its_three_topics() {
    let rig = Rig::new(Calls::start()).await;
    let _session = start(&rig.provider(|_| {})).await;
    assert_eq!(requests_to(&rig.server, "POST", "/api/v2/notifications/channels").await.len(), 1);
    let subscriptions =
        requests_to(&rig.server, "PUT", "/api/v2/notifications/channels/streaming-0-abc/subscriptions").await;
    assert_eq!(
        body_json(&subscriptions[0]),
        json!([
            { "id": "v2.detail.events.conversation.conv-1.user.start" },
            { "id": "v2.detail.events.conversation.conv-1.user.end" },
            { "id": "v2.detail.events.conversation.conv-1.customer.end" },
        ])
    );
    assert_eq!(rig.socket.connections()[0].uri, "/channels/streaming-0-abc");
}

#[tokio::test]
async fn user_messages_and_typing_are_inbound_calls() {
    // The first message and the user's.
    let rig = Rig::new(Calls { message: 2, ..Calls::start() }).await;
    Mock::given(method("POST"))
        .and(path("/api/v2/conversations/messages/int-0001/inbound/open/event"))
        .respond_with(ResponseTemplate::new(200))
        .named("typing event")
        .expect(1)
        .mount(&rig.server)
        .await;
    let session = start(&rig.provider(|c| c.send_transcript = false)).await;
    session.send(UserInput::message("m1", "Where is my refund?")).await.unwrap();
    session.send(UserInput::Typing { on: true }).await.unwrap();
    let sent = requests_to(&rig.server, "POST", MESSAGE_PATH).await;
    let from = customer_id(&sent);
    let second = body_json(&sent[1]);
    assert_eq!(second["text"], "Where is my refund?");
    assert_eq!(second["channel"]["from"]["id"], from.as_str());
    // The message id is derived from the input's id: a resend carries the same one.
    assert_eq!(second["channel"]["messageId"], handover_transport::ids::client_uuid(&from, "m1").as_str());
    assert!(second["channel"].get("metadata").is_none(), "attributes only once");
    assert_eq!(sent[1].url.query(), None);
    let typing = body_json(
        &requests_to(&rig.server, "POST", "/api/v2/conversations/messages/int-0001/inbound/open/event").await[0],
    );
    assert_eq!(typing["events"], json!([{ "eventType": "Typing" }]));
    assert_eq!(typing["channel"]["from"], json!({ "id": from, "idType": "Opaque" }));
}

#[tokio::test]
async fn ending_sends_a_final_message_then_disconnects_the_customer_participant() {
    // The first message and the final one.
    let rig = Rig::new(Calls { message: 2, ..Calls::start() }).await;
    Mock::given(method("GET"))
        .and(path("/api/v2/conversations/messages/conv-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "conv-1", "participants": [
            { "id": "p-cust", "purpose": "customer", "state": "connected" },
            { "id": "p-agent", "purpose": "agent", "state": "connected" },
        ] })))
        .named("conversation")
        .expect(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v2/conversations/messages/conv-1/participants/p-cust"))
        .and(body_string(r#"{"state":"disconnected"}"#))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .named("disconnect the customer")
        .mount(&rig.server)
        .await;
    let mut session = start(&rig.provider(|c| c.send_transcript = false)).await;
    session.end(EndReason::Cancelled).await.unwrap();
    let sent = requests_to(&rig.server, "POST", MESSAGE_PATH).await;
    assert_eq!(body_json(sent.last().unwrap())["text"], "The customer left the conversation.");
    let events = events_until(session.events(), Event::is_terminal).await;
    assert!(matches!(events.last(), Some(Event::Ended { by: EndedBy::User, .. })));
}

#[tokio::test]
async fn a_401_renews_the_shared_token_once_and_retries() {
    // The token renewed once, the message sent again with it.
    let rig = Rig::new(Calls { token: 2, message: 2, ..Calls::start() }).await;
    let session = start(&rig.provider(|c| c.send_transcript = false)).await;
    Mock::given(method("POST"))
        .and(path(MESSAGE_PATH))
        .and(has_header("authorization", "Bearer tok-1"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({ "message": "token expired", "code": "authentication.required" })),
        )
        .with_priority(1)
        .up_to_n_times(1)
        .named("inbound message: expired token")
        .expect(1)
        .mount(&rig.server)
        .await;
    session.send(UserInput::message("m1", "hello")).await.expect("sent after renewal");
    assert_eq!(requests_to(&rig.server, "POST", "/oauth/token").await.len(), 2);
}

#[tokio::test]
async fn a_bad_request_fails_the_start_with_the_platform_error() {
    let server = strict_server().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "access_token": "t", "expires_in": 86400 })))
        .named("token")
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(MESSAGE_PATH))
        .and(query_param("prefetchConversationId", "true"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({ "message": "The request could not be understood.", "code": "bad.request", "status": 400, "contextId": "ctx-9" })))
        .named("inbound message: bad request")
        .expect(1)
        .mount(&server)
        .await;
    let mut config = GenesysConfig::new("eu_central_1", "c", "s", INTEGRATION, SECRET);
    config.login_url = Some(server.uri());
    config.api_url = Some(server.uri());
    let provider = GenesysProvider::builder(config).retry(fast_retry()).build().unwrap();
    let error = provider.start(sample_request()).await.expect_err("400");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.to_string().contains("bad.request") && error.to_string().contains("ctx-9"), "{error}");
    assert_eq!(error.op(), "start conversation");
}

#[tokio::test]
async fn wrong_client_credentials_are_unauthenticated() {
    let server = strict_server().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({ "error": "invalid_client" })))
        .named("token: refused")
        .expect(1)
        .mount(&server)
        .await;
    let mut config = GenesysConfig::new("x.example", "c", "wrong-secret", INTEGRATION, SECRET);
    config.login_url = Some(server.uri());
    config.api_url = Some(server.uri());
    let error = GenesysProvider::new(config).unwrap().check().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated);
    assert!(!error.to_string().contains("wrong-secret"));
}

#[tokio::test]
async fn the_webhook_verifies_deduplicates_and_routes_agent_messages() {
    let rig = Rig::new(Calls::start()).await;
    let provider = rig.provider(|c| c.send_transcript = false);
    let mut session = start(&provider).await;
    let to = customer_id(&requests_to(&rig.server, "POST", MESSAGE_PATH).await);

    let text = outbound(&to, "g-1", "Text", json!({ "text": "Hello from Ann", "originatingEntity": "Human" }));
    assert_eq!(provider.webhook(signed(&text)).await.status, 200);
    assert_eq!(provider.webhook(signed(&text)).await.status, 200, "a redelivery is acknowledged");

    let mut tampered = signed(&text);
    tampered.body = outbound(&to, "g-evil", "Text", json!({ "text": "injected" })).to_string().into_bytes();
    assert_eq!(provider.webhook(tampered).await.status, 401);
    let unsigned = WebhookRequest::post(outbound(&to, "g-2", "Text", json!({ "text": "unsigned" })).to_string());
    assert_eq!(provider.webhook(unsigned).await.status, 401);
    assert_eq!(provider.webhook(signed(&json!({ "not": "a message" }))).await.status, 400);
    assert_eq!(provider.webhook(signed(&text).with_method("GET")).await.status, 405);

    let bot = outbound(&to, "g-3", "Text", json!({ "text": "flow says hi", "originatingEntity": "Bot" }));
    assert_eq!(provider.webhook(signed(&bot)).await.status, 200);
    let typing = outbound(&to, "g-4", "Event", json!({ "events": [{ "eventType": "Typing" }] }));
    provider.webhook(signed(&typing)).await;
    let receipt = outbound(&to, "g-5", "Receipt", json!({ "status": "Delivered" }));
    provider.webhook(signed(&receipt)).await;
    let last = outbound(&to, "g-6", "Text", json!({ "text": "last", "originatingEntity": "Human" }));
    provider.webhook(signed(&last)).await;

    let events =
        events_until(session.events(), |e| matches!(e, Event::AgentMessage { text, .. } if text == "last")).await;
    let relevant: Vec<&Event> = events.iter().filter(|e| !matches!(e, Event::Queued { .. })).collect();
    assert_eq!(relevant.len(), 3, "{events:?}");
    assert!(matches!(relevant[0], Event::AgentMessage { id, text, .. } if id == "g-1" && text == "Hello from Ann"));
    assert_eq!(*relevant[1], Event::AgentTyping { on: true });
    assert!(
        matches!(relevant[2], Event::AgentMessage { text, .. } if text == "last"),
        "the bot message was suppressed"
    );
}

#[tokio::test]
async fn bot_messages_are_forwarded_when_configured() {
    let rig = Rig::new(Calls::start()).await;
    let provider = rig.provider(|c| {
        c.send_transcript = false;
        c.forward_bot_messages = true;
    });
    let mut session = start(&provider).await;
    let to = customer_id(&requests_to(&rig.server, "POST", MESSAGE_PATH).await);
    provider
        .webhook(signed(&outbound(&to, "g-b", "Text", json!({ "text": "flow says hi", "originatingEntity": "Bot" }))))
        .await;
    let event = next_event(session.events()).await;
    assert!(
        matches!(event, Event::AgentMessage { text, agent, .. } if text == "flow says hi" && agent.name.as_deref() == Some("Bot"))
    );
}

fn frame(kind: &str, body: Value) -> String {
    json!({ "topicName": format!("v2.detail.events.conversation.conv-1.{kind}"), "version": "2", "eventBody": body })
        .to_string()
}

#[tokio::test]
async fn participant_changes_arrive_over_the_socket_and_a_requeue_is_not_an_end() {
    // Each agent's name is read when the agent starts.
    let rig = Rig::new(Calls { user: 3, ..Calls::start() }).await;
    let mut session = start(&rig.provider(|c| c.send_transcript = false)).await;
    rig.socket.wait_until(|c| !c.is_empty()).await;
    rig.socket.send_text(
        json!({ "topicName": "channel.metadata", "eventBody": { "message": "WebSocket Heartbeat" } }).to_string(),
    );
    rig.socket.send_text(frame("user.start", json!({ "participantId": "pa", "userId": "user-ann" })));
    assert!(
        matches!(next_event(session.events()).await, Event::AgentJoined { agent } if agent.name.as_deref() == Some("Ann Agent"))
    );
    rig.socket.send_text(frame("user.end", json!({ "participantId": "pa", "disconnectType": "FORWARD_TRANSFER" })));
    assert!(matches!(next_event(session.events()).await, Event::AgentLeft { transfer: true, .. }));
    rig.socket.send_text(frame("user.start", json!({ "participantId": "pb", "userId": "user-bob" })));
    assert!(matches!(next_event(session.events()).await, Event::AgentJoined { .. }));
    // A plain end followed quickly by a new agent is a requeue.
    rig.socket.send_text(frame("user.end", json!({ "participantId": "pb", "disconnectType": "CLIENT" })));
    rig.socket.send_text(frame("user.start", json!({ "participantId": "pc", "userId": "user-cid" })));
    assert!(matches!(next_event(session.events()).await, Event::AgentLeft { transfer: true, .. }));
    assert!(matches!(next_event(session.events()).await, Event::AgentJoined { .. }));
    // An offer never accepted (no start for the participant) is not a leave.
    rig.socket.send_text(frame("user.end", json!({ "participantId": "never-started", "disconnectType": "CLIENT" })));
    // The agent ends: after the grace period the handover ends.
    rig.socket.send_text(frame("user.end", json!({ "participantId": "pc", "disconnectType": "CLIENT" })));
    assert!(matches!(next_event(session.events()).await, Event::Ended { by: EndedBy::Agent, .. }));
}

#[tokio::test]
async fn an_end_while_the_socket_was_down_is_found_by_the_resync() {
    // A new channel, its topics and the agent's name after the socket came back.
    let rig = Rig::new(Calls { channel: 2, subscriptions: 2, user: 1, ..Calls::start() }).await;
    let mut session = start(&rig.provider(|c| c.send_transcript = false)).await;
    rig.socket.wait_until(|c| !c.is_empty()).await;
    rig.socket.send_text(frame("user.start", json!({ "participantId": "pa", "userId": "user-ann" })));
    assert!(matches!(next_event(session.events()).await, Event::AgentJoined { .. }));
    Mock::given(method("GET"))
        .and(path("/api/v2/conversations/messages/conv-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "conv-1", "participants": [
            { "id": "p-cust", "purpose": "customer", "state": "disconnected", "disconnectType": "peer" },
            { "id": "pa", "purpose": "agent", "state": "disconnected", "disconnectType": "client" },
        ] })))
        .expect(1..)
        .named("conversation after the drop")
        .mount(&rig.server)
        .await;
    assert!(rig.socket.drop_current());
    let events = events_until(session.events(), Event::is_terminal).await;
    assert!(matches!(events.last(), Some(Event::Ended { by: EndedBy::Agent, .. })), "{events:?}");
    assert!(requests_to(&rig.server, "POST", "/api/v2/notifications/channels").await.len() >= 2, "a fresh channel");
}

#[tokio::test]
async fn a_session_resumed_while_the_agent_end_is_pending_still_ends() {
    // The resumed provider takes its own token, channel and topics.
    let rig = Rig::new(Calls { token: 2, channel: 2, subscriptions: 2, user: 1, ..Calls::start() }).await;
    let mut session = start(&rig.provider(|c| c.send_transcript = false)).await;
    rig.socket.wait_until(|c| !c.is_empty()).await;
    rig.socket.send_text(frame("user.start", json!({ "participantId": "pa", "userId": "user-ann" })));
    assert!(matches!(next_event(session.events()).await, Event::AgentJoined { .. }));
    // The agent ends; the end waits out the requeue grace period and the process dies during it.
    rig.socket.send_text(frame("user.end", json!({ "participantId": "pa", "disconnectType": "CLIENT" })));
    let pending = async {
        loop {
            let snapshot = session.snapshot().unwrap();
            if !serde_json::to_value(&snapshot).unwrap()["state"]["pending_end"].is_null() {
                break snapshot;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    let snapshot = tokio::time::timeout(std::time::Duration::from_secs(10), pending)
        .await
        .expect("the snapshot keeps the pending end");
    drop(session);
    // Nothing more happens at Genesys: the customer is still connected.
    Mock::given(method("GET"))
        .and(path("/api/v2/conversations/messages/conv-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "conv-1", "participants": [
            { "id": "p-cust", "purpose": "customer", "state": "connected" },
            { "id": "pa", "purpose": "agent", "state": "disconnected", "disconnectType": "client" },
        ] })))
        .named("conversation after the resume")
        .expect(1)
        .mount(&rig.server)
        .await;
    let provider = rig.provider(|c| c.send_transcript = false);
    let mut resumed = provider.resume(snapshot).await.unwrap();
    let events = events_until(resumed.events(), Event::is_terminal).await;
    assert!(matches!(events.as_slice(), [Event::Ended { by: EndedBy::Agent, .. }]), "{events:?}");
}

#[tokio::test]
async fn deliveries_no_session_owns_yet_are_kept_for_the_one_that_registers() {
    let rig = Rig::new(Calls::start()).await;
    let provider = Arc::new(rig.provider(|c| c.send_transcript = false));
    let delivery = outbound("nobody", "g-x", "Text", json!({ "text": "late", "originatingEntity": "Human" }));
    assert_eq!(provider.webhook(signed(&delivery)).await.status, 200, "kept, not refused");
    assert_eq!(provider.webhook(signed(&delivery)).await.status, 200);

    // A session whose consumer is gone does not take it; its resumed successor does.
    let session = start(&provider).await;
    let to = customer_id(&requests_to(&rig.server, "POST", MESSAGE_PATH).await);
    let snapshot = session.snapshot().unwrap();
    drop(session);
    let delivery = outbound(&to, "g-y", "Text", json!({ "text": "while away", "originatingEntity": "Human" }));
    assert_eq!(provider.webhook(signed(&delivery)).await.status, 200, "kept for a resumed session");
    // The resumed session re-reads the conversation.
    Mock::given(method("GET"))
        .and(path("/api/v2/conversations/messages/conv-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": "conv-1", "participants": [] })))
        .named("conversation")
        .expect(1)
        .mount(&rig.server)
        .await;
    let mut resumed = provider.resume(snapshot).await.unwrap();
    assert!(matches!(next_event(resumed.events()).await, Event::AgentMessage { text, .. } if text == "while away"));
}

#[tokio::test]
async fn a_reply_posted_while_start_is_in_flight_reaches_the_session_first() {
    // This test's own message mocks answer the messages.
    let rig = Rig::new(Calls { message: 0, ..Calls::start() }).await;
    // The first message goes through at once, the transcript's second part slowly: Genesys
    // answers the customer before `start` has returned.
    Mock::given(method("POST"))
        .and(path(MESSAGE_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "id": "gid", "type": "Text", "conversationId": "conv-1" })),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .named("first inbound message")
        .expect(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("POST"))
        .and(path(MESSAGE_PATH))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_millis(300)))
        .with_priority(2)
        .named("slow inbound message")
        .expect(4)
        .mount(&rig.server)
        .await;
    let provider = Arc::new(rig.provider(|c| c.send_transcript = true));
    let mut request = sample_request();
    request.transcript.push(handover_core::TranscriptEntry::new(handover_core::Speaker::Bot, "x".repeat(5000)));
    let starting = tokio::spawn({
        let provider = provider.clone();
        async move { provider.start(request).await }
    });
    let mut first = Vec::new();
    while first.is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        first = requests_to(&rig.server, "POST", MESSAGE_PATH).await;
    }
    let to = customer_id(&first);
    let reply = outbound(&to, "g-early", "Text", json!({ "text": "Hi, I'm on it", "originatingEntity": "Human" }));
    assert_eq!(provider.webhook(signed(&reply)).await.status, 200);
    assert!(!starting.is_finished(), "the reply must arrive while start is in flight");
    let mut session = starting.await.unwrap().expect("start");
    let event = next_event(session.events()).await;
    assert!(matches!(&event, Event::AgentMessage { text, .. } if text == "Hi, I'm on it"), "{event:?}");
}

#[tokio::test]
async fn a_replay_is_dropped_however_many_deliveries_came_between() {
    let rig = Rig::new(Calls::start()).await;
    let provider = rig.provider(|c| c.send_transcript = false);
    let mut session = start(&provider).await;
    let to = customer_id(&requests_to(&rig.server, "POST", MESSAGE_PATH).await);
    let original = outbound(&to, "g-once", "Text", json!({ "text": "once", "originatingEntity": "Human" }));
    assert_eq!(provider.webhook(signed(&original)).await.status, 200);
    let reader = tokio::spawn(async move {
        let events =
            events_until(session.events(), |e| matches!(e, Event::AgentMessage { text, .. } if text == "sentinel"))
                .await;
        (session, events)
    });
    for n in 0..4_200 {
        let flood = outbound(
            &to,
            &format!("g-flood-{n}"),
            "Text",
            json!({ "text": format!("flood {n}"), "originatingEntity": "Human" }),
        );
        assert_eq!(provider.webhook(signed(&flood)).await.status, 200);
    }
    assert_eq!(provider.webhook(signed(&original)).await.status, 200, "a replay is acknowledged");
    let sentinel = outbound(&to, "g-sentinel", "Text", json!({ "text": "sentinel", "originatingEntity": "Human" }));
    provider.webhook(signed(&sentinel)).await;
    let (_session, events) = reader.await.unwrap();
    let once = events.iter().filter(|e| matches!(e, Event::AgentMessage { text, .. } if text == "once")).count();
    assert_eq!(once, 1, "the replayed message was delivered again");
}

#[tokio::test]
async fn the_retry_policy_reaches_every_client_the_provider_holds() {
    // The token cache is shared with the notifications detector: before the policy reached
    // every client, the detector's copy kept the token cache on the default policy.
    // After the 503 of this test's own token mock.
    let rig = Rig::new(Calls { token: 1, integration: 1, ..Calls::default() }).await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .named("token unavailable once")
        .expect(1)
        .mount(&rig.server)
        .await;
    let provider = GenesysProvider::builder(rig.config())
        .ws(WsConfig::default())
        .retry(handover_transport::retry::RetryPolicy::none())
        .build()
        .unwrap();
    let error = provider.check().await.expect_err("no retries: the 503 fails the check");
    assert_eq!(error.kind(), ErrorKind::Transport, "{error}");
    assert_eq!(requests_to(&rig.server, "POST", "/oauth/token").await.len(), 1, "not retried");
    provider.check().await.expect("the next call goes through");
}

#[tokio::test]
async fn check_takes_a_token_and_reads_the_integration() {
    let rig = Rig::new(Calls { token: 1, integration: 1, ..Calls::default() }).await;
    let report = rig.provider(|_| {}).check().await.expect("check");
    let read =
        requests_to(&rig.server, "GET", &format!("/api/v2/conversations/messaging/integrations/open/{INTEGRATION}"))
            .await;
    assert_eq!(header(&read[0], "authorization"), "Bearer tok-1");
    assert!(report.verified_items().iter().any(|v| v.starts_with("integration_id")), "{report}");
    assert!(report.unverified_items().iter().any(|v| v.starts_with("webhook_secret")), "{report}");
}

#[tokio::test]
async fn check_names_an_integration_id_genesys_does_not_know() {
    let rig = Rig::new(Calls { token: 1, ..Calls::default() }).await;
    Mock::given(method("GET"))
        .and(path("/api/v2/conversations/messaging/integrations/open/wrong-id"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({ "status": 404, "code": "not.found", "message": "not found" })),
        )
        .named("unknown integration")
        .expect(1)
        .mount(&rig.server)
        .await;
    let error = rig.provider(|c| c.integration_id = "wrong-id".into()).check().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.message().contains("`integration_id` `wrong-id`"), "{error}");
}

/// The pre-signed URL the attachment pins send; its token must never reach a log or error.
const FILE_URL: &str = "https://files.example.com/u/invoice%20scan.png?X-Amz-Signature=tok-9f8e7d&X-Amz-Expires=300";
const FILE_TOKEN: &str = "tok-9f8e7d";

fn invoice_link() -> handover_core::Attachment {
    handover_core::Attachment::url("invoice scan.png", "image/png", FILE_URL)
        .with_size(Some(2048))
        .with_caption("My invoice")
}

/// Whether a request carries an attachment (`content` in its body).
fn has_content(request: &wiremock::Request) -> bool {
    serde_json::from_slice::<Value>(&request.body).is_ok_and(|body| body.get("content").is_some())
}

/// The exact inbound message body the customer sends (`channel.time` taken from the
/// request, as it is the clock's).
fn expect_body(request: &wiremock::Request, from: &str, message_id: &str, rest: Value) {
    assert_eq!(header(request, "authorization"), "Bearer tok-1");
    assert_eq!(header(request, "content-type"), "application/json");
    assert_eq!(header(request, "accept"), "application/json");
    assert_eq!(request.url.query(), None, "only the first message asks for the conversation id");
    let body = body_json(request);
    let time = body["channel"]["time"].as_str().expect("a time");
    assert!(handover_transport::time::parse_iso8601_millis(time).is_some(), "{time}");
    let mut expected = json!({
        "channel": {
            "messageId": message_id,
            "time": time,
            "from": { "id": from, "idType": "Opaque", "nickname": "Jane Doe", "firstName": "Jane", "lastName": "Doe", "email": "jane@example.com" },
        },
    });
    expected.as_object_mut().unwrap().extend(rest.as_object().unwrap().clone());
    assert_eq!(body, expected);
}

#[tokio::test]
async fn a_file_goes_as_an_attachment_link_with_its_caption_and_a_message_id_from_the_input() {
    // The first message and the attachment.
    let rig = Rig::new(Calls { message: 2, ..Calls::start() }).await;
    let session = start(&rig.provider(|c| c.send_transcript = false)).await;
    session.send(UserInput::attachment("file-1", invoice_link())).await.expect("the link is sent");
    let sent = requests_to(&rig.server, "POST", MESSAGE_PATH).await;
    assert_eq!(sent.len(), 2);
    let from = customer_id(&sent);
    expect_body(
        &sent[1],
        &from,
        &handover_transport::ids::client_uuid(&from, "file-1"),
        json!({
            "text": "My invoice",
            "content": [{
                "contentType": "Attachment",
                "attachment": { "mediaType": "Image", "url": FILE_URL, "mime": "image/png", "filename": "invoice scan.png" },
            }],
        }),
    );
}

#[tokio::test]
async fn a_file_the_integration_refuses_goes_once_more_as_text_with_its_link() {
    let logs = handover_testkit::logs::capture();
    let mark = logs.len();
    // The first message and the text that stands in for the file.
    let rig = Rig::new(Calls { message: 2, ..Calls::start() }).await;
    Mock::given(method("POST"))
        .and(path(MESSAGE_PATH))
        .and(has_content)
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "message": "The media type image/png is not allowed by the supported content profile.",
            "code": "bad.request", "status": 400, "contextId": "ctx-media",
        })))
        .with_priority(1)
        .named("inbound message with an attachment: refused")
        .expect(1)
        .mount(&rig.server)
        .await;
    let session = start(&rig.provider(|c| c.send_transcript = false)).await;
    session.send(UserInput::attachment("file-1", invoice_link())).await.expect("sent as text instead");
    let sent = requests_to(&rig.server, "POST", MESSAGE_PATH).await;
    assert_eq!(sent.len(), 3, "the start, the refused attachment, the text");
    let from = customer_id(&sent);
    expect_body(
        &sent[1],
        &from,
        &handover_transport::ids::client_uuid(&from, "file-1"),
        json!({
            "text": "My invoice",
            "content": [{
                "contentType": "Attachment",
                "attachment": { "mediaType": "Image", "url": FILE_URL, "mime": "image/png", "filename": "invoice scan.png" },
            }],
        }),
    );
    expect_body(
        &sent[2],
        &from,
        &handover_transport::ids::client_uuid(&from, "file-1#link"),
        json!({ "text": format!("My invoice\ninvoice scan.png: {FILE_URL}") }),
    );
    assert!(!logs.since(mark).contains(FILE_TOKEN), "the URL's token was logged");
}

#[tokio::test]
async fn files_as_bytes_or_over_the_limit_are_refused_before_any_request() {
    // Only the first message: nothing else may reach Genesys.
    let rig = Rig::new(Calls::start()).await;
    let session = start(&rig.provider(|c| c.send_transcript = false)).await;
    let bytes = handover_core::Attachment::bytes("scan.png", "image/png", vec![1, 2, 3]);
    let error = session.send(UserInput::attachment("b-1", bytes)).await.expect_err("no uploads");
    assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
    let big = invoice_link().with_size(Some(provider_genesys::MAX_ATTACHMENT_BYTES + 1));
    let error = session.send(UserInput::attachment("big-1", big)).await.expect_err("over 25 MB");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains("25000000"), "{error}");
    assert!(!error.to_string().contains(FILE_TOKEN), "{error}");
}

#[tokio::test]
async fn an_error_that_echoes_the_file_url_does_not_carry_its_token() {
    let rig = Rig::new(Calls::start()).await;
    Mock::given(method("POST"))
        .and(path(MESSAGE_PATH))
        .and(has_content)
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": format!("Not allowed to fetch {FILE_URL}"), "code": "missing.permissions", "status": 403,
        })))
        .with_priority(1)
        .named("inbound message with an attachment: forbidden")
        .expect(1)
        .mount(&rig.server)
        .await;
    let session = start(&rig.provider(|c| c.send_transcript = false)).await;
    let error = session.send(UserInput::attachment("file-1", invoice_link())).await.expect_err("403");
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "a 403 is not a refusal of the content: no text instead");
    assert!(!error.to_string().contains(FILE_TOKEN), "{error}");
    assert!(error.to_string().contains("https://files.example.com/…"), "{error}");
}

#[tokio::test]
async fn an_agent_file_arrives_as_an_agent_message_with_its_attachment() {
    let rig = Rig::new(Calls::start()).await;
    let provider = rig.provider(|c| c.send_transcript = false);
    let mut session = start(&provider).await;
    let to = customer_id(&requests_to(&rig.server, "POST", MESSAGE_PATH).await);
    let url = "https://api-downloads.usw2.pure.cloud/api/v2/downloads/pce1234456?sig=dl-token";
    let file = json!({ "id": "8b36", "mediaType": "File", "url": url, "mime": "application/pdf", "filename": "returns-label.pdf", "contentSizeBytes": 10240 });
    // A file alone, in the wrapped shape; then one with text, in the bare shape.
    let reply = provider
        .webhook(signed(&outbound(
            &to,
            "g-f1",
            "Text",
            json!({ "originatingEntity": "Human", "content": [{ "contentType": "Attachment", "attachment": file }] }),
        )))
        .await;
    assert_eq!(reply.status, 200);
    provider
        .webhook(signed(&outbound(
            &to,
            "g-f22",
            "Text",
            json!({ "text": "Your label", "originatingEntity": "Human", "content": [{ "attachment": file }] }),
        )))
        .await;
    let label = handover_core::Attachment::url("returns-label.pdf", "application/pdf", url).with_size(Some(10240));
    let first = next_event(session.events()).await;
    assert_eq!(
        first,
        Event::AgentMessage {
            id: "g-f1".into(),
            text: String::new(),
            agent: handover_core::Agent::unknown(),
            attachments: vec![label.clone()]
        }
    );
    let second = next_event(session.events()).await;
    assert!(
        matches!(&second, Event::AgentMessage { text, attachments, .. } if text == "Your label" && *attachments == [label.clone()]),
        "{second:?}"
    );
    assert!(!format!("{second:?}").contains("dl-token"), "Debug hides the download token");
}
