#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod auth;
mod client;
mod config;
pub mod events;
mod session;

pub use crate::client::parse_error;
pub use crate::config::{IdentityAlgorithm, MiawConfig};
pub use crate::session::{MiawProvider, capabilities};

/// The provider name in config, logs and errors.
pub const NAME: &str = "miaw";

/// The longest message, and the transcript chunk size (Cognigy's MIAW connector sends the
/// transcript in chunks of 3000 characters).
pub const TRANSCRIPT_CHUNK_CHARS: usize = 3000;
