//! The TOML config file of `handover chat` (DESIGN.md §6).
//!
//! ```toml
//! provider = "miaw"
//!
//! [node]
//! accepted_message = "Connecting you to an agent."
//! cancel_intent = "cancel_handover"
//!
//! [user]
//! id = "user-42"
//! name = "Jane Doe"
//!
//! [miaw]
//! scrt_url = "https://acme.my.salesforce-scrt.com"
//! org_id = "00D000000000001"
//! es_developer_name = "Bot_Handover"
//! identity_token_env = "MIAW_IDENTITY_TOKEN"
//! ```
//!
//! Unknown keys are errors that name the key and the file. Any key `x` of a provider
//! table may be given as `x_env`, naming an environment variable that holds the value
//! (meant for secrets).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use handover_core::{EndUser, Error, HandoverRequest, Provider, Result, TranscriptEntry};
use serde::Deserialize;

use crate::Registry;
use crate::node::{Alternative, FlowContinuation, NodeConfig, QueueUpdates};
use crate::registry::BuildOptions;
use crate::registry::PROVIDERS;
use handover_transport::push::PendingLimits;

/// A loaded config file.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// The selected provider.
    pub provider: String,
    /// The node parameters.
    pub node: NodeConfig,
    /// The end user.
    pub user: EndUser,
    /// The bot transcript (from `[transcript] file`).
    pub transcript: Vec<TranscriptEntry>,
    /// The `[webhook]` table: where the CLI listens for webhooks, and the limits.
    pub webhook: Option<WebhookConfig>,
    /// The selected provider's table, with `*_env` keys resolved.
    pub provider_table: toml::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    #[serde(default)]
    accepted_message: String,
    #[serde(default)]
    repeat_accepted_message: bool,
    cancel_intent: Option<String>,
    cancel_button_text: Option<String>,
    #[serde(default)]
    flow_continuation: FlowContinuation,
    #[serde(default)]
    send_resolve_event: bool,
    #[serde(default)]
    send_queue_event: bool,
    #[serde(default)]
    send_active_event: bool,
    #[serde(default = "yes")]
    user_connects_message: bool,
    #[serde(default = "yes")]
    user_disconnects_message: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    id: String,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    language: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTranscript {
    file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    listen: SocketAddr,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections: Option<u64>,
    max_body_bytes: Option<u64>,
    max_buffered_bytes: Option<u64>,
    pending_deliveries: Option<u64>,
    pending_bytes: Option<u64>,
    pending_secs: Option<u64>,
}

/// The `[webhook]` table (DESIGN.md §6): where push providers deliver, the listener's
/// limits, and what is kept for sessions not started yet.
///
/// ```toml
/// [webhook]
/// listen = "127.0.0.1:8090"
/// header_timeout_ms = 10000     # 100 to 600000
/// body_timeout_ms = 30000       # 100 to 600000
/// idle_timeout_ms = 60000       # 100 to 3600000
/// max_connections = 4096        # 1 to 1000000
/// max_body_bytes = 1048576      # 1024 to 67108864
/// max_buffered_bytes = 67108864 # max_body_bytes to 17179869184
/// pending_deliveries = 1000     # 0 to 1000000
/// pending_bytes = 8388608       # 0 to 4294967296
/// pending_secs = 120            # 1 to 3600
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// The address the CLI serves `POST /webhooks/<provider>` on.
    pub listen: SocketAddr,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// How long a kept-alive connection may stay idle.
    pub idle_timeout: Duration,
    /// The most connections open at once (the longest idle is closed for a new one).
    pub max_connections: usize,
    /// The largest request body.
    pub max_body_bytes: usize,
    /// The most request-body bytes held at once, over all connections.
    pub max_buffered_bytes: usize,
    /// What is kept for conversations whose session has not registered yet.
    pub pending: PendingLimits,
}

