//! The `[ringcentral]` config table (`protocols/ringcentral-engage.md` §1).

use handover_core::Error;
use handover_transport::config::{MAX_SECS, in_range};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use crate::NAME;

/// Configuration of the RingCentral Engage Digital provider: the `[ringcentral]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RingCentralConfig {
    /// The Engage domain, e.g. `acme.digital.ringcentral.com` or
    /// `acme.engagement.dimelo.com`: the REST API is `https://acme.api.<rest>/1.0`, the Send
    /// API `https://<domain>/realtime/sdk/<source_id>`.
    #[serde(default)]
    pub domain: Option<String>,
    /// Overrides the REST base (up to and including `/1.0`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// Overrides the Send API URL (the source's "Realtime Endpoint URL", verbatim).
    #[serde(default)]
    pub realtime_url: Option<String>,
    /// The Source SDK source.
    pub source_id: String,
    /// The source's own API access token ("Realtime Access Token"): the HMAC-SHA512 key of
    /// callbacks, their answers and the Send API.
    pub source_token: SecretString,
    /// A REST API access token (ADMIN → API access tokens), bound to an agent user. Also
    /// accepted as `api_access_token`.
    #[serde(alias = "api_access_token")]
    pub access_token: SecretString,
    /// The category new threads land in (the source's default); threads go back to it when
    /// the bot cancels before an intervention exists.
    #[serde(default, deserialize_with = "optional_id")]
    pub bot_category_id: Option<String>,
    /// The category agents work from: the thread is recategorized to it on handover.
    #[serde(deserialize_with = "id")]
    pub agent_category_id: String,
    /// More categories set with the agent category.
    #[serde(default, deserialize_with = "ids")]
    pub additional_category_ids: Vec<String>,
    /// Our id of the bot identity (puppetizable) that authors bot transcript lines.
    #[serde(default = "default_bot_identity")]
    pub bot_identity_id: String,
    /// The bot identity's screen name.
    #[serde(default = "default_bot_name")]
    pub bot_name: String,
    /// The text posted (as the bot identity) when the user comes back, if the node's
    /// `user_connects_message` is on; empty sends nothing.
    #[serde(default = "default_connects")]
    pub user_connects_text: String,
    /// The text posted when the user leaves, if the node's `user_disconnects_message` is on.
    #[serde(default = "default_disconnects")]
    pub user_disconnects_text: String,
    /// The Engage webhook's "Verification Token" (answers the `hub.*` validation).
    #[serde(default)]
    pub webhook_verify_token: Option<SecretString>,
    /// The Engage webhook's "Secret", sent as `X-Dimelo-Secret` with every event delivery.
    #[serde(default)]
    pub webhook_secret: Option<SecretString>,
    /// Accept event deliveries without `X-Dimelo-Secret` (not recommended: anyone could
    /// end a handover).
    #[serde(default)]
    pub allow_unsigned_webhooks: bool,
    /// How long the handover waits for Engage to import the new thread (the Send API is
    /// asynchronous) before it gives up, in seconds.
    #[serde(default = "default_lookup_timeout")]
    pub thread_lookup_timeout_secs: u64,
    /// How long a closed intervention waits for agent replies still on their way (the close
    /// event may overtake them), in milliseconds.
    #[serde(default = "default_end_drain_ms")]
    pub end_drain_ms: u64,
    /// How far a callback's signed `time` may be from now, in seconds, for callbacks that
    /// change something (replies, queue updates): older ones are replays and refused.
    #[serde(default = "default_replay_window")]
    pub webhook_replay_window_secs: u64,
    /// Allow plain `http://` to a non-loopback host.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// Ids are accepted as TOML integers or strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    Number(u64),
    Text(String),
}

impl From<Id> for String {
    fn from(id: Id) -> Self {
        match id {
            Id::Number(n) => n.to_string(),
            Id::Text(text) => text.trim().to_owned(),
        }
    }
}

fn id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Id::deserialize(deserializer).map(String::from)
}

fn optional_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Option::<Id>::deserialize(deserializer).map(|id| id.map(String::from))
}

fn ids<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Vec::<Id>::deserialize(deserializer).map(|ids| ids.into_iter().map(String::from).collect())
}

fn default_bot_identity() -> String {
    "bot".to_owned()
}
fn default_bot_name() -> String {
    "Bot".to_owned()
}
fn default_connects() -> String {
    handover_core::UserInput::CONNECTED_TEXT.to_owned()
}
fn default_disconnects() -> String {
    handover_core::UserInput::DISCONNECTED_TEXT.to_owned()
}
fn default_lookup_timeout() -> u64 {
    30
}
fn default_end_drain_ms() -> u64 {
    1_000
}
fn default_replay_window() -> u64 {
    600
}

impl RingCentralConfig {
    /// Checks every numeric key against its range (values that load must also run).
    pub(crate) fn validate(&self) -> handover_core::Result<()> {
        in_range(NAME, "thread_lookup_timeout_secs", self.thread_lookup_timeout_secs, 0, 3600)?;
        in_range(NAME, "end_drain_ms", self.end_drain_ms, 0, 600_000)?;
        in_range(NAME, "webhook_replay_window_secs", self.webhook_replay_window_secs, 1, MAX_SECS)?;
        for (key, value) in [("source_token", &self.source_token), ("access_token", &self.access_token)] {
            if value.expose_secret().trim().is_empty() {
                return Err(Error::config(NAME, format!("[ringcentral] `{key}` is empty")));
            }
        }
        if self.webhook_secret.is_none() && !self.allow_unsigned_webhooks {
            return Err(Error::config(
                NAME,
                "[ringcentral] webhook events must be authenticated: set `webhook_secret` (the Engage webhook's \
                 Secret, sent as X-Dimelo-Secret) or `allow_unsigned_webhooks = true`",
            ));
        }
        if self.agent_category_id.trim().is_empty() {
            return Err(Error::config(NAME, "[ringcentral] `agent_category_id` is empty"));
        }
        Ok(())
    }

