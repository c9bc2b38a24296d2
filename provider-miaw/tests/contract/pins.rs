//! wiremock pins of every request the provider sends (`protocols/salesforce-miaw.md` §3,
//! §10): method, path, headers, bodies, and the order of the start sequence.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use handover_core::{Attachment, EndReason, EndedBy, ErrorKind, Event, HandoverRequest, Provider, UserInput};
use handover_testkit::mock::{body_json, header, requests_to, strict_server};
use handover_testkit::sample_request;
use handover_testkit::scenarios::{events_until, message_texts};
use handover_transport::retry::{RetryPolicy, Sleeper};
use handover_transport::sse::SseConfig;
use provider_miaw::{IdentityAlgorithm, MiawConfig, MiawProvider};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header as has_header, method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, Times};

const ORG: &str = "00DTEST000000001";
const DEPLOYMENT: &str = "Test_Deployment";
const TOKEN_PATH: &str = "/iamessage/api/v2/authorization/unauthenticated/access-token";
const AUTH_TOKEN_PATH: &str = "/iamessage/api/v2/authorization/authenticated/access-token";
const CREATE_PATH: &str = "/iamessage/api/v2/conversation";
const SSE_PATH: &str = "/eventrouter/v1/sse";

type Slot = Arc<Mutex<Option<String>>>;
/// The frames of connection `n` for conversation `id`.
type FrameScript = dyn Fn(usize, &str) -> Vec<String> + Send + Sync;

/// A JWT-shaped token with `sub` and an expiry an hour away.
fn jwt(sub: &str, n: u32) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let payload = B64.encode(json!({ "sub": sub, "exp": exp }).to_string());
    format!("eyJhbGciOiJub25lIn0.{payload}.sig{n}")
}

fn token_response(token: &str, subject: &str) -> Value {
    json!({
        "accessToken": token,
        "lastEventId": "42",
        "context": { "endUser": { "role": "EndUser", "subject": subject }, "configuration": {} },
    })
}

fn config(server: &MockServer) -> MiawConfig {
    let mut config = MiawConfig::new(server.uri(), ORG, DEPLOYMENT);
    config.routing_attributes.insert("customerName".into(), json!("Jane Doe"));
    config.routing_attributes.insert("issueType".into(), json!("Billing"));
    config.language = Some("en_US".into());
    config
}

/// Delays are recorded, not slept; SSE reconnects wait on the real clock for `retry:`.
fn provider(config: MiawConfig, delays: &Arc<Mutex<Vec<Duration>>>) -> MiawProvider {
    let recorded = delays.clone();
    let retry = RetryPolicy::default().with_jitter(false).with_sleeper(Sleeper::new(move |d| {
        recorded.lock().unwrap().push(d);
        async {}
    }));
    let sse = SseConfig::default()
        .with_reconnect(RetryPolicy::default().with_backoff(Duration::from_millis(5), Duration::from_millis(50)));
    MiawProvider::builder(config).retry(retry).sse(sse).build().unwrap()
}

fn request() -> HandoverRequest {
    let mut request = sample_request();
    request.routing.attributes.insert("issueType".into(), json!("Invoice"));
    request
}

/// The SSE endpoint: the first connection (before the conversation exists) carries nothing
/// and asks for a quick reconnect; later ones carry `frames(n, conversation_id)`.
#[derive(Clone)]
struct SseScript {
    conversation: Slot,
    connections: Arc<AtomicUsize>,
    frames: Arc<FrameScript>,
}

impl Respond for SseScript {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.connections.fetch_add(1, Ordering::SeqCst);
        let conversation = self.conversation.lock().unwrap().clone().unwrap_or_default();
        let frames = (self.frames)(n, &conversation);
        let mut body = String::from(if n == 0 { "retry: 1\n: opened\n\n" } else { "" });
        for frame in &frames {
            body.push_str(frame);
        }
        // Unless the script asks otherwise, the next reconnect waits past the test's end.
        if n > 0 && !frames.iter().any(|f| f.starts_with("retry:")) {
            body.push_str("retry: 600000\n\n");
        }
        ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
    }
}

/// Records the conversation id the client chose, answering 201.
struct Create(Slot);

impl Respond for Create {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        *self.0.lock().unwrap() = body["conversationId"].as_str().map(str::to_owned);
        ResponseTemplate::new(201)
    }
}

