//! Hostile input for decoders and webhook handlers: arbitrary bytes and mutated fixtures
//! (proptest strategies), and the answers a handler may give them.

use proptest::prelude::*;
use serde_json::Value;

/// Arbitrary bytes, up to 2 KiB, often valid UTF-8 and often JSON-looking.
pub fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        ".{0,512}".prop_map(String::into_bytes),
        json_value().prop_map(|v| v.to_string().into_bytes()),
    ]
}

/// Arbitrary JSON, a few levels deep.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One way to damage a fixture.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Flip the bits of the byte at this index (modulo the length).
    Flip(usize, u8),
    /// Keep only this many bytes (modulo the length).
    Truncate(usize),
    /// Insert these bytes at this index (modulo the length).
    Insert(usize, Vec<u8>),
    /// Replace the JSON value at the n-th position of a walk (modulo the count) with this.
    Replace(usize, Value),
    /// Remove the n-th object key of a walk (modulo the count).
    RemoveKey(usize),
}

/// Up to four mutations.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), json_value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        any::<usize>().prop_map(Mutation::RemoveKey),
    ];
    prop::collection::vec(one, 1..=4)
}

/// Applies `mutations` to `fixture`.
pub fn mutate(fixture: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = fixture.to_vec();
    for mutation in mutations {
        match mutation {
            Mutation::Flip(i, x) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes[i] ^= x;
            }
            Mutation::Truncate(n) if !bytes.is_empty() => bytes.truncate(n % bytes.len()),
            Mutation::Insert(i, more) => {
                let at = if bytes.is_empty() { 0 } else { i % bytes.len() };
                bytes.splice(at..at, more.iter().copied());
            }
            Mutation::Replace(n, value) => {
                if let Ok(mut json) = serde_json::from_slice::<Value>(&bytes) {
                    let count = count_values(&json);
                    let mut target = n % count.max(1);
                    replace_nth(&mut json, &mut target, value);
                    bytes = json.to_string().into_bytes();
                }
            }
            Mutation::RemoveKey(n) => {
                if let Ok(mut json) = serde_json::from_slice::<Value>(&bytes) {
                    let mut target = *n;
                    remove_nth_key(&mut json, &mut target);
                    bytes = json.to_string().into_bytes();
                }
            }
            _ => {}
        }
    }
    bytes
}

fn count_values(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_values).sum(),
        Value::Object(map) => map.values().map(count_values).sum(),
        _ => 0,
    }
}

fn replace_nth(value: &mut Value, n: &mut usize, with: &Value) -> bool {
    if *n == 0 {
        *value = with.clone();
        return true;
    }
    *n -= 1;
    match value {
        Value::Array(items) => items.iter_mut().any(|v| replace_nth(v, n, with)),
        Value::Object(map) => map.values_mut().any(|v| replace_nth(v, n, with)),
        _ => false,
    }
}

fn remove_nth_key(value: &mut Value, n: &mut usize) -> bool {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            if *n < keys.len() {
                map.remove(&keys[*n]);
                return true;
            }
            *n -= keys.len();
            map.values_mut().any(|v| remove_nth_key(v, n))
        }
        Value::Array(items) => items.iter_mut().any(|v| remove_nth_key(v, n)),
        _ => false,
    }
}

/// Whether `status` is an answer a webhook handler may give hostile input: handled
/// (`200`), refused (`4xx`), or "not now" (`503`, for a delivery no live session owns). A
/// `500` means the handler broke.
pub fn acceptable_status(status: u16) -> bool {
    status == 200 || (400..500).contains(&status) || status == 503
}

/// Every fixture file under `dir` with the extension `json`.
pub fn fixtures(dir: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).ok()?)))
        .collect();
    files.sort();
    files
}

/// Runs `provider.webhook(request)` to completion on a small runtime of its own (proptest
/// bodies are synchronous) and returns the status, checking that it is acceptable and that
/// nothing from the request reached a log line or the reply raw (see
/// [`assert_no_raw_control_characters`]).
pub fn webhook_status(
    runtime: &tokio::runtime::Runtime,
    provider: &dyn handover_core::Provider,
    request: handover_core::WebhookRequest,
) -> u16 {
    let logs = crate::logs::capture();
    let before = logs.len();
    let reply = runtime.block_on(provider.webhook(request));
    assert!(acceptable_status(reply.status), "status {} for hostile input", reply.status);
    assert_no_raw_control_characters("the reply body", &String::from_utf8_lossy(&reply.body));
    assert_no_raw_control_characters("the log", &logs.since(before));
    reply.status
}

/// Asserts that `text` (log lines, an error body) holds no control character but the line
/// ends, and that every log line starts with its timestamp: a newline or an escape sequence
/// from an unauthenticated request could forge a log line or reach the operator's terminal.
pub fn assert_no_raw_control_characters(what: &str, text: &str) {
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n') {
        panic!("{what} holds a raw control character {c:?}: {text:?}");
    }
    if what == "the log" {
        for line in text.lines().filter(|l| !l.is_empty()) {
            assert!(line.starts_with(|c: char| c.is_ascii_digit()), "a forged log line: {line:?}");
        }
    }
}

/// A current-thread runtime for [`webhook_status`].
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_json_where_they_say() {
        let fixture = br#"{"a":{"b":1,"c":[2,3]}}"#;
        let replaced = mutate(fixture, &[Mutation::Replace(2, Value::from("x"))]);
        assert_eq!(replaced, br#"{"a":{"b":"x","c":[2,3]}}"#);
        let removed = mutate(fixture, &[Mutation::RemoveKey(1)]);
        assert_eq!(removed, br#"{"a":{"c":[2,3]}}"#);
        assert_eq!(mutate(fixture, &[Mutation::Truncate(3)]), br#"{"a"#);
        assert!(acceptable_status(401) && acceptable_status(503) && !acceptable_status(500));
    }
}
