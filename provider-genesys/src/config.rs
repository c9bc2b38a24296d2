//! The `[genesys]` config table (`protocols/genesys.md` §1).

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use handover_core::{Error, Result};
use handover_transport::http;

use crate::NAME;
use handover_transport::config::in_range;

/// Region keys of the Genesys SDKs and their environment domains (§1.1).
pub const REGIONS: [(&str, &str); 18] = [
    ("us_east_1", "mypurecloud.com"),
    ("eu_west_1", "mypurecloud.ie"),
    ("ap_southeast_2", "mypurecloud.com.au"),
    ("ap_northeast_1", "mypurecloud.jp"),
    ("eu_central_1", "mypurecloud.de"),
    ("us_west_2", "usw2.pure.cloud"),
    ("ca_central_1", "cac1.pure.cloud"),
    ("ap_northeast_2", "apne2.pure.cloud"),
    ("eu_west_2", "euw2.pure.cloud"),
    ("ap_south_1", "aps1.pure.cloud"),
    ("us_east_2", "use2.us-gov-pure.cloud"),
    ("sa_east_1", "sae1.pure.cloud"),
    ("me_central_1", "mec1.pure.cloud"),
    ("ap_northeast_3", "apne3.pure.cloud"),
    ("eu_central_2", "euc2.pure.cloud"),
    ("mx_central_1", "mxc1.pure.cloud"),
    ("ap_southeast_1", "apse1.pure.cloud"),
    ("eusc_de_east_1", "edee1.eusc-pure.cloud"),
];

/// Configuration of the Genesys provider: the `[genesys]` table of `handover.toml`.
///
/// Hosts come from `region` (an SDK region key such as `eu_central_1`, or a domain such as
/// `mypurecloud.de`), or explicitly from `login_url` and `api_url`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GenesysConfig {
    /// Region key or environment domain.
    #[serde(default)]
    pub region: Option<String>,
    /// `https://login.{domain}`, overriding the region.
    #[serde(default)]
    pub login_url: Option<String>,
    /// `https://api.{domain}`, overriding the region.
    #[serde(default)]
    pub api_url: Option<String>,
    /// OAuth client id (client-credentials grant).
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: SecretString,
    /// The Open Messaging integration id.
    pub integration_id: String,
    /// The integration's outbound webhook signature secret.
    pub webhook_secret: SecretString,
    /// Routing language, sent as a custom attribute.
    #[serde(default)]
    pub language: Option<String>,
    /// Routing skills, sent comma-separated as a custom attribute.
    #[serde(default)]
    pub skills: Vec<String>,
    /// Routing priority, sent as a custom attribute.
    #[serde(default)]
    pub priority: Option<i64>,
    /// Further custom attributes (values become strings).
    #[serde(default)]
    pub custom_attributes: Map<String, Value>,
    /// The attribute key the Architect flow reads the language from.
    #[serde(default = "default_language_attribute")]
    pub language_attribute: String,
    /// The attribute key of the skills.
    #[serde(default = "default_skills_attribute")]
    pub skills_attribute: String,
    /// The attribute key of the priority.
    #[serde(default = "default_priority_attribute")]
    pub priority_attribute: String,
    /// Forward messages the Architect flow or a bot sends (`originatingEntity: Bot`).
    #[serde(default)]
    pub forward_bot_messages: bool,
    /// Send the bot transcript as the first messages.
    #[serde(default = "yes")]
    pub send_transcript: bool,
    /// Text of the first message when there is no transcript.
    #[serde(default = "default_handover_message")]
    pub handover_message: String,
    /// Text sent when the user or bot ends the conversation.
    #[serde(default = "default_customer_left_message")]
    pub customer_left_message: String,
    /// How long an agent's end waits for a transfer or requeue before it ends the handover.
    #[serde(default = "default_transfer_grace_ms")]
    pub transfer_grace_ms: u64,
    /// How long the end of a conversation waits for agent messages still on their way as
    /// webhooks (they can arrive after the end notification).
    #[serde(default = "default_end_drain_ms")]
    pub end_drain_ms: u64,
    /// Conversations watched on one notification channel (1 to 333: a channel holds 1000
    /// topics, three per conversation). More channels, each with its own socket, are
    /// opened as handovers need them, up to the 20 an app may hold.
    #[serde(default = "default_conversations_per_channel")]
    pub conversations_per_channel: usize,
    /// Allow plain `http://` to non-loopback hosts.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

fn yes() -> bool {
    true
}
fn default_language_attribute() -> String {
    "myLanguage".to_owned()
}
fn default_skills_attribute() -> String {
    "mySkills".to_owned()
}
fn default_priority_attribute() -> String {
    "myPriority".to_owned()
}
fn default_handover_message() -> String {
    "The customer asked for a human agent.".to_owned()
}
fn default_customer_left_message() -> String {
    "The customer left the conversation.".to_owned()
}
fn default_conversations_per_channel() -> usize {
    333
}
fn default_transfer_grace_ms() -> u64 {
    10_000
}
fn default_end_drain_ms() -> u64 {
    2_000
}

