//! RingCentral Engage contract tests: the testkit suite against the emulator, wiremock pins
//! of the Send API and REST requests, callback signing, and fixtures of every shape read.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod fixtures;
mod harness;
mod pins;

use harness::RingCentralHarness;

handover_testkit::contract_suite!(RingCentralHarness);
