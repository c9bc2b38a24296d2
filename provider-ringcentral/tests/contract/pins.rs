//! wiremock pins of every Send API and REST request (`protocols/ringcentral-engage.md` §4-6),
//! the signed answers to every callback (§3), REST webhook events and their validation (§7).

use std::time::Duration;

use handover_core::{EndReason, EndedBy, ErrorKind, Event, Provider, Session, UserInput, WebhookReply, WebhookRequest};
use handover_testkit::mock::{body_json, header, requests_to, strict_server};
use handover_testkit::sample_request;
use handover_testkit::scenarios::{assert_stream_ended, events_until, next_event};
use provider_ringcentral::webhook::{SIGNATURE_HEADER, implementation_info, sign};
use provider_ringcentral::{RingCentralConfig, RingCentralProvider};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate, Times};

use crate::harness::fast_retry;

const SOURCE: &str = "src-1";
const TOKEN: &str = "source-token";
const SECRET: &str = "dimelo-secret";
const REALTIME: &str = "/realtime/sdk/src-1";
const THREAD: &str = "5f0d000000000000000000t1";
const INTERVENTION: &str = "5f0d000000000000000000i1";

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

fn records(items: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "count": 1, "offset": 0, "limit": 30, "records": items }))
}

/// Engage with the thread imported after one empty lookup.
/// How many requests each endpoint of [`server`] must see in a test.
#[derive(Default)]
struct Calls {
    /// Send API requests (thread, transcript, messages, typing).
    send: u64,
    /// Thread lookups: the first finds nothing yet, the next finds the thread.
    lookups: u64,
    /// Recategorizations.
    recategorize: u64,
}

impl Calls {
    /// A `start`: the thread and three transcript lines, two lookups, one recategorization.
    fn start() -> Self {
        Self { send: 4, lookups: 2, recategorize: 1 }
    }
}

async fn server(calls: Calls) -> MockServer {
    let server = strict_server().await;
    let ok = ResponseTemplate::new(200).set_body_string("ok");
    mount(&server, "POST", REALTIME, ok, "send api", calls.send).await;
    Mock::given(method("GET"))
        .and(path("/1.0/content_threads"))
        .respond_with(records(json!([])))
        .up_to_n_times(1)
        .named("find thread: not imported yet")
        .expect(calls.lookups.min(1))
        .mount(&server)
        .await;
    let found = records(json!([{ "id": THREAD, "source_id": SOURCE }]));
    mount(&server, "GET", "/1.0/content_threads", found, "find thread", calls.lookups.saturating_sub(1)).await;
    let recategorized = ResponseTemplate::new(200).set_body_json(json!({ "id": THREAD }));
    let at = format!("/1.0/content_threads/{THREAD}/update_categories");
    mount(&server, "PUT", &at, recategorized, "recategorize", calls.recategorize).await;
    server
}

fn config(server: &MockServer) -> RingCentralConfig {
    let mut config = RingCentralConfig::new("acme.digital.ringcentral.com", SOURCE, TOKEN, "api-token", "cat-agent")
        .with_urls(format!("{}/1.0", server.uri()), format!("{}{REALTIME}", server.uri()))
        .with_webhook_secret(SECRET);
    config.additional_category_ids = vec!["cat-vip".into(), "cat-agent".into()];
    config.bot_category_id = Some("cat-bot".into());
    config.webhook_verify_token = Some("verify-me".to_owned().into());
    config.end_drain_ms = 100;
    config
}

fn provider(config: RingCentralConfig) -> RingCentralProvider {
    RingCentralProvider::builder(config).retry(fast_retry()).build().unwrap()
}

async fn start(server: &MockServer) -> (RingCentralProvider, Session) {
    let provider = provider(config(server));
    let session = provider.start(sample_request()).await.expect("start");
    (provider, session)
}

/// The Send API requests, each checked for its signature over the exact bytes.
async fn sent(server: &MockServer) -> Vec<Value> {
    requests_to(server, "POST", REALTIME)
        .await
        .iter()
        .map(|r: &Request| {
            assert_eq!(header(r, "x-smccsdk-signature"), sign(TOKEN.as_bytes(), &r.body), "signed raw bytes");
            body_json(r)
        })
        .collect()
}

fn callback(body: &Value) -> WebhookRequest {
    let bytes = body.to_string().into_bytes();
    let signature = sign(TOKEN.as_bytes(), &bytes);
    WebhookRequest::post(bytes).with_header("X-SMCCSDK-SIGNATURE", signature)
}

