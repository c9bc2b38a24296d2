//! Hostile input: callbacks and webhook events from arbitrary bytes and mutated fixtures,
//! signed (or carrying the secret) so they reach the parser, never panic and get a typed
//! error or a 4xx; the answers to callbacks stay signed.

#![allow(clippy::unwrap_used)]

use handover_core::{ErrorKind, WebhookRequest};
use handover_testkit::hostile::{arbitrary_bytes, fixtures, mutate, mutations, runtime, webhook_status};
use handover_transport::retry::RetryPolicy;
use proptest::prelude::*;
use provider_ringcentral::hostile::{decode_callback, decode_events};
use provider_ringcentral::webhook::{SIGNATURE_HEADER, sign};
use provider_ringcentral::{RingCentralConfig, RingCentralProvider};

const TOKEN: &str = "hostile-source-token";
const SECRET: &str = "hostile-secret";

fn provider() -> RingCentralProvider {
    // Nothing listens on port 9: a lookup an event triggers fails at once.
    let config = RingCentralConfig::new("acme.digital.ringcentral.com", "src", TOKEN, "api", "cat")
        .with_urls("http://127.0.0.1:9/1.0", "http://127.0.0.1:9/realtime/sdk/src")
        .with_webhook_secret(SECRET);
    RingCentralProvider::builder(config).retry(RetryPolicy::none()).build().unwrap()
}

fn callback(body: Vec<u8>) -> WebhookRequest {
    let signature = sign(TOKEN.as_bytes(), &body);
    WebhookRequest::post(body).with_header(SIGNATURE_HEADER, signature)
}

fn event(body: Vec<u8>) -> WebhookRequest {
    WebhookRequest::post(body).with_header("X-Dimelo-Secret", SECRET)
}

fn decode(body: &[u8]) {
    for error in [decode_callback(body).err(), decode_events(body).err()].into_iter().flatten() {
        assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
    }
}

/// Every answer to a signed callback is itself signed.
fn answered_signed(rt: &tokio::runtime::Runtime, provider: &RingCentralProvider, body: Vec<u8>) {
    let reply = rt.block_on(handover_core::Provider::webhook(provider, callback(body)));
    assert!(handover_testkit::hostile::acceptable_status(reply.status), "{}", reply.status);
    let signature = reply.headers.iter().find(|(k, _)| k == SIGNATURE_HEADER).map(|(_, v)| v.clone());
    assert_eq!(signature, Some(sign(TOKEN.as_bytes(), &reply.body)), "status {}", reply.status);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_refused_cleanly(body in arbitrary_bytes()) {
        decode(&body);
        let rt = runtime();
        let provider = provider();
        answered_signed(&rt, &provider, body.clone());
        webhook_status(&rt, &provider, event(body.clone()));
        let unsigned = webhook_status(&rt, &provider, WebhookRequest::post(body));
        prop_assert!(unsigned == 400 || unsigned == 401 || unsigned == 422, "{}", unsigned);
    }

    #[test]
    fn mutated_fixtures_are_refused_or_read(index in any::<usize>(), changes in mutations()) {
        let all = fixtures(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
        let (name, fixture) = &all[index % all.len()];
        let body = mutate(fixture, &changes);
        decode(&body);
        let rt = runtime();
        if name.starts_with("callback_") {
            answered_signed(&rt, &provider(), body);
        } else {
            webhook_status(&rt, &provider(), event(body));
        }
    }
}
