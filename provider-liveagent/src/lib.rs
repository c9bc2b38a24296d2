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
pub use crate::config::LiveAgentConfig;
pub use crate::provider::{LiveAgentBuilder, LiveAgentProvider, capabilities};

/// The provider name in config, logs and errors.
pub const NAME: &str = "liveagent";

/// Entry points for this crate's hostile-input tests. Not API: may change at any time.
#[doc(hidden)]
pub mod hostile {
    /// Decodes a webhook body as the endpoint does: `Err` is a typed refusal.
    pub fn decode(body: &[u8]) -> handover_core::Result<()> {
        crate::wire::parse(body).map(drop)
    }
}