/// The answer's JSON, after checking its signature over the exact bytes.
fn signed_json(reply: &WebhookReply) -> Value {
    let given = reply.headers.iter().find(|(k, _)| k == SIGNATURE_HEADER).map(|(_, v)| v.as_str());
    assert_eq!(given, Some(sign(TOKEN.as_bytes(), &reply.body).as_str()), "every answer is signed");
    serde_json::from_slice(&reply.body).unwrap()
}

fn reply(thread: &str, content_id: &str, text: &str) -> Value {
    json!({ "action": "messages.create", "params": {
        "author_id": "agent-identity", "body": text, "format": "text", "content_id": content_id,
        "thread_id": thread, "sender_name": "Ann", "retry": false,
    }, "time": handover_transport::time::now_iso8601() })
}

fn event(kind: &str, id: &str, thread: &str) -> WebhookRequest {
    let body = json!({ "id": format!("req-{id}"), "domain_id": "d1", "events": [{
        "type": kind, "id": id, "issued_at": "2024-04-14T09:45:00.123Z",
        "resource": { "type": "Intervention", "id": INTERVENTION, "metadata": { "source_id": SOURCE, "thread_id": thread } },
    }] });
    WebhookRequest::post(body.to_string().into_bytes()).with_header("X-Dimelo-Secret", SECRET)
}

