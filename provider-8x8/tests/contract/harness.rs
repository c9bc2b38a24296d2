//! The contract-suite harness: the provider against the 8x8 emulator, signed webhooks on
//! loopback, the agent side played through the emulator's hub.

use std::sync::Arc;

use handover_core::Provider;
use handover_emulator::Emulator;
use handover_testkit::EmulatorHarness;
use handover_testkit::emulated::PushSetup;
use provider_8x8::{EightByEightConfig, EightByEightProvider};

pub(crate) use handover_testkit::fast_retry;

pub(crate) struct EightByEightHarness(PushSetup<EightByEightProvider>);

#[handover_core::async_trait]
impl EmulatorHarness for EightByEightHarness {
    async fn setup() -> Self {
        Self(
            PushSetup::start("8x8", |config: EightByEightConfig| {
                EightByEightProvider::builder(config).retry(fast_retry()).build().expect("valid config")
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

    /// The Gateway reports queueing without a position or wait.
    fn reports_queue(&self) -> bool {
        false
    }
}
