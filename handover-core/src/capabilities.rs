//! What a provider can do, so callers and the contract suite can branch on it.

/// What a provider's API supports.
///
/// Built with setters from [`Capabilities::none`]; read with the getters. Anything a
/// provider does not support is refused with [`ErrorKind::Unsupported`](crate::ErrorKind)
/// before any I/O.
///
/// ```
/// use handover_core::Capabilities;
///
/// let caps = Capabilities::none().with_typing(true).with_max_message_chars(Some(3000));
/// assert!(caps.typing());
/// assert!(!caps.queue_position());
/// assert_eq!(caps.max_message_chars(), Some(3000));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Capabilities {
    typing: bool,
    queue_position: bool,
    estimated_wait: bool,
    participant_change: bool,
    resume: bool,
    max_message_chars: Option<usize>,
    attachment_uploads: bool,
    attachment_links: bool,
    attachments_to_user: bool,
    max_attachment_bytes: Option<u64>,
    attachment_media_types: &'static [&'static str],
}

macro_rules! flag {
    ($field:ident, $setter:ident, $doc:literal) => {
        #[doc = concat!("Whether the provider ", $doc, ".")]
        pub fn $field(&self) -> bool {
            self.$field
        }

        #[doc = concat!("Sets whether the provider ", $doc, ".")]
        #[must_use]
        pub fn $setter(mut self, value: bool) -> Self {
            self.$field = value;
            self
        }
    };
}

impl Capabilities {
    /// Nothing supported, no message limit.
    pub fn none() -> Self {
        Self::default()
    }

    flag!(typing, with_typing, "relays the user's typing state to the agent");
    flag!(queue_position, with_queue_position, "reports the position in the queue");
    flag!(estimated_wait, with_estimated_wait, "reports an estimated wait time");
    flag!(participant_change, with_participant_change, "reports agents joining, leaving and transfers");
    flag!(resume, with_resume, "can resume a session from a snapshot in a new process");
    flag!(
        attachment_uploads,
        with_attachment_uploads,
        "takes the end user's files as bytes to upload (`AttachmentContent::Bytes`)"
    );
    flag!(
        attachment_links,
        with_attachment_links,
        "takes the end user's files as URLs the contact center fetches (`AttachmentContent::Url`)"
    );
    flag!(attachments_to_user, with_attachments_to_user, "relays the agent's files to the bot side (as URLs)");

    /// Whether the provider relays the end user's files to the agent in any form.
    pub fn attachments_to_agent(&self) -> bool {
        self.attachment_uploads || self.attachment_links
    }

    /// The largest file, in bytes, the provider accepts from the end user; `None` if
    /// unlimited or unknown.
    pub fn max_attachment_bytes(&self) -> Option<u64> {
        self.max_attachment_bytes
    }

    /// Sets the largest file, in bytes.
    #[must_use]
    pub fn with_max_attachment_bytes(mut self, max: Option<u64>) -> Self {
        self.max_attachment_bytes = max;
        self
    }

    /// The media types the provider accepts from the end user (`type/subtype` or
    /// `type/*`); empty when it accepts any.
    pub fn attachment_media_types(&self) -> &'static [&'static str] {
        self.attachment_media_types
    }

    /// Sets the accepted media types (see [`media_type_accepted`](crate::attachment::media_type_accepted)).
    #[must_use]
    pub fn with_attachment_media_types(mut self, types: &'static [&'static str]) -> Self {
        self.attachment_media_types = types;
        self
    }

    /// The longest message, in characters, the provider accepts; `None` if unlimited or
    /// unknown.
    pub fn max_message_chars(&self) -> Option<usize> {
        self.max_message_chars
    }

    /// Sets the longest message, in characters.
    #[must_use]
    pub fn with_max_message_chars(mut self, max: Option<usize>) -> Self {
        self.max_message_chars = max;
        self
    }
}

/// Static facts about a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderInfo {
    /// Short name used in config, logs and errors (`"miaw"`, `"genesys"`, …).
    pub name: &'static str,
    /// Human-readable name (`"Salesforce Messaging for In-App and Web"`).
    pub display_name: &'static str,
    /// What the provider supports.
    pub capabilities: Capabilities,
}

impl ProviderInfo {
    /// Facts for a provider.
    pub fn new(name: &'static str, display_name: &'static str, capabilities: Capabilities) -> Self {
        Self { name, display_name, capabilities }
    }
}