fn our_thread(sent: &[Value]) -> String {
    sent[0]["params"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn start_imports_the_thread_and_transcript_then_recategorizes_to_the_agents() {
    let server = server(Calls::start()).await;
    let _ = start(&server).await;
    let sent = sent(&server).await;
    let thread = our_thread(&sent);
    assert_eq!(sent[0]["action"], "threads.create");
    let created = &sent[0]["params"];
    assert_eq!(created["title"], "Chat with Jane Doe");
    assert_eq!(created["body"], "Jane Doe asked for an agent.");
    assert_eq!(created["author"]["id"], "user-42");
    assert_eq!(created["author"]["screenname"], "Jane Doe");
    assert_eq!(created["author"]["email"], "jane@example.com");
    assert_eq!(created["author"]["puppetizable"], false);
    assert_eq!(created["author"]["context_data"]["bot-session"], "bot-session-1");
    assert_eq!(created["author"]["context_data"]["skills"], "billing");
    let transcript: Vec<(&str, &str, bool)> = sent[1..]
        .iter()
        .map(|m| {
            assert_eq!(m["action"], "messages.create");
            assert_eq!(m["params"]["thread_id"], thread.as_str());
            assert_eq!(m["params"]["format"], "text");
            (
                m["params"]["author"]["id"].as_str().unwrap(),
                m["params"]["body"].as_str().unwrap(),
                m["params"]["author"]["puppetizable"] == true,
            )
        })
        .collect();
    assert_eq!(
        transcript,
        [
            ("user-42", "My invoice is wrong", false),
            ("bot", "I can connect you to an agent.", true),
            ("user-42", "Ja, bitte — schnell 👍🏽", false),
        ]
    );
    let lookups = requests_to(&server, "GET", "/1.0/content_threads").await;
    assert_eq!(lookups.len(), 2, "the import is asynchronous: looked up until found");
    assert_eq!(header(&lookups[0], "authorization"), "Bearer api-token");
    let q: Vec<(String, String)> = lookups[0].url.query_pairs().into_owned().collect();
    assert!(q.contains(&("q".into(), format!("foreign:\"{thread}\" source:\"{SOURCE}\""))), "{q:?}");
    let put = &requests_to(&server, "PUT", &format!("/1.0/content_threads/{THREAD}/update_categories")).await[0];
    let categories: Vec<(String, String)> = put.url.query_pairs().into_owned().collect();
    assert_eq!(
        categories,
        [("thread_category_ids[]".into(), "cat-agent".into()), ("thread_category_ids[]".into(), "cat-vip".into())],
        "the agent category plus the additional ones, once each"
    );
}

#[tokio::test]
async fn a_running_categorization_is_retried() {
    let server = strict_server().await;
    mount(&server, "POST", REALTIME, ResponseTemplate::new(200).set_body_string("ok"), "send api", 4).await;
    mount(&server, "GET", "/1.0/content_threads", records(json!([{ "id": THREAD }])), "find thread", 1).await;
    let at = format!("/1.0/content_threads/{THREAD}/update_categories");
    Mock::given(method("PUT"))
        .and(path(at.as_str()))
        .respond_with(
            ResponseTemplate::new(409)
                .set_body_json(json!({ "error": "conflict", "message": "categorization in progress", "status": 409 })),
        )
        .up_to_n_times(2)
        .named("recategorize: still running")
        .expect(2)
        .mount(&server)
        .await;
    mount(&server, "PUT", &at, ResponseTemplate::new(200).set_body_json(json!({ "id": THREAD })), "recategorize", 1)
        .await;
    let _ = start(&server).await;
    assert_eq!(requests_to(&server, "PUT", &at).await.len(), 3);
}

#[tokio::test]
async fn a_thread_never_imported_is_a_clear_error() {
    let server = strict_server().await;
    mount(&server, "POST", REALTIME, ResponseTemplate::new(200).set_body_string("ok"), "send api", 4).await;
    mount(&server, "GET", "/1.0/content_threads", records(json!([])), "find thread", 1).await;
    let mut config = config(&server);
    config.thread_lookup_timeout_secs = 0;
    let Err(error) = provider(config).start(sample_request()).await else { panic!("no thread") };
    assert_eq!(error.kind(), ErrorKind::Rejected);
    assert!(error.message().contains("did not import the thread"), "{}", error.message());
}

#[tokio::test]
async fn send_api_errors_say_what_to_check() {
    let server = strict_server().await;
    mount(&server, "POST", REALTIME, ResponseTemplate::new(422).set_body_string("Invalid signature"), "send api", 1)
        .await;
    let Err(error) = provider(config(&server)).start(sample_request()).await else { panic!("refused") };
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.message().contains("check `source_token`"), "{}", error.message());
    let server = strict_server().await;
    mount(&server, "POST", REALTIME, ResponseTemplate::new(200).set_body_string("ok"), "send api", 4).await;
    let unauthorized = json!({ "error": "invalid_token", "message": "The access token is invalid", "status": 401 });
    mount(
        &server,
        "GET",
        "/1.0/content_threads",
        ResponseTemplate::new(401).set_body_json(unauthorized),
        "find thread",
        1,
    )
    .await;
    let Err(error) = provider(config(&server)).start(sample_request()).await else { panic!("refused") };
    assert_eq!(error.kind(), ErrorKind::Unauthenticated);
    assert!(error.message().contains("invalid_token: The access token is invalid; check `access_token`"));
}

#[tokio::test]
async fn user_messages_typing_and_presence_go_through_the_send_api() {
    // Four at the start, then two messages and two typing calls.
    let server = server(Calls { send: 8, ..Calls::start() }).await;
    let (_provider, session) = start(&server).await;
    let before = sent(&server).await.len();
    session.send(UserInput::message("u-1", "Hello — 你好")).await.unwrap();
    session.send(UserInput::Typing { on: true }).await.unwrap();
    session.send(UserInput::Typing { on: false }).await.unwrap();
    session.send(UserInput::Disconnected).await.unwrap();
    let sent = sent(&server).await;
    let thread = our_thread(&sent);
    let new = &sent[before..];
    assert_eq!(new[0]["action"], "messages.create");
    assert_eq!(new[0]["params"]["body"], "Hello — 你好");
    assert_eq!(new[0]["params"]["author"]["id"], "user-42");
    // The message id is derived from the input's id: a resend carries the same one.
    let derived = handover_transport::ids::client_uuid(&thread, "u-1");
    assert_eq!(new[0]["params"]["id"], format!("{thread}:m:{derived}").as_str());
    assert_eq!(new[1], json!({ "action": "typing.start", "params": { "thread_id": thread, "preview": "…" } }));
    assert_eq!(new[2], json!({ "action": "typing.stop", "params": { "thread_id": thread } }));
    assert_eq!(new[3]["params"]["body"], "User left the conversation");
    assert_eq!(new[3]["params"]["author"]["id"], "bot");
    assert_eq!(new[3]["params"]["author"]["puppetizable"], true);
}

#[tokio::test]
async fn every_callback_is_answered_signed() {
    let server = server(Calls::start()).await;
    let (provider, mut session) = start(&server).await;
    let thread = our_thread(&sent(&server).await);
    let info =
        provider.webhook(callback(&json!({ "action": "implementation.info", "time": "2012-10-01T17:18:40Z" }))).await;
    assert_eq!(info.status, 200);
    assert_eq!(signed_json(&info), implementation_info());
    let list = provider.webhook(callback(&json!({ "action": "threads.list", "params": {} }))).await;
    assert_eq!(signed_json(&list), json!([]));
    let show = provider.webhook(callback(&json!({ "action": "messages.show", "params": { "id": "x" } }))).await;
    assert_eq!(signed_json(&show), json!({}));
    let unknown = provider.webhook(callback(&json!({ "action": "messages.delete", "params": { "id": "x" } }))).await;
    assert_eq!(
        (unknown.status, signed_json(&unknown)),
        (200, json!({})),
        "verified but not implemented: acknowledged, not refused (a refusal is retried)"
    );

    let queue = json!({ "action": "messaging.queuing_update", "params": {
        "estimated_wait_time": 90, "position": 2, "thread_id": thread, "in_reply_to_id": format!("{thread}:m:1"),
    } });
    let answer = provider.webhook(callback(&queue)).await;
    assert_eq!((answer.status, signed_json(&answer)), (200, json!({})));
    assert_eq!(
        next_event(session.events()).await,
        Event::Queued { position: Some(2), estimated_wait: Some(Duration::from_secs(90)) }
    );

    // A reply and Engage's retry of it: one message, the same id both times.
    let first = provider.webhook(callback(&reply(&thread, "c-1", "Hi, Ann here"))).await;
    let mut retried = reply(&thread, "c-1", "Hi, Ann here");
    retried["params"]["retry"] = json!(true);
    let again = provider.webhook(callback(&retried)).await;
    assert_eq!(signed_json(&first), json!({ "id": "agent-c-1" }));
    assert_eq!(signed_json(&again), json!({ "id": "agent-c-1" }));
    provider.webhook(callback(&reply(&thread, "c-2", "sentinel"))).await;
    let events =
        events_until(session.events(), |e| matches!(e, Event::AgentMessage { text, .. } if text == "sentinel")).await;
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| if let Event::AgentMessage { text, .. } = e { Some(text.as_str()) } else { None })
        .collect();
    assert_eq!(texts, ["Hi, Ann here", "sentinel"]);
    let Event::AgentMessage { id, agent, .. } = &events[0] else { panic!("{events:?}") };
    assert_eq!((id.as_str(), agent.name.as_deref(), agent.id.as_deref()), ("c-1", Some("Ann"), Some("agent-identity")));

    // Signed in the query string when a proxy strips headers.
    let body = reply(&thread, "c-3", "via query").to_string().into_bytes();
    let by_query =
        WebhookRequest::post(body.clone()).with_query(format!("signature={}", sign(TOKEN.as_bytes(), &body)));
    assert_eq!(signed_json(&provider.webhook(by_query).await), json!({ "id": "agent-c-3" }));
}

