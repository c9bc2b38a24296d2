#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod attachment;
mod capabilities;
mod check;
mod error;
mod event;
mod input;
mod provider;
mod request;
mod session;
mod snapshot;
mod status;
mod stream;
pub mod transcript;
mod webhook;

pub use attachment::{Attachment, AttachmentContent};
pub use capabilities::{Capabilities, ProviderInfo};
pub use check::CheckReport;
pub use error::{Error, ErrorKind, Result};
pub use event::{Agent, EndedBy, Event};
pub use input::{EndReason, UserInput};
pub use provider::Provider;
pub use request::{EndUser, HandoverRequest, Priority, Routing, Speaker, TranscriptEntry};
pub use session::{Session, SessionBackend, SessionHandle};
pub use snapshot::{SNAPSHOT_VERSION, SessionSnapshot};
pub use status::{ErrorReason, HandoverStatus};
pub use stream::EventStream;
pub use webhook::{Applied, Inbound, Ingested, WebhookReply, WebhookRequest};

/// Re-export so provider crates and tests name the same `async_trait` as the trait uses.
pub use async_trait::async_trait;
