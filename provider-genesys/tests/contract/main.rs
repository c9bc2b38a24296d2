//! Genesys contract tests: the testkit suite against the emulator and wiremock pins of
//! every request (the fixture tests of the webhook and notification shapes sit next to
//! their decoders, in `src/wire.rs` and `src/notifications.rs`).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod channels;
mod harness;
mod pins;

use harness::GenesysHarness;

handover_testkit::contract_suite!(GenesysHarness);
