//! Retry against wiremock: `Retry-After`, idempotency, exhaustion. Delays are recorded by
//! an injected sleeper, so nothing here sleeps or times anything.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use handover_core::ErrorKind;
use handover_testkit::mock::strict_server;
use handover_transport::reqwest::Client;
use handover_transport::retry::{self, Idempotency, RetryPolicy, Sleeper};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn policy() -> (RetryPolicy, Arc<Mutex<Vec<Duration>>>) {
    let delays = Arc::new(Mutex::new(Vec::new()));
    let recorded = delays.clone();
    let policy = RetryPolicy::default()
        .with_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .with_jitter(false)
        .with_max_attempts(4)
        .with_sleeper(Sleeper::new(move |d| {
            recorded.lock().expect("delays lock").push(d);
            async {}
        }));
    (policy, delays)
}

async fn mount_sequence(server: &MockServer, responses: Vec<ResponseTemplate>) {
    // wiremock picks the first matching mock that has not reached its limit.
    for (i, response) in responses.into_iter().enumerate() {
        Mock::given(method("POST"))
            .and(path("/send"))
            .respond_with(response)
            .up_to_n_times(1)
            .with_priority(u8::try_from(i + 1).expect("few mocks"))
            .named(format!("attempt {}", i + 1))
            .expect(1)
            .mount(server)
            .await;
    }
}

#[tokio::test]
async fn retry_after_is_honoured_for_429_then_success_is_returned() {
    let server = strict_server().await;
    mount_sequence(
        &server,
        vec![
            ResponseTemplate::new(429).insert_header("retry-after", "7"),
            ResponseTemplate::new(503),
            ResponseTemplate::new(202).set_body_string("ok"),
        ],
    )
    .await;
    let (policy, delays) = policy();
    let client = Client::new();
    let url = format!("{}/send", server.uri());
    let response =
        retry::send(&policy, "test", "send message", Idempotency::NotIdempotent, || client.post(&url).body("{}"))
            .await
            .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    // 7 s from Retry-After, then the second step of the backoff (100 ms × 2).
    assert_eq!(*delays.lock().unwrap(), [Duration::from_secs(7), Duration::from_millis(200)]);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_cap_returns_the_response_without_waiting() {
    let server = strict_server().await;
    mount_sequence(&server, vec![ResponseTemplate::new(429).insert_header("retry-after", "3600")]).await;
    let (policy, delays) = policy();
    let client = Client::new();
    let url = format!("{}/send", server.uri());
    let response = retry::send(&policy, "test", "send", Idempotency::Idempotent, || client.post(&url)).await.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(delays.lock().unwrap().is_empty());
}

#[tokio::test]
async fn server_errors_are_retried_only_for_idempotent_requests() {
    let server = strict_server().await;
    mount_sequence(&server, vec![ResponseTemplate::new(502), ResponseTemplate::new(200)]).await;
    let (policy, _) = policy();
    let client = Client::new();
    let url = format!("{}/send", server.uri());
    let response = retry::send(&policy, "test", "get", Idempotency::Idempotent, || client.post(&url)).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);

    let server = strict_server().await;
    mount_sequence(&server, vec![ResponseTemplate::new(502)]).await;
    let url = format!("{}/send", server.uri());
    let response =
        retry::send(&policy, "test", "post", Idempotency::NotIdempotent, || client.post(&url)).await.unwrap();
    assert_eq!(response.status().as_u16(), 502, "a 502 on a non-idempotent POST is not repeated");
}

#[tokio::test]
async fn exhausted_retries_return_the_last_response() {
    let server = strict_server().await;
    mount_sequence(&server, (0..4).map(|_| ResponseTemplate::new(503)).collect()).await;
    let (policy, delays) = policy();
    let client = Client::new();
    let url = format!("{}/send", server.uri());
    let response = retry::send(&policy, "test", "send", Idempotency::Idempotent, || client.post(&url)).await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(delays.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn timeouts_are_retried_only_when_idempotent_and_the_error_says_so() {
    let server = strict_server().await;
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .named("slow")
        .mount(&server)
        .await;
    let (policy, delays) = policy();
    let client = Client::builder().timeout(Duration::from_millis(50)).build().unwrap();
    let url = format!("{}/send", server.uri());
    let error = retry::send(&policy, "test", "send message", Idempotency::NotIdempotent, || client.post(&url))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transport);
    assert!(error.to_string().contains("not retried because it is not idempotent"), "{error}");
    assert!(delays.lock().unwrap().is_empty());

    let error = retry::send(&policy, "test", "get", Idempotency::Idempotent, || client.post(&url)).await.unwrap_err();
    assert!(error.to_string().contains("after 4 attempts"), "{error}");
    assert_eq!(delays.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn connection_refused_is_retried_even_for_non_idempotent_requests() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (policy, delays) = policy();
    let client = Client::new();
    let url = format!("http://127.0.0.1:{port}/send");
    let error =
        retry::send(&policy, "test", "send", Idempotency::NotIdempotent, || client.post(&url)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transport);
    assert_eq!(delays.lock().unwrap().len(), 3);
    assert!(!error.to_string().contains(&port.to_string()), "no URL in the error: {error}");
}
