//! The contract suite must fail for a provider that breaks the contract: each flaw of the
//! fake is caught by the scenario that specifies the broken rule.

use std::sync::Arc;

use handover_core::{HandoverRequest, Provider};
use handover_testkit::Harness;
use handover_testkit::fake::{FakeHarness, Flaws};
use handover_testkit::scenarios;

macro_rules! flawed_harness {
    ($name:ident, $flaw:ident) => {
        struct $name(FakeHarness);

        #[handover_core::async_trait]
        impl Harness for $name {
            async fn setup() -> Self {
                let mut flaws = Flaws::default();
                flaws.$flaw = true;
                Self(FakeHarness::with_flaws(flaws))
            }
            fn provider(&self) -> Arc<dyn Provider> {
                self.0.provider()
            }
            fn request(&self) -> HandoverRequest {
                self.0.request()
            }
            fn secrets(&self) -> Vec<String> {
                self.0.secrets()
            }
            async fn queue(&self, p: Option<u32>, w: Option<std::time::Duration>) -> bool {
                self.0.queue(p, w).await
            }
            async fn agent_joins(&self, name: &str) {
                self.0.agent_joins(name).await;
            }
            async fn agent_says(&self, name: &str, text: &str) {
                self.0.agent_says(name, text).await;
            }
            async fn redeliver_last(&self) -> bool {
                self.0.redeliver_last().await
            }
            async fn agent_typing(&self, on: bool) -> bool {
                self.0.agent_typing(on).await
            }
            async fn agent_transfers(&self, from: &str) -> bool {
                self.0.agent_transfers(from).await
            }
            async fn agent_ends(&self) {
                self.0.agent_ends().await;
            }
            async fn drop_connection(&self) -> bool {
                self.0.drop_connection().await
            }
            async fn customer_texts(&self, at_least: usize) -> Vec<String> {
                self.0.customer_texts(at_least).await
            }
            async fn closed_by_customer(&self) -> bool {
                self.0.closed_by_customer().await
            }
        }
    };
}

flawed_harness!(NoDedup, no_dedup);
flawed_harness!(ResumeFromStart, resume_from_start);
flawed_harness!(TransferAsLeave, transfer_as_leave);

#[tokio::test]
#[should_panic(expected = "sentinel")]
async fn a_provider_that_delivers_a_redelivery_twice_fails_the_suite() {
    scenarios::agent_messages_arrive_in_order_exactly_once::<NoDedup>().await;
}

#[tokio::test]
#[should_panic(expected = "while away")]
async fn a_provider_that_resumes_from_the_start_fails_the_suite() {
    scenarios::snapshot_resumes_without_repeats::<ResumeFromStart>().await;
}

#[tokio::test]
#[should_panic(expected = "AgentLeft")]
async fn a_provider_that_ends_on_transfer_fails_the_suite() {
    scenarios::transfer_is_not_an_end::<TransferAsLeave>().await;
}
