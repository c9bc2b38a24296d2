#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod client;
mod config;
mod provider;
mod session;
mod wire;

pub use crate::client::parse_error;
pub use crate::config::SalesforceConfig;
pub use crate::provider::{SalesforceBuilder, SalesforceProvider, capabilities};

/// The provider name in config, logs and errors.
pub const NAME: &str = "salesforce";

/// Entry points for this crate's hostile-input tests. Not API: may change at any time.
#[doc(hidden)]
pub mod hostile {
    /// Decodes a `Messages` body and interprets each message as the session does: `Err` is
    /// a typed refusal.
    pub fn decode(body: &[u8]) -> handover_core::Result<()> {
        let batch = crate::wire::parse_batch(body)?;
        for (n, message) in batch.messages.iter().enumerate() {
            let _ = message.interpret(|| format!("id-{n}"));
        }
        Ok(())
    }
}
