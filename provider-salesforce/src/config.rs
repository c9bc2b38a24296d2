//! The `[salesforce]` config table (`protocols/salesforce-chat.md` §1).

use serde::{Deserialize, Deserializer};

/// Configuration of the Salesforce Chat provider: the `[salesforce]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SalesforceConfig {
    /// The Chat API endpoint host, without `/chat/rest`
    /// (`https://d.la1-c1-xxx.salesforceliveagent.com`).
    pub base_url: String,
    /// `X-LIVEAGENT-API-VERSION` (default `52`).
    #[serde(default = "default_api_version", deserialize_with = "number_or_string")]
    pub api_version: String,
    /// The org id (`00D…`).
    #[serde(deserialize_with = "number_or_string")]
    pub organization_id: String,
    /// The chat deployment id (`572…`).
    #[serde(deserialize_with = "number_or_string")]
    pub deployment_id: String,
    /// The chat button id (`573…`).
    #[serde(deserialize_with = "number_or_string")]
    pub button_id: String,
    /// Route to this agent first (`agentId`), falling back to the button.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// A LiveChatTranscript field API name the bot transcript is written to
    /// (`transcriptFields` of its pre-chat detail).
    #[serde(default)]
    pub transcript_field: Option<String>,
    /// The visitor language sent in `ChasitorInit` (default: the user's).
    #[serde(default)]
    pub language: Option<String>,
    /// Allow plain `http://` to a non-loopback host.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

fn default_api_version() -> String {
    "52".to_owned()
}

/// Ids and versions are accepted as TOML integers or strings.
fn number_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(i64),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Text(text) => text,
        Id::Number(n) => n.to_string(),
    })
}

impl SalesforceConfig {
    /// Checks the required keys (values that load must also run).
    pub(crate) fn validate(&self) -> handover_core::Result<()> {
        for (key, value) in [
            ("organization_id", &self.organization_id),
            ("deployment_id", &self.deployment_id),
            ("button_id", &self.button_id),
        ] {
            if value.trim().is_empty() {
                return Err(handover_core::Error::config(
                    crate::NAME,
                    format!("[salesforce] `{key}` must not be empty"),
                ));
            }
        }
        Ok(())
    }

    /// A configuration with API version 52.
    pub fn new(
        base_url: impl Into<String>,
        organization_id: impl Into<String>,
        deployment_id: impl Into<String>,
        button_id: impl Into<String>,
    ) -> Self {
        Self {
            base_url: base_url.into(),
            api_version: default_api_version(),
            organization_id: organization_id.into(),
            deployment_id: deployment_id.into(),
            button_id: button_id.into(),
            agent_id: None,
            transcript_field: None,
            language: None,
            allow_insecure_http: false,
        }
    }
}