#[tokio::test]
async fn a_replayed_reply_outside_the_window_changes_nothing() {
    let server = server(Calls::start()).await;
    let (provider, mut session) = start(&server).await;
    let thread = our_thread(&sent(&server).await);
    let mut old = reply(&thread, "c-old", "replayed");
    old["time"] = json!("2024-04-14T09:30:01Z");
    let answer = provider.webhook(callback(&old)).await;
    assert_eq!(answer.status, 422);
    assert!(signed_json(&answer)["error"].as_str().unwrap().contains("replay window"));
    provider.webhook(callback(&reply(&thread, "c-new", "fresh"))).await;
    assert!(matches!(next_event(session.events()).await, Event::AgentMessage { text, .. } if text == "fresh"));
}

#[tokio::test]
async fn bad_or_missing_signatures_change_nothing() {
    let server = server(Calls::start()).await;
    let (provider, mut session) = start(&server).await;
    let thread = our_thread(&sent(&server).await);
    let body = reply(&thread, "c-9", "forged").to_string().into_bytes();
    let forged = WebhookRequest::post(body.clone()).with_header("X-SMCCSDK-SIGNATURE", sign(b"other-token", &body));
    let answer = provider.webhook(forged).await;
    assert_eq!((answer.status, signed_json(&answer)), (422, json!({ "error": "Invalid signature" })));
    let unsigned = provider.webhook(WebhookRequest::post(body.clone())).await;
    assert_eq!((unsigned.status, signed_json(&unsigned)), (422, json!({ "error": "Invalid signature" })));
    let mut tampered = callback(&reply(&thread, "c-9", "forged"));
    tampered.body = reply(&thread, "c-9", "f0rged").to_string().into_bytes();
    assert_eq!(provider.webhook(tampered).await.status, 422);
    // The genuine one afterwards is the first the session sees.
    provider.webhook(callback(&reply(&thread, "c-9", "genuine"))).await;
    assert!(matches!(next_event(session.events()).await, Event::AgentMessage { text, .. } if text == "genuine"));
}

