//! The contract-suite harness: the provider against the Live Agent emulator, webhooks on
//! loopback, the agent side played through the emulator's hub.

use std::sync::Arc;

use handover_core::Provider;
use handover_emulator::Emulator;
use handover_testkit::EmulatorHarness;
use handover_testkit::emulated::PushSetup;
use provider_liveagent::{LiveAgentConfig, LiveAgentProvider};

pub(crate) use handover_testkit::fast_retry;

pub(crate) struct LiveAgentHarness(PushSetup<LiveAgentProvider>);

#[handover_core::async_trait]
impl EmulatorHarness for LiveAgentHarness {
    async fn setup() -> Self {
        Self(
            PushSetup::start("liveagent", |mut config: LiveAgentConfig| {
                // The suite reports position 3 and 120 s: 40 s per position.
                config.get_queue_position = true;
                config.get_estimated_wait_time = true;
                config.queue_update_interval = 1;
                config.wait_time_update_interval = 1;
                config.wait_per_position_secs = 40;
                LiveAgentProvider::builder(config).retry(fast_retry()).build().expect("valid config")
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
}
