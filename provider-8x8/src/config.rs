//! The `[8x8]` config table (`protocols/8x8.md` §1, §5.1).

use std::collections::BTreeMap;

use handover_transport::config::{MAX_SECS, in_range};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The default API host.
pub const DEFAULT_BASE_URL: &str = "https://api.8x8.com";

/// Configuration of the 8x8 provider: the `[8x8]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EightByEightConfig {
    /// The API host, without a path (`https://api.8x8.com`).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The Chat Gateway API key (Admin Console → API Keys, product "Chat Gateway"), sent as
    /// `x-api-key`.
    pub api_key: SecretString,
    /// The contact-center tenant, sent as `X-8x8-Tenant` on every call; mandatory when the
    /// customer has more than one tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The Chat API channel the conversation is created on.
    pub channel_id: String,
    /// A queue overriding the channel's default queue (`assignment: {type: "queue"}`).
    #[serde(default)]
    pub queue_id: Option<String>,
    /// Extra JSON merged into the create-conversation body: objects are merged key by key
    /// (so `{"user": {"company": "ACME"}}` adds to the user), `user.additionalProperties`
    /// entries are appended, anything else replaces the generated value.
    #[serde(default)]
    pub json_properties: Map<String, Value>,
    /// More `user.additionalProperties` shown to the agent (key → value).
    #[serde(default)]
    pub additional_properties: BTreeMap<String, String>,
    /// Display names of agents by agent id. The Gateway's `MEMBERS_CHANGED` event carries
    /// only the agent id; names from the legacy `AGENT_JOINED` event are used when present.
    #[serde(default)]
    pub agent_names: BTreeMap<String, String>,
    /// After the agent leaves (the agent finished), remove the user too, which frees the
    /// agent (`PATCH …/participants/user {"removed": true}`).
    #[serde(default = "yes")]
    pub leave_after_agent: bool,
    /// How long an agent's leave waits for a `TRANSFER` or the next agent (deliveries can
    /// arrive out of order) before it ends the handover, in milliseconds.
    #[serde(default = "default_transfer_grace_ms")]
    pub transfer_grace_ms: u64,
    /// How far `x-8x8-transmission-time` (signed, new on every retry) may be from now, in
    /// seconds: older deliveries are replays and refused.
    #[serde(default = "default_replay_window")]
    pub webhook_replay_window_secs: u64,
    /// The signing key ids (`kid`) 8x8 uses for this tenant. When set, only these keys
    /// are ever fetched, and a delivery signed with any other is refused without a
    /// request to 8x8. When empty, a new well-formed key id may be fetched, at most
    /// `key_fetches_per_minute` times a minute over all deliveries.
    #[serde(default)]
    pub webhook_key_ids: Vec<String>,
    /// Fetches of signing keys not seen before, per minute, when `webhook_key_ids` is
    /// empty (1 to 600, default 6): forged deliveries cannot make us call 8x8 at their rate.
    #[serde(default = "default_key_fetches")]
    pub key_fetches_per_minute: u32,
    /// Allow plain `http://` to a non-loopback host.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

fn default_key_fetches() -> u32 {
    6
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}
fn yes() -> bool {
    true
}
fn default_transfer_grace_ms() -> u64 {
    1_500
}
fn default_replay_window() -> u64 {
    300
}

impl EightByEightConfig {
    /// Checks the required keys and every numeric key against its range (values that load
    /// must also run).
    pub(crate) fn validate(&self) -> handover_core::Result<()> {
        if self.api_key.expose_secret().trim().is_empty() {
            return Err(handover_core::Error::config(crate::NAME, "[8x8] `api_key` is empty"));
        }
        if self.channel_id.trim().is_empty() {
            return Err(handover_core::Error::config(crate::NAME, "[8x8] `channel_id` is empty"));
        }
        in_range(crate::NAME, "transfer_grace_ms", self.transfer_grace_ms, 0, MAX_SECS * 1000)?;
        in_range(crate::NAME, "webhook_replay_window_secs", self.webhook_replay_window_secs, 1, MAX_SECS)?;
        in_range(crate::NAME, "key_fetches_per_minute", u64::from(self.key_fetches_per_minute), 1, 600)?;
        if let Some(kid) = self.webhook_key_ids.iter().find(|kid| !crate::jws::is_key_id(kid)) {
            return Err(handover_core::Error::config(
                crate::NAME,
                format!("[8x8] `webhook_key_ids` holds `{kid}`, which is not a key id (1 to 64 of A-Z a-z 0-9 _ -)"),
            ));
        }
        Ok(())
    }

    /// A configuration for `channel_id` with `api_key` against the default host.
    pub fn new(api_key: impl Into<String>, channel_id: impl Into<String>) -> Self {
        Self {
            base_url: default_base_url(),
            api_key: SecretString::from(api_key.into()),
            tenant: None,
            channel_id: channel_id.into(),
            queue_id: None,
            json_properties: Map::new(),
            additional_properties: BTreeMap::new(),
            agent_names: BTreeMap::new(),
            leave_after_agent: true,
            transfer_grace_ms: default_transfer_grace_ms(),
            webhook_replay_window_secs: default_replay_window(),
            webhook_key_ids: Vec::new(),
            key_fetches_per_minute: default_key_fetches(),
            allow_insecure_http: false,
        }
    }

    /// Points the provider at another host (an emulator, a proxy).
    #[must_use]
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Sets the `X-8x8-Tenant` header.
    #[must_use]
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Routes to `queue_id` instead of the channel's queue.
    #[must_use]
    pub fn with_queue(mut self, queue_id: impl Into<String>) -> Self {
        self.queue_id = Some(queue_id.into());
        self
    }
}
