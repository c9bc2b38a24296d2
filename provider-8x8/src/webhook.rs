//! The webhook endpoint (`protocols/8x8.md` §6): verify the signature ([`crate::jws`]), read,
//! route.
//!
//! Deliveries are deduplicated on `x-8x8-event-id`, which the signature covers. A verified
//! delivery for a conversation no session has registered yet is kept for it; deliveries
//! naming no conversation, and unknown events, are acknowledged and dropped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use handover_core::{WebhookReply, WebhookRequest};
use handover_transport::push::{Accepted, PushRouter, Routable};

use crate::client::Client;
use crate::jws::{self, DetachedJws, JwsError, KeyCache};
use crate::wire::{self, Delivery, Item};

/// The webhook endpoint: the signing keys, the replay window, and the sessions deliveries
/// go to.
pub(crate) struct Ingress {
    pub(crate) keys: KeyCache,
    pub(crate) client: Arc<Client>,
    pub(crate) window: Duration,
    pub(crate) router: Arc<PushRouter<Item>>,
}

impl Ingress {
    /// §6.3: the detached JWS over the body's CRC32 and the delivery headers.
    async fn verify(&self, request: &WebhookRequest) -> Result<(), JwsError> {
        let signature = DetachedJws::parse(request.header(jws::SIGNATURE_HEADER))?;
        let payload = jws::signed_payload(&request.body, |name| request.header(name))?;
        let key = self.keys.get(&signature.kid, &self.client).await?;
        signature.verify(&payload, &key)?;
        // Checked after the signature, so a forged time cannot pass.
        jws::check_transmission_time(request.header("x-8x8-transmission-time"), self.window, SystemTime::now())
    }

    /// Verifies and reads one request, touching no session: the deliveries it carries and
    /// the reply to send once they are kept.
    pub(crate) async fn accept(&self, request: &WebhookRequest) -> Accepted<Item> {
        if request.method != "POST" {
            return Accepted::reply(WebhookReply::text(405, "POST only"));
        }
        if let Err(error) = self.verify(request).await {
            tracing::warn!(%error, "rejected a webhook");
            return Accepted::reply(WebhookReply::text(
                error.status(),
                format!("webhook signature check failed: {error}"),
            ));
        }
        let parsed = match wire::parse(&request.body) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::warn!(%error, "rejected a malformed webhook");
                return Accepted::reply(WebhookReply::text(400, error.message().to_owned()));
            }
        };
        let (Some(conversation), event_id) = (parsed.conversation, request.header("x-8x8-event-id")) else {
            tracing::trace!("a delivery naming no conversation; nothing to do");
            return Accepted::reply(WebhookReply::ok());
        };
        if let Delivery::Ignore(why) = parsed.delivery {
            tracing::trace!(why, "webhook needs no session");
            return Accepted::reply(WebhookReply::ok());
        }
        // The signature covers the event id, so it is present here.
        let event_id = event_id.unwrap_or_default().to_owned();
        let item = Item { event_id: event_id.clone(), delivery: parsed.delivery };
        Accepted::items(WebhookReply::ok(), vec![Routable::new(conversation, event_id, item, request.body.len())])
    }

    /// Verifies, reads and routes one delivery in this process; answers what the Gateway
    /// expects.
    pub(crate) async fn receive(&self, request: WebhookRequest) -> WebhookReply {
        let accepted = self.accept(&request).await;
        self.router.route(accepted).await
    }
}
