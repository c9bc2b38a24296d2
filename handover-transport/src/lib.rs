#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod attachment;
pub mod backoff;
pub mod bounded;
pub mod config;
pub mod dedup;
pub mod events;
pub mod http;
pub mod ids;
pub mod log;
pub mod longpoll;
pub mod push;
pub mod retry;
pub mod session;
pub mod signature;
pub mod sse;
pub mod time;
#[cfg(feature = "ws")]
#[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
pub mod ws;

pub use reqwest;
pub use tokio_util::sync::CancellationToken;