#[tokio::test]
async fn intervention_closed_ends_after_late_replies_and_late_deliveries_are_acknowledged() {
    let server = server(Calls::start()).await;
    let (provider, mut session) = start(&server).await;
    let thread = our_thread(&sent(&server).await);
    assert_eq!(provider.webhook(event("intervention.closed", "e-1", THREAD)).await.status, 200);
    // §9.10: the close may overtake the last reply.
    provider.webhook(callback(&reply(&thread, "c-1", "last words"))).await;
    assert!(matches!(next_event(session.events()).await, Event::AgentMessage { text, .. } if text == "last words"));
    assert_eq!(
        next_event(session.events()).await,
        Event::Ended { by: EndedBy::Agent, reason: Some("the agent closed the intervention".into()) }
    );
    assert_stream_ended(session.events()).await;
    assert_eq!(provider.webhook(event("intervention.closed", "e-1", THREAD)).await.status, 200, "a resend");
    let late = provider.webhook(callback(&reply(&thread, "c-2", "after"))).await;
    assert_eq!(signed_json(&late), json!({ "id": "agent-c-2" }), "acknowledged, not retried forever");
}

#[tokio::test]
async fn events_need_the_secret_and_our_source() {
    let server = server(Calls::start()).await;
    let (provider, mut session) = start(&server).await;
    let mut wrong = event("intervention.closed", "e-1", THREAD);
    wrong.headers.retain(|(k, _)| k != "x-dimelo-secret");
    assert_eq!(provider.webhook(wrong.clone()).await.status, 401);
    let wrong = wrong.with_header("X-Dimelo-Secret", "guess");
    assert_eq!(provider.webhook(wrong).await.status, 401);
    let other_source = json!({ "id": "r", "domain_id": "d", "events": [{ "type": "intervention.closed", "id": "e-2",
        "resource": { "id": "i", "metadata": { "source_id": "someone-else", "thread_id": THREAD } } }] });
    let other = WebhookRequest::post(other_source.to_string().into_bytes()).with_header("X-Dimelo-Secret", SECRET);
    assert_eq!(provider.webhook(other).await.status, 200);
    assert_eq!(provider.webhook(event("intervention.canceled", "e-3", THREAD)).await.status, 200);
    assert_eq!(
        next_event(session.events()).await,
        Event::Ended { by: EndedBy::System, reason: Some("the intervention was canceled".into()) },
        "only the canceled event of our source counted"
    );
}

#[tokio::test]
async fn events_for_threads_learned_from_engage_map_through_foreign_id() {
    let server = server(Calls::default()).await;
    mount(
        &server,
        "GET",
        "/1.0/content_threads/5f0d0000000000000000zz99",
        ResponseTemplate::new(200)
            .set_body_json(json!({ "id": "5f0d0000000000000000zz99", "foreign_id": "h-unknown" })),
        "read thread",
        1,
    )
    .await;
    let provider = provider(config(&server));
    assert_eq!(
        provider.webhook(event("intervention.closed", "e-1", "5f0d0000000000000000zz99")).await.status,
        200,
        "mapped to our thread, which no session owns yet: kept for it"
    );
}

#[tokio::test]
async fn the_webhook_validation_handshake() {
    let server = server(Calls::default()).await;
    let provider = provider(config(&server));
    let validation = |token: &str| {
        WebhookRequest::post(Vec::new())
            .with_method("GET")
            .with_query(format!("hub.mode=subscribe&hub.challenge=ch4ll3nge&hub.verify_token={token}"))
            .with_header("X-Dimelo-Secret", SECRET)
    };
    let ok = provider.webhook(validation("verify-me")).await;
    assert_eq!((ok.status, ok.body.as_slice()), (200, &b"ch4ll3nge"[..]));
    assert_eq!(provider.webhook(validation("wrong")).await.status, 403);
    let mut no_secret = validation("verify-me");
    no_secret.headers.clear();
    assert_eq!(provider.webhook(no_secret).await.status, 403);
    assert_eq!(provider.webhook(WebhookRequest::post(b"{}".to_vec())).await.status, 400);
    assert_eq!(provider.webhook(WebhookRequest::post(Vec::new()).with_method("PUT")).await.status, 405);
}

