//! Genesys contract tests: the testkit suite against the emulator, wiremock pins of every
//! request, and fixture tests of the webhook and notification shapes.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod channels;
mod fixtures;
mod harness;
mod pins;

use harness::GenesysHarness;

handover_testkit::contract_suite!(GenesysHarness);