fn frame(event: &str, id: u64, conversation: &str, entry_type: &str, payload: Value, role: &str, at: u64) -> String {
    let data = json!({
        "conversationId": conversation,
        "conversationEntry": {
            "identifier": format!("entry-{id}"),
            "entryType": entry_type,
            "entryPayload": payload.to_string(),
            "sender": { "role": role, "subject": if role == "Agent" { "005AGENT" } else { "sys" } },
            "senderDisplayName": if role == "Agent" { "Jane" } else { "System" },
            "transcriptedTimestamp": at,
        },
    });
    format!("event: {event}\nid: {id}\ndata: {data}\n\n")
}

fn text(text: &str) -> Value {
    json!({ "abstractMessage": { "messageType": "StaticContentMessage", "staticContent": { "formatType": "Text", "text": text } } })
}

struct Rig {
    server: MockServer,
    token: String,
    conversation: Slot,
    connections: Arc<AtomicUsize>,
    delays: Arc<Mutex<Vec<Duration>>>,
}

/// How many requests each endpoint of a [`Rig`] must see in a test.
struct Calls {
    token: Times,
    /// Stream connections: the first asks for a quick reconnect, which may or may not come
    /// before the test is done.
    stream: Times,
    create: Times,
    message: Times,
    /// Back-fills: one after each reconnect that came in time.
    entries: Times,
}

impl Calls {
    /// A `start` sending `messages` messages.
    fn start(messages: u64) -> Self {
        Self {
            token: 1.into(),
            stream: (1..).into(),
            create: 1.into(),
            message: messages.into(),
            entries: (..=1).into(),
        }
    }
}

impl Rig {
    /// A server with the guest token, SSE (scripted by `frames`), create and message mocks,
    /// each expecting its count of `calls`.
    async fn new(calls: Calls, frames: impl Fn(usize, &str) -> Vec<String> + Send + Sync + 'static) -> Self {
        let server = strict_server().await;
        let conversation: Slot = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let token = jwt("v2/iamessage/ANON/1", 1);
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(token_response(&token, "v2/iamessage/ANON/1")))
            .named("guest token")
            .expect(calls.token)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(SSE_PATH))
            .respond_with(SseScript {
                conversation: conversation.clone(),
                connections: connections.clone(),
                frames: Arc::new(frames),
            })
            .named("event stream")
            .expect(calls.stream)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(CREATE_PATH))
            .respond_with(Create(conversation.clone()))
            .named("create conversation")
            .expect(calls.create)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(r"^/iamessage/api/v2/conversation/[0-9a-f-]+/message$"))
            .respond_with(ResponseTemplate::new(202).set_body_json(json!({ "conversationEntries": [] })))
            .named("send message")
            .expect(calls.message)
            .with_priority(10)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/iamessage/api/v2/conversation/[0-9a-f-]+/entries$"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "conversationEntries": [] })))
            .named("entries")
            .expect(calls.entries)
            .with_priority(10)
            .mount(&server)
            .await;
        Self { server, token, conversation, connections, delays: Arc::default() }
    }

    fn provider(&self, f: impl FnOnce(&mut MiawConfig)) -> MiawProvider {
        let mut config = config(&self.server);
        f(&mut config);
        provider(config, &self.delays)
    }

    fn conversation(&self) -> String {
        self.conversation.lock().unwrap().clone().expect("a conversation was created")
    }

    async fn all(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap()
    }
}

fn is_uuid_v4_lowercase(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4) && id == id.to_lowercase()
}

