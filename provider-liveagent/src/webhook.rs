//! The webhook endpoint (`protocols/liveagent-chatwoot.md` §5): verify, read, route.
//!
//! A verified delivery is acknowledged once a session has it or it is kept for one (the
//! desk sends each webhook once and never retries, §5.4); unknown events and deliveries
//! naming no conversation are acknowledged and dropped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use handover_core::{Result, WebhookReply, WebhookRequest};
use handover_transport::push::{Accepted, PushRouter, Routable};
use handover_transport::signature::{self, Algorithm, Encoding, SignatureError};
use secrecy::{ExposeSecret, SecretString};

use crate::wire::{self, Delivery, Item};

/// How deliveries are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// Chatwoot's signature: `sha256=` + hex HMAC-SHA256 of `"{timestamp}.{body}"`.
    Signature {
        /// The webhook secret.
        secret: SecretString,
        /// How old a delivery may be.
        window: Duration,
    },
    /// A shared token in the URL's `token` query parameter.
    Token(SecretString),
    /// Nothing (explicitly allowed in the config).
    Unsigned,
}

/// Checks a delivery against `auth` at time `now`.
pub fn verify(auth: &Auth, request: &WebhookRequest, now: SystemTime) -> Result<(), SignatureError> {
    match auth {
        Auth::Signature { secret, window } => {
            let timestamp = request.header("x-chatwoot-timestamp").ok_or(SignatureError::Missing)?;
            let provided = signature::strip_prefix(request.header("x-chatwoot-signature"), "sha256=")?;
            let mut signed = Vec::with_capacity(timestamp.len() + 1 + request.body.len());
            signed.extend_from_slice(timestamp.as_bytes());
            signed.push(b'.');
            signed.extend_from_slice(&request.body);
            signature::verify(Algorithm::Sha256, Encoding::Hex, secret.expose_secret().as_bytes(), &signed, provided)?;
            // Checked after the signature, so a forged timestamp cannot pass.
            signature::check_timestamp(timestamp, *window, now)
        }
        Auth::Token(token) => {
            let provided = request.query_param("token").ok_or(SignatureError::Missing)?;
            if signature::secret_eq(token.expose_secret().as_bytes(), provided.as_bytes()) {
                Ok(())
            } else {
                Err(SignatureError::Mismatch)
            }
        }
        Auth::Unsigned => Ok(()),
    }
}

/// The signature Chatwoot sends (for emulators and tests).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut signed = timestamp.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(body);
    format!("sha256={}", signature::sign(Algorithm::Sha256, Encoding::Hex, secret, &signed))
}

/// The webhook endpoint: how deliveries are authenticated, and the sessions they go to.
pub(crate) struct Ingress {
    pub(crate) auth: Auth,
    pub(crate) router: Arc<PushRouter<Item>>,
}

impl Ingress {
    /// Verifies and reads one request, touching no session: the deliveries it carries
    /// and the reply to send once they are kept.
    pub(crate) fn accept(&self, request: &WebhookRequest) -> Accepted<Item> {
        if request.method != "POST" {
            return Accepted::reply(WebhookReply::text(405, "POST only"));
        }
        if let Err(error) = verify(&self.auth, request, SystemTime::now()) {
            tracing::warn!(%error, "rejected a webhook");
            return Accepted::reply(WebhookReply::text(401, format!("webhook authentication failed: {error}")));
        }
        let parsed = match wire::parse(&request.body) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::warn!(%error, "rejected a malformed webhook");
                return Accepted::reply(WebhookReply::text(400, error.message().to_owned()));
            }
        };
        let Some(conversation) = parsed.conversation else {
            tracing::trace!("a delivery naming no conversation; nothing to do");
            return Accepted::reply(WebhookReply::ok());
        };
        if let Delivery::Ignore(why) = parsed.delivery {
            tracing::trace!(why, "webhook needs no session");
            return Accepted::reply(WebhookReply::ok());
        }
        let item = Item { key: parsed.dedup_key.clone(), delivery: parsed.delivery };
        let routable = Routable::new(conversation.to_string(), parsed.dedup_key, item, request.body.len());
        Accepted::items(WebhookReply::ok(), vec![routable])
    }

    /// Verifies, reads and routes one delivery in this process; answers what the desk
    /// expects.
    pub(crate) async fn receive(&self, request: WebhookRequest) -> WebhookReply {
        self.router.route(self.accept(&request)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn chatwoot_signatures_cover_timestamp_and_body_and_expire() {
        let auth = Auth::Signature { secret: SecretString::from("whsec"), window: Duration::from_secs(300) };
        let body = br#"{"event":"message_created"}"#;
        let good = sign(b"whsec", "1700000000", body);
        let request = |ts: &str, sig: &str| {
            WebhookRequest::post(body.to_vec())
                .with_header("X-Chatwoot-Timestamp", ts)
                .with_header("X-Chatwoot-Signature", sig)
        };
        assert_eq!(verify(&auth, &request("1700000000", &good), now()), Ok(()));
        assert_eq!(
            verify(&auth, &request("1700000001", &good), now()),
            Err(SignatureError::Mismatch),
            "the timestamp is signed"
        );
        let old = sign(b"whsec", "1699999000", body);
        assert_eq!(verify(&auth, &request("1699999000", &old), now()), Err(SignatureError::Stale { window_secs: 300 }));
        assert_eq!(verify(&auth, &WebhookRequest::post(body.to_vec()), now()), Err(SignatureError::Missing));
        let unprefixed = good.trim_start_matches("sha256=");
        assert_eq!(verify(&auth, &request("1700000000", unprefixed), now()), Err(SignatureError::Malformed));
    }

    #[test]
    fn tokens_are_compared_in_full() {
        let auth = Auth::Token(SecretString::from("s3cret"));
        let with = |q: &str| WebhookRequest::post(b"{}".to_vec()).with_query(q);
        assert_eq!(verify(&auth, &with("token=s3cret"), now()), Ok(()));
        assert_eq!(verify(&auth, &with("token=s3cre"), now()), Err(SignatureError::Mismatch));
        assert_eq!(verify(&auth, &with("other=1"), now()), Err(SignatureError::Missing));
    }
}