/// The thread's interventions, `list`, listed `times` times.
async fn mount_interventions(server: &MockServer, list: Value, times: u64) {
    mount(server, "GET", "/1.0/interventions", records(list), "list interventions", times).await;
}

#[tokio::test]
async fn cancelling_before_a_reply_cancels_the_intervention() {
    let server = server(Calls::start()).await;
    mount_interventions(&server, json!([{ "id": INTERVENTION, "closed": false, "thread_id": THREAD }]), 1).await;
    mount(
        &server,
        "DELETE",
        &format!("/1.0/interventions/{INTERVENTION}/cancel"),
        ResponseTemplate::new(200).set_body_json(json!({ "id": INTERVENTION })),
        "cancel intervention",
        1,
    )
    .await;
    let (_provider, mut session) = start(&server).await;
    session.end(EndReason::Cancelled).await.unwrap();
    let listed = &requests_to(&server, "GET", "/1.0/interventions").await[0];
    assert!(listed.url.query_pairs().any(|(k, v)| k == "thread_id" && v == THREAD));
    assert_eq!(requests_to(&server, "DELETE", &format!("/1.0/interventions/{INTERVENTION}/cancel")).await.len(), 1);
    assert_eq!(
        next_event(session.events()).await,
        Event::Ended { by: EndedBy::User, reason: Some("cancelled".into()) }
    );
}

#[tokio::test]
async fn closing_after_a_reply_closes_the_intervention_and_falls_back_when_refused() {
    let server = server(Calls::start()).await;
    let close = format!("/1.0/interventions/{INTERVENTION}/close");
    let cancel = format!("/1.0/interventions/{INTERVENTION}/cancel");
    let refused = json!({ "error": "forbidden", "message": "has no agent reply", "status": 403 });
    mount(&server, "PUT", &close, ResponseTemplate::new(403).set_body_json(refused), "close intervention", 1).await;
    mount(
        &server,
        "DELETE",
        &cancel,
        ResponseTemplate::new(200).set_body_json(json!({ "id": INTERVENTION })),
        "cancel intervention",
        1,
    )
    .await;
    let (provider, mut session) = start(&server).await;
    let thread = our_thread(&sent(&server).await);
    let opened = event("intervention.opened", "e-1", THREAD);
    assert_eq!(provider.webhook(opened).await.status, 200);
    provider.webhook(callback(&reply(&thread, "c-1", "hello"))).await;
    let _ = next_event(session.events()).await;
    session.end(EndReason::Closed).await.unwrap();
    assert_eq!(requests_to(&server, "PUT", &close).await.len(), 1, "an agent replied: close first");
    assert_eq!(requests_to(&server, "DELETE", &cancel).await.len(), 1, "refused: the other call");
    assert!(requests_to(&server, "GET", "/1.0/interventions").await.is_empty(), "known from the event");
}

#[tokio::test]
async fn without_an_intervention_the_thread_goes_back_to_the_bot_category() {
    // To the agents at the start, back to the bot at the end.
    let server = server(Calls { recategorize: 2, ..Calls::start() }).await;
    mount_interventions(&server, json!([]), 1).await;
    let (_provider, mut session) = start(&server).await;
    session.end(EndReason::Cancelled).await.unwrap();
    let puts = requests_to(&server, "PUT", &format!("/1.0/content_threads/{THREAD}/update_categories")).await;
    let last: Vec<(String, String)> = puts.last().unwrap().url.query_pairs().into_owned().collect();
    assert_eq!(last, [("thread_category_ids[]".into(), "cat-bot".into())]);
    assert!(next_event(session.events()).await.is_terminal());
}

#[tokio::test]
async fn a_resumed_session_sees_an_intervention_closed_meanwhile() {
    let server = server(Calls::start()).await;
    mount_interventions(&server, json!([{ "id": INTERVENTION, "closed": true, "thread_id": THREAD }]), 1).await;
    let (provider, session) = start(&server).await;
    let snapshot = session.snapshot().unwrap();
    drop(session);
    let mut resumed = provider.resume(snapshot).await.unwrap();
    assert_eq!(
        next_event(resumed.events()).await,
        Event::Ended { by: EndedBy::Agent, reason: Some("the agent closed the intervention".into()) }
    );
}

