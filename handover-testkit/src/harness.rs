//! What a provider's test setup must offer the contract suite.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{EndUser, HandoverRequest, Provider, Routing, Speaker, TranscriptEntry};

/// A provider wired to something that plays the contact center's agent side (an
/// emulator, wiremock, or the in-memory fake).
///
/// Methods that return `bool` answer `false` when the provider's API has no way to do
/// that; the suite then checks that the provider does not claim the capability either.
/// Agent-side methods act on the conversation of the most recent `start`.
#[async_trait]
pub trait Harness: Send + Sync + Sized + 'static {
    /// A fresh provider and contact center, isolated from other tests.
    async fn setup() -> Self;

    /// The provider under test.
    fn provider(&self) -> Arc<dyn Provider>;

    /// The request scenarios start with.
    fn request(&self) -> HandoverRequest {
        sample_request()
    }

    /// Every secret and token configured or issued, to search logs and `Debug` output for.
    fn secrets(&self) -> Vec<String>;

    /// Reports a queue position and wait to the session.
    async fn queue(&self, position: Option<u32>, estimated_wait: Option<Duration>) -> bool;

    /// An agent named `name` joins.
    async fn agent_joins(&self, name: &str);

    /// The agent `name` writes `text`.
    async fn agent_says(&self, name: &str, text: &str);

    /// Delivers the last agent-side event again, as the provider's own redelivery would
    /// (same id).
    async fn redeliver_last(&self) -> bool;

    /// The agent starts or stops typing.
    async fn agent_typing(&self, on: bool) -> bool;

    /// The agent `from` transfers the conversation (leaves without ending it).
    async fn agent_transfers(&self, from: &str) -> bool;

    /// The agent ends the conversation.
    async fn agent_ends(&self);

    /// Drops the session's inbound connection mid-conversation (SSE, long-poll,
    /// WebSocket). `false` for push-only providers.
    async fn drop_connection(&self) -> bool;

    /// The texts the agent side received from the customer side (transcript and user
    /// messages), in order, once there are at least `at_least`.
    async fn customer_texts(&self, at_least: usize) -> Vec<String>;

    /// Resolves `true` once the customer side has closed the conversation.
    async fn closed_by_customer(&self) -> bool;

    /// The agent `name` sends `file` (with `caption`). `false` when the harness cannot
    /// play an agent sending files.
    async fn agent_sends_file(&self, _name: &str, _file: &SampleFile, _caption: Option<&str>) -> bool {
        false
    }

    /// The files the agent side received from the customer side, in order, once there
    /// are at least `at_least`.
    async fn customer_files(&self, _at_least: usize) -> Vec<ReceivedFile> {
        Vec::new()
    }

    /// A URL the contact center can fetch `file` from, for providers that take files as
    /// URLs; `None` when the harness cannot host one.
    fn host_file(&self, _file: &SampleFile) -> Option<String> {
        None
    }
}

/// A file the attachment scenario sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleFile {
    /// The file name.
    pub name: String,
    /// The media type.
    pub media_type: String,
    /// The content.
    pub data: Vec<u8>,
}

impl SampleFile {
    /// A small PNG-typed file with deterministic, non-text content.
    pub fn invoice() -> Self {
        let data = (0..2048u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        Self { name: "invoice scan.png".to_owned(), media_type: "image/png".to_owned(), data }
    }

    /// What the agent sends back.
    pub fn label() -> Self {
        let data = (0..1500u32).map(|i| (i.wrapping_mul(40_503) >> 7) as u8).collect();
        Self { name: "returns-label.pdf".to_owned(), media_type: "application/pdf".to_owned(), data }
    }

    /// What the receiving side should have recorded.
    pub fn received(&self) -> ReceivedFile {
        ReceivedFile {
            name: self.name.clone(),
            media_type: self.media_type.clone(),
            size: self.data.len() as u64,
            sha256: sha256_hex(&self.data),
        }
    }
}

/// A file as the receiving side recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedFile {
    /// The file name.
    pub name: String,
    /// The media type.
    pub media_type: String,
    /// The size in bytes.
    pub size: u64,
    /// The SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// The SHA-256 of `data`, lowercase hex.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    handover_emulator::model::sha256_hex(data)
}

/// The request scenarios use: a named user and a short bilingual transcript.
pub fn sample_request() -> HandoverRequest {
    HandoverRequest::new(
        "bot-session-1",
        EndUser::new("user-42").with_name("Jane Doe").with_email("jane@example.com").with_language("en"),
    )
    .with_transcript(vec![
        TranscriptEntry::new(Speaker::User, "My invoice is wrong"),
        TranscriptEntry::new(Speaker::Bot, "I can connect you to an agent."),
        TranscriptEntry::new(Speaker::User, "Ja, bitte — schnell 👍🏽"),
    ])
    .with_routing(Routing::new().with_skills(["billing"]).with_languages(["en"]))
}

/// A retry policy with short backoffs (5 ms to 50 ms) on the tokio timer, so tests recover
/// from injected failures and drops at once.
pub fn fast_retry() -> handover_transport::retry::RetryPolicy {
    handover_transport::retry::RetryPolicy::default()
        .with_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .with_sleeper(handover_transport::retry::Sleeper::tokio())
}
