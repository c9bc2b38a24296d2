//! The `[liveagent]` config table (`protocols/liveagent-chatwoot.md` §1, §7).

use handover_core::{Error, Result};
use handover_transport::config::{MAX_SECS, in_range};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::NAME;
use crate::webhook::Auth;

/// Configuration of the Live Agent provider: the `[liveagent]` table.
///
/// The queue keys (`get_queue_position` … `alternative_text`) are the Handover node's
/// Live Agent parameters; the node runtime reads them too (updates, alternative text).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LiveAgentConfig {
    /// The API base, up to and including `/api/v1`.
    pub base_url: String,
    /// The account id.
    #[serde(deserialize_with = "id")]
    pub account_id: u64,
    /// A user access token (profile settings), sent as `api_access_token`.
    pub api_access_token: SecretString,
    /// The inbox (an API-channel or Cognigy.AI inbox).
    #[serde(deserialize_with = "id")]
    pub inbox_id: u64,
    /// Skills, sent as the conversation custom attribute `skills` (comma-separated).
    #[serde(default)]
    pub skills: Vec<String>,
    /// Languages, sent as the custom attribute `languages` (comma-separated).
    #[serde(default)]
    pub languages: Vec<String>,
    /// `urgent`, `high`, `medium` or `low`.
    #[serde(default)]
    pub priority: Option<String>,
    /// Report the queue position.
    #[serde(default)]
    pub get_queue_position: bool,
    /// Seconds between queue position checks.
    #[serde(default = "default_interval")]
    pub queue_update_interval: u64,
    /// Report an estimated wait time.
    #[serde(default)]
    pub get_estimated_wait_time: bool,
    /// Seconds between wait-time reports.
    #[serde(default = "default_interval")]
    pub wait_time_update_interval: u64,
    /// Say `alternative_text` when the queue is too long (node runtime).
    #[serde(default)]
    pub alternative_update: bool,
    /// The position beyond which the alternative text is said (node runtime).
    #[serde(default)]
    pub max_queue_position: Option<u32>,
    /// The wait beyond which the alternative text is said, in ms (node runtime).
    #[serde(default)]
    pub max_estimated_wait_time_ms: Option<u64>,
    /// The alternative text (node runtime).
    #[serde(default)]
    pub alternative_text: Option<String>,
    /// Seconds of wait estimated per queue position (Live Agent has no wait-time API, so the
    /// wait is estimated from the position).
    #[serde(default = "default_wait_per_position")]
    pub wait_per_position_secs: u64,
    /// The Chatwoot webhook secret (`X-Chatwoot-Signature` + `X-Chatwoot-Timestamp`).
    #[serde(default)]
    pub webhook_secret: Option<SecretString>,
    /// A shared token the webhook URL carries as `?token=…` (for desks that do not sign).
    #[serde(default)]
    pub webhook_token: Option<SecretString>,
    /// Accept webhooks with neither signature nor token (not recommended).
    #[serde(default)]
    pub allow_unsigned_webhooks: bool,
    /// How old a signed delivery may be, in seconds.
    #[serde(default = "default_replay_window")]
    pub webhook_replay_window_secs: u64,
    /// More conversation custom attributes.
    #[serde(default)]
    pub custom_attributes: Map<String, Value>,
    /// Allow plain `http://` to a non-loopback host.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

fn default_interval() -> u64 {
    30
}
fn default_wait_per_position() -> u64 {
    120
}
fn default_replay_window() -> u64 {
    300
}

/// Ids are accepted as TOML integers or strings.
fn id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    match Id::deserialize(deserializer)? {
        Id::Number(n) => Ok(n),
        Id::Text(text) => {
            text.trim().parse().map_err(|_| serde::de::Error::custom(format!("`{text}` is not a numeric id")))
        }
    }
}

impl LiveAgentConfig {
    /// Checks the config (values that load must also run) and says how webhooks are
    /// authenticated.
    pub(crate) fn validate(&self) -> Result<Auth> {
        if let Some(priority) = &self.priority
            && !matches!(priority.as_str(), "urgent" | "high" | "medium" | "low")
        {
            return Err(Error::config(
                NAME,
                format!("[liveagent] `priority` `{priority}` must be urgent, high, medium or low"),
            ));
        }
        in_range(NAME, "queue_update_interval", self.queue_update_interval, 1, 86_400)?;
        in_range(NAME, "wait_time_update_interval", self.wait_time_update_interval, 1, 86_400)?;
        in_range(NAME, "wait_per_position_secs", self.wait_per_position_secs, 0, 86_400)?;
        in_range(NAME, "webhook_replay_window_secs", self.webhook_replay_window_secs, 1, MAX_SECS)?;
        if let Some(ms) = self.max_estimated_wait_time_ms {
            in_range(NAME, "max_estimated_wait_time_ms", ms, 0, MAX_SECS * 1000)?;
        }
        match (&self.webhook_secret, &self.webhook_token, self.allow_unsigned_webhooks) {
            (Some(secret), _, _) => Ok(Auth::Signature {
                secret: secret.clone(),
                window: std::time::Duration::from_secs(self.webhook_replay_window_secs),
            }),
            (None, Some(token), _) => Ok(Auth::Token(token.clone())),
            (None, None, true) => Ok(Auth::Unsigned),
            (None, None, false) => Err(Error::config(
                NAME,
                "[liveagent] webhooks must be authenticated: set `webhook_secret` (desks that sign), \
                 `webhook_token` (a ?token= in the webhook URL), or `allow_unsigned_webhooks = true`",
            )),
        }
    }

    /// A configuration for `account_id` / `inbox_id` with the given token.
    pub fn new(
        base_url: impl Into<String>,
        account_id: u64,
        api_access_token: impl Into<String>,
        inbox_id: u64,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            account_id,
            api_access_token: SecretString::from(api_access_token.into()),
            inbox_id,
            skills: Vec::new(),
            languages: Vec::new(),
            priority: None,
            get_queue_position: false,
            queue_update_interval: default_interval(),
            get_estimated_wait_time: false,
            wait_time_update_interval: default_interval(),
            alternative_update: false,
            max_queue_position: None,
            max_estimated_wait_time_ms: None,
            alternative_text: None,
            wait_per_position_secs: default_wait_per_position(),
            webhook_secret: None,
            webhook_token: None,
            allow_unsigned_webhooks: false,
            webhook_replay_window_secs: default_replay_window(),
            custom_attributes: Map::new(),
            allow_insecure_http: false,
        }
    }
}
