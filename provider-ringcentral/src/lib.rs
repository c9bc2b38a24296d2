#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod client;
mod config;
mod session;
pub mod webhook;

pub use crate::client::parse_error;
pub use crate::config::RingCentralConfig;
pub use crate::session::{RingCentralProvider, capabilities};

/// The provider name in config, logs and errors.
pub const NAME: &str = "ringcentral";
