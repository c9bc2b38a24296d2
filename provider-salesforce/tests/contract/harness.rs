//! The contract-suite harness: the provider against the Salesforce Chat emulator.

use std::sync::Arc;

use handover_core::Provider;
use handover_emulator::{Emulator, EmulatorOptions};
use handover_testkit::EmulatorHarness;
use handover_transport::longpoll::LongPollConfig;
use provider_salesforce::{SalesforceConfig, SalesforceProvider};

pub(crate) struct SalesforceHarness {
    pub(crate) emulator: Emulator,
    pub(crate) provider: Arc<SalesforceProvider>,
}

pub(crate) use handover_testkit::fast_retry;

pub(crate) fn provider_for(emulator: &Emulator) -> SalesforceProvider {
    let config: SalesforceConfig = serde_json::from_value(emulator.provider_config()).expect("emulator config");
    SalesforceProvider::builder(config)
        .retry(fast_retry())
        .poll(LongPollConfig::default().with_backoff(fast_retry().with_max_attempts(20)))
        .build()
        .expect("valid config")
}

impl SalesforceHarness {}

#[handover_core::async_trait]
impl EmulatorHarness for SalesforceHarness {
    async fn setup() -> Self {
        let emulator = Emulator::start("salesforce", EmulatorOptions::default()).await.expect("emulator starts");
        let provider = Arc::new(provider_for(&emulator));
        Self { emulator, provider }
    }

    fn provider(&self) -> Arc<dyn Provider> {
        self.provider.clone()
    }

    fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// An in-flight poll answers 503: the session moved to another server.
    fn has_stream(&self) -> bool {
        true
    }

    /// Live Agent REST has no agent-to-visitor file message (salesforce-chat.md §7): the
    /// agent can only ask the visitor for one (`FileTransfer`).
    fn carries_agent_files(&self) -> bool {
        false
    }
}