impl WebhookConfig {
    /// The listener limits of this table.
    #[cfg(feature = "webhook-router")]
    pub fn listener_limits(&self) -> crate::webhook::ListenerLimits {
        crate::webhook::ListenerLimits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            max_body_bytes: self.max_body_bytes,
            max_buffered_bytes: self.max_buffered_bytes,
        }
    }

    fn from_raw(raw: RawWebhook) -> std::result::Result<Self, String> {
        let defaults = PendingLimits::default();
        let check = |key: &str, value: Option<u64>, default: u64, min: u64, max: u64| {
            let value = value.unwrap_or(default);
            if (min..=max).contains(&value) {
                Ok(value)
            } else {
                Err(format!("[webhook] `{key}` is {value}; it must be {min} to {max}"))
            }
        };
        let ms = |key: &str, value, default, max| check(key, value, default, 100, max).map(Duration::from_millis);
        let size = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
        let max_body_bytes = check("max_body_bytes", raw.max_body_bytes, 1024 * 1024, 1024, 64 * 1024 * 1024)?;
        Ok(Self {
            listen: raw.listen,
            header_timeout: ms("header_timeout_ms", raw.header_timeout_ms, 10_000, 600_000)?,
            body_timeout: ms("body_timeout_ms", raw.body_timeout_ms, 30_000, 600_000)?,
            idle_timeout: ms("idle_timeout_ms", raw.idle_timeout_ms, 60_000, 3_600_000)?,
            max_connections: size(check("max_connections", raw.max_connections, 4096, 1, 1_000_000)?),
            max_body_bytes: size(max_body_bytes),
            max_buffered_bytes: size(check(
                "max_buffered_bytes",
                raw.max_buffered_bytes,
                (64 * 1024 * 1024).max(max_body_bytes),
                max_body_bytes,
                16 * 1024 * 1024 * 1024,
            )?),
            pending: PendingLimits::new(
                size(check(
                    "pending_deliveries",
                    raw.pending_deliveries,
                    defaults.max_deliveries as u64,
                    0,
                    1_000_000,
                )?),
                size(check("pending_bytes", raw.pending_bytes, defaults.max_bytes as u64, 0, 4 * 1024 * 1024 * 1024)?),
                Duration::from_secs(check("pending_secs", raw.pending_secs, defaults.max_age.as_secs(), 1, 3600)?),
            ),
        })
    }
}

/// The queue keys the node reads from the selected provider's table (Live Agent's node
/// parameters in DESIGN.md §6). Any provider's table may carry them; only Live Agent, which
/// computes its queue itself, is handed them too.
#[derive(Deserialize, Default)]
struct RawQueue {
    get_queue_position: Option<bool>,
    queue_update_interval: Option<u64>,
    get_estimated_wait_time: Option<bool>,
    wait_time_update_interval: Option<u64>,
    alternative_update: Option<bool>,
    max_queue_position: Option<u32>,
    max_estimated_wait_time_ms: Option<u64>,
    alternative_text: Option<String>,
}

const QUEUE_KEYS: [&str; 8] = [
    "get_queue_position",
    "queue_update_interval",
    "get_estimated_wait_time",
    "wait_time_update_interval",
    "alternative_update",
    "max_queue_position",
    "max_estimated_wait_time_ms",
    "alternative_text",
];

