//! Salesforce Chat contract tests: the testkit suite against the emulator, wiremock pins of
//! every request, and fixture tests of every message type.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod fixtures;
mod harness;
mod pins;

use harness::SalesforceHarness;

handover_testkit::contract_suite!(SalesforceHarness);
