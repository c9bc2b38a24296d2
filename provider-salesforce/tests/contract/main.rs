//! Salesforce Chat contract tests: the testkit suite against the emulator and wiremock pins
//! of every request (the fixture tests of every message type sit next to the decoder, in
//! `src/wire.rs`).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;
mod pins;

use harness::SalesforceHarness;

handover_testkit::contract_suite!(SalesforceHarness);
