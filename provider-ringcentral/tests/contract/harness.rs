//! The contract-suite harness: the provider against the Engage emulator, callbacks and
//! events on loopback, the agent side played through the emulator's hub.

use std::sync::Arc;

use handover_core::Provider;
use handover_emulator::Emulator;
use handover_testkit::EmulatorHarness;
use handover_testkit::emulated::PushSetup;
use provider_ringcentral::{RingCentralConfig, RingCentralProvider};

pub(crate) use handover_testkit::fast_retry;

pub(crate) struct RingCentralHarness(PushSetup<RingCentralProvider>);

#[handover_core::async_trait]
impl EmulatorHarness for RingCentralHarness {
    async fn setup() -> Self {
        Self(
            PushSetup::start("ringcentral", |config: RingCentralConfig| {
                RingCentralProvider::builder(config).retry(fast_retry()).build().expect("valid config")
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

    /// A Source SDK source hears of neither agent typing nor reassignment.
    fn reports_agent_typing(&self) -> bool {
        false
    }

    fn reports_transfers(&self) -> bool {
        false
    }
}
