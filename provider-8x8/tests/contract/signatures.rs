//! Webhook signature checks (`protocols/8x8.md` §6.3) through the provider's webhook
//! handler: the key comes from a mocked JWK endpoint, deliveries are signed by a generated
//! RSA key the way 8x8 signs them.

use handover_core::{Provider, WebhookRequest};
use handover_emulator::eightbyeight::{DeliveryMeta, SigningKey};
use handover_testkit::mock::{header, requests_to, strict_server};
use provider_8x8::{EightByEightConfig, EightByEightProvider, jws};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate, Times};

use crate::harness::fast_retry;

/// The body of the notes' test vector (§6.3).
const DOC_BODY: &str = r#"{"eventType":"AGENT_JOINED","messageType":"SYSTEM","conversationId":"Aka5NMHU8MtIG7lUQOxI0DTOvM4","agentId":"cmalutan","agentName":"Cosmin,Malutan","timestamp":1629804577002}"#;
const VERIFY_BODY: &str = r#"{"notificationVersion":"Chat Gateway v1.0","eventType":"WEB_HOOK_VERIFY"}"#;

pub(crate) fn jwk_path(kid: &str) -> String {
    format!("/chat-gateway/v1/jwk/{kid}/public")
}

/// The signing key's endpoint (`public key`, fetched `public_key` times) and a retired
/// key's (`unknown key`, `unknown_key` times).
async fn server(public_key: impl Into<Times>, unknown_key: impl Into<Times>) -> MockServer {
    let server = strict_server().await;
    let key = SigningKey::shared();
    Mock::given(method("GET"))
        .and(path(jwk_path(key.kid())))
        .respond_with(ResponseTemplate::new(200).set_body_json(key.jwk()))
        .named("public key")
        .expect(public_key)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(jwk_path("retired-key")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "message": "Resource of type Jwk with id retired-key was not found.", "errors": ["not found"],
        })))
        .named("unknown key")
        .expect(unknown_key)
        .mount(&server)
        .await;
    server
}

fn provider(server: &MockServer) -> EightByEightProvider {
    let config = EightByEightConfig::new("key-8x8", "chan-1").with_base_url(server.uri()).with_tenant("tenant-1");
    EightByEightProvider::builder(config).retry(fast_retry()).build().unwrap()
}

/// A first delivery sent now.
pub(crate) fn meta() -> DeliveryMeta {
    DeliveryMeta { tenant: "tenant-1".into(), customer: "customer-1".into(), ..DeliveryMeta::new("ev-1") }
}

pub(crate) fn request(body: &str, headers: Vec<(String, String)>) -> WebhookRequest {
    headers.into_iter().fold(WebhookRequest::post(body.as_bytes().to_vec()), |r, (k, v)| r.with_header(&k, v))
}

fn signed(body: &str, meta: &DeliveryMeta) -> WebhookRequest {
    request(body, SigningKey::shared().headers(body.as_bytes(), meta))
}

