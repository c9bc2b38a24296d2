//! The contract-suite harness: the provider against the 8x8 emulator, signed webhooks on
//! loopback, the agent side played through the emulator's hub.

use std::sync::Arc;

use handover_core::Provider;
use handover_emulator::{Emulator, EmulatorOptions};
use handover_testkit::EmulatorHarness;
use handover_testkit::webhook_server::WebhookServer;
use provider_8x8::{EightByEightConfig, EightByEightProvider};

pub(crate) struct EightByEightHarness {
    pub(crate) emulator: Emulator,
    pub(crate) provider: Arc<EightByEightProvider>,
    _webhooks: WebhookServer,
}

pub(crate) use handover_testkit::fast_retry;

impl EightByEightHarness {
    pub(crate) async fn start(f: impl FnOnce(&mut EightByEightConfig)) -> Self {
        let webhooks = WebhookServer::bind().await;
        let options = EmulatorOptions::default().with_webhook_url(webhooks.url("8x8"));
        let emulator = Emulator::start("8x8", options).await.expect("emulator starts");
        let mut config: EightByEightConfig =
            serde_json::from_value(emulator.provider_config()).expect("emulator config");
        f(&mut config);
        let provider =
            Arc::new(EightByEightProvider::new(config).expect("valid config").with_retry_policy(fast_retry()));
        webhooks.set_provider(provider.clone());
        Self { emulator, provider, _webhooks: webhooks }
    }
}

#[handover_core::async_trait]
impl EmulatorHarness for EightByEightHarness {
    async fn setup() -> Self {
        Self::start(|_| {}).await
    }

    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// The Gateway reports queueing without a position or wait.
    fn reports_queue(&self) -> bool {
        false
    }
}
