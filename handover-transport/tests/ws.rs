//! The WebSocket owner task against a scripted loopback server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use handover_core::{Error, ErrorKind, Result};
use handover_testkit::ws_server::WsServer;
use handover_transport::retry::{RetryPolicy, Sleeper};
use handover_transport::ws::{self, WsConfig, WsConnect, WsEvent};
use tokio::sync::mpsc::Receiver;

struct Connector {
    url: String,
    calls: Arc<AtomicUsize>,
    fail: bool,
}

#[handover_core::async_trait]
impl WsConnect for Connector {
    fn provider(&self) -> &'static str {
        "test"
    }

    async fn url(&self) -> Result<String> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(Error::unauthenticated("test", "create channel", "bad token"));
        }
        Ok(format!("{}/channel-{n}", self.url))
    }
}

fn config() -> WsConfig {
    WsConfig::default()
        .with_ping(Duration::from_secs(3600), Duration::from_secs(3600))
        .with_reconnect(RetryPolicy::default().with_max_attempts(5).with_sleeper(Sleeper::new(|_| async {})))
}

async fn next(rx: &mut Receiver<WsEvent>) -> WsEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event within the guard")
        .expect("the task goes on")
}

fn spawn(server: &WsServer, config: WsConfig) -> (ws::WsHandle, Receiver<WsEvent>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (handle, rx) = ws::spawn(Connector { url: server.url(), calls: calls.clone(), fail: false }, config);
    (handle, rx, calls)
}

#[tokio::test]
async fn relays_frames_both_ways_and_reconnects_with_a_fresh_url_after_a_drop() {
    let server = WsServer::start().await;
    let (handle, mut rx, calls) = spawn(&server, config());
    assert!(matches!(next(&mut rx).await, WsEvent::Connected { reconnect: false }));
    server.wait_until(|c| c.len() == 1).await;
    assert!(server.send_text(r#"{"topicName":"channel.metadata"}"#));
    assert!(matches!(next(&mut rx).await, WsEvent::Text(t) if t == r#"{"topicName":"channel.metadata"}"#));
    assert!(handle.send_text("hello").await);
    server.wait_until(|c| c[0].received == ["hello"]).await;

    assert!(server.drop_current());
    assert!(matches!(next(&mut rx).await, WsEvent::Disconnected { .. }));
    assert!(matches!(next(&mut rx).await, WsEvent::Connected { reconnect: true }));
    let connections = server.wait_until(|c| c.len() == 2).await;
    assert_eq!(connections[0].uri, "/channel-0");
    assert_eq!(connections[1].uri, "/channel-1");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    server.wait_until(|c| c.len() == 2).await;
    assert!(server.send_text("after"));
    assert!(matches!(next(&mut rx).await, WsEvent::Text(t) if t == "after"));
    handle.close();
}

#[tokio::test]
async fn a_missing_pong_drops_the_connection_and_reconnects() {
    let server = WsServer::start().await;
    server.set_deaf(true);
    let config = config().with_ping(Duration::from_millis(20), Duration::from_millis(50));
    let (handle, mut rx, _) = spawn(&server, config);
    assert!(matches!(next(&mut rx).await, WsEvent::Connected { reconnect: false }));
    server.set_deaf(false);
    match next(&mut rx).await {
        WsEvent::Disconnected { reason } => assert!(reason.contains("no pong"), "{reason}"),
        other => panic!("expected a drop, got {other:?}"),
    }
    assert!(matches!(next(&mut rx).await, WsEvent::Connected { reconnect: true }));
    // The new connection answers pings: the client keeps it (the server counts the pings).
    server.wait_until(|c| c.len() == 2 && c[1].pings >= 3).await;
    handle.close();
}

#[tokio::test]
async fn the_connection_is_rebuilt_before_its_maximum_age() {
    let server = WsServer::start().await;
    let config = config().with_max_connection_age(Some(Duration::from_millis(50)));
    let (handle, mut rx, calls) = spawn(&server, config);
    assert!(matches!(next(&mut rx).await, WsEvent::Connected { reconnect: false }));
    match next(&mut rx).await {
        WsEvent::Disconnected { reason } => assert!(reason.contains("rebuilding"), "{reason}"),
        other => panic!("expected a rebuild, got {other:?}"),
    }
    assert!(matches!(next(&mut rx).await, WsEvent::Connected { reconnect: true }));
    assert!(calls.load(Ordering::SeqCst) >= 2);
    handle.close();
}

#[tokio::test]
async fn a_permanent_connect_error_fails_the_task() {
    let server = WsServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (_handle, mut rx) = ws::spawn(Connector { url: server.url(), calls: calls.clone(), fail: true }, config());
    match next(&mut rx).await {
        WsEvent::Failed(error) => assert_eq!(error.kind(), ErrorKind::Unauthenticated),
        other => panic!("expected failure, got {other:?}"),
    }
    assert!(rx.recv().await.is_none());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "an auth failure is not retried");
}

#[tokio::test]
async fn an_unreachable_server_is_retried_then_fails() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let calls = Arc::new(AtomicUsize::new(0));
    let (_handle, mut rx) =
        ws::spawn(Connector { url: format!("ws://127.0.0.1:{port}"), calls: calls.clone(), fail: false }, config());
    match next(&mut rx).await {
        WsEvent::Failed(error) => assert_eq!(error.kind(), ErrorKind::Transport),
        other => panic!("expected failure, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}
