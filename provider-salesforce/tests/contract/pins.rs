//! wiremock pins (`protocols/salesforce-chat.md` §3, §4, §6, §10): the four `X-LIVEAGENT-*`
//! headers, sequence numbering, ack handling, failover and the end.

use std::sync::Mutex;

use handover_core::{EndReason, EndedBy, ErrorKind, Event, Provider, Session, UserInput};
use handover_testkit::mock::{body_json, header, requests_to, strict_server};
use handover_testkit::sample_request;
use handover_testkit::scenarios::events_until;
use handover_transport::longpoll::LongPollConfig;
use provider_salesforce::{SalesforceConfig, SalesforceProvider};
use serde_json::{Value, json};
use wiremock::matchers::{body_json as has_body, header as has_header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, Times};

use crate::harness::fast_retry;

const KEY: &str = "ec550263-9896-45ff-a2a4-cf5a3b2d1b22!1700000000000!abc";

/// Answers polls from a script, recording each poll's ack.
struct Polls {
    script: Mutex<Vec<ResponseTemplate>>,
}

impl Respond for Polls {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut script = self.script.lock().unwrap();
        if script.is_empty() {
            // Hold the last poll open past the test, like the server holds an idle poll.
            ResponseTemplate::new(204).set_delay(std::time::Duration::from_secs(30))
        } else {
            script.remove(0)
        }
    }
}

fn batch(sequence: i64, offset: i64, messages: &[(&str, Value)]) -> ResponseTemplate {
    let messages: Vec<Value> = messages.iter().map(|(t, m)| json!({ "type": t, "message": m })).collect();
    ResponseTemplate::new(200).set_body_json(json!({ "messages": messages, "sequence": sequence, "offset": offset }))
}

/// A server that opens a session, takes the chat request once, and answers polls from
/// `polls`; `polled` is how many polls it must see (the scripted ones, and perhaps one
/// more held open past the test).
async fn server(polls: Vec<ResponseTemplate>, polled: impl Into<Times>) -> MockServer {
    let server = strict_server().await;
    Mock::given(method("GET"))
        .and(path("/chat/rest/System/SessionId"))
        .and(has_header("X-LIVEAGENT-AFFINITY", "null"))
        .and(has_header("X-LIVEAGENT-API-VERSION", "52"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "ec550263-9896-45ff-a2a4-cf5a3b2d1b22", "key": KEY, "affinityToken": "878a1fa0", "clientPollTimeout": 40,
        })))
        .expect(1)
        .named("session id")
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/chat/rest/Chasitor/ChasitorInit"))
        .respond_with(ResponseTemplate::new(200).set_body_string("OK"))
        .expect(1)
        .named("chasitor init")
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/chat/rest/System/Messages"))
        .respond_with(Polls { script: Mutex::new(polls) })
        .named("messages")
        .expect(polled)
        .mount(&server)
        .await;
    server
}

fn provider(server: &MockServer) -> SalesforceProvider {
    let mut config = SalesforceConfig::new(server.uri(), "00D000000000001", "572000000000001", "573000000000001");
    config.transcript_field = Some("Bot_Transcript__c".into());
    SalesforceProvider::builder(config)
        .retry(fast_retry())
        .poll(LongPollConfig::default().with_backoff(fast_retry()))
        .build()
        .unwrap()
}

async fn start(server: &MockServer) -> Session {
    provider(server).start(sample_request()).await.expect("start")
}

fn ack(request: &Request) -> String {
    request.url.query_pairs().find(|(k, _)| k == "ack").map(|(_, v)| v.into_owned()).expect("an ack")
}

fn established() -> (&'static str, Value) {
    ("ChatEstablished", json!({ "name": "Ann", "userId": "005A" }))
}

