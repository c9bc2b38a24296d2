#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod emulated;
pub mod fake;
mod harness;
pub mod hostile;
pub mod logs;
pub mod mock;
pub mod scenarios;
pub mod sse_server;
pub mod webhook_server;
pub mod ws_server;

pub use emulated::EmulatorHarness;
pub use harness::{Harness, ReceivedFile, SampleFile, fast_retry, sample_request};

/// Expands to one `#[tokio::test]` per contract scenario, run against `$harness`.
///
/// ```text
/// // tests/contract/main.rs of a provider crate:
/// handover_testkit::contract_suite!(MiawHarness);
/// ```
///
/// The tests live in a module named `contract_suite`, so `cargo test contract_suite`
/// selects them and `cargo xtask contract` counts them. The calling crate needs `tokio`
/// (with `macros` and `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! contract_suite {
    ($harness:ty) => {
        mod contract_suite {
            #[allow(unused_imports)]
            use super::*;
            $crate::contract_suite!(@tests $harness;
                start_delivers_the_transcript,
                agent_messages_arrive_in_order_exactly_once,
                user_messages_reach_the_agent,
                agent_end_ends_the_stream,
                bot_end_closes_the_conversation,
                typing_is_relayed_or_refused,
                queue_updates_are_reported,
                transfer_is_not_an_end,
                snapshot_resumes_without_repeats,
                dropped_connection_recovers,
                oversized_messages_are_refused_before_io,
                secrets_stay_out_of_debug_and_errors,
                secrets_stay_out_of_trace_logs,
                nothing_is_delivered_after_the_end,
                attachments_cross_both_ways,
            );
        }
    };
    (@tests $harness:ty; $($scenario:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                $crate::scenarios::$scenario::<$harness>().await;
            }
        )*
    };
}