#[tokio::test]
async fn check_reads_the_categories() {
    let server = strict_server().await;
    mount(
        &server,
        "GET",
        &format!("/1.0/content_sources/{SOURCE}"),
        ResponseTemplate::new(200).set_body_json(json!({ "id": SOURCE, "active": true })),
        "read source",
        1,
    )
    .await;
    let known = json!([{ "id": "cat-agent" }, { "id": "cat-vip" }]);
    mount(&server, "GET", "/1.0/categories", records(known), "read categories", 1).await;
    let Err(error) = provider(config(&server)).check().await else { panic!("cat-bot is missing") };
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.message().contains("no category cat-bot"), "{}", error.message());
    let asked = &requests_to(&server, "GET", "/1.0/categories").await[0];
    assert!(asked.url.query_pairs().any(|(k, v)| k == "ids" && v == "cat-agent,cat-vip,cat-agent,cat-bot"));
}

#[tokio::test]
async fn configuration_mistakes_are_explained() {
    let base = || RingCentralConfig::new("acme.digital.ringcentral.com", "s", "t", "a", "cat");
    let Err(error) = RingCentralProvider::new(base()) else { panic!("no webhook auth") };
    assert!(error.message().contains("webhook_secret"), "{}", error.message());
    let mut no_token = base().with_webhook_secret("s");
    no_token.source_token = String::new().into();
    let Err(error) = RingCentralProvider::new(no_token) else { panic!("empty token") };
    assert!(error.message().contains("`source_token` is empty"), "{}", error.message());
    let unknown = serde_json::from_value::<RingCentralConfig>(json!({
        "source_id": "s", "source_token": "t", "access_token": "a", "agent_category_id": "c", "category": "x",
    }));
    assert!(unknown.unwrap_err().to_string().contains("unknown field `category`"));
}

#[tokio::test]
async fn check_reads_the_source_and_reports_what_only_traffic_proves() {
    let server = strict_server().await;
    Mock::given(method("GET"))
        .and(path(format!("/1.0/content_sources/{SOURCE}").as_str()))
        .and(wiremock::matchers::header("authorization", "Bearer api-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": SOURCE, "active": true })))
        .expect(1)
        .named("read source")
        .mount(&server)
        .await;
    let known = json!([{ "id": "cat-agent" }, { "id": "cat-vip" }, { "id": "cat-bot" }]);
    mount(&server, "GET", "/1.0/categories", records(known), "read categories", 1).await;
    let report = provider(config(&server)).check().await.expect("check");
    assert!(report.verified_items().iter().any(|v| v.contains("source_id")), "{report}");
    assert!(report.unverified_items().iter().any(|v| v.starts_with("source_token")), "{report}");
}

/// A Send API request's params without the time it was sent at.
fn without_stamp(request: &Value) -> Value {
    let mut params = request["params"].clone();
    assert!(params["created_at"].is_string(), "{params}");
    params.as_object_mut().unwrap().remove("created_at");
    params
}

