//! The service's config file (DESIGN.md §7.3).
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//! store = "sqlite://handover.db"     # or "postgres://user@host/db"
//! instance_id = "a"                  # default: host name + pid
//! lease_ttl_ms = 10000
//! api_keys_env = "HANDOVER_API_KEYS" # comma-separated bearer keys (or api_keys = [...])
//! encryption_key_env = "HANDOVER_KEY"
//!
//! [node]                             # defaults for every handover; a request may override keys
//! accepted_message = "Connecting you to an agent."
//!
//! [providers.sales]                  # named provider configurations; `type` picks the crate
//! type = "miaw"                      # then the same keys as the [miaw] table of `handover chat`
//! scrt_url = "https://acme.my.salesforce-scrt.com"
//! ```
//!
//! Unknown keys are errors naming the key; any key `x` of a provider table may be given as
//! `x_env`, naming an environment variable that holds the value.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use handover::config::NodeKeys;
use handover::webhook::ListenerLimits;
use serde::Deserialize;

/// A config error: what is wrong and where, ready to print.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A loaded and checked service config.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where the API, the provider webhooks and the health endpoints are served.
    pub listen: SocketAddr,
    /// Where `/metrics` is served instead, when it must not be public.
    pub metrics_listen: Option<SocketAddr>,
    /// The store URL (`sqlite://…`, `sqlite::memory:`, `postgres://…`).
    pub store: String,
    /// This instance's name in leases and logs.
    pub instance_id: String,
    /// How long a lease lasts unless renewed.
    pub lease_ttl: Duration,
    /// How often orphaned handovers are looked for.
    pub claim_interval: Duration,
    /// How long a SIGTERM drain may take.
    pub drain: Duration,
    /// How long a callback endpoint may keep failing before the callback is marked failed.
    pub callback_retry: Duration,
    /// The bearer keys the API accepts.
    pub api_keys: Vec<String>,
    /// The store's encryption key (32 bytes), or `None` with `allow_plaintext_store`.
    pub encryption_key: Option<[u8; 32]>,
    /// Plain HTTP on a non-loopback address, and callbacks to plain-HTTP URLs off loopback.
    pub allow_insecure_http: bool,
    /// The listener's limits (header, body and idle timeouts, connections, body size).
    pub limits: ListenerLimits,
    /// The `[node]` defaults.
    pub node: NodeKeys,
    /// The named provider configurations, by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Serve the read-only live view at `/ui` (its data is read with an API key).
    pub ui: bool,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys and provider tables hold secrets: counts and names only.
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("store", &redact_url(&self.store))
            .field("instance_id", &self.instance_id)
            .field("lease_ttl", &self.lease_ttl)
            .field("api_keys", &self.api_keys.len())
            .field("encryption_key", &self.encryption_key.is_some())
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One `[providers.<name>]` table.
#[derive(Clone)]
#[non_exhaustive]
pub struct ProviderConfig {
    /// The provider crate (`miaw`, `genesys`, …).
    pub kind: String,
    /// Its table, `type` removed and `*_env` keys resolved.
    pub table: toml::Value,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig").field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// A store URL with any password removed, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: SocketAddr,
    metrics_listen: Option<SocketAddr>,
    #[serde(default = "default_store")]
    store: String,
    instance_id: Option<String>,
    #[serde(default = "default_lease_ttl")]
    lease_ttl_ms: u64,
    #[serde(default = "default_claim_interval")]
    claim_interval_ms: u64,
    #[serde(default = "default_drain")]
    drain_ms: u64,
    #[serde(default = "default_callback_retry")]
    callback_retry_ms: u64,
    api_keys: Option<Vec<String>>,
    api_keys_env: Option<String>,
    encryption_key_env: Option<String>,
    #[serde(default)]
    allow_plaintext_store: bool,
    #[serde(default)]
    allow_insecure_http: bool,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections: Option<u64>,
    max_body_bytes: Option<u64>,
    #[serde(default)]
    ui: bool,
}

