//! Hostile input: webhook bodies and notification frames from arbitrary bytes and mutated
//! fixtures, signed so they reach the parser, never panic and get a typed error or a 4xx.

#![allow(clippy::unwrap_used)]

use handover_core::{ErrorKind, WebhookRequest};
use handover_testkit::hostile::{arbitrary_bytes, fixtures, mutate, mutations, runtime, webhook_status};
use proptest::prelude::*;
use provider_genesys::hostile;
use provider_genesys::notifications::parse_frame;
use provider_genesys::webhook::{SIGNATURE_HEADER, sign};
use provider_genesys::{GenesysConfig, GenesysProvider};

const SECRET: &str = "hostile-secret";

fn provider() -> GenesysProvider {
    GenesysProvider::new(GenesysConfig::new("eu_central_1", "c", "s", "integration-1", SECRET)).unwrap()
}

fn webhook_fixtures() -> Vec<Vec<u8>> {
    fixtures(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
        .into_iter()
        .filter(|(name, _)| name.starts_with("webhook_"))
        .map(|(_, bytes)| bytes)
        .collect()
}

fn decode(body: &[u8]) {
    if let Err(error) = hostile::decode(body) {
        assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
    }
    let _ = parse_frame(&String::from_utf8_lossy(body));
}

fn signed(body: Vec<u8>) -> WebhookRequest {
    let signature = sign(SECRET.as_bytes(), &body);
    WebhookRequest::post(body).with_header(SIGNATURE_HEADER, signature)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_refused_cleanly(body in arbitrary_bytes()) {
        decode(&body);
        let rt = runtime();
        let provider = provider();
        webhook_status(&rt, &provider, signed(body.clone()));
        // Unsigned: refused before parsing.
        prop_assert_eq!(webhook_status(&rt, &provider, WebhookRequest::post(body)), 401);
    }

    #[test]
    fn mutated_fixtures_are_refused_or_read(index in any::<usize>(), changes in mutations()) {
        let all = webhook_fixtures();
        let body = mutate(&all[index % all.len()], &changes);
        decode(&body);
        webhook_status(&runtime(), &provider(), signed(body));
    }

    #[test]
    fn mutated_notification_frames_never_panic(index in any::<usize>(), changes in mutations()) {
        let all: Vec<Vec<u8>> = fixtures(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
            .into_iter()
            .filter(|(name, _)| name.starts_with("notification_"))
            .map(|(_, bytes)| bytes)
            .collect();
        let _ = parse_frame(&String::from_utf8_lossy(&mutate(&all[index % all.len()], &changes)));
    }
}