#[tokio::test]
async fn the_checksum_is_the_crc32_of_the_raw_body() {
    assert_eq!(jws::checksum(DOC_BODY.as_bytes()), 1_564_621_066);
    let payload = jws::signed_payload(DOC_BODY.as_bytes(), |name| match name {
        "x-8x8-customer-id" => Some("customer-1"),
        "x-8x8-event-id" => Some("ev-1"),
        "x-8x8-retry" => Some("0"),
        "x-8x8-tenant-id" => Some("tenant-1"),
        "x-8x8-transmission-time" => Some("1629804577296"),
        _ => None,
    })
    .unwrap();
    let at_doc_time = DeliveryMeta { transmission_time: 1_629_804_577_296, ..meta() };
    assert_eq!(payload, at_doc_time.payload(DOC_BODY.as_bytes()), "the emulator signs what the provider checks");
    assert!(payload.starts_with(r#"{"checksum":1564621066,"cid":"customer-1","#));
}

#[tokio::test]
async fn a_valid_signature_is_accepted_and_the_key_fetched_once() {
    let server = server(1, 0).await;
    let provider = provider(&server);
    assert_eq!(provider.webhook(signed(VERIFY_BODY, &meta())).await.status, 200);
    // Verified, then kept for the session that will own the conversation.
    let second = DeliveryMeta { event_id: "ev-2".into(), ..meta() };
    assert_eq!(provider.webhook(signed(DOC_BODY, &second)).await.status, 200);
    let fetches = requests_to(&server, "GET", &jwk_path(SigningKey::shared().kid())).await;
    assert_eq!(fetches.len(), 1, "the key is cached by kid");
    assert_eq!(header(&fetches[0], "x-api-key"), "key-8x8");
    assert_eq!(header(&fetches[0], "x-8x8-tenant"), "tenant-1");
}

#[tokio::test]
async fn a_tampered_body_is_rejected() {
    let server = server(1, 0).await;
    let provider = provider(&server);
    let mut tampered = signed(DOC_BODY, &meta());
    tampered.body = DOC_BODY.replace("cmalutan", "cmalutam").into_bytes();
    let reply = provider.webhook(tampered).await;
    assert_eq!(reply.status, 401);
    assert!(String::from_utf8_lossy(&reply.body).contains("does not match"));
}

#[tokio::test]
async fn each_signed_header_is_covered() {
    let server = server(1, 0).await;
    let provider = provider(&server);
    for (name, value) in [
        ("x-8x8-customer-id", "customer-2"),
        ("x-8x8-event-id", "ev-other"),
        ("x-8x8-retry", "1"),
        ("x-8x8-tenant-id", "tenant-2"),
        ("x-8x8-transmission-time", "1"),
    ] {
        let headers = SigningKey::shared()
            .headers(VERIFY_BODY.as_bytes(), &meta())
            .into_iter()
            .map(|(k, v)| if k == name { (k, value.to_owned()) } else { (k, v) })
            .collect();
        assert_eq!(provider.webhook(request(VERIFY_BODY, headers)).await.status, 401, "{name} changed");
        let without: Vec<(String, String)> = SigningKey::shared()
            .headers(VERIFY_BODY.as_bytes(), &meta())
            .into_iter()
            .filter(|(k, _)| k != name)
            .collect();
        let reply = provider.webhook(request(VERIFY_BODY, without)).await;
        assert_eq!(reply.status, 401, "{name} missing");
        assert!(String::from_utf8_lossy(&reply.body).contains(name));
    }
}

#[tokio::test]
async fn missing_or_foreign_signatures_are_rejected() {
    let server = server(1, 0).await;
    let provider = provider(&server);
    let unsigned: Vec<(String, String)> = SigningKey::shared()
        .headers(VERIFY_BODY.as_bytes(), &meta())
        .into_iter()
        .filter(|(k, _)| k != "x-8x8-signature")
        .collect();
    assert_eq!(provider.webhook(request(VERIFY_BODY, unsigned)).await.status, 401);
    // Another key under the same kid.
    let forged = SigningKey::impostor().headers(VERIFY_BODY.as_bytes(), &meta());
    assert_eq!(provider.webhook(request(VERIFY_BODY, forged)).await.status, 401);
}

#[tokio::test]
async fn an_unknown_kid_is_rejected_without_refetching() {
    let server = server(0, 1).await;
    let provider = provider(&server);
    let retired = SigningKey::generate("retired-key");
    for _ in 0..3 {
        let reply = provider.webhook(request(VERIFY_BODY, retired.headers(VERIFY_BODY.as_bytes(), &meta()))).await;
        assert_eq!(reply.status, 401);
        assert!(String::from_utf8_lossy(&reply.body).contains("retired-key"));
    }
    assert_eq!(requests_to(&server, "GET", &jwk_path("retired-key")).await.len(), 1);
}

#[tokio::test]
async fn a_key_that_cannot_be_fetched_asks_for_a_redelivery() {
    let server = strict_server().await;
    let key = SigningKey::shared();
    Mock::given(method("GET"))
        .and(path(jwk_path(key.kid())))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({ "message": "down" })))
        .up_to_n_times(3)
        .named("public key: down")
        .expect(3)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(jwk_path(key.kid())))
        .respond_with(ResponseTemplate::new(200).set_body_json(key.jwk()))
        .named("public key")
        .expect(1)
        .mount(&server)
        .await;
    let config = EightByEightConfig::new("key-8x8", "chan-1").with_base_url(server.uri());
    let provider = EightByEightProvider::builder(config).retry(fast_retry().with_max_attempts(3)).build().unwrap();
    assert_eq!(provider.webhook(signed(VERIFY_BODY, &meta())).await.status, 503, "8x8 retries it");
    assert_eq!(provider.webhook(signed(VERIFY_BODY, &meta())).await.status, 200, "the retry verifies");
}