#[tokio::test]
async fn start_takes_a_guest_token_opens_the_stream_then_creates_the_conversation_and_sends_the_transcript() {
    let rig = Rig::new(Calls::start(1), |_, _| Vec::new()).await;
    let provider = rig.provider(|_| {});
    let session = provider.start(request()).await.expect("start");

    let all = rig.all().await;
    let order: Vec<String> = all.iter().map(|r| format!("{} {}", r.method, r.url.path())).collect();
    let conversation = rig.conversation();
    assert_eq!(
        order[..4],
        [
            format!("POST {TOKEN_PATH}"),
            format!("GET {SSE_PATH}"),
            format!("POST {CREATE_PATH}"),
            format!("POST {CREATE_PATH}/{conversation}/message"),
        ],
        "token, then the stream, then the conversation, then the transcript"
    );

    let token = &all[0];
    assert_eq!(header(token, "content-type"), "application/json");
    assert!(token.headers.get("authorization").is_none());
    assert_eq!(
        body_json(token),
        json!({ "orgId": ORG, "esDeveloperName": DEPLOYMENT, "capabilitiesVersion": "1", "platform": "Web" })
    );

    let sse = &all[1];
    assert_eq!(header(sse, "accept"), "text/event-stream");
    assert_eq!(header(sse, "authorization"), format!("Bearer {}", rig.token));
    assert_eq!(header(sse, "x-org-id"), ORG);
    assert_eq!(header(sse, "last-event-id"), "42", "the token's lastEventId");

    let create = &all[2];
    assert_eq!(header(create, "authorization"), header(sse, "authorization"));
    let body = body_json(create);
    assert!(is_uuid_v4_lowercase(body["conversationId"].as_str().unwrap()), "{body}");
    assert_eq!(body["esDeveloperName"], DEPLOYMENT);
    assert_eq!(
        body["routingAttributes"],
        json!({ "customerName": "Jane Doe", "issueType": "Invoice" }),
        "config merged with the request, request wins"
    );
    assert_eq!(body["language"], "en_US");

    let transcript = body_json(&all[3]);
    let id = transcript["message"]["id"].as_str().unwrap().to_owned();
    assert!(is_uuid_v4_lowercase(&id));
    let conversation_id = body["conversationId"].as_str().unwrap();
    assert_eq!(
        id,
        handover_transport::ids::client_uuid(conversation_id, "transcript-0"),
        "derived, so a resend matches"
    );
    assert_eq!(
        transcript,
        json!({
            "message": {
                "id": id,
                "messageType": "StaticContentMessage",
                "staticContent": {
                    "formatType": "Text",
                    "text": "User: My invoice is wrong\nBot: I can connect you to an agent.\nUser: Ja, bitte — schnell 👍🏽"
                },
            },
            "esDeveloperName": DEPLOYMENT,
        })
    );
    drop(session);
}

#[tokio::test]
async fn without_send_transcript_as_first_message_no_message_is_sent() {
    let rig = Rig::new(Calls::start(0), |_, _| Vec::new()).await;
    let provider = rig.provider(|c| c.send_transcript_as_first_message = false);
    let _session = provider.start(request()).await.expect("start");
    let messages = requests_to(&rig.server, "POST", &format!("{CREATE_PATH}/{}/message", rig.conversation())).await;
    assert!(messages.is_empty());
}

