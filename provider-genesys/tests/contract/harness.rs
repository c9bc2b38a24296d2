//! The contract-suite harness: the provider against the Genesys emulator, webhooks served
//! on loopback, the agent side played through the emulator's hub.

use std::sync::Arc;

use handover_core::Provider;
use handover_emulator::Emulator;
use handover_testkit::EmulatorHarness;
use handover_testkit::emulated::PushSetup;
use handover_transport::ws::WsConfig;
use provider_genesys::{GenesysConfig, GenesysProvider};

pub(crate) use handover_testkit::fast_retry;

pub(crate) struct GenesysHarness(PushSetup<GenesysProvider>);

#[handover_core::async_trait]
impl EmulatorHarness for GenesysHarness {
    async fn setup() -> Self {
        Self(
            PushSetup::start("genesys", |config: GenesysConfig| {
                let ws = WsConfig::default().with_reconnect(fast_retry().with_max_attempts(20));
                GenesysProvider::builder(config).ws(ws).retry(fast_retry()).build().expect("valid config")
            })
            .await,
        )
    }

    fn provider(&self) -> Arc<dyn Provider> {
        self.0.provider.clone()
    }

    fn emulator(&self) -> &Emulator {
        &self.0.emulator
    }

    /// Genesys reports no queue position or wait to Open Messaging.
    fn reports_queue(&self) -> bool {
        false
    }
}