#[tokio::test]
async fn a_replay_outside_the_window_is_refused() {
    let server = server(1, 0).await;
    let provider = provider(&server);
    let old = DeliveryMeta { transmission_time: handover_emulator::model::now_ms() - 3_600_000, ..meta() };
    let reply = provider.webhook(signed(VERIFY_BODY, &old)).await;
    assert_eq!(reply.status, 401);
    assert!(String::from_utf8_lossy(&reply.body).contains("a replay"), "{}", String::from_utf8_lossy(&reply.body));
}

/// A forged signature header naming key `kid` with algorithm `alg`.
fn forged(kid: &str, alg: &str) -> WebhookRequest {
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({ "alg": alg, "kid": kid, "b64": false, "crit": ["b64"] }).to_string());
    let mut request = signed(VERIFY_BODY, &meta());
    request.headers.retain(|(name, _)| name != jws::SIGNATURE_HEADER);
    request.with_header(jws::SIGNATURE_HEADER, format!("{header}..c2lnbmF0dXJl"))
}

#[tokio::test]
async fn forged_key_ids_cost_at_most_the_fetch_budget_in_requests_to_8x8() {
    let server = server(0..=1, 0).await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex("^/chat-gateway/v1/jwk/forged-[0-9]+/public$"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "message": "not found" })))
        .named("forged keys")
        .expect(1..=6)
        .mount(&server)
        .await;
    let provider = provider(&server);
    let mut statuses = Vec::new();
    for n in 0..50 {
        statuses.push(provider.webhook(forged(&format!("forged-{n}"), "RS256")).await.status);
    }
    assert!(statuses.iter().all(|s| *s == 401 || *s == 503), "{statuses:?}");
    let fetches = server.received_requests().await.unwrap_or_default().len();
    assert!(fetches <= 6, "{fetches} key fetches for 50 forged key ids; the budget is 6 a minute");
    // The genuine key still verifies (fetched within the budget or cached).
    let genuine = provider.webhook(signed(VERIFY_BODY, &meta())).await.status;
    assert!(genuine == 200 || genuine == 503, "{genuine}");
}

#[tokio::test]
async fn with_configured_key_ids_a_forged_one_is_refused_without_any_request() {
    let server = server(1, 0).await;
    let mut config = EightByEightConfig::new("key-8x8", "chan-1").with_base_url(server.uri()).with_tenant("tenant-1");
    config.webhook_key_ids = vec![SigningKey::shared().kid().to_owned()];
    let provider = EightByEightProvider::builder(config).retry(fast_retry()).build().unwrap();
    for n in 0..20 {
        assert_eq!(provider.webhook(forged(&format!("forged-{n}"), "RS256")).await.status, 401);
    }
    assert!(server.received_requests().await.unwrap_or_default().is_empty(), "no request on behalf of a forgery");
    assert_eq!(provider.webhook(signed(VERIFY_BODY, &meta())).await.status, 200, "the configured key verifies");
}

#[tokio::test]
async fn hostile_key_ids_and_algorithms_never_reach_a_log_line_or_the_reply_raw() {
    let server = server(0, 0).await;
    let provider = provider(&server);
    let logs = handover_testkit::logs::capture();
    let before = logs.len();
    for (kid, alg) in [
        ("kid\nFAKE LOG LINE", "RS256"),
        ("kid\u{1b}[2J\u{1b}[31m", "RS256"),
        ("k", "RS256\nINFO forged"),
        ("k", "\u{1b}]0;pwned\u{7}"),
    ] {
        let reply = provider.webhook(forged(kid, alg)).await;
        assert_eq!(reply.status, 401);
        handover_testkit::hostile::assert_no_raw_control_characters(
            "the reply body",
            &String::from_utf8_lossy(&reply.body),
        );
    }
    handover_testkit::hostile::assert_no_raw_control_characters("the log", &logs.since(before));
    assert!(server.received_requests().await.unwrap_or_default().is_empty(), "malformed ids are never fetched");
}