fn default_store() -> String {
    "sqlite://handover.db".to_owned()
}

fn default_lease_ttl() -> u64 {
    10_000
}

fn default_claim_interval() -> u64 {
    1_000
}

fn default_drain() -> u64 {
    10_000
}

fn default_callback_retry() -> u64 {
    24 * 3600 * 1000
}

impl ServerConfig {
    /// Reads and checks `path`, resolving `*_env` keys from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string(), &|name| std::env::var(name).ok())
    }

    /// Parses config text; `file` names it in messages; `env` looks up variables.
    pub fn parse(text: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let fail = |message: String| ConfigError(format!("{file}: {message}"));
        let mut root: toml::Table = text.parse().map_err(|e: toml::de::Error| fail(e.message().trim().to_owned()))?;
        let server = root.remove("server").ok_or_else(|| fail("missing the [server] table".to_owned()))?;
        let server: RawServer = table("server", server).map_err(&fail)?;
        let node: NodeKeys = match root.remove("node") {
            Some(node) => table("node", node).map_err(&fail)?,
            None => NodeKeys::default(),
        };
        node.to_config().map_err(&fail)?;
        let providers = match root.remove("providers") {
            Some(toml::Value::Table(providers)) => providers,
            Some(_) => return Err(fail("`providers` must hold tables ([providers.<name>])".to_owned())),
            None => toml::Table::new(),
        };
        if let Some(key) = root.keys().next() {
            return Err(fail(format!("unknown key `{key}`; expected [server], [node] and [providers.<name>]")));
        }
        let mut named = BTreeMap::new();
        for (name, value) in providers {
            if !is_name(&name) {
                return Err(fail(format!(
                    "[providers.{name}]: a provider configuration's name is 1 to 64 letters, digits, `-` or `_`"
                )));
            }
            let toml::Value::Table(mut table) = value else {
                return Err(fail(format!("`providers.{name}` must be a table ([providers.{name}])")));
            };
            let Some(toml::Value::String(kind)) = table.remove("type") else {
                return Err(fail(format!(
                    "[providers.{name}] needs `type`, one of {}",
                    handover::PROVIDERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )));
            };
            let table = handover::config::resolve_env(&format!("providers.{name}"), table, env).map_err(&fail)?;
            named.insert(name, ProviderConfig { kind, table: toml::Value::Table(table) });
        }

        let mut api_keys = server.api_keys.unwrap_or_default();
        if let Some(var) = &server.api_keys_env {
            let value = env(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                fail(format!("[server] `api_keys_env` names the environment variable {var}, which is not set"))
            })?;
            api_keys.extend(value.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned));
        }
        if api_keys.is_empty() {
            return Err(fail(
                "no API key: set [server] `api_keys_env` to a variable holding comma-separated bearer keys \
                 (or `api_keys = [...]`)"
                    .to_owned(),
            ));
        }
        if let Some(short) = api_keys.iter().find(|k| k.len() < 16) {
            return Err(fail(format!(
                "an API key of {} characters is too easy to guess; use at least 16 (for example 32 random bytes \
                 in hex)",
                short.len()
            )));
        }
        let encryption_key = match &server.encryption_key_env {
            Some(var) => {
                let value = env(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                    fail(format!(
                        "[server] `encryption_key_env` names the environment variable {var}, which is not set"
                    ))
                })?;
                Some(
                    decode_key(value.trim())
                        .map_err(|m| fail(format!("[server] `encryption_key_env` ({var}): {m}")))?,
                )
            }
            None if server.allow_plaintext_store => None,
            None => {
                return Err(fail(
                    "no encryption key: set [server] `encryption_key_env` to a variable holding 32 bytes in base64 \
                     (`openssl rand -base64 32`), or `allow_plaintext_store = true` to keep tokens in clear"
                        .to_owned(),
                ));
            }
        };
        if !server.listen.ip().is_loopback() && !server.allow_insecure_http {
            return Err(fail(format!(
                "[server] `listen` = {} is not loopback: the service speaks plain HTTP, so put it behind a load \
                 balancer that terminates TLS and set `allow_insecure_http = true`",
                server.listen
            )));
        }
        let range = |key: &str, value: u64, min: u64, max: u64| {
            if (min..=max).contains(&value) {
                Ok(value)
            } else {
                Err(fail(format!("[server] `{key}` is {value}; it must be {min} to {max}")))
            }
        };
        let lease_ttl = range("lease_ttl_ms", server.lease_ttl_ms, 300, 600_000)?;
        let claim_interval = range("claim_interval_ms", server.claim_interval_ms, 50, 600_000)?;
        let drain = range("drain_ms", server.drain_ms, 0, 600_000)?;
        let callback_retry = range("callback_retry_ms", server.callback_retry_ms, 1000, 7 * 24 * 3600 * 1000)?;
        let defaults = ListenerLimits::default();
        let ms = |key: &str, value: Option<u64>, default: Duration, max: u64| {
            value.map_or(Ok(default), |v| range(key, v, 100, max).map(Duration::from_millis))
        };
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let mut limits = defaults;
        limits.header_timeout = ms("header_timeout_ms", server.header_timeout_ms, defaults.header_timeout, 600_000)?;
        limits.body_timeout = ms("body_timeout_ms", server.body_timeout_ms, defaults.body_timeout, 600_000)?;
        limits.idle_timeout = ms("idle_timeout_ms", server.idle_timeout_ms, defaults.idle_timeout, 3_600_000)?;
        if let Some(max) = server.max_connections {
            limits.max_connections = size(range("max_connections", max, 1, 1_000_000)?);
        }
        if let Some(max) = server.max_body_bytes {
            limits.max_body_bytes = size(range("max_body_bytes", max, 1024, 64 * 1024 * 1024)?);
            limits.max_buffered_bytes = limits.max_buffered_bytes.max(limits.max_body_bytes);
        }
        let instance_id = match server.instance_id {
            Some(id) if is_name(&id) => id,
            Some(id) => {
                return Err(fail(format!("[server] `instance_id` = {id:?}: use 1 to 64 letters, digits, `-` or `_`")));
            }
            None => default_instance_id(),
        };
        Ok(Self {
            listen: server.listen,
            metrics_listen: server.metrics_listen,
            store: server.store,
            instance_id,
            lease_ttl: Duration::from_millis(lease_ttl),
            claim_interval: Duration::from_millis(claim_interval),
            drain: Duration::from_millis(drain),
            callback_retry: Duration::from_millis(callback_retry),
            api_keys,
            encryption_key,
            allow_insecure_http: server.allow_insecure_http,
            limits,
            node,
            providers: named,
            ui: server.ui,
        })
    }
}

