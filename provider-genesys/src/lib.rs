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
