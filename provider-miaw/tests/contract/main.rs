//! MIAW contract tests: the testkit suite against the emulator and wiremock pins of every
//! request (the fixture tests of every event shape in the protocol notes sit next to the
//! decoder, in `src/wire.rs`).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;
mod pins;

use harness::MiawHarness;

handover_testkit::contract_suite!(MiawHarness);