#[tokio::test]
async fn start_creates_a_session_then_requests_the_chat_with_every_header_and_field() {
    let server = server(Vec::new(), ..=1).await;
    let _session = start(&server).await;
    let init = &requests_to(&server, "POST", "/chat/rest/Chasitor/ChasitorInit").await[0];
    assert_eq!(header(init, "x-liveagent-api-version"), "52");
    assert_eq!(header(init, "x-liveagent-affinity"), "878a1fa0");
    assert_eq!(header(init, "x-liveagent-session-key"), KEY);
    assert_eq!(header(init, "x-liveagent-sequence"), "1");
    let body = body_json(init);
    assert_eq!(body["organizationId"], "00D000000000001");
    assert_eq!(body["deploymentId"], "572000000000001");
    assert_eq!(body["buttonId"], "573000000000001");
    assert_eq!(body["sessionId"], "ec550263-9896-45ff-a2a4-cf5a3b2d1b22");
    assert_eq!(body["visitorName"], "Jane Doe");
    assert_eq!(body["language"], "en");
    assert_eq!(body["receiveQueueUpdates"], true);
    assert_eq!(body["isPost"], true);
    assert_eq!(body["prechatEntities"], json!([]));
    let details = body["prechatDetails"].as_array().unwrap();
    let transcript = details.iter().find(|d| d["label"] == "Bot transcript").expect("a transcript detail");
    assert_eq!(transcript["transcriptFields"], json!(["Bot_Transcript__c"]));
    assert_eq!(transcript["displayToAgent"], true);
    assert!(transcript["value"].as_str().unwrap().starts_with("User: My invoice is wrong\nBot: "));
    assert!(details.iter().any(|d| d["label"] == "Email" && d["value"] == "jane@example.com"));
    assert!(details.iter().any(|d| d["label"] == "Skills" && d["value"] == "billing"));
}

#[tokio::test]
async fn the_poll_acks_only_after_200_repolls_204_with_the_same_ack_and_sends_no_sequence() {
    let server = server(
        vec![
            ResponseTemplate::new(204),
            batch(3, 300, &[("ChatRequestSuccess", json!({ "queuePosition": 2 }))]),
            ResponseTemplate::new(204),
            batch(5, 500, &[established()]),
        ],
        4..=5,
    )
    .await;
    let mut session = start(&server).await;
    events_until(session.events(), |e| matches!(e, Event::AgentJoined { .. })).await;
    // The fifth poll follows the batch that brought the agent.
    let polls = loop {
        let polls = requests_to(&server, "GET", "/chat/rest/System/Messages").await;
        if polls.len() >= 5 {
            break polls;
        }
        tokio::task::yield_now().await;
    };
    let acks: Vec<String> = polls.iter().take(5).map(ack).collect();
    assert_eq!(acks, ["-1", "-1", "3", "3", "5"]);
    for poll in &polls {
        assert!(poll.headers.get("x-liveagent-sequence").is_none(), "no sequence on polls");
        assert_eq!(header(poll, "x-liveagent-session-key"), KEY);
        assert_eq!(header(poll, "x-liveagent-affinity"), "878a1fa0");
        assert_eq!(header(poll, "x-liveagent-api-version"), "52");
    }
}