impl Config {
    /// Reads and checks `path`, resolving `*_env` keys from the process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config("handover", format!("cannot read config file {}: {e}", path.display())).with_source(e)
        })?;
        Self::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parses config text; `path` names the file in messages and anchors relative paths;
    /// `env` looks up environment variables.
    pub fn parse(text: &str, path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let file = path.display().to_string();
        let fail = |message: String| Error::config("handover", format!("{file}: {message}"));
        let mut root: toml::Table = text.parse().map_err(|e: toml::de::Error| fail(e.message().trim().to_owned()))?;

        let provider = match root.remove("provider") {
            Some(toml::Value::String(name)) => name,
            Some(_) => return Err(fail("`provider` must be a string".to_owned())),
            None => {
                return Err(fail(format!(
                    "missing `provider`; set it to one of {}",
                    PROVIDERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )));
            }
        };
        let node: RawNode = section(&mut root, "node", &fail)?
            .unwrap_or_else(|| toml::Value::Table(Default::default()).try_into().expect("an empty [node] is valid"));
        let user: Option<RawUser> = section(&mut root, "user", &fail)?;
        let transcript: Option<RawTranscript> = section(&mut root, "transcript", &fail)?;
        let webhook: Option<RawWebhook> = section(&mut root, "webhook", &fail)?;

        // Everything left must be a provider table.
        let mut provider_table = None;
        for (key, value) in root {
            if !PROVIDERS.iter().any(|(name, _)| *name == key) {
                return Err(fail(format!("unknown key `{key}`")));
            }
            let toml::Value::Table(table) = value else {
                return Err(fail(format!("`{key}` must be a table ([{key}])")));
            };
            if key == provider {
                provider_table = Some(resolve_env(&key, table, env).map_err(fail)?);
            }
        }
        if !PROVIDERS.iter().any(|(name, _)| *name == provider) {
            return Err(fail(format!(
                "unknown provider `{provider}`; expected one of {}",
                PROVIDERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )));
        }
        let provider_table = provider_table
            .ok_or_else(|| fail(format!("provider `{provider}` is selected but there is no [{provider}] table")))?;

        let mut queue_table = toml::Table::new();
        for key in QUEUE_KEYS {
            if let Some(value) = provider_table.get(key) {
                queue_table.insert(key.to_owned(), value.clone());
            }
        }
        let queue: RawQueue = deserialize_table(&provider, toml::Value::Table(queue_table)).map_err(&fail)?;
        check_queue(&provider, &queue).map_err(&fail)?;
        let mut provider_table = provider_table;
        if provider != "liveagent" {
            for key in QUEUE_KEYS {
                provider_table.remove(key);
            }
        }

        let user = match user {
            Some(u) => {
                let mut end_user = EndUser::new(u.id);
                end_user.name = u.name;
                end_user.email = u.email;
                end_user.phone = u.phone;
                end_user.language = u.language;
                end_user
            }
            None => return Err(fail("missing [user] table with at least `id`".to_owned())),
        };
        let transcript = match transcript {
            Some(t) => {
                let base = path.parent().unwrap_or_else(|| Path::new("."));
                load_transcript(&base.join(&t.file))?
            }
            None => Vec::new(),
        };
        let node = NodeConfig {
            accepted_message: node.accepted_message,
            repeat_accepted_message: node.repeat_accepted_message,
            cancel_intent: node.cancel_intent.filter(|s| !s.is_empty()),
            cancel_button_text: node.cancel_button_text.filter(|s| !s.is_empty()),
            flow_continuation: node.flow_continuation,
            send_resolve_event: node.send_resolve_event,
            send_queue_event: node.send_queue_event,
            send_active_event: node.send_active_event,
            user_connects_message: node.user_connects_message,
            user_disconnects_message: node.user_disconnects_message,
            queue: queue_updates(queue),
        };
        Ok(Self {
            path: path.to_path_buf(),
            provider,
            node,
            user,
            transcript,
            webhook: webhook.map(WebhookConfig::from_raw).transpose().map_err(fail)?,
            provider_table: toml::Value::Table(provider_table),
        })
    }

    /// The handover request for bot session `session_id`.
    pub fn request(&self, session_id: impl Into<String>) -> HandoverRequest {
        HandoverRequest::new(session_id, self.user.clone()).with_transcript(self.transcript.clone())
    }

    /// Builds the selected provider.
    pub fn build_provider(&self, registry: &Registry) -> Result<Arc<dyn Provider>> {
        let mut options = BuildOptions::default();
        if let Some(webhook) = &self.webhook {
            options.pending = webhook.pending;
        }
        registry.build_with(&self.provider, self.provider_table.clone(), &options).map_err(|e| {
            Error::config(self.provider.clone(), format!("{}: {}", self.path.display(), e.message())).with_source(e)
        })
    }
}