impl GenesysConfig {
    /// Checks the config (the hosts, the required keys, every range) and returns the login
    /// and API hosts (values that load must also run).
    pub(crate) fn validate(&self) -> Result<(Url, Url)> {
        let hosts = self.hosts()?;
        for (key, value) in [("client_id", self.client_id.as_str()), ("integration_id", self.integration_id.as_str())] {
            if value.trim().is_empty() {
                return Err(Error::config(NAME, format!("[genesys] `{key}` must not be empty")));
            }
        }
        in_range(NAME, "transfer_grace_ms", self.transfer_grace_ms, 0, 600_000)?;
        in_range(NAME, "end_drain_ms", self.end_drain_ms, 0, 600_000)?;
        // A notification channel holds 1000 topics, three per conversation: at most 333.
        in_range(NAME, "conversations_per_channel", self.conversations_per_channel as u64, 1, 333)?;
        if self.webhook_secret.expose_secret().is_empty() {
            return Err(Error::config(NAME, "[genesys] `webhook_secret` must not be empty: webhooks are verified"));
        }
        Ok(hosts)
    }

    /// A configuration for `region` with the given credentials and integration.
    pub fn new(
        region: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        integration_id: impl Into<String>,
        webhook_secret: impl Into<String>,
    ) -> Self {
        Self {
            region: Some(region.into()),
            login_url: None,
            api_url: None,
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
            integration_id: integration_id.into(),
            webhook_secret: SecretString::from(webhook_secret.into()),
            language: None,
            skills: Vec::new(),
            priority: None,
            custom_attributes: Map::new(),
            language_attribute: default_language_attribute(),
            skills_attribute: default_skills_attribute(),
            priority_attribute: default_priority_attribute(),
            forward_bot_messages: false,
            send_transcript: true,
            handover_message: default_handover_message(),
            customer_left_message: default_customer_left_message(),
            transfer_grace_ms: default_transfer_grace_ms(),
            end_drain_ms: default_end_drain_ms(),
            conversations_per_channel: default_conversations_per_channel(),
            allow_insecure_http: false,
        }
    }

    /// The login and API base URLs.
    pub fn hosts(&self) -> Result<(Url, Url)> {
        let domain = match self.region.as_deref().map(str::trim) {
            Some(region) if !region.is_empty() => Some(
                REGIONS
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(region))
                    .map(|(_, domain)| (*domain).to_owned())
                    .or_else(|| region.contains('.').then(|| region.to_owned()))
                    .ok_or_else(|| {
                        Error::config(
                            NAME,
                            format!(
                                "[genesys] unknown `region` `{region}`; use a region key such as `eu_central_1` or a domain \
                                 such as `mypurecloud.de`"
                            ),
                        )
                    })?,
            ),
            _ => None,
        };
        let login = self.login_url.clone().or_else(|| domain.as_ref().map(|d| format!("https://login.{d}")));
        let api = self.api_url.clone().or_else(|| domain.as_ref().map(|d| format!("https://api.{d}")));
        match (login, api) {
            (Some(login), Some(api)) => Ok((
                http::base_url(NAME, "login_url", &login, self.allow_insecure_http)?,
                http::base_url(NAME, "api_url", &api, self.allow_insecure_http)?,
            )),
            _ => Err(Error::config(NAME, "[genesys] set `region`, or both `login_url` and `api_url`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_derive_from_a_region_key_or_a_domain_and_can_be_overridden() {
        let mut config = GenesysConfig::new("eu_central_1", "id", "secret", "integration", "whsec");
        let (login, api) = config.hosts().unwrap();
        assert_eq!(login.as_str(), "https://login.mypurecloud.de/");
        assert_eq!(api.as_str(), "https://api.mypurecloud.de/");
        config.region = Some("cac1.pure.cloud".into());
        assert_eq!(config.hosts().unwrap().1.as_str(), "https://api.cac1.pure.cloud/");
        config.api_url = Some("http://127.0.0.1:9000".into());
        assert_eq!(config.hosts().unwrap().1.as_str(), "http://127.0.0.1:9000/");
        config.region = Some("atlantis".into());
        assert!(config.hosts().unwrap_err().to_string().contains("unknown `region` `atlantis`"));
        config.region = None;
        config.login_url = None;
        assert!(config.hosts().is_err());
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let config = GenesysConfig::new("eu_central_1", "id", "s3cr3t-value", "integration", "wh-s3cr3t");
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }
}