#[tokio::test]
async fn messages_wait_for_chat_established_and_sequences_keep_counting() {
    let server =
        server(vec![batch(1, 100, &[("ChatRequestSuccess", json!({}))]), batch(2, 200, &[established()])], 2..=3).await;
    Mock::given(method("POST"))
        .and(path("/chat/rest/Chasitor/ChatMessage"))
        .respond_with(ResponseTemplate::new(200))
        .named("chat message")
        .expect(3)
        .mount(&server)
        .await;
    let mut session = start(&server).await;
    session.send(UserInput::message("m1", "early one")).await.unwrap();
    session.send(UserInput::message("m2", "early two")).await.unwrap();
    events_until(session.events(), |e| matches!(e, Event::AgentJoined { .. })).await;
    session.send(UserInput::message("m3", "after")).await.unwrap();
    let all = loop {
        let all = server.received_requests().await.unwrap();
        if all.iter().filter(|r| r.url.path() == "/chat/rest/Chasitor/ChatMessage").count() >= 3 {
            break all;
        }
        tokio::task::yield_now().await;
    };
    // Whatever the timing, no message went out before the poll that brought ChatEstablished.
    let established_poll = all
        .iter()
        .enumerate()
        .filter(|(_, r)| r.url.path() == "/chat/rest/System/Messages")
        .nth(1)
        .map(|(i, _)| i)
        .expect("the second poll");
    let messages: Vec<(usize, &Request)> =
        all.iter().enumerate().filter(|(_, r)| r.url.path() == "/chat/rest/Chasitor/ChatMessage").collect();
    assert!(messages.iter().all(|(i, _)| *i > established_poll), "a message went out before ChatEstablished");
    let texts: Vec<Value> = messages.iter().map(|(_, r)| body_json(r)["text"].clone()).collect();
    assert_eq!(texts, [json!("early one"), json!("early two"), json!("after")]);
    let sequences: Vec<&str> = messages.iter().map(|(_, r)| header(r, "x-liveagent-sequence")).collect();
    assert_eq!(sequences, ["2", "3", "4"], "ChasitorInit was 1");
}

