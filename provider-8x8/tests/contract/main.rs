//! 8x8 contract tests: the testkit suite against the emulator, wiremock pins of every
//! request, the webhook signature checks, and fixture tests of every event shape.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod fixtures;
mod harness;
mod pins;
mod signatures;

use harness::EightByEightHarness;

handover_testkit::contract_suite!(EightByEightHarness);
