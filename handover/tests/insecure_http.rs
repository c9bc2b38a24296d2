//! Every provider refuses plain `http://` to a host other than loopback unless the config
//! allows it explicitly (tokens would travel in clear).

#![cfg(feature = "full")]
#![allow(clippy::unwrap_used)]

use handover::{ErrorKind, PROVIDERS, Registry};
use handover_emulator::{Emulator, EmulatorOptions};
use serde_json::Value;

/// The emulator's config with every loopback URL moved to a public host.
fn public_http(config: &Value, loopback: &str) -> Value {
    match config {
        Value::String(s) => Value::String(s.replace(loopback, "http://handover.example")),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), public_http(v, loopback))).collect()),
        other => other.clone(),
    }
}

#[tokio::test]
async fn plain_http_to_a_public_host_needs_allow_insecure_http() {
    let registry = Registry::new();
    for (name, _) in PROVIDERS {
        let emulator = Emulator::start(name, EmulatorOptions::default()).await.unwrap();
        let config = public_http(&emulator.provider_config(), &emulator.url());
        assert!(config.to_string().contains("http://handover.example"), "{name}: {config}");
        let Err(error) = registry.build(name, toml::Value::try_from(&config).unwrap()) else {
            panic!("{name} accepted http:// to a public host");
        };
        assert_eq!(error.kind(), ErrorKind::Config, "{name}: {error}");
        assert!(error.message().contains("allow_insecure_http"), "{name}: {error}");

        let mut allowed = config.clone();
        allowed["allow_insecure_http"] = Value::Bool(true);
        let built = registry.build(name, toml::Value::try_from(&allowed).unwrap());
        assert!(
            built.is_ok(),
            "{name} refused even with allow_insecure_http: {:?}",
            built.err().map(|e| e.to_string())
        );
    }
}
