#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod config;
pub mod node;
mod registry;
#[cfg(feature = "webhook-router")]
#[cfg_attr(docsrs, doc(cfg(feature = "webhook-router")))]
pub mod webhook;

pub use handover_core::*;
/// Cancels a running handover ([`node::Node::run`]'s `shutdown`).
pub use handover_transport::CancellationToken;

pub use crate::registry::{BuildOptions, Builder, PROVIDERS, Registry, provider_config};

/// 8x8 Contact Center through the Chat Gateway v1 (feature `8x8`).
#[cfg(feature = "8x8")]
#[cfg_attr(docsrs, doc(cfg(feature = "8x8")))]
pub use provider_8x8 as eightbyeight;

/// Genesys Cloud Open Messaging (feature `genesys`).
#[cfg(feature = "genesys")]
#[cfg_attr(docsrs, doc(cfg(feature = "genesys")))]
pub use provider_genesys as genesys;

/// Salesforce Chat, the legacy Live Agent REST API (feature `salesforce`).
#[cfg(feature = "salesforce")]
#[cfg_attr(docsrs, doc(cfg(feature = "salesforce")))]
pub use provider_salesforce as salesforce;

/// Cognigy Live Agent (feature `liveagent`).
#[cfg(feature = "liveagent")]
#[cfg_attr(docsrs, doc(cfg(feature = "liveagent")))]
pub use provider_liveagent as liveagent;

/// RingCentral Engage Digital through a Source SDK source (feature `ringcentral`).
#[cfg(feature = "ringcentral")]
#[cfg_attr(docsrs, doc(cfg(feature = "ringcentral")))]
pub use provider_ringcentral as ringcentral;

/// Salesforce Messaging for In-App and Web (feature `miaw`).
#[cfg(feature = "miaw")]
#[cfg_attr(docsrs, doc(cfg(feature = "miaw")))]
pub use provider_miaw as miaw;
