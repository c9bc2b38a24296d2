#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod client;
mod config;
mod provider;
mod session;
pub mod webhook;
mod wire;

pub use crate::client::parse_error;
pub use crate::config::RingCentralConfig;
pub use crate::provider::{RingCentralBuilder, RingCentralProvider, capabilities};

/// The provider name in config, logs and errors.
pub const NAME: &str = "ringcentral";

/// Entry points for this crate's hostile-input tests. Not API: may change at any time.
#[doc(hidden)]
pub mod hostile {
    /// Decodes a Source SDK callback body as the endpoint does: `Err` is a typed refusal.
    pub fn decode_callback(body: &[u8]) -> handover_core::Result<()> {
        crate::wire::parse_callback(body).map(drop)
    }

    /// Decodes a REST webhook delivery as the endpoint does: `Err` is a typed refusal.
    pub fn decode_events(body: &[u8]) -> handover_core::Result<()> {
        crate::wire::parse_events(body).map(drop)
    }
}