#[tokio::test]
async fn user_files_go_as_messages_with_base64_content_or_a_url_and_a_derived_id() {
    // Four at the start, then three files.
    let server = server(Calls { send: 7, ..Calls::start() }).await;
    let (_provider, session) = start(&server).await;
    let before = sent(&server).await.len();
    let data: Vec<u8> = (0..=255u8).cycle().take(700).collect();
    let scan =
        handover_core::Attachment::bytes("invoice scan.png", "image/png", data.clone()).with_caption("See the scan");
    session.send(UserInput::attachment("f-1", scan)).await.unwrap();
    session
        .send(UserInput::attachment("f-2", handover_core::Attachment::bytes("notes.txt", "text/plain", b"hi".to_vec())))
        .await
        .unwrap();
    let clip = handover_core::Attachment::url(
        "clip.mp4",
        "video/mp4",
        "https://files.example/clip.mp4?X-Amz-Signature=abc&X-Amz-Expires=600",
    );
    session.send(UserInput::attachment("f-3", clip)).await.unwrap();
    let sent = sent(&server).await;
    let thread = our_thread(&sent);
    let user = sent[before]["params"]["author"].clone();
    assert_eq!((user["id"].as_str(), user["puppetizable"].as_bool()), (Some("user-42"), Some(false)));
    let id = |input: &str| format!("{thread}:m:{}", handover_transport::ids::client_uuid(&thread, input));
    let new: Vec<(&Value, Value)> = sent[before..].iter().map(|r| (&r["action"], without_stamp(r))).collect();
    assert_eq!(new.len(), 3);
    assert!(new.iter().all(|(action, _)| *action == "messages.create"));
    use base64::Engine as _;
    assert_eq!(
        new[0].1,
        json!({
            "id": id("f-1"), "author": user, "body": "See the scan", "format": "text", "thread_id": thread,
            "attachments": [{
                "content": base64::engine::general_purpose::STANDARD.encode(&data), "filename": "invoice scan.png",
            }],
        })
    );
    assert_eq!(
        new[1].1,
        json!({
            "id": id("f-2"), "author": user, "format": "text", "thread_id": thread,
            "attachments": [{ "content": "aGk=", "filename": "notes.txt" }],
        }),
        "no caption: no body (required only without attachments)"
    );
    assert_eq!(
        new[2].1,
        json!({
            "id": id("f-3"), "author": user, "format": "text", "thread_id": thread,
            "attachments": [{
                "url": "https://files.example/clip.mp4?X-Amz-Signature=abc&X-Amz-Expires=600",
                "filename": "clip.mp4", "type": "video",
            }],
        }),
        "a URL Engage fetches; an .mp4 says audio or video"
    );
}

#[tokio::test]
async fn a_file_engage_refuses_as_too_large_or_a_caption_too_long_is_invalid_input() {
    let server = server(Calls::start()).await;
    let (_provider, session) = start(&server).await;
    Mock::given(method("POST"))
        .and(path(REALTIME))
        .respond_with(ResponseTemplate::new(413).set_body_string("Invalid request size (max: 20971520 bytes)"))
        .with_priority(1)
        .named("send api: too large")
        .expect(1)
        .mount(&server)
        .await;
    let file = handover_core::Attachment::bytes("scan.png", "image/png", vec![7; 32]);
    let error = session.send(UserInput::attachment("big", file.clone())).await.unwrap_err();
    assert_eq!((error.kind(), error.status()), (ErrorKind::InvalidInput, Some(413)), "{error}");
    assert!(error.to_string().contains("too large") && error.to_string().contains("20971520"), "{error}");
    // Refused before any request: Engage would silently drop a body over 20 000 characters.
    let error = session.send(UserInput::attachment("long", file.with_caption("x".repeat(20_001)))).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains("20000 characters"), "{error}");
}

#[tokio::test]
async fn agent_files_arrive_as_urls_with_the_caption_as_text_and_agents_may_attach_them() {
    let server = server(Calls::start()).await;
    let (provider, mut session) = start(&server).await;
    let thread = our_thread(&sent(&server).await);
    let info =
        provider.webhook(callback(&json!({ "action": "implementation.info", "time": "2012-10-01T17:18:40Z" }))).await;
    let options = signed_json(&info)["options"].clone();
    assert!(options.as_array().unwrap().contains(&json!("messages.attachments")), "{options}");
    let url = "https://acme.digital.ringcentral.com/attachments/5f0d00000000000000000a11";
    let mut with_caption = reply(&thread, "c-7", "Your returns label");
    with_caption["params"]["attachments"] = json!([{ "url": url, "type": "pdf", "filename": "returns-label.pdf" }]);
    assert_eq!(signed_json(&provider.webhook(callback(&with_caption)).await), json!({ "id": "agent-c-7" }));
    let mut alone = reply(&thread, "c-8", "");
    alone["params"]["attachments"] = with_caption["params"]["attachments"].clone();
    assert_eq!(signed_json(&provider.webhook(callback(&alone)).await), json!({ "id": "agent-c-8" }));
    let label = handover_core::Attachment::url("returns-label.pdf", "application/pdf", url);
    let ann = handover_core::Agent::named("Ann").with_id("agent-identity");
    assert_eq!(
        next_event(session.events()).await,
        Event::AgentMessage {
            id: "c-7".into(),
            text: "Your returns label".into(),
            agent: ann.clone(),
            attachments: vec![label.clone()]
        }
    );
    assert_eq!(
        next_event(session.events()).await,
        Event::AgentMessage { id: "c-8".into(), text: String::new(), agent: ann, attachments: vec![label] },
        "a file without text is still a message"
    );
}