#[tokio::test]
async fn an_identity_token_gets_an_authenticated_token() {
    let server = strict_server().await;
    let subject = "v2/iamessage/AUTH/keyset/uid:user-42";
    Mock::given(method("POST"))
        .and(path(AUTH_TOKEN_PATH))
        .and(body_partial_json(json!({ "authorizationType": "JWT", "customerIdentityToken": "identity.jwt.value" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_response(&jwt(subject, 1), subject)))
        .expect(1)
        .named("authenticated token")
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.identity_token = Some("identity.jwt.value".to_owned().into());
    let provider = provider(config, &Arc::default());
    provider.check().await.expect("a verified subject is accepted");
    let request = &requests_to(&server, "POST", AUTH_TOKEN_PATH).await[0];
    assert_eq!(
        body_json(request),
        json!({
            "orgId": ORG,
            "esDeveloperName": DEPLOYMENT,
            "capabilitiesVersion": "1",
            "platform": "Web",
            "authorizationType": "JWT",
            "customerIdentityToken": "identity.jwt.value",
        })
    );
}

#[tokio::test]
async fn a_silent_guest_fallback_is_unauthenticated_and_goes_no_further() {
    let server = strict_server().await;
    let subject = "v2/iamessage/ANON/0b5e";
    Mock::given(method("POST"))
        .and(path(AUTH_TOKEN_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_response(&jwt(subject, 1), subject)))
        .named("authenticated token: a guest's")
        .expect(1)
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.identity_token = Some("expired.identity.jwt".to_owned().into());
    let provider = provider(config, &Arc::default());
    let error = provider.start(request()).await.expect_err("no guest fallback");
    assert_eq!(error.kind(), ErrorKind::Unauthenticated);
    assert!(error.to_string().contains("guest token"), "{error}");
    assert!(!error.to_string().contains("expired.identity.jwt"), "no secret in the error");
    // The strict server's catch-all proves that no stream or conversation was requested.
}

#[tokio::test]
async fn minted_identity_jwts_carry_the_configured_claims_and_verify_with_the_public_key() {
    let private = include_str!("../fixtures/identity_key.pem");
    let public = include_str!("../fixtures/identity_key.pub.pem");
    for (algorithm, jwt_algorithm) in [
        (IdentityAlgorithm::RS256, jsonwebtoken::Algorithm::RS256),
        (IdentityAlgorithm::RS512, jsonwebtoken::Algorithm::RS512),
    ] {
        let server = strict_server().await;
        let subject = "v2/iamessage/AUTH/keyset/uid:handover-check";
        Mock::given(method("POST"))
            .and(path(AUTH_TOKEN_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(token_response(&jwt(subject, 1), subject)))
            .named("authenticated token")
            .expect(1)
            .mount(&server)
            .await;
        let mut config = config(&server);
        config.identity_private_key = Some(private.to_owned().into());
        config.identity_issuer = Some("https://bot.example".into());
        config.identity_audience = Some("https://acme.my.salesforce.com".into());
        config.identity_key_id = Some("key-1".into());
        config.identity_algorithm = algorithm;
        config.identity_ttl_secs = 120;
        provider(config, &Arc::default()).check().await.expect("check");
        let body = body_json(&requests_to(&server, "POST", AUTH_TOKEN_PATH).await[0]);
        let identity = body["customerIdentityToken"].as_str().unwrap();
        let header = jsonwebtoken::decode_header(identity).unwrap();
        assert_eq!(header.alg, jwt_algorithm);
        assert_eq!(header.kid.as_deref(), Some("key-1"));
        let mut validation = jsonwebtoken::Validation::new(jwt_algorithm);
        validation.set_audience(&["https://acme.my.salesforce.com"]);
        validation.set_issuer(&["https://bot.example"]);
        let claims = jsonwebtoken::decode::<Value>(
            identity,
            &jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
            &validation,
        )
        .expect("signed by the configured key")
        .claims;
        assert_eq!(claims["sub"], "handover-check");
        assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 120);
    }
}

#[tokio::test]
async fn a_417_resends_with_a_new_messaging_session_and_the_routing_attributes() {
    let rig = Rig::new(Calls::start(1), |_, _| Vec::new()).await;
    let provider = rig.provider(|c| c.send_transcript_as_first_message = false);
    let session = provider.start(request()).await.expect("start");
    let at = format!("{CREATE_PATH}/{}/message", rig.conversation());
    Mock::given(method("POST"))
        .and(path(at.as_str()))
        .respond_with(ResponseTemplate::new(417).set_body_json(json!({ "message": "No active messaging session." })))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .named("417 once")
        .mount(&rig.server)
        .await;
    session.send(UserInput::message("u1", "Are you there?")).await.expect("sent after re-creating the session");
    let sent = requests_to(&rig.server, "POST", &at).await;
    assert_eq!(sent.len(), 2);
    let (first, second) = (body_json(&sent[0]), body_json(&sent[1]));
    assert!(first.get("isNewMessagingSession").is_none());
    assert_eq!(second["isNewMessagingSession"], true);
    assert_eq!(second["routingAttributes"], json!({ "customerName": "Jane Doe", "issueType": "Invoice" }));
    assert_eq!(second["language"], "en_US");
    assert_eq!(second["message"], first["message"], "the same message, same id");
    assert_eq!(
        first["message"]["id"],
        handover_transport::ids::client_uuid(&rig.conversation(), "u1"),
        "the id is derived from the input's id"
    );
}

#[tokio::test]
async fn typing_posts_an_entry() {
    let rig = Rig::new(Calls::start(0), |_, _| Vec::new()).await;
    let session = rig.provider(|c| c.send_transcript_as_first_message = false).start(request()).await.unwrap();
    let at = format!("{CREATE_PATH}/{}/entry", rig.conversation());
    Mock::given(method("POST"))
        .and(path(at.as_str()))
        .respond_with(ResponseTemplate::new(202))
        .named("typing entry")
        .expect(2)
        .mount(&rig.server)
        .await;
    session.send(UserInput::Typing { on: true }).await.unwrap();
    session.send(UserInput::Typing { on: false }).await.unwrap();
    let sent = requests_to(&rig.server, "POST", &at).await;
    assert_eq!(body_json(&sent[0])["entryType"], "TypingStartedIndicator");
    assert_eq!(body_json(&sent[1])["entryType"], "TypingStoppedIndicator");
    assert!(is_uuid_v4_lowercase(body_json(&sent[0])["id"].as_str().unwrap()));
}

#[tokio::test]
async fn user_presence_is_sent_as_text() {
    let rig = Rig::new(Calls::start(2), |_, _| Vec::new()).await;
    let session = rig.provider(|c| c.send_transcript_as_first_message = false).start(request()).await.unwrap();
    session.send(UserInput::Disconnected).await.unwrap();
    session.send(UserInput::Connected).await.unwrap();
    let sent = requests_to(&rig.server, "POST", &format!("{CREATE_PATH}/{}/message", rig.conversation())).await;
    let texts: Vec<Value> = sent.iter().map(|r| body_json(r)["message"]["staticContent"]["text"].clone()).collect();
    assert_eq!(texts, [json!("User left the conversation"), json!("User joined the conversation")]);
}

#[tokio::test]
async fn ending_deletes_the_conversation_with_the_deployment_name_and_ends_the_stream() {
    let rig = Rig::new(Calls::start(0), |_, _| Vec::new()).await;
    let mut session = rig.provider(|c| c.send_transcript_as_first_message = false).start(request()).await.unwrap();
    let at = format!("{CREATE_PATH}/{}", rig.conversation());
    Mock::given(method("DELETE"))
        .and(path(at.as_str()))
        .and(query_param("esDeveloperName", DEPLOYMENT))
        .and(has_header("authorization", format!("Bearer {}", rig.token).as_str()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .named("close conversation")
        .mount(&rig.server)
        .await;
    session.end(EndReason::Cancelled).await.unwrap();
    let events = events_until(session.events(), Event::is_terminal).await;
    assert!(matches!(events.last(), Some(Event::Ended { by: EndedBy::User, .. })), "{events:?}");
}

#[tokio::test]
async fn a_401_mid_session_renews_a_verified_users_token_once_and_retries() {
    let server = strict_server().await;
    let subject = "v2/iamessage/AUTH/keyset/uid:user-42";
    let conversation: Slot = Arc::default();
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    Mock::given(method("POST"))
        .and(path(AUTH_TOKEN_PATH))
        .respond_with(move |_: &Request| {
            let n = u32::try_from(counter.fetch_add(1, Ordering::SeqCst)).unwrap() + 1;
            ResponseTemplate::new(200).set_body_json(token_response(&jwt(subject, n), subject))
        })
        .named("authenticated token")
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(SSE_PATH))
        .respond_with(SseScript {
            conversation: conversation.clone(),
            connections: Arc::default(),
            frames: Arc::new(|_, _| Vec::new()),
        })
        .named("event stream")
        .expect(1..)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CREATE_PATH))
        .respond_with(Create(conversation.clone()))
        .named("create conversation")
        .expect(1)
        .mount(&server)
        .await;
    // The stream's quick first reconnect back-fills.
    Mock::given(method("GET"))
        .and(path_regex(r"/entries$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "conversationEntries": [] })))
        .named("entries")
        .expect(..=1)
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.identity_token = Some("identity.jwt.value".to_owned().into());
    config.send_transcript_as_first_message = false;
    let session = provider(config, &Arc::default()).start(request()).await.unwrap();
    let message_path = format!("{CREATE_PATH}/{}/message", conversation.lock().unwrap().clone().unwrap());
    Mock::given(method("POST"))
        .and(path(message_path.as_str()))
        .and(has_header("authorization", format!("Bearer {}", jwt(subject, 1)).as_str()))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({ "message": "Jwt is expired" })))
        .named("send message: expired token")
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(message_path.as_str()))
        .and(has_header("authorization", format!("Bearer {}", jwt(subject, 2)).as_str()))
        .respond_with(ResponseTemplate::new(202))
        .named("send message: renewed token")
        .expect(1)
        .mount(&server)
        .await;
    session.send(UserInput::message("u1", "hello")).await.expect("sent with the renewed token");
}

