//! Hostile input: webhook bodies from arbitrary bytes and mutated fixtures, signed so they
//! reach the parser, never panic and get a typed error or a 4xx; replays outside the window
//! are refused.

#![allow(clippy::unwrap_used)]

use std::time::SystemTime;

use handover_core::{ErrorKind, WebhookRequest};
use handover_testkit::hostile::{arbitrary_bytes, fixtures, mutate, mutations, runtime, webhook_status};
use proptest::prelude::*;
use provider_liveagent::hostile::decode as parse;
use provider_liveagent::webhook::sign;
use provider_liveagent::{LiveAgentConfig, LiveAgentProvider};

const SECRET: &str = "hostile-secret";

fn provider() -> LiveAgentProvider {
    let mut config = LiveAgentConfig::new("https://desk.example/api/v1", 1, "token", 7);
    config.webhook_secret = Some(SECRET.to_owned().into());
    LiveAgentProvider::new(config).unwrap()
}

fn signed(body: Vec<u8>, at: SystemTime) -> WebhookRequest {
    let timestamp = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs().to_string();
    let signature = sign(SECRET.as_bytes(), &timestamp, &body);
    WebhookRequest::post(body)
        .with_header("X-Chatwoot-Timestamp", timestamp)
        .with_header("X-Chatwoot-Signature", signature)
}

fn decode(body: &[u8]) {
    if let Err(error) = parse(body) {
        assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_refused_cleanly(body in arbitrary_bytes()) {
        decode(&body);
        let rt = runtime();
        webhook_status(&rt, &provider(), signed(body.clone(), SystemTime::now()));
        prop_assert_eq!(webhook_status(&rt, &provider(), WebhookRequest::post(body)), 401);
    }

    #[test]
    fn mutated_fixtures_are_refused_or_read(index in any::<usize>(), changes in mutations()) {
        let all = fixtures(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
        let body = mutate(&all[index % all.len()].1, &changes);
        decode(&body);
        webhook_status(&runtime(), &provider(), signed(body, SystemTime::now()));
    }
}

#[test]
fn a_replayed_delivery_outside_the_window_is_refused() {
    let body =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webhook_message_agent.json")).unwrap();
    let old = SystemTime::now() - std::time::Duration::from_secs(3600);
    assert_eq!(webhook_status(&runtime(), &provider(), signed(body, old)), 401);
}
