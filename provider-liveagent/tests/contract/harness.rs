//! The contract-suite harness: the provider against the Live Agent emulator, webhooks on
//! loopback, the agent side played through the emulator's hub.

use std::sync::Arc;
use std::time::Duration;

use handover_core::Provider;
use handover_emulator::{AgentAction, Conversation, CustomerAction, Emulator, EmulatorOptions};
use handover_testkit::Harness;
use handover_testkit::webhook_server::WebhookServer;
use handover_transport::retry::{RetryPolicy, Sleeper};
use provider_liveagent::{LiveAgentConfig, LiveAgentProvider};

pub(crate) struct LiveAgentHarness {
    pub(crate) emulator: Emulator,
    pub(crate) provider: Arc<LiveAgentProvider>,
    _webhooks: WebhookServer,
}

pub(crate) fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .with_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .with_sleeper(Sleeper::tokio())
}

impl LiveAgentHarness {
    pub(crate) async fn start(f: impl FnOnce(&mut LiveAgentConfig)) -> Self {
        let webhooks = WebhookServer::bind().await;
        let options = EmulatorOptions::default().with_webhook_url(webhooks.url("liveagent"));
        let emulator = Emulator::start("liveagent", options).await.expect("emulator starts");
        let mut config: LiveAgentConfig = serde_json::from_value(emulator.provider_config()).expect("emulator config");
        // The suite reports position 3 and 120 s: 40 s per position.
        config.get_queue_position = true;
        config.get_estimated_wait_time = true;
        config.queue_update_interval = 1;
        config.wait_time_update_interval = 1;
        config.wait_per_position_secs = 40;
        f(&mut config);
        let provider = Arc::new(LiveAgentProvider::new(config).expect("valid config").with_retry_policy(fast_retry()));
        webhooks.set_provider(provider.clone());
        Self { emulator, provider, _webhooks: webhooks }
    }

    pub(crate) fn current(&self) -> Arc<Conversation> {
        self.emulator.hub().latest().expect("a conversation was started")
    }

    fn act(&self, action: AgentAction) {
        self.emulator.hub().agent(&self.current(), action);
    }
}

#[handover_core::async_trait]
impl Harness for LiveAgentHarness {
    async fn setup() -> Self {
        Self::start(|_| {}).await
    }

    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn secrets(&self) -> Vec<String> {
        self.emulator.secrets()
    }

    async fn queue(&self, position: Option<u32>, estimated_wait: Option<Duration>) -> bool {
        // The wait follows from the position (40 s each, configured above).
        assert_eq!(
            position.map(|p| u64::from(p) * 40),
            estimated_wait.map(|w| w.as_secs()),
            "the harness estimates 40 s per position"
        );
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
        false
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
