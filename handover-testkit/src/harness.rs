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