    /// A configuration for `domain` and `source_id`, with the two tokens and the agent
    /// category.
    pub fn new(
        domain: impl Into<String>,
        source_id: impl Into<String>,
        source_token: impl Into<String>,
        access_token: impl Into<String>,
        agent_category_id: impl Into<String>,
    ) -> Self {
        Self {
            domain: Some(domain.into()),
            api_url: None,
            realtime_url: None,
            source_id: source_id.into(),
            source_token: SecretString::from(source_token.into()),
            access_token: SecretString::from(access_token.into()),
            bot_category_id: None,
            agent_category_id: agent_category_id.into(),
            additional_category_ids: Vec::new(),
            bot_identity_id: default_bot_identity(),
            bot_name: default_bot_name(),
            user_connects_text: default_connects(),
            user_disconnects_text: default_disconnects(),
            webhook_verify_token: None,
            webhook_secret: None,
            allow_unsigned_webhooks: false,
            thread_lookup_timeout_secs: default_lookup_timeout(),
            end_drain_ms: default_end_drain_ms(),
            webhook_replay_window_secs: default_replay_window(),
            allow_insecure_http: false,
        }
    }

    /// Overrides both hosts (an emulator, a proxy).
    #[must_use]
    pub fn with_urls(mut self, api_url: impl Into<String>, realtime_url: impl Into<String>) -> Self {
        self.api_url = Some(api_url.into());
        self.realtime_url = Some(realtime_url.into());
        self
    }

    /// Sets the webhook secret (`X-Dimelo-Secret`).
    #[must_use]
    pub fn with_webhook_secret(mut self, secret: impl Into<String>) -> Self {
        self.webhook_secret = Some(SecretString::from(secret.into()));
        self
    }

    /// The REST base and the Send API URL: the overrides, else derived from `domain`.
    pub(crate) fn urls(&self) -> Result<(String, String), String> {
        let domain = self
            .domain
            .as_deref()
            .map(|d| d.trim().trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/'))
            .filter(|d| !d.is_empty());
        let derived = |what: &str| -> Result<(String, String), String> {
            let domain = domain
                .ok_or_else(|| format!("[ringcentral] set `domain` (e.g. acme.digital.ringcentral.com) or `{what}`"))?;
            let (account, rest) = domain
                .split_once('.')
                .filter(|(account, rest)| !account.is_empty() && rest.contains('.'))
                .ok_or_else(|| format!("[ringcentral] `domain` `{domain}` is not <account>.<engage host>"))?;
            if account == "api" || rest.starts_with("api.") {
                return Err(format!(
                    "[ringcentral] `domain` is the Engage domain without `api.` (e.g. acme.digital.ringcentral.com), not `{domain}`"
                ));
            }
            Ok((
                format!("https://{account}.api.{rest}/1.0"),
                format!("https://{domain}/realtime/sdk/{}", self.source_id),
            ))
        };
        let api = match &self.api_url {
            Some(url) => url.clone(),
            None => derived("api_url")?.0,
        };
        let realtime = match &self.realtime_url {
            Some(url) => url.clone(),
            None => derived("realtime_url")?.1,
        };
        Ok((api, realtime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_ids_may_be_numbers_and_the_token_has_its_cognigy_name_too() {
        let config: RingCentralConfig = serde_json::from_value(serde_json::json!({
            "domain": "acme.digital.ringcentral.com", "source_id": "s", "source_token": "t",
            "api_access_token": "a", "agent_category_id": 12, "bot_category_id": "11",
            "additional_category_ids": [13, "14"],
        }))
        .unwrap();
        assert_eq!(config.agent_category_id, "12");
        assert_eq!(config.bot_category_id.as_deref(), Some("11"));
        assert_eq!(config.additional_category_ids, ["13", "14"]);
    }

    #[test]
    fn hosts_derive_from_the_domain() {
        let config = RingCentralConfig::new("acme.digital.ringcentral.com", "src1", "t", "a", "cat");
        assert_eq!(
            config.urls().unwrap(),
            (
                "https://acme.api.digital.ringcentral.com/1.0".to_owned(),
                "https://acme.digital.ringcentral.com/realtime/sdk/src1".to_owned()
            )
        );
        let dimelo = RingCentralConfig::new("https://acme.engagement.dimelo.com/", "s", "t", "a", "c");
        assert_eq!(dimelo.urls().unwrap().0, "https://acme.api.engagement.dimelo.com/1.0");
        let api = RingCentralConfig::new("acme.api.engagement.dimelo.com", "s", "t", "a", "c");
        assert!(api.urls().unwrap_err().contains("without `api.`"));
        let bare = RingCentralConfig::new("localhost", "s", "t", "a", "c");
        assert!(bare.urls().is_err());
    }
}
