//! RingCentral Engage contract tests: the testkit suite against the emulator, wiremock pins
//! of the Send API and REST requests, callback signing, and file URLs fetched by the emulator
//! (the fixture tests of every shape read sit next to the decoders, in `src/wire.rs`).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod files;
mod harness;
mod pins;

use harness::RingCentralHarness;

handover_testkit::contract_suite!(RingCentralHarness);