fn section<T: serde::de::DeserializeOwned>(
    root: &mut toml::Table,
    name: &str,
    fail: &dyn Fn(String) -> Error,
) -> Result<Option<T>> {
    root.remove(name).map(|value| deserialize_table(name, value).map_err(fail)).transpose()
}

/// Deserializes table `[name]`; the error names the table and the key at fault.
pub(crate) fn deserialize_table<T: serde::de::DeserializeOwned>(
    name: &str,
    value: toml::Value,
) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e: serde_path_to_error::Error<toml::de::Error>| {
        let message = e.inner().message().trim().to_owned();
        match e.path().to_string().as_str() {
            "." | "" => format!("[{name}] {message}"),
            path => format!("[{name}] `{path}`: {message}"),
        }
    })
}

/// The node's queue keys must run as loaded: intervals of 1 s to a day, waits up to a week.
fn check_queue(provider: &str, raw: &RawQueue) -> std::result::Result<(), String> {
    let check = |key: &str, value: Option<u64>, min: u64, max: u64| match value {
        Some(value) if !(min..=max).contains(&value) => {
            Err(format!("[{provider}] `{key}` is {value}; it must be {min} to {max}"))
        }
        _ => Ok(()),
    };
    check("queue_update_interval", raw.queue_update_interval, 1, 86_400)?;
    check("wait_time_update_interval", raw.wait_time_update_interval, 1, 86_400)?;
    check("max_estimated_wait_time_ms", raw.max_estimated_wait_time_ms, 0, 7 * 24 * 3600 * 1000)
}

fn queue_updates(raw: RawQueue) -> QueueUpdates {
    let mut queue = QueueUpdates::default();
    if let Some(on) = raw.get_queue_position {
        queue.position = on;
    }
    if let Some(secs) = raw.queue_update_interval {
        queue.position_interval = Duration::from_secs(secs);
    }
    if let Some(on) = raw.get_estimated_wait_time {
        queue.wait_time = on;
    }
    if let Some(secs) = raw.wait_time_update_interval {
        queue.wait_time_interval = Duration::from_secs(secs);
    }
    if raw.alternative_update == Some(true) {
        queue.alternative = Some(Alternative::new(
            raw.alternative_text.unwrap_or_default(),
            raw.max_queue_position,
            raw.max_estimated_wait_time_ms.map(Duration::from_millis),
        ));
    }
    queue
}

