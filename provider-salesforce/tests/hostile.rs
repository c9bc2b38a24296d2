//! Hostile input: `Messages` batches decoded from arbitrary bytes and mutated fixtures never
//! panic and fail with a typed error.

#![allow(clippy::unwrap_used)]

use handover_core::ErrorKind;
use handover_testkit::hostile::{arbitrary_bytes, fixtures, mutate, mutations};
use proptest::prelude::*;
use provider_salesforce::hostile;

fn decode(body: &[u8]) {
    if let Err(error) = hostile::decode(body) {
        assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_refused_cleanly(body in arbitrary_bytes()) {
        decode(&body);
    }

    #[test]
    fn mutated_fixtures_are_refused_or_read(index in any::<usize>(), changes in mutations()) {
        let all = fixtures(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
        let (_, fixture) = &all[index % all.len()];
        decode(&mutate(fixture, &changes));
    }
}