/// Host name and process id: unique among the instances of a fleet.
fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect::<String>())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Names of instances and provider configurations: safe in URLs, logs and metrics.
pub(crate) fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode_key(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| "not base64; make one with `openssl rand -base64 32`".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{} bytes; the key is 32 bytes (`openssl rand -base64 32`)", bytes.len()))
}

fn table<T: serde::de::DeserializeOwned>(name: &str, value: toml::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e: serde_path_to_error::Error<toml::de::Error>| {
        let message = e.inner().message().trim().to_owned();
        match e.path().to_string().as_str() {
            "." | "" => format!("[{name}] {message}"),
            path => format!("[{name}] `{path}`: {message}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn env(name: &str) -> Option<String> {
        match name {
            "KEYS" => Some("0123456789abcdef0123, fedcba9876543210fedc".to_owned()),
            "KEY" => Some(KEY.to_owned()),
            "TOKEN" => Some("s3cret".to_owned()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::parse(text, "server.toml", &env)
    }

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"
api_keys_env = "KEYS"
encryption_key_env = "KEY"
"#;

    #[test]
    fn reads_the_documented_format_with_defaults() {
        let config = parse(&format!(
            "{BASE}instance_id = \"a\"\n[node]\naccepted_message = \"Hi\"\n[providers.sales]\ntype = \"miaw\"\n\
             scrt_url = \"https://x\"\nidentity_token_env = \"TOKEN\"\n"
        ))
        .unwrap();
        assert_eq!(config.instance_id, "a");
        assert_eq!(config.store, "sqlite://handover.db");
        assert_eq!(config.lease_ttl, Duration::from_secs(10));
        assert_eq!(config.claim_interval, Duration::from_secs(1));
        assert_eq!(config.drain, Duration::from_secs(10));
        assert_eq!(config.api_keys, ["0123456789abcdef0123", "fedcba9876543210fedc"]);
        assert_eq!(config.encryption_key, Some([0; 32]));
        assert_eq!(config.node.accepted_message.as_deref(), Some("Hi"));
        let sales = &config.providers["sales"];
        assert_eq!(sales.kind, "miaw");
        assert_eq!(sales.table.get("identity_token").and_then(|v| v.as_str()), Some("s3cret"));
        let debug = format!("{config:?}{sales:?}");
        assert!(!debug.contains("s3cret") && !debug.contains("0123456789abcdef"), "{debug}");
    }

    #[test]
    fn mistakes_name_the_key_and_say_what_to_do() {
        let cases = [
            (format!("{BASE}lease_ttl = 5"), "unknown field `lease_ttl`"),
            (format!("{BASE}lease_ttl_ms = 5"), "`lease_ttl_ms` is 5; it must be 300 to 600000"),
            (format!("{BASE}[nod]\n"), "unknown key `nod`"),
            (format!("{BASE}[node]\ncancel = \"x\"\n"), "[node] `cancel`"),
            (format!("{BASE}[node]\nqueue_update_interval = 0\n"), "`queue_update_interval` is 0"),
            (format!("{BASE}[providers.sales]\nscrt_url = \"x\"\n"), "[providers.sales] needs `type`"),
            (format!("{BASE}[providers.\"a b\"]\ntype = \"miaw\"\n"), "name is 1 to 64 letters"),
            (format!("{BASE}[providers.sales]\ntype = \"miaw\"\ntoken_env = \"UNSET\"\n"), "UNSET, which is not set"),
            ("[server]\nlisten = \"127.0.0.1:1\"\nencryption_key_env = \"KEY\"\n".to_owned(), "no API key"),
            (
                "[server]\nlisten = \"127.0.0.1:1\"\napi_keys = [\"short\"]\nencryption_key_env = \"KEY\"\n".to_owned(),
                "too easy to guess",
            ),
            ("[server]\nlisten = \"127.0.0.1:1\"\napi_keys_env = \"KEYS\"\n".to_owned(), "openssl rand -base64 32"),
            (BASE.replace("127.0.0.1", "0.0.0.0"), "allow_insecure_http = true"),
            (BASE.replace("\"KEY\"", "\"KEYS\""), "not base64"),
        ];
        for (text, want) in cases {
            let error = parse(&text).err().unwrap_or_else(|| panic!("accepted:\n{text}")).to_string();
            assert!(error.contains(want), "{error}\n  wanted: {want}");
            assert!(error.starts_with("server.toml: "), "{error}");
        }
        let plaintext = "[server]\nlisten = \"127.0.0.1:1\"\napi_keys_env = \"KEYS\"\nallow_plaintext_store = true\n";
        assert_eq!(parse(plaintext).unwrap().encryption_key, None);
    }

    #[test]
    fn passwords_are_redacted_from_store_urls() {
        assert_eq!(redact_url("postgres://app:hunter2@db/handover"), "postgres://app:***@db/handover");
        assert_eq!(redact_url("sqlite://handover.db"), "sqlite://handover.db");
    }
}