#[tokio::test]
async fn a_503_reconnects_with_the_last_offset_resyncs_and_resends_after_session_data() {
    let server = server(
        vec![
            batch(2, 2000, &[("ChatRequestSuccess", json!({})), established()]),
            ResponseTemplate::new(503),
            batch(3, 3000, &[("ChasitorSessionData", json!({ "chatMessages": [] }))]),
        ],
        3..=4,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/chat/rest/System/ReconnectSession"))
        .and(query_param("ReconnectSession.offset", "2000"))
        .and(has_header("X-LIVEAGENT-SESSION-KEY", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "messages": [{ "type": "ReconnectSession", "message": { "resetSequence": true, "affinityToken": "9c1e7a00" } }],
        })))
        .expect(1)
        .named("reconnect")
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/chat/rest/Chasitor/ChasitorResyncState"))
        .and(has_body(json!({ "organizationId": "00D000000000001" })))
        .and(has_header("X-LIVEAGENT-AFFINITY", "9c1e7a00"))
        .and(has_header("X-LIVEAGENT-SEQUENCE", "1"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .named("resync state")
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/chat/rest/Chasitor/ChatMessage"))
        .respond_with(ResponseTemplate::new(200))
        .named("chat message")
        .expect(1)
        .mount(&server)
        .await;
    let mut session = start(&server).await;
    let events = events_until(session.events(), |e| *e == Event::Reconnecting).await;
    assert!(events.iter().any(|e| matches!(e, Event::AgentJoined { .. })));
    session.send(UserInput::message("m1", "sent during failover")).await.unwrap();
    events_until(session.events(), |e| matches!(e, Event::Resumed { .. })).await;
    let message = loop {
        if let Some(message) = requests_to(&server, "POST", "/chat/rest/Chasitor/ChatMessage").await.pop() {
            break message;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(body_json(&message)["text"], "sent during failover");
    assert_eq!(header(&message, "x-liveagent-affinity"), "9c1e7a00", "the new affinity");
    assert_eq!(header(&message, "x-liveagent-sequence"), "2", "the reset sequence continues");
    let polls = requests_to(&server, "GET", "/chat/rest/System/Messages").await;
    assert_eq!(header(polls.last().unwrap(), "x-liveagent-affinity"), "9c1e7a00");
}

#[tokio::test]
async fn a_batch_with_the_last_message_and_chat_ended_delivers_both_in_order() {
    let server = server(
        vec![batch(
            3,
            300,
            &[
                ("ChatRequestSuccess", json!({})),
                established(),
                ("ChatMessage", json!({ "name": "Ann", "text": "bye" })),
                ("ChatEnded", json!({})),
            ],
        )],
        1,
    )
    .await;
    let mut session = start(&server).await;
    let events = events_until(session.events(), Event::is_terminal).await;
    let n = events.len();
    assert!(matches!(&events[n - 2], Event::AgentMessage { text, .. } if text == "bye"), "{events:?}");
    assert!(matches!(&events[n - 1], Event::Ended { by: EndedBy::Agent, .. }));
}

#[tokio::test]
async fn chat_request_fail_is_a_rejected_error_with_the_reason() {
    let server = server(vec![batch(1, 100, &[("ChatRequestFail", json!({ "reason": "Unavailable" }))])], 1).await;
    let mut session = start(&server).await;
    let error = session.events().recv().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Rejected);
    assert!(error.to_string().contains("Unavailable"), "{error}");
    assert!(session.events().recv().await.is_none());
}

#[tokio::test]
async fn a_403_ends_and_a_409_fails() {
    let server = server(vec![ResponseTemplate::new(403)], 1).await;
    let mut session = start(&server).await;
    assert!(matches!(session.events().recv().await, Some(Ok(Event::Ended { by: EndedBy::System, .. }))));

    let server2 = crate::pins::server(vec![ResponseTemplate::new(409)], 1).await;
    let mut session = start(&server2).await;
    let error = session.events().recv().await.unwrap().unwrap_err();
    assert!(error.to_string().contains("409"), "{error}");
}

#[tokio::test]
async fn ending_posts_chat_end_with_reason_client_and_deletes_the_session() {
    let server = server(Vec::new(), ..=1).await;
    Mock::given(method("POST"))
        .and(path("/chat/rest/Chasitor/ChatEnd"))
        .and(has_body(json!({ "reason": "client" })))
        .and(has_header("X-LIVEAGENT-SEQUENCE", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "attachedRecords": [] })))
        .expect(1)
        .named("chat end")
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/chat/rest/System/SessionId/{KEY}").as_str()))
        .and(has_header("X-LIVEAGENT-AFFINITY", "878a1fa0"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .named("delete session")
        .mount(&server)
        .await;
    let mut session = start(&server).await;
    session.end(EndReason::Closed).await.unwrap();
    let events = events_until(session.events(), Event::is_terminal).await;
    assert_eq!(
        events.last(),
        Some(&Event::Ended { by: EndedBy::User, reason: Some("closed".into()) }),
        "the bot's own reason, not always `cancelled`"
    );
}

#[tokio::test]
async fn typing_goes_out_only_once_an_agent_is_in() {
    let server = server(vec![batch(2, 200, &[("ChatRequestSuccess", json!({})), established()])], 1..=2).await;
    Mock::given(method("POST"))
        .and(path("/chat/rest/Chasitor/ChasitorTyping"))
        .and(has_body(json!({})))
        .respond_with(ResponseTemplate::new(200))
        .named("typing")
        .expect(1)
        .mount(&server)
        .await;
    let mut session = start(&server).await;
    events_until(session.events(), |e| matches!(e, Event::AgentJoined { .. })).await;
    session.send(UserInput::Typing { on: true }).await.unwrap();
}

#[tokio::test]
async fn check_opens_a_session_and_asks_for_the_buttons_availability() {
    let server = strict_server().await;
    Mock::given(method("GET"))
        .and(path("/chat/rest/System/SessionId"))
        .and(has_header("X-LIVEAGENT-AFFINITY", "null"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "ec550263-9896-45ff-a2a4-cf5a3b2d1b22", "key": KEY, "affinityToken": "878a1fa0", "clientPollTimeout": 40,
        })))
        .expect(2)
        .named("session id")
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("/chat/rest/System/SessionId/{KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .named("delete session")
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/chat/rest/Visitor/Availability"))
        .and(query_param("org_id", "00D000000000001"))
        .and(query_param("deployment_id", "572000000000001"))
        .and(query_param("Availability.ids", "[573000000000001]"))
        .and(has_header("X-LIVEAGENT-API-VERSION", "52"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "messages": [{ "type": "Availability",
            "message": { "results": [{ "id": "573000000000001", "isAvailable": true }] } }] })))
        .up_to_n_times(1)
        .named("availability")
        .expect(1)
        .mount(&server)
        .await;
    let provider = provider(&server);
    let report = provider.check().await.expect("check");
    assert!(report.verified_items()[1].contains("button_id: the button is known (agents are online now)"), "{report}");
    // A wrong organization or deployment: Salesforce reports nothing for the button.
    Mock::given(method("GET"))
        .and(path("/chat/rest/Visitor/Availability"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "messages": [{ "type": "Availability",
            "message": { "results": [] } }] })))
        .named("availability, nothing known")
        .expect(1)
        .mount(&server)
        .await;
    let error = provider.check().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.message().contains("check organization_id, deployment_id and button_id"), "{error}");
}