#[tokio::test]
async fn a_guest_401_mid_session_is_unauthenticated() {
    let rig = Rig::new(Calls::start(0), |_, _| Vec::new()).await;
    let session = rig.provider(|c| c.send_transcript_as_first_message = false).start(request()).await.unwrap();
    let at = format!("{CREATE_PATH}/{}/message", rig.conversation());
    Mock::given(method("POST"))
        .and(path(at.as_str()))
        .respond_with(ResponseTemplate::new(401).set_body_string("Jwt is expired"))
        .with_priority(1)
        .named("send message: expired token")
        .expect(1)
        .mount(&rig.server)
        .await;
    let error = session.send(UserInput::message("u1", "hello")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated);
    assert!(error.to_string().contains("guest tokens cannot be renewed"), "{error}");
}

#[tokio::test]
async fn rate_limits_and_server_errors_on_send_are_retried_honouring_retry_after() {
    let rig = Rig::new(Calls::start(1), |_, _| Vec::new()).await;
    let session = rig.provider(|c| c.send_transcript_as_first_message = false).start(request()).await.unwrap();
    let at = format!("{CREATE_PATH}/{}/message", rig.conversation());
    for (i, response) in [ResponseTemplate::new(429).insert_header("retry-after", "3"), ResponseTemplate::new(503)]
        .into_iter()
        .enumerate()
    {
        Mock::given(method("POST"))
            .and(path(at.as_str()))
            .respond_with(response)
            .up_to_n_times(1)
            .with_priority(u8::try_from(i + 1).unwrap())
            .named(format!("send message: refused once ({i})"))
            .expect(1)
            .mount(&rig.server)
            .await;
    }
    session.send(UserInput::message("u1", "hello")).await.expect("delivered on the third attempt");
    assert_eq!(requests_to(&rig.server, "POST", &at).await.len(), 3);
    let delays = rig.delays.lock().unwrap().clone();
    assert_eq!(delays[0], Duration::from_secs(3), "Retry-After honoured: {delays:?}");
}

