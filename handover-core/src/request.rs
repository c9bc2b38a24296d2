//! What the bot hands over: the end user, the transcript and routing hints.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A request to hand a bot conversation over to a human agent.
///
/// Built with [`HandoverRequest::new`] and the `with_*` methods; fields are public to read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HandoverRequest {
    /// The bot's session id. Handovers are tracked per session, not per user.
    pub session_id: String,
    /// The end user being handed over.
    pub user: EndUser,
    /// The bot conversation so far, oldest first.
    #[serde(default)]
    pub transcript: Vec<TranscriptEntry>,
    /// Routing hints for the contact center.
    #[serde(default)]
    pub routing: Routing,
}

impl HandoverRequest {
    /// A request for `user` from bot session `session_id`, with no transcript or routing.
    pub fn new(session_id: impl Into<String>, user: EndUser) -> Self {
        Self { session_id: session_id.into(), user, transcript: Vec::new(), routing: Routing::default() }
    }

    /// Sets the bot transcript.
    #[must_use]
    pub fn with_transcript(mut self, transcript: Vec<TranscriptEntry>) -> Self {
        self.transcript = transcript;
        self
    }

    /// Sets the routing hints.
    #[must_use]
    pub fn with_routing(mut self, routing: Routing) -> Self {
        self.routing = routing;
        self
    }
}

/// The end user being handed over.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EndUser {
    /// A stable id of the user in the bot platform.
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Preferred language, as the bot knows it (`en`, `en-US`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

impl EndUser {
    /// A user with only an id.
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into(), ..Self::default() }
    }

    /// Sets the display name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the e-mail address.
    #[must_use]
    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Sets the phone number.
    #[must_use]
    pub fn with_phone(mut self, phone: impl Into<String>) -> Self {
        self.phone = Some(phone.into());
        self
    }

    /// Sets the preferred language.
    #[must_use]
    pub fn with_language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// The name to show an agent: the display name, else the id.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// Who said a line of the transcript.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// The end user.
    User,
    /// The bot.
    Bot,
    /// A human agent (an earlier handover in the same conversation).
    Agent,
}

impl Speaker {
    /// The label used when a transcript is rendered as text.
    pub fn label(self) -> &'static str {
        match self {
            Speaker::User => "User",
            Speaker::Bot => "Bot",
            Speaker::Agent => "Agent",
        }
    }
}

/// One line of the bot transcript.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TranscriptEntry {
    /// Who said it.
    pub from: Speaker,
    /// What was said.
    pub text: String,
    /// When, in milliseconds since the Unix epoch, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

impl TranscriptEntry {
    /// A line without a timestamp.
    pub fn new(from: Speaker, text: impl Into<String>) -> Self {
        Self { from, text: text.into(), at: None }
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    #[must_use]
    pub fn at(mut self, unix_ms: u64) -> Self {
        self.at = Some(unix_ms);
        self
    }
}

/// A routing priority: a named level (Live Agent: `urgent|high|medium|low`) or a number
/// (Genesys).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Priority {
    /// A numeric priority.
    Level(i64),
    /// A named priority.
    Named(String),
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Priority::Level(n) => write!(f, "{n}"),
            Priority::Named(s) => f.write_str(s),
        }
    }
}

/// Routing hints: skills, languages, priority and free-form attributes.
///
/// Providers merge these with their configured defaults; what each provider does with
/// them is documented in its crate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Routing {
    /// Skills the agent should have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    /// Languages the agent should speak.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    /// Priority of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Provider-specific attributes (routing attributes, custom attributes, …).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

impl Routing {
    /// Empty routing hints.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the skills.
    #[must_use]
    pub fn with_skills<I: IntoIterator<Item = S>, S: Into<String>>(mut self, skills: I) -> Self {
        self.skills = skills.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the languages.
    #[must_use]
    pub fn with_languages<I: IntoIterator<Item = S>, S: Into<String>>(mut self, languages: I) -> Self {
        self.languages = languages.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the priority.
    #[must_use]
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Adds one attribute.
    #[must_use]
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }
}
