//! MIAW contract tests: the testkit suite against the emulator, wiremock pins of every
//! request, and fixture tests of every event shape in the protocol notes.

mod harness;
mod pins;

use harness::MiawHarness;

handover_testkit::contract_suite!(MiawHarness);
