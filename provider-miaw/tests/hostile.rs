//! Hostile input: SSE event data decoded from arbitrary bytes and mutated fixtures never
//! panics and fails with a typed error.

#![allow(clippy::unwrap_used)]

use handover_core::ErrorKind;
use handover_testkit::hostile::{arbitrary_bytes, fixtures, mutate, mutations};
use proptest::prelude::*;
use provider_miaw::hostile;

/// The SSE `data` of every fixture that has one.
fn datas() -> Vec<String> {
    fixtures(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
        .into_iter()
        .filter_map(|(_, bytes)| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .filter_map(|json| json.get("data").map(ToString::to_string))
        .collect()
}

fn decode(data: &[u8], event: Option<&str>) {
    let text = String::from_utf8_lossy(data);
    if let Err(error) = hostile::decode(&text, event) {
        assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_refused_cleanly(data in arbitrary_bytes()) {
        decode(&data, Some("CONVERSATION_MESSAGE"));
        decode(&data, None);
    }

    #[test]
    fn mutated_fixtures_are_refused_or_read(index in any::<usize>(), changes in mutations(), event in prop::sample::select(vec![
        "CONVERSATION_MESSAGE", "CONVERSATION_PARTICIPANT_CHANGED", "CONVERSATION_ROUTING_RESULT",
        "CONVERSATION_CLOSE_CONVERSATION", "CONVERSATION_TYPING_STARTED_INDICATOR", "OTHER",
    ])) {
        let datas = datas();
        let data = &datas[index % datas.len()];
        decode(&mutate(data.as_bytes(), &changes), Some(event));
    }
}
