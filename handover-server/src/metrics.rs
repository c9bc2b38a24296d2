//! What the service measures, in Prometheus text at `/metrics` (the `metrics` crate and its
//! Prometheus exporter). Every series carries the `instance` label. Names and labels never
//! hold a secret, a user's words or an id a caller chose (bounded cardinality): provider
//! configuration names, states, outcomes and operations only.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process's exporter (one per process: instances in one test process share it and
/// tell themselves apart by the `instance` label).
pub(crate) fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ])
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::debug!("a metrics recorder was installed already; /metrics shows this exporter's only");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("handover_handovers", "Handovers this instance owns, by provider configuration and state.");
    describe_counter!("handover_handovers_started_total", "Handovers created through the API.");
    describe_counter!("handover_handovers_ended_total", "Handovers ended, by final status.");
    describe_gauge!("handover_leases_held", "Leases this instance holds.");
    describe_counter!("handover_takeovers_total", "Orphaned handovers this instance claimed.");
    describe_counter!("handover_fenced_writes_total", "Writes refused because another instance took the lease.");
    describe_counter!("handover_webhook_deliveries_total", "Provider webhook requests, by outcome.");
    describe_histogram!(
        "handover_inbox_lag_seconds",
        "From a webhook delivery kept in the inbox to its application on the owner's session."
    );
    describe_counter!("handover_callback_deliveries_total", "Callback POSTs to bots, by outcome.");
    describe_histogram!("handover_callback_lag_seconds", "From an event appended to its callback acknowledged.");
    describe_counter!("handover_provider_requests_total", "Calls to a provider, by operation and outcome.");
    describe_histogram!("handover_provider_request_seconds", "Latency of calls to a provider, by operation.");
    describe_counter!("handover_api_requests_total", "API requests, by route and status.");
    describe_histogram!("handover_store_commit_seconds", "An owner's commit to the store, from asking to done.");
    describe_histogram!(
        "handover_event_commit_seconds",
        "From an agent-side event read from the provider's session to its commit in the log."
    );
}

/// Labels every series of one instance carries.
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    instance: String,
}

impl Metrics {
    pub(crate) fn new(instance: &str) -> Self {
        let _ = handle();
        Self { instance: instance.to_owned() }
    }

    pub(crate) fn handovers(&self, provider: &str, state: &'static str, delta: f64) {
        metrics::gauge!("handover_handovers", "instance" => self.instance.clone(), "provider" => provider.to_owned(), "state" => state)
            .increment(delta);
    }

    pub(crate) fn started(&self, provider: &str) {
        metrics::counter!("handover_handovers_started_total", "instance" => self.instance.clone(), "provider" => provider.to_owned())
            .increment(1);
    }

    pub(crate) fn ended(&self, provider: &str, status: &'static str) {
        metrics::counter!("handover_handovers_ended_total", "instance" => self.instance.clone(), "provider" => provider.to_owned(), "status" => status)
            .increment(1);
    }

    pub(crate) fn leases(&self, held: usize) {
        metrics::gauge!("handover_leases_held", "instance" => self.instance.clone()).set(held as f64);
    }

    pub(crate) fn takeovers(&self, n: usize) {
        metrics::counter!("handover_takeovers_total", "instance" => self.instance.clone()).increment(n as u64);
    }

    pub(crate) fn fenced(&self) {
        metrics::counter!("handover_fenced_writes_total", "instance" => self.instance.clone()).increment(1);
    }

    pub(crate) fn webhook(&self, provider: &str, outcome: &'static str) {
        metrics::counter!("handover_webhook_deliveries_total", "instance" => self.instance.clone(), "provider" => provider.to_owned(), "outcome" => outcome)
            .increment(1);
    }

    pub(crate) fn inbox_lag(&self, provider: &str, lag: Duration) {
        metrics::histogram!("handover_inbox_lag_seconds", "instance" => self.instance.clone(), "provider" => provider.to_owned())
            .record(lag.as_secs_f64());
    }

    pub(crate) fn callback(&self, outcome: &'static str) {
        metrics::counter!("handover_callback_deliveries_total", "instance" => self.instance.clone(), "outcome" => outcome)
            .increment(1);
    }

    pub(crate) fn callback_lag(&self, lag: Duration) {
        metrics::histogram!("handover_callback_lag_seconds", "instance" => self.instance.clone())
            .record(lag.as_secs_f64());
    }

    pub(crate) fn provider_call(&self, provider: &str, operation: &'static str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        metrics::counter!("handover_provider_requests_total", "instance" => self.instance.clone(), "provider" => provider.to_owned(), "operation" => operation, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("handover_provider_request_seconds", "instance" => self.instance.clone(), "provider" => provider.to_owned(), "operation" => operation)
            .record(took.as_secs_f64());
    }

    pub(crate) fn commit(&self, took: Duration) {
        metrics::histogram!("handover_store_commit_seconds", "instance" => self.instance.clone())
            .record(took.as_secs_f64());
    }

    pub(crate) fn event_commit(&self, took: Duration) {
        metrics::histogram!("handover_event_commit_seconds", "instance" => self.instance.clone())
            .record(took.as_secs_f64());
    }

    pub(crate) fn api(&self, route: &'static str, status: u16) {
        metrics::counter!("handover_api_requests_total", "instance" => self.instance.clone(), "route" => route, "status" => status.to_string())
            .increment(1);
    }
}
