//! The `[miaw]` config table.

use handover_transport::config::{MAX_SECS, in_range};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Configuration of the MIAW provider: the `[miaw]` table of `handover.toml`.
///
/// | key | meaning |
/// |---|---|
/// | `scrt_url` | the deployment's Messaging URL, `https://<domain>.my.salesforce-scrt.com` |
/// | `org_id` | the org id (`00D…`), as configured by the admin |
/// | `es_developer_name` | the API name of the Custom Client Embedded Service deployment |
/// | `identity_token` | optional: a customer identity JWT for a verified user (or `identity_token_env`) |
/// | `identity_private_key`, `identity_issuer`, … | optional: mint an RS256/RS512 identity JWT per handover instead |
/// | `send_transcript_as_first_message` | send the bot transcript as the first messages (default `true`) |
/// | `routing_attributes` | hidden pre-chat values (a table), merged with the request's attributes |
/// | `end_on_participant_change` | end the handover when the agent leaves (not on transfers; default `false`) |
/// | `language` | the `language` sent when a new messaging session starts (optional) |
/// | `allow_insecure_http` | allow plain `http://` to a non-loopback host (default `false`) |
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MiawConfig {
    /// The SCRT (Messaging) URL.
    pub scrt_url: String,
    /// The org id.
    pub org_id: String,
    /// The Embedded Service deployment's API name.
    pub es_developer_name: String,
    /// A customer identity JWT: the handover runs as this verified user.
    #[serde(default)]
    pub identity_token: Option<SecretString>,
    /// A PEM RSA private key to mint identity JWTs with, one per handover, whose `sub` is
    /// the end user's id.
    #[serde(default)]
    pub identity_private_key: Option<SecretString>,
    /// `iss` of minted identity JWTs (the keyset's issuer).
    #[serde(default)]
    pub identity_issuer: Option<String>,
    /// `aud` of minted identity JWTs (the org's My Domain URL, with `https://`).
    #[serde(default)]
    pub identity_audience: Option<String>,
    /// `kid` of minted identity JWTs (the key's id in the keyset).
    #[serde(default)]
    pub identity_key_id: Option<String>,
    /// `RS256` (default) or `RS512`.
    #[serde(default)]
    pub identity_algorithm: IdentityAlgorithm,
    /// Lifetime of minted identity JWTs, in seconds (default 300).
    #[serde(default = "default_identity_ttl")]
    pub identity_ttl_secs: u64,
    /// Send the bot transcript as the first messages, in chunks of at most 3000 characters.
    #[serde(default = "yes")]
    pub send_transcript_as_first_message: bool,
    /// Hidden pre-chat values; keys are the API names of the deployment's pre-chat fields.
    #[serde(default)]
    pub routing_attributes: Map<String, Value>,
    /// End the handover when the agent leaves the conversation (not during a transfer).
    #[serde(default)]
    pub end_on_participant_change: bool,
    /// The `language` sent with a new messaging session.
    #[serde(default)]
    pub language: Option<String>,
    /// Allow plain `http://` to a non-loopback host.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

fn yes() -> bool {
    true
}

fn default_identity_ttl() -> u64 {
    300
}

/// The signing algorithm of minted identity JWTs (Salesforce accepts RS256 and RS512).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum IdentityAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[default]
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
}

impl MiawConfig {
    /// Checks the required keys and every numeric key against its range (values that load
    /// must also run).
    pub(crate) fn validate(&self) -> handover_core::Result<()> {
        in_range(crate::NAME, "identity_ttl_secs", self.identity_ttl_secs, 60, MAX_SECS)?;
        for (key, value) in [("org_id", &self.org_id), ("es_developer_name", &self.es_developer_name)] {
            if value.trim().is_empty() {
                return Err(handover_core::Error::config(crate::NAME, format!("[miaw] `{key}` must not be empty")));
            }
        }
        Ok(())
    }

    /// A guest-user configuration.
    pub fn new(scrt_url: impl Into<String>, org_id: impl Into<String>, es_developer_name: impl Into<String>) -> Self {
        Self {
            scrt_url: scrt_url.into(),
            org_id: org_id.into(),
            es_developer_name: es_developer_name.into(),
            identity_token: None,
            identity_private_key: None,
            identity_issuer: None,
            identity_audience: None,
            identity_key_id: None,
            identity_algorithm: IdentityAlgorithm::RS256,
            identity_ttl_secs: default_identity_ttl(),
            send_transcript_as_first_message: true,
            routing_attributes: Map::new(),
            end_on_participant_change: false,
            language: None,
            allow_insecure_http: false,
        }
    }
}