#[tokio::test]
async fn reconnects_send_the_last_event_id_and_back_fill_from_the_entries_endpoint() {
    let rig =
        Rig::new(Calls { stream: (3..).into(), entries: (1..).into(), ..Calls::start(0) }, |n, conversation| match n {
            1 => vec![
                "event: ping\ndata: 0\n\n".to_owned(),
                frame("CONVERSATION_MESSAGE", 100, conversation, "Message", text("one"), "Agent", 1_710_000_000_100),
                "retry: 1\n\n".to_owned(),
            ],
            _ => {
                vec![frame(
                    "CONVERSATION_MESSAGE",
                    102,
                    conversation,
                    "Message",
                    text("three"),
                    "Agent",
                    1_710_000_000_300,
                )]
            }
        })
        .await;
    let entries = json!({ "conversationEntries": [
        { "identifier": "entry-100", "entryType": "Message", "entryPayload": text("one"), "sender": { "role": "Agent" }, "senderDisplayName": "Jane", "transcriptedTimestamp": 1_710_000_000_100u64 },
        { "identifier": "entry-101", "entryType": "Message", "entryPayload": text("two"), "sender": { "role": "Agent" }, "senderDisplayName": "Jane", "transcriptedTimestamp": 1_710_000_000_200u64 },
    ]});
    let mut session = rig.provider(|c| c.send_transcript_as_first_message = false).start(request()).await.unwrap();
    let entries_path = format!("{CREATE_PATH}/{}/entries", rig.conversation());
    Mock::given(method("GET"))
        .and(path(entries_path.as_str()))
        .and(query_param("startTimestamp", "1710000000100"))
        .and(query_param("direction", "FromStart"))
        .and(query_param("limit", "50"))
        .respond_with(ResponseTemplate::new(200).set_body_json(entries))
        .with_priority(1)
        .named("back-fill from the watermark")
        .expect(1)
        .mount(&rig.server)
        .await;
    let events =
        events_until(session.events(), |e| matches!(e, Event::AgentMessage { text, .. } if text == "three")).await;
    assert_eq!(message_texts(&events), ["one", "two", "three"], "nothing lost, nothing repeated: {events:?}");
    let streams = requests_to(&rig.server, "GET", SSE_PATH).await;
    assert!(streams.len() >= 3);
    assert_eq!(header(&streams[2], "last-event-id"), "100", "the last id seen");
    assert!(rig.connections.load(Ordering::SeqCst) >= 3);
}

