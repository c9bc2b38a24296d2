//! Delivering webhooks to the connector under test: retries like the real services, and
//! the duplicate, reorder and bad-signature faults.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::model::Hub;

/// Checks a 2xx answer's headers and body (RingCentral Engage requires signed answers); a
/// failed check counts as a failed delivery.
pub(crate) type ReplyCheck = Arc<dyn Fn(&reqwest::header::HeaderMap, &[u8]) -> bool + Send + Sync>;

/// One delivery: body and headers (signing happens in the protocol module).
#[derive(Clone)]
pub(crate) struct Delivery {
    /// The conversation it is about (for [`Hub::wait_delivered`]).
    pub(crate) conversation: String,
    pub(crate) body: Vec<u8>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) check_reply: Option<ReplyCheck>,
}

impl Delivery {
    /// A delivery about `conversation` whose answer needs no check.
    pub(crate) fn new(conversation: &str, body: Vec<u8>, headers: Vec<(String, String)>) -> Self {
        Self { conversation: conversation.to_owned(), body, headers, check_reply: None }
    }
}

/// Posts deliveries to `url` in order, one at a time, retrying `429`, `5xx` and transport
/// failures up to `retries` times with `pause` between tries.
pub(crate) fn spawn(hub: Arc<Hub>, url: String, retries: u32, pause: Duration) -> mpsc::UnboundedSender<Delivery> {
    hub.set_pushes();
    let (tx, mut rx) = mpsc::unbounded_channel::<Delivery>();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    tokio::spawn(async move {
        while let Some(delivery) = rx.recv().await {
            let batch = if hub.faults.reorder_deliveries() {
                // Hold this one and send the next first, if another follows soon.
                match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                    Ok(Some(next)) => vec![next, delivery],
                    _ => vec![delivery],
                }
            } else {
                vec![delivery]
            };
            for delivery in batch {
                let copies = if hub.faults.duplicate_deliveries() { 2 } else { 1 };
                for _ in 0..copies {
                    post(&client, &url, &delivery, retries, pause).await;
                }
                hub.delivery_done(&delivery.conversation);
            }
        }
    });
    tx
}

async fn post(client: &reqwest::Client, url: &str, delivery: &Delivery, retries: u32, pause: Duration) {
    for attempt in 0..=retries {
        let mut request = client.post(url).body(delivery.body.clone());
        for (name, value) in &delivery.headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                let Some(check) = &delivery.check_reply else { return };
                let headers = response.headers().clone();
                let body = response.bytes().await.unwrap_or_default();
                if check(&headers, &body) {
                    return;
                }
                tracing::warn!(attempt, "the webhook answer failed its check (unsigned?); retrying");
            }
            Ok(response) if response.status().as_u16() != 429 && !response.status().is_server_error() => {
                tracing::debug!(status = %response.status(), "webhook refused; not retried");
                return;
            }
            Ok(response) => tracing::debug!(status = %response.status(), attempt, "webhook failed; retrying"),
            Err(error) => tracing::debug!(error = %error.without_url(), attempt, "webhook failed; retrying"),
        }
        tokio::time::sleep(pause).await;
    }
}
