//! Harnesses backed by a [`handover_emulator::Emulator`]: implement [`EmulatorHarness`]
//! (setup, the provider, the emulator, and what the protocol can do) and the agent-side
//! [`Harness`] methods come from the emulator's hub, acting on the latest conversation.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{HandoverRequest, Provider};
use handover_emulator::{AgentAction, Conversation, ConversationView, CustomerAction, EmulatedFile, Emulator};

use crate::scenarios::GUARD;

use crate::harness::{Harness, ReceivedFile, SampleFile, sample_request};

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

    /// Whether the protocol tells the connector that the agent types.
    fn reports_agent_typing(&self) -> bool {
        true
    }

    /// Whether the protocol tells the connector about transfers.
    fn reports_transfers(&self) -> bool {
        true
    }

    /// Whether the protocol carries files from the agent to the connector (else
    /// [`Harness::agent_sends_file`] answers `false`).
    fn carries_agent_files(&self) -> bool {
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
        if !self.reports_agent_typing() {
            return false;
        }
        self.act(AgentAction::Typing { agent: "Ann".to_owned(), on });
        true
    }

    async fn agent_transfers(&self, from: &str) -> bool {
        if !self.reports_transfers() {
            return false;
        }
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
        let texts =
            |v: &ConversationView| v.customer.iter().filter(|c| matches!(c, CustomerAction::Message { .. })).count();
        let waited = tokio::time::timeout(GUARD, conversation.wait_for(|v| texts(v) >= at_least)).await;
        assert!(waited.is_ok(), "the agent side did not receive {at_least} customer texts within {GUARD:?}");
        conversation.customer_texts()
    }

    async fn closed_by_customer(&self) -> bool {
        let waited = tokio::time::timeout(GUARD, self.current().wait_for(|v| v.closed_by_customer)).await;
        assert!(waited.is_ok(), "the customer side did not close the conversation within {GUARD:?}");
        true
    }

    async fn agent_sends_file(&self, name: &str, file: &SampleFile, caption: Option<&str>) -> bool {
        if !self.carries_agent_files() {
            return false;
        }
        let file = EmulatedFile::new(file.name.clone(), file.media_type.clone(), file.data.clone());
        self.act(AgentAction::File { agent: name.to_owned(), file, caption: caption.map(str::to_owned) });
        true
    }

    async fn customer_files(&self, at_least: usize) -> Vec<ReceivedFile> {
        let conversation = self.current();
        let files =
            |v: &ConversationView| v.customer.iter().filter(|c| matches!(c, CustomerAction::File { .. })).count();
        let waited = tokio::time::timeout(GUARD, conversation.wait_for(|v| files(v) >= at_least)).await;
        assert!(waited.is_ok(), "the agent side did not receive {at_least} customer files within {GUARD:?}");
        conversation
            .customer_files()
            .into_iter()
            .filter_map(|c| match c {
                CustomerAction::File { name, media_type, size, sha256 } => {
                    Some(ReceivedFile { name, media_type, size, sha256 })
                }
                _ => None,
            })
            .collect()
    }

    fn host_file(&self, file: &SampleFile) -> Option<String> {
        let file = EmulatedFile::new(file.name.clone(), file.media_type.clone(), file.data.clone());
        Some(self.emulator().hub().host_file(file))
    }
}

/// A push provider against its emulator: the emulator delivers webhooks to a loopback
/// server that hands them to the provider.
pub struct PushSetup<P> {
    /// The emulator.
    pub emulator: Emulator,
    /// The provider, built from the emulator's provider config.
    pub provider: Arc<P>,
    _webhooks: crate::webhook_server::WebhookServer,
}

impl<P: Provider + 'static> PushSetup<P> {
    /// Starts the emulator of `protocol` delivering to `/webhooks/<protocol>`, and builds
    /// the provider with `build` from the config the emulator hands out (adjust it there).
    ///
    /// # Panics
    /// When the emulator does not start or its config does not fit `C`.
    pub async fn start<C: serde::de::DeserializeOwned>(protocol: &str, build: impl FnOnce(C) -> P) -> Self {
        let webhooks = crate::webhook_server::WebhookServer::bind().await;
        let options = handover_emulator::EmulatorOptions::default().with_webhook_url(webhooks.url(protocol));
        let emulator = Emulator::start(protocol, options).await.expect("the emulator starts");
        let config: C = serde_json::from_value(emulator.provider_config()).expect("the emulator's config fits");
        let provider = Arc::new(build(config));
        webhooks.set_provider(provider.clone());
        Self { emulator, provider, _webhooks: webhooks }
    }
}
