//! wiremock helpers shared by the provider contract tests.
//!
//! Provider crates build typed mock builders on top (`MiawMock::new(&server).token()…`);
//! this module gives the strict server they all start from.

use serde_json::Value;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// Starts a server with a loud catch-all: any request no other mock matches gets `501`
/// with the request line in the body, and the test fails on drop listing it.
///
/// The server is a fresh one on its own port, never one from wiremock's pool: `cargo test`
/// runs a file's tests in one process, and a pooled server handed to the next test can still
/// receive a reconnect from a session the previous test dropped, which would then show up
/// in this test's recorded requests.
pub async fn strict_server() -> MockServer {
    let server = MockServer::builder().start().await;
    mount_catch_all(&server).await;
    server
}

/// Mounts the catch-all on an existing server.
pub async fn mount_catch_all(server: &MockServer) {
    Mock::given(any())
        .respond_with(|request: &Request| {
            ResponseTemplate::new(501).set_body_string(format!(
                "no mock matched {} {}{}",
                request.method,
                request.url.path(),
                request.url.query().map(|q| format!("?{q}")).unwrap_or_default()
            ))
        })
        .with_priority(u8::MAX)
        .named("catch-all: a request matched no mock")
        .expect(0)
        .mount(server)
        .await;
}

/// The requests the server received with `method` to `path` (query ignored), in order.
pub async fn requests_to(server: &MockServer, method: &str, path: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str().eq_ignore_ascii_case(method) && r.url.path() == path)
        .collect()
}

/// A request's body as JSON (panics with the body when it is not JSON).
pub fn body_json(request: &Request) -> Value {
    serde_json::from_slice(&request.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&request.body)))
}

/// A request header's value (panics when absent).
pub fn header<'a>(request: &'a Request, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing from {} {}", request.method, request.url))
        .to_str()
        .unwrap()
}
