//! Live Agent contract tests: the testkit suite against the emulator, wiremock pins of every
//! request, and fixture tests of every webhook shape.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod fixtures;
mod harness;
mod pins;

use harness::LiveAgentHarness;

handover_testkit::contract_suite!(LiveAgentHarness);