#[tokio::test]
async fn a_removed_agent_is_a_transfer_when_the_routing_status_says_so() {
    let rig = Rig::new(Calls { stream: (2..).into(), entries: (1..).into(), ..Calls::start(1) }, |n, conversation| {
        if n != 1 {
            return Vec::new();
        }
        let agent = json!({ "role": "Agent", "subject": "005AGENT" });
        vec![
            frame(
                "CONVERSATION_PARTICIPANT_CHANGED",
                200,
                conversation,
                "ParticipantChanged",
                json!({ "entries": [{ "operation": "add", "displayName": "Jane", "participant": agent }] }),
                "System",
                1,
            ),
            frame(
                "CONVERSATION_PARTICIPANT_CHANGED",
                201,
                conversation,
                "ParticipantChanged",
                json!({ "entries": [{ "operation": "remove", "displayName": "Jane", "participant": agent }] }),
                "System",
                2,
            ),
            frame(
                "CONVERSATION_SESSION_STATUS_CHANGED",
                202,
                conversation,
                "SessionStatusChanged",
                json!({ "sessionStatus": "Ended" }),
                "System",
                3,
            ),
        ]
    })
    .await;
    let mut session = rig.provider(|c| c.end_on_participant_change = true).start(request()).await.unwrap();
    let status_path = format!("{CREATE_PATH}/{}", rig.conversation());
    Mock::given(method("GET"))
        .and(path(status_path.as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "conversationId": rig.conversation(), "routingStatus": "TRANSFER" })),
        )
        .expect(1)
        .named("routing status")
        .mount(&rig.server)
        .await;
    let events = events_until(session.events(), Event::is_terminal).await;
    let interesting: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::AgentJoined { .. } | Event::AgentLeft { .. } | Event::Ended { .. }))
        .collect();
    assert!(matches!(interesting[0], Event::AgentJoined { agent } if agent.name.as_deref() == Some("Jane")));
    assert!(matches!(interesting[1], Event::AgentLeft { transfer: true, .. }), "{interesting:?}");
    assert!(matches!(interesting[2], Event::Ended { by: EndedBy::Agent, .. }), "{interesting:?}");
}

#[tokio::test]
async fn pings_echoes_unknown_events_and_other_conversations_are_ignored() {
    let rig = Rig::new(Calls { stream: (2..).into(), entries: (1..).into(), ..Calls::start(0) }, |n, conversation| {
        if n != 1 {
            return Vec::new();
        }
        vec![
            "event: ping\ndata: 0\n\n".to_owned(),
            frame(
                "CONVERSATION_MESSAGE",
                300,
                "99999999-0000-4000-8000-000000000000",
                "Message",
                text("not ours"),
                "Agent",
                1,
            ),
            frame("CONVERSATION_MESSAGE", 301, conversation, "Message", text("my own echo"), "EndUser", 2),
            frame("CONVERSATION_SOMETHING_NEW", 302, conversation, "SomethingNew", json!({}), "System", 3),
            "event: CONVERSATION_MESSAGE\nid: 303\ndata: {not json}\n\n".to_owned(),
            frame("CONVERSATION_MESSAGE", 304, conversation, "Message", text("real"), "Agent", 4),
        ]
    })
    .await;
    let mut session = rig.provider(|c| c.send_transcript_as_first_message = false).start(request()).await.unwrap();
    let events = events_until(session.events(), |e| matches!(e, Event::AgentMessage { .. })).await;
    assert_eq!(message_texts(&events), ["real"]);
}

/// The exact multipart body of a file upload (#10) with the boundary the request announces.
fn file_body(boundary: &str, entry: &Value, (name, media_type, data): (&str, &str, &[u8])) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"messageEntry\"\r\nContent-Type: application/json\r\n\r\n{entry}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"fileData\"; filename=\"{name}\"\r\nContent-Type: {media_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[tokio::test]
async fn a_file_goes_out_as_multipart_with_its_message_entry_and_derived_ids() {
    let rig = Rig::new(Calls::start(0), |_, _| Vec::new()).await;
    let session = rig.provider(|c| c.send_transcript_as_first_message = false).start(request()).await.unwrap();
    let conversation = rig.conversation();
    let at = format!("{CREATE_PATH}/{conversation}/file");
    Mock::given(method("POST"))
        .and(path(at.as_str()))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({ "conversationEntries": [] })))
        .named("send file")
        .expect(2)
        .mount(&rig.server)
        .await;
    let data = vec![0x25, b'P', b'D', b'F', 0, 0xfe, b'\r', b'\n'];
    let captioned = Attachment::bytes("invoice scan.png", "image/png", data.clone()).with_caption("My invoice — p. 1");
    session.send(UserInput::attachment("file-1", captioned)).await.expect("sent");
    let bare = Attachment::bytes("form.pdf", "application/pdf", b"%PDF-1.7".to_vec());
    session.send(UserInput::attachment("file-2", bare)).await.expect("sent");

    let sent = requests_to(&rig.server, "POST", &at).await;
    for (request, (input, caption, file)) in sent.iter().zip([
        ("file-1", "My invoice — p. 1", ("invoice scan.png", "image/png", &data[..])),
        ("file-2", "", ("form.pdf", "application/pdf", &b"%PDF-1.7"[..])),
    ]) {
        assert_eq!(header(request, "authorization"), format!("Bearer {}", rig.token));
        let content_type = header(request, "content-type");
        let boundary = content_type.strip_prefix("multipart/form-data; boundary=").expect(content_type);
        let entry = json!({
            "esDeveloperName": DEPLOYMENT,
            "message": {
                "id": handover_transport::ids::client_uuid(&conversation, input),
                "fileId": handover_transport::ids::client_uuid(&conversation, &format!("file:{input}")),
                "text": caption,
            },
        });
        assert!(is_uuid_v4_lowercase(entry["message"]["fileId"].as_str().unwrap()));
        let expected = file_body(boundary, &entry, file);
        assert_eq!(String::from_utf8_lossy(&request.body), String::from_utf8_lossy(&expected), "{input}");
        assert_eq!(request.body, expected, "{input}: the exact bytes");
    }
}

