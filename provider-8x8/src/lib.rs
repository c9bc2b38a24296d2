#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod client;
mod config;
pub mod jws;
mod session;
pub mod webhook;

pub use crate::client::{ApiError, ErrorDetail, parse_error};
pub use crate::config::{DEFAULT_BASE_URL, EightByEightConfig};
pub use crate::session::{EightByEightProvider, capabilities};

/// The provider name in config, logs and errors.
pub const NAME: &str = "8x8";
