//! Harnesses backed by a [`handover_emulator::Emulator`]: implement [`EmulatorHarness`]
//! (setup, the provider, the emulator, and what the protocol can do) and the agent-side
//! [`Harness`] methods come from the emulator's hub, acting on the latest conversation.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{HandoverRequest, Provider};
use handover_emulator::{AgentAction, Conversation, CustomerAction, Emulator};

use crate::harness::{Harness, sample_request};

/// A provider wired to a loopback emulator.
#[async_trait]
pub trait EmulatorHarness: Send + Sync + Sized + 'static {
    /// A fresh emulator and provider.
    async fn setup() -> Self;

    /// The provider under test.
    fn provider(&self) -> Arc<dyn Provider>;

    /// The emulator playing the contact center.
    fn emulator(&self) -> &Emulator;

    /// The request scenarios start with.
    fn request(&self) -> HandoverRequest {
        sample_request()
    }

    /// Whether the protocol carries queue position or wait (else [`Harness::queue`]
    /// answers `false`).
    fn reports_queue(&self) -> bool {
        true
    }

    /// Whether the provider reads a stream the emulator can drop (SSE, long poll).
    fn has_stream(&self) -> bool {
        false
    }

    /// The conversation of the most recent `start`.
    ///
    /// # Panics
    /// When no conversation was started.
    fn current(&self) -> Arc<Conversation> {
        self.emulator().hub().latest().expect("a conversation was started")
    }

    /// Records `action` on the agent side of the current conversation.
    fn act(&self, action: AgentAction) {
        self.emulator().hub().agent(&self.current(), action);
    }
}

#[async_trait]
impl<T: EmulatorHarness> Harness for T {
    async fn setup() -> Self {
        <T as EmulatorHarness>::setup().await
    }

    fn provider(&self) -> Arc<dyn Provider> {
        EmulatorHarness::provider(self)
    }

    fn request(&self) -> HandoverRequest {
        EmulatorHarness::request(self)
    }

    fn secrets(&self) -> Vec<String> {
        self.emulator().secrets()
    }

    async fn queue(&self, position: Option<u32>, estimated_wait: Option<Duration>) -> bool {
        if !self.reports_queue() {
            return false;
        }
        self.act(AgentAction::Queued { position, wait_secs: estimated_wait.map(|d| d.as_secs()) });
        true
    }

    async fn agent_joins(&self, name: &str) {
        self.act(AgentAction::Joined { agent: name.to_owned() });
    }

    async fn agent_says(&self, name: &str, text: &str) {
        self.act(AgentAction::Message { agent: name.to_owned(), text: text.to_owned() });
    }

    async fn redeliver_last(&self) -> bool {
        self.emulator().redeliver_last(&self.current().id).await
    }

    async fn agent_typing(&self, on: bool) -> bool {
        self.act(AgentAction::Typing { agent: "Ann".to_owned(), on });
        true
    }

    async fn agent_transfers(&self, from: &str) -> bool {
        self.act(AgentAction::Left { agent: from.to_owned(), transfer: true });
        true
    }

    async fn agent_ends(&self) {
        self.act(AgentAction::Ended);
    }

    async fn drop_connection(&self) -> bool {
        if !self.has_stream() {
            return false;
        }
        self.emulator().hub().faults.drop_streams();
        true
    }

    async fn customer_texts(&self, at_least: usize) -> Vec<String> {
        let conversation = self.current();
        conversation
            .wait_for(|v| v.customer.iter().filter(|c| matches!(c, CustomerAction::Message { .. })).count() >= at_least)
            .await;
        conversation.customer_texts()
    }

    async fn closed_by_customer(&self) -> bool {
        self.current().wait_for(|v| v.closed_by_customer).await;
        true
    }
}
