//! The contract suite against the in-memory fake provider.

use handover_testkit::fake::FakeHarness;

handover_testkit::contract_suite!(FakeHarness);
