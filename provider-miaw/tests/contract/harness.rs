//! The contract-suite harness: the provider against the MIAW emulator, with the agent side
//! played through the emulator's hub.

use std::sync::Arc;
use std::time::Duration;

use handover_core::Provider;
use handover_emulator::{AgentAction, Conversation, Emulator, EmulatorOptions};
use handover_testkit::Harness;
use handover_transport::retry::{RetryPolicy, Sleeper};
use handover_transport::sse::SseConfig;
use provider_miaw::{MiawConfig, MiawProvider};

pub(crate) struct MiawHarness {
    pub(crate) emulator: Emulator,
    pub(crate) provider: Arc<MiawProvider>,
}

/// Short backoffs so drops and retries recover at once.
pub(crate) fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .with_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .with_sleeper(Sleeper::tokio())
}

pub(crate) fn provider_for(emulator: &Emulator, f: impl FnOnce(&mut MiawConfig)) -> MiawProvider {
    let mut config: MiawConfig = serde_json::from_value(emulator.provider_config()).expect("emulator config");
    f(&mut config);
    MiawProvider::new(config)
        .expect("valid config")
        .with_retry_policy(fast_retry())
        .with_sse_config(SseConfig::default().with_reconnect(fast_retry().with_max_attempts(20)))
}

impl MiawHarness {
    pub(crate) fn current(&self) -> Arc<Conversation> {
        self.emulator.hub().latest().expect("a conversation was started")
    }

    fn act(&self, action: AgentAction) {
        self.emulator.hub().agent(&self.current(), action);
    }
}

#[handover_core::async_trait]
impl Harness for MiawHarness {
    async fn setup() -> Self {
        let emulator = Emulator::start("miaw", EmulatorOptions::default()).await.expect("emulator starts");
        let provider = Arc::new(provider_for(&emulator, |_| {}));
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
        self.emulator.hub().faults.drop_streams();
        true
    }

    async fn customer_texts(&self, at_least: usize) -> Vec<String> {
        let conversation = self.current();
        conversation
            .wait_for(|v| {
                v.customer.iter().filter(|c| matches!(c, handover_emulator::CustomerAction::Message { .. })).count()
                    >= at_least
            })
            .await;
        conversation.customer_texts()
    }

    async fn closed_by_customer(&self) -> bool {
        self.current().wait_for(|v| v.closed_by_customer).await;
        true
    }
}
