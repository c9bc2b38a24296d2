//! MIAW contract tests: the testkit suite against the emulator, wiremock pins of every
//! request, and fixture tests of every event shape in the protocol notes.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod fixtures;
mod harness;
mod pins;

use harness::MiawHarness;

handover_testkit::contract_suite!(MiawHarness);
