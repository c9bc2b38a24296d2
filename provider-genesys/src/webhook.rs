//! The webhook endpoint (`protocols/genesys.md` §6): verify the signature, read
//! (`wire`), route to the customer's session, answer at once.
//!
//! A verified delivery for a customer no session has registered yet is kept for it
//! (Genesys does retry 5xx, §6.1, but nothing here depends on it); deliveries of unknown
//! types are acknowledged and dropped.

use std::sync::Arc;

use handover_core::{WebhookReply, WebhookRequest};
use handover_transport::push::{Accepted, PushRouter, Routable};
use handover_transport::signature::{self, Algorithm, Encoding, SignatureError};
use secrecy::{ExposeSecret, SecretString};

use crate::wire::{self, Delivery, Outbound};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Verifies `X-Hub-Signature-256: sha256=<base64 HMAC-SHA256 of the raw body>` in
/// constant time. Hex (GitHub's form) is not Genesys's and is refused.
pub fn verify_signature(secret: &[u8], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let value = signature::strip_prefix(header, "sha256=")?;
    signature::verify(Algorithm::Sha256, Encoding::Base64, secret, body, value)
}

/// The signature Genesys would send for `body` (for emulators and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", signature::sign(Algorithm::Sha256, Encoding::Base64, secret, body))
}

/// The webhook endpoint: the secret deliveries are signed with, and the sessions they go to
/// (by customer id).
pub(crate) struct Ingress {
    pub(crate) secret: SecretString,
    pub(crate) router: Arc<PushRouter<Outbound>>,
}

impl Ingress {
    /// Verifies and reads one request, touching no session: the delivery it carries and
    /// the reply to send once it is kept.
    pub(crate) async fn accept(&self, request: &WebhookRequest) -> Accepted<Outbound> {
        if request.method != "POST" {
            return Accepted::reply(WebhookReply::text(405, "POST only"));
        }
        let signature = request.header(SIGNATURE_HEADER);
        if let Err(error) = verify_signature(self.secret.expose_secret().as_bytes(), signature, &request.body) {
            tracing::warn!(%error, "rejected a webhook");
            return Accepted::reply(WebhookReply::text(401, format!("signature check failed: {error}")));
        }
        let delivery = match wire::parse(&request.body) {
            Ok(delivery) => delivery,
            Err(error) => {
                tracing::warn!(%error, "rejected a malformed webhook");
                return Accepted::reply(WebhookReply::text(400, error.message().to_owned()));
            }
        };
        if let Delivery::Ignore(why) = delivery.interpret() {
            tracing::trace!(why, "webhook needs no session");
            return Accepted::reply(WebhookReply::ok());
        }
        let key = delivery.dedup_key();
        let to = delivery.channel.to.id.clone();
        Accepted::items(WebhookReply::ok(), vec![Routable::new(to, key, delivery, request.body.len())])
    }

    /// Verifies, reads and routes one delivery in this process; answers what Genesys
    /// expects.
    pub(crate) async fn receive(&self, request: WebhookRequest) -> WebhookReply {
        let accepted = self.accept(&request).await;
        self.router.route(accepted).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"it's a secret";
    const BODY: &[u8] = br#"{"id":"m1","channel":{"to":{"id":"c1"}},"type":"Text","text":"Hi"}"#;

    #[test]
    fn signature_vectors() {
        let good = sign(SECRET, BODY);
        assert!(good.starts_with("sha256="));
        assert_eq!(verify_signature(SECRET, Some(&good), BODY), Ok(()));
        assert_eq!(verify_signature(SECRET, None, BODY), Err(SignatureError::Missing));
        assert_eq!(verify_signature(b"other", Some(&good), BODY), Err(SignatureError::Mismatch));
        assert_eq!(verify_signature(SECRET, Some(&good), b"{}"), Err(SignatureError::Mismatch));
        let hex = format!("sha256={}", signature::sign(Algorithm::Sha256, Encoding::Hex, SECRET, BODY));
        assert!(verify_signature(SECRET, Some(&hex), BODY).is_err(), "hex is the wrong encoding");
        let unprefixed = good.trim_start_matches("sha256=");
        assert_eq!(verify_signature(SECRET, Some(unprefixed), BODY), Err(SignatureError::Malformed));
    }
}
