//! The contract-suite harness: the provider against the Live Agent emulator, webhooks on
//! loopback, the agent side played through the emulator's hub.

use std::sync::Arc;

use handover_core::Provider;
use handover_emulator::{Emulator, EmulatorOptions};
use handover_testkit::EmulatorHarness;
use handover_testkit::webhook_server::WebhookServer;
use provider_liveagent::{LiveAgentConfig, LiveAgentProvider};

pub(crate) struct LiveAgentHarness {
    pub(crate) emulator: Emulator,
    pub(crate) provider: Arc<LiveAgentProvider>,
    _webhooks: WebhookServer,
}

pub(crate) use handover_testkit::fast_retry;

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
}

#[handover_core::async_trait]
impl EmulatorHarness for LiveAgentHarness {
    async fn setup() -> Self {
        Self::start(|_| {}).await
    }

    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn emulator(&self) -> &Emulator {
        &self.emulator
    }
}
