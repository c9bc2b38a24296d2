#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod auth;
mod client;
mod config;
mod provider;
mod session;
mod wire;

pub use crate::client::parse_error;
pub use crate::config::{IdentityAlgorithm, MiawConfig};
pub use crate::provider::{MAX_ATTACHMENT_BYTES, MiawBuilder, MiawProvider, capabilities};

/// The provider name in config, logs and errors.
pub const NAME: &str = "miaw";

/// The longest message, and the transcript chunk size (Cognigy's MIAW connector sends the
/// transcript in chunks of 3000 characters).
pub const TRANSCRIPT_CHUNK_CHARS: usize = 3000;

/// Entry points for this crate's hostile-input tests. Not API: may change at any time.
#[doc(hidden)]
pub mod hostile {
    /// Decodes an SSE event's `data` and interprets its entry as the session does (`event`
    /// the SSE event name, `None` for a back-filled entry): `Err` is a typed refusal.
    pub fn decode(data: &str, event: Option<&str>) -> handover_core::Result<()> {
        let envelope = crate::wire::parse_envelope(data)?;
        crate::wire::interpret(&envelope.conversation_entry, event).map(drop)
    }
}
