//! The contract-suite harness: the provider against the Genesys emulator, webhooks served
//! on loopback, the agent side played through the emulator's hub.

use std::sync::Arc;

use handover_core::Provider;
use handover_emulator::{Emulator, EmulatorOptions};
use handover_testkit::EmulatorHarness;
use handover_testkit::webhook_server::WebhookServer;
use handover_transport::ws::WsConfig;
use provider_genesys::{GenesysConfig, GenesysProvider};

pub(crate) struct GenesysHarness {
    pub(crate) emulator: Emulator,
    pub(crate) provider: Arc<GenesysProvider>,
    _webhooks: WebhookServer,
}

pub(crate) use handover_testkit::fast_retry;

impl GenesysHarness {
    pub(crate) async fn start(f: impl FnOnce(&mut GenesysConfig)) -> Self {
        let webhooks = WebhookServer::bind().await;
        let options = EmulatorOptions::default().with_webhook_url(webhooks.url("genesys"));
        let emulator = Emulator::start("genesys", options).await.expect("emulator starts");
        let mut config: GenesysConfig = serde_json::from_value(emulator.provider_config()).expect("emulator config");
        f(&mut config);
        let ws = WsConfig::default().with_reconnect(fast_retry().with_max_attempts(20));
        let provider = Arc::new(
            GenesysProvider::with_ws_config(config, ws).expect("valid config").with_retry_policy(fast_retry()),
        );
        webhooks.set_provider(provider.clone());
        Self { emulator, provider, _webhooks: webhooks }
    }
}

#[handover_core::async_trait]
impl EmulatorHarness for GenesysHarness {
    async fn setup() -> Self {
        Self::start(|_| {}).await
    }

    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Genesys reports no queue position or wait to Open Messaging.
    fn reports_queue(&self) -> bool {
        false
    }
}