#[tokio::test]
async fn a_file_salesforce_refuses_is_invalid_input_and_not_retried() {
    for (status, text) in
        [(413, "larger than Salesforce accepts (5 MB per file)"), (415, "does not accept this type of file")]
    {
        let rig = Rig::new(Calls::start(0), |_, _| Vec::new()).await;
        let session = rig.provider(|c| c.send_transcript_as_first_message = false).start(request()).await.unwrap();
        Mock::given(method("POST"))
            .and(path(format!("{CREATE_PATH}/{}/file", rig.conversation())))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({ "message": "Refused." })))
            .named("send file: refused")
            .expect(1)
            .mount(&rig.server)
            .await;
        let file = Attachment::bytes("a.png", "image/png", vec![1, 2, 3]);
        let error = session.send(UserInput::attachment("file-1", file)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{status}: {error}");
        assert!(error.message().contains(text), "{status}: {}", error.message());
        assert!(error.message().contains("Refused."), "{}", error.message());
    }
}

#[tokio::test]
async fn agent_files_arrive_as_urls_and_the_end_users_own_are_skipped() {
    let url = "https://acme.my.salesforce-scrt.com/files/0Mx1?token=t0k3n";
    let files = move |role: &str, text: Value| {
        json!({ "abstractMessage": { "messageType": "StaticContentMessage", "staticContent": {
            "formatType": "Attachments",
            "text": text,
            "attachments": [{ "id": "0Mx1", "name": "returns-label.pdf", "mimeType": "application/pdf", "url": url, "referenceId": role }],
        } } })
    };
    let rig =
        Rig::new(Calls { stream: (2..).into(), entries: (1..).into(), ..Calls::start(0) }, move |n, conversation| {
            if n != 1 {
                return Vec::new();
            }
            vec![
                frame(
                    "CONVERSATION_MESSAGE",
                    400,
                    conversation,
                    "Message",
                    files("EndUser", json!("mine")),
                    "EndUser",
                    1,
                ),
                frame(
                    "CONVERSATION_MESSAGE",
                    401,
                    conversation,
                    "Message",
                    files("Agent", json!("Your label")),
                    "Agent",
                    2,
                ),
                frame("CONVERSATION_MESSAGE", 402, conversation, "Message", files("Agent", Value::Null), "Agent", 3),
            ]
        })
        .await;
    let mut session = rig.provider(|c| c.send_transcript_as_first_message = false).start(request()).await.unwrap();
    let events =
        events_until(session.events(), |e| matches!(e, Event::AgentMessage { id, .. } if id == "entry-402")).await;
    let messages: Vec<&Event> = events.iter().filter(|e| matches!(e, Event::AgentMessage { .. })).collect();
    let label = vec![Attachment::url("returns-label.pdf", "application/pdf", url)];
    let Event::AgentMessage { agent, .. } = messages[0] else { unreachable!() };
    assert_eq!(
        messages,
        [
            &Event::AgentMessage {
                id: "entry-401".into(),
                text: "Your label".into(),
                agent: agent.clone(),
                attachments: label.clone()
            },
            &Event::AgentMessage {
                id: "entry-402".into(),
                text: String::new(),
                agent: agent.clone(),
                attachments: label
            },
        ],
        "the end user's own file is not relayed"
    );
    assert_eq!(agent.name.as_deref(), Some("Jane"));
    assert!(!format!("{events:?}").contains("t0k3n"), "Debug hides the URL's token");
}
