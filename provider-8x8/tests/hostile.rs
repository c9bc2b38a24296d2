//! Hostile input: event bodies from arbitrary bytes and mutated fixtures, signed with a
//! generated key so they reach the parser, never panic and get a typed error or a 4xx;
//! hostile signature headers are refused.

#![allow(clippy::unwrap_used)]

use handover_core::{ErrorKind, WebhookRequest};
use handover_emulator::eightbyeight::{DeliveryMeta, SigningKey};
use handover_testkit::hostile::{arbitrary_bytes, fixtures, mutate, mutations, runtime, webhook_status};
use proptest::prelude::*;
use provider_8x8::jws::DetachedJws;
use provider_8x8::{EightByEightConfig, EightByEightProvider};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A JWK endpoint and a provider reading from it, shared by every case.
struct World {
    runtime: tokio::runtime::Runtime,
    provider: EightByEightProvider,
    _server: MockServer,
}

fn world() -> &'static World {
    static WORLD: std::sync::OnceLock<World> = std::sync::OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = runtime();
        let key = SigningKey::shared();
        let server = runtime.block_on(async {
            let server = MockServer::start().await;
            Mock::given(method("GET"))
                .and(path(format!("/chat-gateway/v1/jwk/{}/public", key.kid())))
                .respond_with(ResponseTemplate::new(200).set_body_json(key.jwk()))
                // Cached after the first fetch; the shared server lives for the whole run.
                .named("the signing key")
                .expect(0..=1)
                .mount(&server)
                .await;
            server
        });
        let config = EightByEightConfig::new("key", "channel").with_base_url(server.uri());
        World { runtime, provider: EightByEightProvider::new(config).unwrap(), _server: server }
    })
}

fn signed(body: Vec<u8>, event: &str) -> WebhookRequest {
    let headers = SigningKey::shared().headers(&body, &DeliveryMeta::new(event));
    headers.into_iter().fold(WebhookRequest::post(body), |r, (k, v)| r.with_header(&k, v))
}

fn decode(body: &[u8]) {
    if let Err(error) = provider_8x8::hostile::decode(body) {
        assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_are_refused_cleanly(body in arbitrary_bytes(), n in any::<u64>()) {
        decode(&body);
        let world = world();
        webhook_status(&world.runtime, &world.provider, signed(body.clone(), &format!("ev-a-{n}")));
        prop_assert_eq!(webhook_status(&world.runtime, &world.provider, WebhookRequest::post(body)), 401);
    }

    #[test]
    fn mutated_fixtures_are_refused_or_read(index in any::<usize>(), changes in mutations(), n in any::<u64>()) {
        let all = fixtures(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
        let body = mutate(&all[index % all.len()].1, &changes);
        decode(&body);
        let world = world();
        webhook_status(&world.runtime, &world.provider, signed(body, &format!("ev-m-{n}")));
    }

    #[test]
    fn hostile_signature_headers_are_refused(value in ".{0,300}") {
        let _ = DetachedJws::parse(Some(&value));
        let world = world();
        let body = br#"{"notificationVersion":"Chat Gateway v1.0","eventType":"WEB_HOOK_VERIFY"}"#.to_vec();
        let mut request = signed(body, "ev-s");
        request.headers.retain(|(k, _)| k != "x-8x8-signature");
        let request = request.with_header("x-8x8-signature", value);
        prop_assert_eq!(webhook_status(&world.runtime, &world.provider, request), 401);
    }
}
