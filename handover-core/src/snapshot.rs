//! Everything needed to pick a session up in a new process.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, ErrorKind, Result};

/// The snapshot format version written by this crate.
pub const SNAPSHOT_VERSION: u32 = 1;

/// A serializable picture of a live session: provider state (conversation ids, SSE
/// `Last-Event-ID`, long-poll `ack` and sequence, deduplication watermark) and the secrets
/// (tokens) the session needs to go on.
///
/// Store it, then hand it to [`Provider::resume`](crate::Provider::resume) in any process
/// configured for the same provider. It **holds secrets**: keep it where you keep
/// credentials. `Debug` prints the secret names only.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    version: u32,
    provider: String,
    /// The version of the provider's own state format (each provider versions its state
    /// separately; snapshots written before this field existed are version 1).
    #[serde(default = "first_state_version")]
    state_version: u32,
    session_id: String,
    state: Value,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    secrets: BTreeMap<String, String>,
    /// Ids of the bot inputs already delivered to the agent side (kept by
    /// [`SessionHandle`](crate::SessionHandle)), so an input resent with the same id after
    /// a resume is not delivered twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sent_inputs: Vec<String>,
    /// The key webhook deliveries for this session are routed by (push providers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conversation_key: Option<String>,
}

fn first_state_version() -> u32 {
    1
}

impl SessionSnapshot {
    /// A snapshot of `provider`'s session for bot session `session_id` with the provider's
    /// own `state`, in the provider's state format `state_version`.
    pub fn new(provider: &str, state_version: u32, session_id: &str, state: &impl Serialize) -> Result<Self> {
        let state = serde_json::to_value(state).map_err(|e| {
            Error::new(ErrorKind::Protocol, provider.to_owned(), "snapshot", "state is not serializable").with_source(e)
        })?;
        Ok(Self {
            version: SNAPSHOT_VERSION,
            provider: provider.to_owned(),
            state_version,
            session_id: session_id.to_owned(),
            state,
            secrets: BTreeMap::new(),
            sent_inputs: Vec::new(),
            conversation_key: None,
        })
    }

    /// Records the key the provider routes this session's webhook deliveries by (see
    /// [`conversation_key`](Self::conversation_key)).
    #[must_use]
    pub fn with_conversation_key(mut self, key: impl Into<String>) -> Self {
        self.conversation_key = Some(key.into());
        self
    }

    /// For push providers: the key of this session's webhook deliveries, the
    /// [`Inbound::conversation_key`](crate::Inbound::conversation_key) that
    /// [`Provider::ingest`](crate::Provider::ingest) gives them. A service maps it to the
    /// handover, so a delivery kept by any instance reaches the instance that owns it.
    pub fn conversation_key(&self) -> Option<&str> {
        self.conversation_key.as_deref()
    }

    /// Records the ids of inputs already delivered (see [`sent_inputs`](Self::sent_inputs)).
    #[must_use]
    pub fn with_sent_inputs(mut self, ids: impl IntoIterator<Item = String>) -> Self {
        self.sent_inputs = ids.into_iter().collect();
        self
    }

    /// The ids of the bot inputs the session had delivered when the snapshot was taken,
    /// oldest first. [`Session::resumed_from`](crate::Session::resumed_from) hands them to
    /// the resumed session.
    pub fn sent_inputs(&self) -> &[String] {
        &self.sent_inputs
    }

    /// Adds a secret (an access token, a session key).
    #[must_use]
    pub fn with_secret(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.secrets.insert(name.into(), value.into());
        self
    }

    /// The format version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The version of the provider's state format.
    pub fn state_version(&self) -> u32 {
        self.state_version
    }

    /// The provider that wrote it.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The bot session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// A secret by name.
    pub fn secret(&self, name: &str) -> Option<&str> {
        self.secrets.get(name).map(String::as_str)
    }

