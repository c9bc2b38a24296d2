#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod auth;
mod client;
mod config;
pub mod notifications;
mod provider;
mod session;
pub mod webhook;
mod wire;

pub use crate::client::parse_error;
pub use crate::config::{GenesysConfig, REGIONS};
pub use crate::provider::{GenesysBuilder, GenesysProvider, capabilities};

/// The provider name in config, logs and errors.
pub const NAME: &str = "genesys";

/// Transcript chunk size. Open Messaging's text limit is not documented; this stays well
/// below any messaging channel's.
pub const TRANSCRIPT_CHUNK_CHARS: usize = 2000;

/// The largest file a user may send, in bytes: "Genesys Cloud permits sending and receiving
/// attachments up to 25 MB" (help.mypurecloud.com, *Supported content profiles*), read as
/// 25,000,000 bytes, the stricter reading. Open Messaging fetches the file from its URL
/// after answering, so a larger file would fail out of sight: the session handle refuses
/// it before any request. Any media type is taken (the default profile allows every
/// inbound type; an integration's own profile may allow fewer, and a refusal falls back
/// to a text with the link).
pub const MAX_ATTACHMENT_BYTES: u64 = 25_000_000;

/// Entry points for this crate's hostile-input tests. Not API: may change at any time.
#[doc(hidden)]
pub mod hostile {
    /// Decodes a webhook body as the endpoint and the session do (the delivery's meaning
    /// and its dedup key): `Err` is a typed refusal.
    pub fn decode(body: &[u8]) -> handover_core::Result<()> {
        let outbound = crate::wire::parse(body)?;
        let _ = outbound.interpret();
        let _ = outbound.dedup_key();
        Ok(())
    }
}