/// Replaces every `x_env = "VAR"` of table `[provider]` with `x = <value of VAR>`, looking
/// variables up with `env`; an error names the key (a variable unset, or both `x` and
/// `x_env` given).
pub fn resolve_env(
    provider: &str,
    table: toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<toml::Table, String> {
    let mut out = toml::Table::new();
    let mut from_env = Vec::new();
    for (key, value) in table {
        match key.strip_suffix("_env") {
            Some(stem) if !stem.is_empty() => {
                let toml::Value::String(var) = value else {
                    return Err(format!("[{provider}] `{key}` must name an environment variable"));
                };
                let resolved = env(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    format!("[{provider}] `{key}` names the environment variable {var}, which is not set")
                })?;
                from_env.push((stem.to_owned(), key, resolved));
            }
            _ => {
                out.insert(key, value);
            }
        }
    }
    for (stem, key, value) in from_env {
        if out.contains_key(&stem) {
            return Err(format!("[{provider}] sets both `{stem}` and `{key}`; keep one"));
        }
        out.insert(stem, toml::Value::String(value));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TranscriptLine {
    from: handover_core::Speaker,
    text: String,
    #[serde(default)]
    at: Option<u64>,
}

/// The node's keys as a service takes them (DESIGN.md §7.3): the `[node]` table of
/// `handover serve`, which may also carry the queue keys (`get_queue_position`, …) that
/// `handover chat` reads from the provider's table, and a request's `node` object, which
/// overrides them key by key. Every key is optional; an unknown key is an error naming it.
///
/// ```
/// use handover::config::NodeKeys;
///
/// let defaults: NodeKeys = toml::from_str(r#"accepted_message = "Connecting you.""#).unwrap();
/// let request: NodeKeys = serde_json::from_str(r#"{"cancel_intent":"stop"}"#).unwrap();
/// let node = defaults.merged(request).to_config().unwrap();
/// assert_eq!(node.accepted_message, "Connecting you.");
/// assert_eq!(node.cancel_intent.as_deref(), Some("stop"));
/// assert!(serde_json::from_str::<NodeKeys>(r#"{"cancel":"x"}"#).is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NodeKeys {
    /// Said when the contact center took the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_message: Option<String>,
    /// Say it again on every user message until an agent answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_accepted_message: Option<bool>,
    /// The intent that cancels the handover while queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_intent: Option<String>,
    /// The quick reply that cancels the handover while queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_button_text: Option<String>,
    /// Where the flow continues after `completed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_continuation: Option<FlowContinuation>,
    /// Emit the resolve event when the agent ends the handover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_resolve_event: Option<bool>,
    /// Emit the queue event once queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_queue_event: Option<bool>,
    /// Emit the active event on the first agent message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_active_event: Option<bool>,
    /// Relay the user's `connected` input to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_connects_message: Option<bool>,
    /// Relay the user's `disconnected` input to the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_disconnects_message: Option<bool>,
    /// Report the queue position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_queue_position: Option<bool>,
    /// At most one position report per this many seconds (1 to 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_update_interval: Option<u64>,
    /// Report the estimated wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_estimated_wait_time: Option<bool>,
    /// At most one wait report per this many seconds (1 to 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_time_update_interval: Option<u64>,
    /// Say `alternative_text` once when the queue is too long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative_update: Option<bool>,
    /// The position past which the queue is too long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_position: Option<u32>,
    /// The wait past which the queue is too long, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_estimated_wait_time_ms: Option<u64>,
    /// What to say then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative_text: Option<String>,
}

impl NodeKeys {
    /// These keys with every key `over` sets replacing ours.
    #[must_use]
    pub fn merged(self, over: NodeKeys) -> NodeKeys {
        macro_rules! pick {
            ($($field:ident),*) => { NodeKeys { $($field: over.$field.or(self.$field)),* } };
        }
        pick!(
            accepted_message,
            repeat_accepted_message,
            cancel_intent,
            cancel_button_text,
            flow_continuation,
            send_resolve_event,
            send_queue_event,
            send_active_event,
            user_connects_message,
            user_disconnects_message,
            get_queue_position,
            queue_update_interval,
            get_estimated_wait_time,
            wait_time_update_interval,
            alternative_update,
            max_queue_position,
            max_estimated_wait_time_ms,
            alternative_text
        )
    }

    /// The node configuration these keys make; an error names a key out of range.
    pub fn to_config(&self) -> std::result::Result<NodeConfig, String> {
        let queue = RawQueue {
            get_queue_position: self.get_queue_position,
            queue_update_interval: self.queue_update_interval,
            get_estimated_wait_time: self.get_estimated_wait_time,
            wait_time_update_interval: self.wait_time_update_interval,
            alternative_update: self.alternative_update,
            max_queue_position: self.max_queue_position,
            max_estimated_wait_time_ms: self.max_estimated_wait_time_ms,
            alternative_text: self.alternative_text.clone(),
        };
        check_queue("node", &queue)?;
        let defaults = NodeConfig::default();
        let node = NodeConfig {
            accepted_message: self.accepted_message.clone().unwrap_or_default(),
            repeat_accepted_message: self.repeat_accepted_message.unwrap_or(defaults.repeat_accepted_message),
            cancel_intent: self.cancel_intent.clone().filter(|s| !s.is_empty()),
            cancel_button_text: self.cancel_button_text.clone().filter(|s| !s.is_empty()),
            flow_continuation: self.flow_continuation.unwrap_or_default(),
            send_resolve_event: self.send_resolve_event.unwrap_or(defaults.send_resolve_event),
            send_queue_event: self.send_queue_event.unwrap_or(defaults.send_queue_event),
            send_active_event: self.send_active_event.unwrap_or(defaults.send_active_event),
            user_connects_message: self.user_connects_message.unwrap_or(defaults.user_connects_message),
            user_disconnects_message: self.user_disconnects_message.unwrap_or(defaults.user_disconnects_message),
            queue: queue_updates(queue),
        };
        Ok(node)
    }
}

/// Reads a JSON-lines transcript: `{"from":"user"|"bot"|"agent","text":…}` per line.
pub fn load_transcript(path: &Path) -> Result<Vec<TranscriptEntry>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config("handover", format!("cannot read transcript file {}: {e}", path.display())).with_source(e)
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let line: TranscriptLine = serde_json::from_str(line).map_err(|e| {
                Error::config(
                    "handover",
                    format!(
                        "{}:{}: not a transcript line ({e}); expected {{\"from\":\"user\",\"text\":\"…\"}}",
                        path.display(),
                        n + 1
                    ),
                )
            })?;
            let mut entry = TranscriptEntry::new(line.from, line.text);
            entry.at = line.at;
            Ok(entry)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use handover_core::{ErrorKind, Speaker};

    use super::*;

    fn parse(text: &str) -> Result<Config> {
        parse_env(text, &|name| (name == "MIAW_TOKEN").then(|| "secret-token".to_owned()))
    }

    fn parse_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        Config::parse(text, Path::new("handover.toml"), env)
    }

    const MIAW: &str = r#"