    /// Checks that this snapshot was written by `provider` in a format this crate reads and
    /// in state format `state_version` (the provider's own), and decodes the provider state.
    pub fn state_for<T: DeserializeOwned>(&self, provider: &'static str, state_version: u32) -> Result<T> {
        if self.provider != provider {
            return Err(Error::invalid_input(
                provider,
                "resume",
                format!("the snapshot was written by provider `{}`; resume it with that provider", self.provider),
            ));
        }
        if self.version != SNAPSHOT_VERSION {
            return Err(Error::invalid_input(
                provider,
                "resume",
                format!(
                    "snapshot version {} is not readable by this version (expects {SNAPSHOT_VERSION})",
                    self.version
                ),
            ));
        }
        if self.state_version != state_version {
            return Err(Error::invalid_input(
                provider,
                "resume",
                format!(
                    "the snapshot's {provider} state is in format {}, this version reads format {state_version}; \
                     resume it with the version that wrote it",
                    self.state_version
                ),
            ));
        }
        serde_json::from_value(self.state.clone())
            .map_err(|e| Error::invalid_input(provider, "resume", format!("the snapshot state is malformed: {e}")))
    }

    /// The named secret, or an [`ErrorKind::InvalidInput`] error naming it when the
    /// snapshot lacks it.
    pub fn require_secret(&self, provider: &'static str, name: &str) -> Result<&str> {
        self.secret(name)
            .ok_or_else(|| Error::invalid_input(provider, "resume", format!("the snapshot lacks the secret `{name}`")))
    }
}

impl fmt::Debug for SessionSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted<'a>(&'a BTreeMap<String, String>);
        impl fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map().entries(self.0.keys().map(|k| (k, "[redacted]"))).finish()
            }
        }
        f.debug_struct("SessionSnapshot")
            .field("version", &self.version)
            .field("provider", &self.provider)
            .field("session_id", &self.session_id)
            .field("state", &self.state)
            .field("secrets", &Redacted(&self.secrets))
            .field("sent_inputs", &self.sent_inputs.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct State {
        conversation_id: String,
        last_event_id: Option<String>,
    }

    fn state() -> State {
        State { conversation_id: "c-1".into(), last_event_id: Some("42".into()) }
    }

    #[test]
    fn round_trips_through_json_with_version_and_secrets() {
        let snapshot =
            SessionSnapshot::new("miaw", 1, "bot-1", &state()).unwrap().with_secret("access_token", "eyJ.secret.token");
        let json = serde_json::to_string(&snapshot).unwrap();
        let back: SessionSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snapshot);
        assert_eq!(back.version(), SNAPSHOT_VERSION);
        assert_eq!(back.state_for::<State>("miaw", 1).unwrap(), state());
        assert_eq!(back.secret("access_token"), Some("eyJ.secret.token"));
    }

    #[test]
    fn debug_redacts_secrets() {
        let snapshot =
            SessionSnapshot::new("miaw", 1, "bot-1", &state()).unwrap().with_secret("access_token", "eyJ.secret.token");
        let debug = format!("{snapshot:?}");
        assert!(!debug.contains("eyJ.secret.token"), "{debug}");
        assert!(debug.contains("access_token"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
    }

    #[test]
    fn wrong_provider_or_version_is_a_clear_error() {
        let snapshot = SessionSnapshot::new("miaw", 1, "bot-1", &state()).unwrap();
        let err = snapshot.state_for::<State>("genesys", 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("provider `miaw`"), "{err}");

        let mut json = serde_json::to_value(&snapshot).unwrap();
        json["version"] = 99.into();
        let future: SessionSnapshot = serde_json::from_value(json).unwrap();
        let err = future.state_for::<State>("miaw", 1).unwrap_err();
        assert!(err.to_string().contains("version 99"), "{err}");
        let err = future.require_secret("miaw", "access_token").unwrap_err();
        assert!(err.to_string().contains("`access_token`"), "{err}");
        let mut json = serde_json::to_value(&snapshot).unwrap();
        json["state_version"] = 2.into();
        let newer: SessionSnapshot = serde_json::from_value(json).unwrap();
        let err = newer.state_for::<State>("miaw", 1).unwrap_err();
        assert!(err.to_string().contains("miaw state is in format 2"), "{err}");
    }
}
