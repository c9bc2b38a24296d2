//! The contract-suite harness: the provider against the Salesforce Chat emulator.

use std::sync::Arc;
use std::time::Duration;

use handover_core::Provider;
use handover_emulator::{AgentAction, Conversation, CustomerAction, Emulator, EmulatorOptions};
use handover_testkit::Harness;
use handover_transport::longpoll::LongPollConfig;
use handover_transport::retry::{RetryPolicy, Sleeper};
use provider_salesforce::{SalesforceConfig, SalesforceProvider};

pub(crate) struct SalesforceHarness {
    pub(crate) emulator: Emulator,
    pub(crate) provider: Arc<SalesforceProvider>,
}

pub(crate) fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .with_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .with_sleeper(Sleeper::tokio())
}

pub(crate) fn provider_for(emulator: &Emulator) -> SalesforceProvider {
    let config: SalesforceConfig = serde_json::from_value(emulator.provider_config()).expect("emulator config");
    SalesforceProvider::new(config)
        .expect("valid config")
        .with_retry_policy(fast_retry())
        .with_poll_config(LongPollConfig::default().with_backoff(fast_retry().with_max_attempts(20)))
}

impl SalesforceHarness {
    pub(crate) fn current(&self) -> Arc<Conversation> {
        self.emulator.hub().latest().expect("a conversation was started")
    }

    fn act(&self, action: AgentAction) {
        self.emulator.hub().agent(&self.current(), action);
    }
}

#[handover_core::async_trait]
impl Harness for SalesforceHarness {
    async fn setup() -> Self {
        let emulator = Emulator::start("salesforce", EmulatorOptions::default()).await.expect("emulator starts");
        let provider = Arc::new(provider_for(&emulator));
        Self { emulator, provider }
    }

    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn secrets(&self) -> Vec<String> {
        self.emulator.secrets()
    }

    async fn queue(&self, position: Option<u32>, estimated_wait: Option<Duration>) -> bool {
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
        self.emulator.redeliver_last(&self.current().id).await
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
        // An in-flight poll answers 503: the session moved to another server.
        self.emulator.hub().faults.drop_streams();
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
