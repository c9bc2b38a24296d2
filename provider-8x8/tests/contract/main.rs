//! 8x8 contract tests: the testkit suite against the emulator, wiremock pins of every
//! request and the webhook signature checks (the fixture tests of every event shape sit
//! next to the decoder, in `src/wire.rs`).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;
mod pins;
mod signatures;

use harness::EightByEightHarness;

handover_testkit::contract_suite!(EightByEightHarness);
