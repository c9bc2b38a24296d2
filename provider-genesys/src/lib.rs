#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod auth;
mod client;
mod config;
pub mod notifications;
mod session;
pub mod webhook;

pub use crate::client::parse_error;
pub use crate::config::{GenesysConfig, REGIONS};
pub use crate::session::{GenesysProvider, capabilities};

/// The provider name in config, logs and errors.
pub const NAME: &str = "genesys";

/// Transcript chunk size. Open Messaging's text limit is not documented; this stays well
/// below any messaging channel's.
pub const TRANSCRIPT_CHUNK_CHARS: usize = 2000;
