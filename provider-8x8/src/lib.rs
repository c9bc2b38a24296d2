#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod client;
mod config;
pub mod jws;
mod provider;
mod session;
mod webhook;
mod wire;

pub use crate::client::{ApiError, ErrorDetail, parse_error};
pub use crate::config::{DEFAULT_BASE_URL, EightByEightConfig};
pub use crate::provider::{EightByEightBuilder, EightByEightProvider, MAX_ATTACHMENT_BYTES, capabilities};

/// The provider name in config, logs and errors.
pub const NAME: &str = "8x8";

/// Entry points for this crate's hostile-input tests. Not API: may change at any time.
#[doc(hidden)]
pub mod hostile {
    /// Decodes a webhook body as the endpoint does: `Err` is a typed refusal.
    pub fn decode(body: &[u8]) -> handover_core::Result<()> {
        crate::wire::parse(body).map(drop)
    }
}
