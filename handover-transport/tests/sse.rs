//! The SSE reader against a scripted loopback server: drops, reconnects, auth refresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use handover_core::{ErrorKind, Result};
use handover_testkit::sse_server::{Reply, SseServer, frame};
use handover_transport::reqwest::{Client, RequestBuilder};
use handover_transport::retry::{RetryPolicy, Sleeper};
use handover_transport::sse::{SseConfig, SseConnect, SseEvent, SseItem, SseStream};

struct Connector {
    client: Client,
    url: String,
    token: Arc<std::sync::Mutex<String>>,
    refreshes: Arc<AtomicUsize>,
}

#[handover_core::async_trait]
impl SseConnect for Connector {
    fn provider(&self) -> &'static str {
        "test"
    }

    async fn request(&self, _last_event_id: Option<&str>) -> Result<RequestBuilder> {
        let token = self.token.lock().expect("token lock").clone();
        Ok(self.client.get(format!("{}/sse", self.url)).bearer_auth(token))
    }

    async fn refresh_auth(&self) -> Result<()> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        *self.token.lock().expect("token lock") = "fresh".into();
        Ok(())
    }
}

fn open(server: &SseServer, last_event_id: Option<&str>) -> (SseStream<Connector>, Arc<AtomicUsize>) {
    let refreshes = Arc::new(AtomicUsize::new(0));
    let connector = Connector {
        client: Client::new(),
        url: server.url(),
        token: Arc::new(std::sync::Mutex::new("stale".into())),
        refreshes: refreshes.clone(),
    };
    let config = SseConfig::default()
        .with_reconnect(RetryPolicy::default().with_max_attempts(3).with_sleeper(Sleeper::new(|_| async {})))
        .with_idle_timeout(Duration::from_secs(30));
    (SseStream::new(connector, config, last_event_id.map(str::to_owned)), refreshes)
}

async fn next(stream: &mut SseStream<Connector>) -> SseItem {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an item within the guard")
        .expect("the stream goes on")
        .expect("no error")
}

fn event(name: &str, id: &str, data: &str) -> SseItem {
    SseItem::Event(SseEvent { event: name.into(), data: data.into(), id: Some(id.into()) })
}

#[tokio::test]
async fn resumes_after_a_mid_stream_drop_with_the_last_event_id_and_loses_nothing() {
    let server = SseServer::start().await;
    server.enqueue(Reply::hold([
        frame("CONVERSATION_MESSAGE", "1", r#"{"n":1}"#),
        frame("CONVERSATION_MESSAGE", "2", r#"{"n":2}"#),
    ]));
    server.enqueue(Reply::hold([
        frame("CONVERSATION_MESSAGE", "3", r#"{"n":3}"#),
        frame("CONVERSATION_MESSAGE", "4", r#"{"n":4}"#),
    ]));
    let (mut stream, _) = open(&server, Some("0"));

    assert_eq!(next(&mut stream).await, SseItem::Connected { reconnect: false });
    assert_eq!(next(&mut stream).await, event("CONVERSATION_MESSAGE", "1", r#"{"n":1}"#));
    assert_eq!(next(&mut stream).await, event("CONVERSATION_MESSAGE", "2", r#"{"n":2}"#));
    // Half a frame, then the connection is cut: the half must not be delivered.
    assert!(server.push("event: CONVERSATION_MESSAGE\nid: 3\ndata: {\"n\":"));
    assert!(server.drop_current(true));
    assert_eq!(next(&mut stream).await, SseItem::Disconnected);
    assert_eq!(next(&mut stream).await, SseItem::Connected { reconnect: true });
    assert_eq!(next(&mut stream).await, event("CONVERSATION_MESSAGE", "3", r#"{"n":3}"#));
    assert_eq!(next(&mut stream).await, event("CONVERSATION_MESSAGE", "4", r#"{"n":4}"#));
    assert_eq!(stream.last_event_id(), Some("4"));

    let recorded = server.recorded();
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].header("last-event-id"), Some("0"));
    assert_eq!(recorded[1].header("last-event-id"), Some("2"));
    assert_eq!(recorded[0].header("accept"), Some("text/event-stream"));

    // A later push on the held connection arrives too.
    assert!(server.push(frame("ping", "", "0")));
    let SseItem::Event(ping) = next(&mut stream).await else { panic!("expected the ping") };
    assert_eq!(ping.event, "ping");
}

#[tokio::test]
async fn a_clean_close_is_a_drop_too() {
    let server = SseServer::start().await;
    server
        .enqueue(Reply::Stream { frames: vec![frame("a", "1", "x")], then: handover_testkit::sse_server::Then::Close });
    let (mut stream, _) = open(&server, None);
    assert_eq!(next(&mut stream).await, SseItem::Connected { reconnect: false });
    assert_eq!(next(&mut stream).await, event("a", "1", "x"));
    assert_eq!(next(&mut stream).await, SseItem::Disconnected);
    assert_eq!(next(&mut stream).await, SseItem::Connected { reconnect: true });
    let recorded = server.recorded();
    assert_eq!(recorded[0].header("last-event-id"), None);
    assert_eq!(recorded[1].header("last-event-id"), Some("1"));
}

#[tokio::test]
async fn a_401_refreshes_credentials_once_then_connects() {
    let server = SseServer::start().await;
    server.enqueue(Reply::status(401, r#"{"status":401,"error":"Unauthorized"}"#));
    server.enqueue(Reply::hold([frame("a", "1", "x")]));
    let (mut stream, refreshes) = open(&server, None);
    assert_eq!(next(&mut stream).await, SseItem::Connected { reconnect: false });
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    let recorded = server.recorded();
    assert_eq!(recorded[0].header("authorization"), Some("Bearer stale"));
    assert_eq!(recorded[1].header("authorization"), Some("Bearer fresh"));
}

#[tokio::test]
async fn a_second_401_after_refresh_is_unauthenticated() {
    let server = SseServer::start().await;
    server.enqueue(Reply::status(401, "Jwt is expired"));
    server.enqueue(Reply::status(401, "Jwt is expired"));
    let (mut stream, refreshes) = open(&server, None);
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unauthenticated);
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    assert!(stream.next().await.is_none(), "an error is terminal");
}

#[tokio::test]
async fn other_4xx_fail_at_once_and_5xx_retry_until_the_limit() {
    let server = SseServer::start().await;
    server.enqueue(Reply::status(400, "Missing X-Org-Id"));
    let (mut stream, _) = open(&server, None);
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.to_string().contains("Missing X-Org-Id"), "{error}");
    assert_eq!(server.recorded().len(), 1);

    let server = SseServer::start().await;
    for _ in 0..3 {
        server.enqueue(Reply::status(503, "busy"));
    }
    let (mut stream, _) = open(&server, None);
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transport);
    assert!(error.to_string().contains("after 3 attempts"), "{error}");
    assert_eq!(server.recorded().len(), 3);
}

#[tokio::test]
async fn a_200_that_is_not_an_event_stream_is_classified_not_parsed() {
    let server = SseServer::start().await;
    server.enqueue(Reply::Status { status: 200, body: "<html>login</html>".into(), content_type: "text/html" });
    let (mut stream, _) = open(&server, None);
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Protocol);
}
