//! The webhook listener against real sockets: idle, slow and half-sent clients cannot
//! exhaust it, and a genuine delivery still lands.

#![cfg(feature = "webhook-router")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use handover::webhook::{ListenerLimits, router, serve};
use handover::{
    CancellationToken, Capabilities, Error, HandoverRequest, Provider, ProviderInfo, Result, Session, WebhookReply,
    WebhookRequest, async_trait,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A hang guard, not a timing assertion.
const GUARD: Duration = Duration::from_secs(20);

struct Counting {
    info: ProviderInfo,
    seen: AtomicUsize,
}

#[async_trait]
impl Provider for Counting {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }
    async fn start(&self, _request: HandoverRequest) -> Result<Session> {
        Err(Error::unsupported("counting", "start"))
    }
    async fn resume(&self, _snapshot: handover::SessionSnapshot) -> Result<Session> {
        Err(Error::unsupported("counting", "resume"))
    }
    async fn check(&self) -> Result<handover::CheckReport> {
        Ok(handover::CheckReport::new())
    }
    async fn webhook(&self, request: WebhookRequest) -> WebhookReply {
        self.seen.fetch_add(1, Ordering::SeqCst);
        WebhookReply::text(200, format!("{} bytes", request.body.len()))
    }
}

struct Rig {
    addr: std::net::SocketAddr,
    provider: Arc<Counting>,
    stop: CancellationToken,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn rig(limits: ListenerLimits) -> Rig {
    let provider = Arc::new(Counting {
        info: ProviderInfo::new("counting", "Counting", Capabilities::none()),
        seen: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, router([provider.clone() as Arc<dyn Provider>]), limits, stop.clone()));
    Rig { addr, provider, stop }
}

fn limits(f: impl FnOnce(&mut ListenerLimits)) -> ListenerLimits {
    let mut limits = ListenerLimits::default();
    f(&mut limits);
    limits
}

/// Reads until the peer closes (`true`) or the guard passes (`false`); returns what came.
async fn read_to_close(stream: &mut TcpStream) -> (bool, String) {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(GUARD, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (closed, String::from_utf8_lossy(&got).into_owned())
}

async fn post(addr: std::net::SocketAddr, body: &str) -> u16 {
    let client = handover_transport::reqwest::Client::new();
    let response = tokio::time::timeout(
        GUARD,
        client.post(format!("http://{addr}/webhooks/counting")).body(body.to_owned()).send(),
    )
    .await
    .expect("answered within the guard")
    .unwrap();
    response.status().as_u16()
}

#[tokio::test]
async fn idle_connections_over_the_cap_shed_the_oldest_and_a_delivery_still_lands() {
    let rig = rig(limits(|l| l.max_connections = 50)).await;
    let mut idle = Vec::new();
    for _ in 0..80 {
        idle.push(TcpStream::connect(rig.addr).await.unwrap());
    }
    assert_eq!(post(rig.addr, "{}").await, 200, "a genuine delivery gets through");
    assert_eq!(rig.provider.seen.load(Ordering::SeqCst), 1);
    // The oldest idle connections were closed to make room.
    let (closed, _) = read_to_close(&mut idle[0]).await;
    assert!(closed, "the oldest idle connection was shed");
}

#[tokio::test]
async fn headers_sent_too_slowly_are_cut_at_the_header_timeout() {
    let rig = rig(limits(|l| l.header_timeout = Duration::from_millis(200))).await;
    let mut slow = TcpStream::connect(rig.addr).await.unwrap();
    slow.write_all(b"POST /webhooks/counting HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (closed, _) = read_to_close(&mut slow).await;
    assert!(closed, "the connection was closed");
    assert_eq!(rig.provider.seen.load(Ordering::SeqCst), 0);
    assert_eq!(post(rig.addr, "{}").await, 200);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let rig = rig(limits(|l| l.idle_timeout = Duration::from_millis(200))).await;
    let mut conn = TcpStream::connect(rig.addr).await.unwrap();
    conn.write_all(b"POST /webhooks/counting HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}").await.unwrap();
    let (closed, got) = read_to_close(&mut conn).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(closed, "the kept-alive connection was closed once idle");
}

#[tokio::test]
async fn a_half_sent_body_is_answered_408_at_the_body_timeout() {
    let rig = rig(limits(|l| l.body_timeout = Duration::from_millis(200))).await;
    let mut conn = TcpStream::connect(rig.addr).await.unwrap();
    conn.write_all(b"POST /webhooks/counting HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"half\":")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(GUARD, conn.read(&mut buf)).await.unwrap().unwrap();
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert_eq!(rig.provider.seen.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bodies_held_at_once_are_bounded_over_all_connections() {
    let rig = rig(limits(|l| {
        l.max_body_bytes = 32 * 1024;
        l.max_buffered_bytes = 64 * 1024;
    }))
    .await;
    let half = vec![b'x'; 25_000];
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(rig.addr).await.unwrap();
        conn.write_all(b"POST /webhooks/counting HTTP/1.1\r\nHost: x\r\nContent-Length: 30000\r\n\r\n").await.unwrap();
        conn.write_all(&half).await.unwrap();
        holders.push(conn);
    }
    // Give the listener time to take in what was sent (a guard, not a measurement).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(rig.addr).await.unwrap();
    third.write_all(b"POST /webhooks/counting HTTP/1.1\r\nHost: x\r\nContent-Length: 30000\r\n\r\n").await.unwrap();
    third.write_all(&half).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(GUARD, third.read(&mut buf)).await.unwrap().unwrap();
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.starts_with("HTTP/1.1 503"), "the budget is spent: {got}");
    // The first holder completes: its bytes go back to the budget, and it is delivered.
    holders[0].write_all(&vec![b'y'; 5_000]).await.unwrap();
    let n = tokio::time::timeout(GUARD, holders[0].read(&mut buf)).await.unwrap().unwrap();
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.starts_with("HTTP/1.1 200") && got.contains("30000 bytes"), "{got}");
}

#[tokio::test]
async fn expect_continue_over_the_size_limit_is_refused_before_the_body_is_sent() {
    let rig = rig(ListenerLimits::default()).await;
    let mut conn = TcpStream::connect(rig.addr).await.unwrap();
    conn.write_all(
        b"POST /webhooks/counting HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(GUARD, conn.read(&mut buf)).await.unwrap().unwrap();
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.starts_with("HTTP/1.1 413"), "no 100 Continue, a 413 at once: {got}");
    assert_eq!(rig.provider.seen.load(Ordering::SeqCst), 0);
}
