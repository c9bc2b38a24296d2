//! The contract-suite harness: the provider against the MIAW emulator, with the agent side
//! played through the emulator's hub.

use std::sync::Arc;

use handover_core::Provider;
use handover_emulator::{Emulator, EmulatorOptions};
use handover_testkit::EmulatorHarness;
use handover_transport::sse::SseConfig;
use provider_miaw::{MiawConfig, MiawProvider};

pub(crate) struct MiawHarness {
    pub(crate) emulator: Emulator,
    pub(crate) provider: Arc<MiawProvider>,
}

pub(crate) use handover_testkit::fast_retry;

pub(crate) fn provider_for(emulator: &Emulator, f: impl FnOnce(&mut MiawConfig)) -> MiawProvider {
    let mut config: MiawConfig = serde_json::from_value(emulator.provider_config()).expect("emulator config");
    f(&mut config);
    MiawProvider::builder(config)
        .retry(fast_retry())
        .sse(SseConfig::default().with_reconnect(fast_retry().with_max_attempts(20)))
        .build()
        .expect("valid config")
}

impl MiawHarness {}

#[handover_core::async_trait]
impl EmulatorHarness for MiawHarness {
    async fn setup() -> Self {
        let emulator = Emulator::start("miaw", EmulatorOptions::default()).await.expect("emulator starts");
        let provider = Arc::new(provider_for(&emulator, |_| {}));
        Self { emulator, provider }
    }

    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    fn has_stream(&self) -> bool {
        true
    }
}