#[tokio::test]
async fn files_are_unsupported_and_refused_before_any_request() {
    // The visitor side has no file message (salesforce-chat.md §7): the session handle refuses
    // a file, as bytes or as a link, before anything reaches Salesforce.
    let server = server(vec![batch(2, 200, &[("ChatRequestSuccess", json!({})), established()])], 1..=2).await;
    let mut session = start(&server).await;
    events_until(session.events(), |e| matches!(e, Event::AgentJoined { .. })).await;
    let before = server.received_requests().await.unwrap().len();
    let bytes = handover_core::Attachment::bytes("scan.png", "image/png", vec![1, 2, 3]);
    let link = handover_core::Attachment::url("scan.png", "image/png", "https://files.example/scan.png?sig=s3cr3t");
    for (id, file) in [("file-1", bytes), ("file-2", link)] {
        let error = session.send(UserInput::attachment(id, file)).await.expect_err("no files on Live Agent REST");
        assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
        assert_eq!(error.op(), "send attachment");
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
    }
    let after = server.received_requests().await.unwrap();
    let posts: Vec<&str> =
        after.iter().filter(|r| r.method == wiremock::http::Method::POST).map(|r| r.url.path()).collect();
    assert_eq!(posts, ["/chat/rest/Chasitor/ChasitorInit"], "nothing but the chat request was posted");
    assert!(
        after[before..].iter().all(|r| r.url.path() == "/chat/rest/System/Messages"),
        "only polls after the refusal: {:?}",
        after[before..].iter().map(|r| r.url.path()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn an_agent_file_request_is_passed_over_without_logging_its_url_or_token() {
    let logs = handover_testkit::logs::capture();
    let mark = logs.len();
    let request = json!({
        "type": "Requested",
        "uploadServletUrl": "https://d.la1-c1-ia2.salesforceliveagent.com/content/rest/File/Upload",
        "fileToken": "ft-secret-77a1",
        "cdmServletUrl": "https://d.la1-c1-ia2.salesforceliveagent.com/content/s/cdm",
    });
    let server = server(
        vec![batch(
            3,
            300,
            &[
                ("ChatRequestSuccess", json!({})),
                established(),
                ("FileTransfer", request),
                ("ChatMessage", json!({ "name": "Ann", "text": "Could you send a photo?" })),
            ],
        )],
        1..=2,
    )
    .await;
    let mut session = start(&server).await;
    let events = events_until(session.events(), |e| matches!(e, Event::AgentMessage { .. })).await;
    assert!(
        matches!(events.last(), Some(Event::AgentMessage { text, attachments, .. }) if text == "Could you send a photo?" && attachments.is_empty())
    );
    let logged = logs.since(mark);
    assert!(!logged.contains("ft-secret-77a1") && !logged.contains("/content/rest/File/Upload"), "{logged}");
    let posts = requests_to(&server, "POST", "/chat/rest/Chasitor/ChasitorInit").await.len();
    assert_eq!(posts, 1, "no upload, no other request");
}
