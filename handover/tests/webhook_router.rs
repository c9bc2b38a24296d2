//! The webhook router refuses oversized bodies before any provider parses them, and hands
//! everything else over untouched.

#![cfg(feature = "webhook-router")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use handover::webhook::{MAX_BODY_BYTES, router};
use handover::{
    Capabilities, Error, HandoverRequest, Provider, ProviderInfo, Result, Session, WebhookReply, WebhookRequest,
    async_trait,
};

struct Counting {
    info: ProviderInfo,
    seen: AtomicUsize,
    last_len: AtomicUsize,
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
        self.last_len.store(request.body.len(), Ordering::SeqCst);
        WebhookReply::text(200, request.query.unwrap_or_default())
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_the_provider_sees_them() {
    let provider = Arc::new(Counting {
        info: ProviderInfo::new("counting", "Counting", Capabilities::none()),
        seen: AtomicUsize::new(0),
        last_len: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router([provider.clone() as Arc<dyn Provider>]);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = handover_transport::reqwest::Client::new();
    let url = format!("http://{addr}/webhooks/counting");

    let too_big = client.post(&url).body(vec![b'x'; MAX_BODY_BYTES + 1]).send().await.unwrap();
    assert_eq!(too_big.status().as_u16(), 413);
    assert_eq!(provider.seen.load(Ordering::SeqCst), 0, "the provider never saw it");

    let fits = client.post(format!("{url}?hub.challenge=c")).body(vec![b'x'; 1024]).send().await.unwrap();
    assert_eq!(fits.status().as_u16(), 200);
    assert_eq!(fits.text().await.unwrap(), "hub.challenge=c", "the raw query reaches the provider");
    assert_eq!(provider.last_len.load(Ordering::SeqCst), 1024);

    let unknown = client.post(format!("http://{addr}/webhooks/nobody")).body("{}").send().await.unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    server.abort();
}
