#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod client;
mod config;
pub mod events;
mod session;

pub use crate::client::parse_error;
pub use crate::config::SalesforceConfig;
pub use crate::session::{SalesforceProvider, capabilities};

/// The provider name in config, logs and errors.
pub const NAME: &str = "salesforce";