provider = "miaw"

[node]
accepted_message = "Connecting you to an agent."
repeat_accepted_message = true
cancel_intent = "cancel_handover"
cancel_button_text = "Cancel"
flow_continuation = "agent_inject_entrypoint"
send_resolve_event = true
send_queue_event = true
send_active_event = true
user_connects_message = false

[user]
id = "user-42"
name = "Jane Doe"
language = "en"

[miaw]
scrt_url = "https://acme.my.salesforce-scrt.com"
org_id = "00D000000000001"
identity_token_env = "MIAW_TOKEN"
routing_attributes = { customerName = "John Doe" }
"#;

    #[test]
    fn reads_the_documented_format() {
        let config = parse(MIAW).unwrap();
        assert_eq!(config.provider, "miaw");
        assert_eq!(config.node.accepted_message, "Connecting you to an agent.");
        assert!(config.node.repeat_accepted_message);
        assert_eq!(config.node.cancel_intent.as_deref(), Some("cancel_handover"));
        assert_eq!(config.node.cancel_button_text.as_deref(), Some("Cancel"));
        assert_eq!(config.node.flow_continuation, FlowContinuation::AgentInjectEntrypoint);
        assert!(config.node.send_resolve_event && config.node.send_queue_event && config.node.send_active_event);
        assert!(!config.node.user_connects_message);
        assert!(config.node.user_disconnects_message, "defaults to on");
        assert_eq!(config.user.name.as_deref(), Some("Jane Doe"));
        let table = config.provider_table.as_table().unwrap();
        assert_eq!(table["identity_token"].as_str(), Some("secret-token"));
        assert!(!table.contains_key("identity_token_env"));
        assert_eq!(table["routing_attributes"]["customerName"].as_str(), Some("John Doe"));
    }

    #[test]
    fn node_defaults_are_the_documented_defaults() {
        let config = parse("provider = \"miaw\"\n[user]\nid = \"u\"\n[miaw]\n").unwrap();
        assert_eq!(config.node, NodeConfig::default());
        assert!(config.node.user_connects_message && config.node.user_disconnects_message);
        assert!(!config.node.send_queue_event);
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_file() {
        let error = parse(&MIAW.replace("repeat_accepted_message", "repeat_acepted_message")).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
        let text = error.to_string();
        assert!(text.contains("handover.toml") && text.contains("repeat_acepted_message"), "{text}");
        let error = parse(&format!("{MIAW}\n[nodes]\nx = 1\n")).unwrap_err();
        assert!(error.to_string().contains("unknown key `nodes`"), "{error}");
        let error = parse("provider = \"zendesk\"\n[user]\nid = \"u\"\n").unwrap_err();
        assert!(error.to_string().contains("unknown provider `zendesk`"), "{error}");
        let error = parse("provider = \"miaw\"\n[user]\nid = \"u\"\n").unwrap_err();
        assert!(error.to_string().contains("no [miaw] table"), "{error}");
    }

    #[test]
    fn env_indirection_errors_are_clear() {
        let error = parse_env(MIAW, &|_| None).unwrap_err();
        assert!(error.to_string().contains("MIAW_TOKEN, which is not set"), "{error}");
        let both = MIAW.replace(
            "identity_token_env = \"MIAW_TOKEN\"",
            "identity_token_env = \"MIAW_TOKEN\"\nidentity_token = \"x\"",
        );
        let error = parse(&both).unwrap_err();
        assert!(error.to_string().contains("both `identity_token` and `identity_token_env`"), "{error}");
    }

    #[test]
    fn queue_keys_of_the_provider_table_configure_the_node() {
        let text = r#"
provider = "liveagent"
[user]
id = "u"
[liveagent]
get_queue_position = true
queue_update_interval = 30
get_estimated_wait_time = false
alternative_update = true
max_queue_position = 5
max_estimated_wait_time_ms = 600000
alternative_text = "Busy right now."
"#;
        let config = parse(text).unwrap();
        let queue = &config.node.queue;
        assert!(queue.position && !queue.wait_time);
        assert_eq!(queue.position_interval, Duration::from_secs(30));
        let alternative = queue.alternative.as_ref().unwrap();
        assert_eq!(alternative.max_position, Some(5));
        assert_eq!(alternative.max_wait, Some(Duration::from_secs(600)));
        assert_eq!(alternative.text, "Busy right now.");
        assert!(config.provider_table.as_table().unwrap().contains_key("get_queue_position"));
    }

    #[test]
    fn queue_keys_in_other_tables_configure_only_the_node() {
        let text = "provider = \"8x8\"\n[user]\nid = \"u\"\n[8x8]\napi_key = \"k\"\nchannel_id = \"c\"\n\
                    get_estimated_wait_time = true\nwait_time_update_interval = 5\n";
        let config = parse(text).unwrap();
        assert!(config.node.queue.wait_time);
        assert_eq!(config.node.queue.wait_time_interval, Duration::from_secs(5));
        let table = config.provider_table.as_table().unwrap();
        assert!(!table.contains_key("get_estimated_wait_time"), "the provider's table has no queue keys");
        assert!(table.contains_key("channel_id"));
    }

    #[test]
    fn transcripts_load_from_json_lines_relative_to_the_config() {
        let dir = std::env::temp_dir().join(format!("handover-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("t.jsonl"),
            "{\"from\":\"user\",\"text\":\"Hi\"}\n\n{\"from\":\"bot\",\"text\":\"Hello\",\"at\":5}\n",
        )
        .unwrap();
        let text = "provider = \"miaw\"\n[user]\nid = \"u\"\n[transcript]\nfile = \"t.jsonl\"\n[miaw]\n";
        let config = Config::parse(text, &dir.join("handover.toml"), &|_| None).unwrap();
        assert_eq!(
            config.transcript,
            vec![TranscriptEntry::new(Speaker::User, "Hi"), TranscriptEntry::new(Speaker::Bot, "Hello").at(5)]
        );
        std::fs::write(dir.join("t.jsonl"), "{\"from\":\"martian\",\"text\":\"Hi\"}\n").unwrap();
        let error = Config::parse(text, &dir.join("handover.toml"), &|_| None).unwrap_err();
        assert!(error.to_string().contains("t.jsonl:1"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
