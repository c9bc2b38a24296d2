//! The webhook endpoint (`protocols/ringcentral-engage.md` §1, §3, §7): one URL for all of
//! Engage. Source SDK callbacks are signed with HMAC-SHA512 under the source token and
//! answered signed; REST webhook events carry `X-Dimelo-Secret`; a `GET` is the webhook's
//! `hub.*` validation. Verify, read (`wire`), route.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use handover_core::{ErrorKind, WebhookReply, WebhookRequest};
use handover_transport::push::{Accepted, PushRouter, Routable};
use handover_transport::session::lock;
use handover_transport::signature::{self, Algorithm, Encoding, SignatureError};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::client::Client;
use crate::config::RingCentralConfig;
use crate::wire::{self, Callback, Delivery, EventKind, Item};

/// The header carrying Source SDK signatures, both ways.
pub const SIGNATURE_HEADER: &str = "x-smccsdk-signature";

/// The lower-case hex HMAC-SHA512 of `body` under the source token.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    signature::sign(Algorithm::Sha512, Encoding::Hex, key, body)
}

/// Checks a callback's signature: the `X-SMCCSDK-SIGNATURE` header, or the `signature`
/// query parameter when a proxy strips headers. Raw bytes, constant time.
pub fn verify(key: &[u8], request: &WebhookRequest) -> Result<(), SignatureError> {
    let provided = request.header(SIGNATURE_HEADER).or_else(|| request.query_param("signature"));
    signature::verify(Algorithm::Sha512, Encoding::Hex, key, &request.body, provided)
}

/// A JSON answer with its own signature over the exact bytes sent (§9.2).
pub fn signed_reply(key: &[u8], status: u16, body: &Value) -> WebhookReply {
    let reply = WebhookReply::json(status, body);
    let signature = sign(key, &reply.body);
    reply.with_header(SIGNATURE_HEADER, signature)
}

/// What the connector supports, answered to `implementation.info` (§3.2): threaded text
/// messages created by agents, with files (`messages.attachments`: agents may attach
/// them), a chat-style agent view, queue updates.
pub fn implementation_info() -> Value {
    json!({
        "objects": {
            "messages": ["create", "show", "list"],
            "threads": ["show", "list"],
        },
        "options": ["view.messaging", "messages.text", "messages.attachments", "messaging.queuing_update"],
    })
}

/// Checks the signed `time` of a callback against `now`: outside `window` it is a replay.
/// A callback without `time` passes (the envelope always has one; older integrations may
/// not).
pub fn check_time(body: &[u8], window: Duration, now: SystemTime) -> Result<(), SignatureError> {
    let Ok(json) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
    let Some(time) = json["time"].as_str() else { return Ok(()) };
    let sent = handover_transport::time::parse_iso8601_millis(time).ok_or(SignatureError::Malformed)?;
    let now =
        u64::try_from(now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX);
    if now.abs_diff(sent) > u64::try_from(window.as_millis()).unwrap_or(u64::MAX) {
        return Err(SignatureError::Stale { window_secs: window.as_secs() });
    }
    Ok(())
}

/// The webhook endpoint: the config (keys, secrets, source), the client (to map Engage's
/// thread ids), and the sessions deliveries go to.
pub(crate) struct Ingress {
    pub(crate) config: Arc<RingCentralConfig>,
    pub(crate) client: Arc<Client>,
    pub(crate) router: Arc<PushRouter<Item>>,
    /// Engage thread id → our thread id, for webhook events (which carry Engage's id).
    pub(crate) threads: Mutex<HashMap<String, String>>,
}

impl Ingress {
    /// Maps Engage's thread id `engage` to our `thread`, for the events that name it.
    pub(crate) fn remember_thread(&self, engage: String, thread: String) {
        lock(&self.threads).insert(engage, thread);
    }

    fn key(&self) -> &[u8] {
        self.config.source_token.expose_secret().as_bytes()
    }

    /// Source SDK callbacks (signed), REST webhook events (`X-Dimelo-Secret`) and the
    /// webhook's `hub.*` validation (`GET`), routed in this process.
    pub(crate) async fn receive(&self, request: WebhookRequest) -> WebhookReply {
        let accepted = self.accept(&request).await;
        self.router.route(accepted).await
    }

    /// Verifies and reads one request, touching no session: the deliveries it carries and
    /// the (signed, for callbacks) reply to send once they are kept.
    pub(crate) async fn accept(&self, request: &WebhookRequest) -> Accepted<Item> {
        match request.method.as_str() {
            "GET" => return Accepted::reply(self.validate(request)),
            "POST" => {}
            _ => return Accepted::reply(WebhookReply::text(405, "GET (validation) or POST only")),
        }
        if request.header(SIGNATURE_HEADER).is_some() || request.query_param("signature").is_some() {
            let busy = signed_reply(self.key(), 503, &json!({ "error": "busy; retry" }));
            return self.callback(request).await.with_busy(busy);
        }
        match serde_json::from_slice::<Value>(&request.body) {
            Ok(json) if json.get("action").is_some() => {
                tracing::warn!("rejected an unsigned callback");
                Accepted::reply(signed_reply(self.key(), 422, &json!({ "error": "Invalid signature" })))
            }
            Ok(json) if json.get("events").is_some() => self.events(request).await,
            _ => {
                Accepted::reply(WebhookReply::text(400, "neither a Source SDK callback nor an Engage webhook delivery"))
            }
        }
    }

    /// §3: a Source SDK callback.
    async fn callback(&self, request: &WebhookRequest) -> Accepted<Item> {
        if let Err(error) = verify(self.key(), request) {
            tracing::warn!(%error, "rejected a callback");
            return Accepted::reply(signed_reply(self.key(), 422, &json!({ "error": "Invalid signature" })));
        }
        let callback = match wire::parse_callback(&request.body) {
            Ok(callback) => callback,
            Err(error) => {
                tracing::warn!(%error, "rejected a malformed callback");
                return Accepted::reply(signed_reply(self.key(), 400, &json!({ "error": error.message() })));
            }
        };
        // Replies and queue updates change things: a replay of an old one is refused.
        if matches!(callback, Callback::AgentReply { .. } | Callback::QueuingUpdate { .. }) {
            let window = Duration::from_secs(self.config.webhook_replay_window_secs);
            if let Err(error) = check_time(&request.body, window, SystemTime::now()) {
                tracing::warn!(%error, "rejected a replayed callback");
                return Accepted::reply(signed_reply(
                    self.key(),
                    422,
                    &json!({ "error": format!("Invalid request: {error}") }),
                ));
            }
        }
        match callback {
            Callback::ImplementationInfo => Accepted::reply(signed_reply(self.key(), 200, &implementation_info())),
            Callback::List => Accepted::reply(signed_reply(self.key(), 200, &json!([]))),
            Callback::Show => Accepted::reply(signed_reply(self.key(), 200, &json!({}))),
            Callback::AgentReply { content_id, thread_id, in_reply_to_id, text, agent, attachments } => {
                // §9.4: retries carry the same content id and get the same id back.
                let id = format!("agent-{content_id}");
                let Some(thread) = wire::thread_of(thread_id, in_reply_to_id) else {
                    return Accepted::reply(signed_reply(
                        self.key(),
                        422,
                        &json!({ "error": { "fatal": true, "message": "no thread" } }),
                    ));
                };
                let key = format!("sdk:{content_id}");
                let delivery = Delivery::AgentReply { content_id, text, agent, attachments };
                let item = Item { key: key.clone(), delivery };
                let reply = signed_reply(self.key(), 200, &json!({ "id": id }));
                Accepted::items(reply, vec![Routable::new(thread, key, item, request.body.len())])
            }
            Callback::QueuingUpdate { thread_id, in_reply_to_id, position, wait } => {
                let Some(thread) = wire::thread_of(thread_id, in_reply_to_id) else {
                    return Accepted::reply(signed_reply(self.key(), 200, &json!({})));
                };
                // Each update has its own `time`, so its signed body tells a resend from news.
                let key = format!("queue:{}", handover_transport::ids::content_key(&request.body));
                let item = Item { key: key.clone(), delivery: Delivery::Queued { position, wait } };
                let reply = signed_reply(self.key(), 200, &json!({}));
                Accepted::items(reply, vec![Routable::new(thread, key, item, request.body.len())])
            }
            Callback::Unknown(action) => {
                // Verified, but nothing we advertised: a refusal would only be retried.
                tracing::trace!(action = %handover_transport::log::Untrusted(&action), "an action we do not implement");
                Accepted::reply(signed_reply(self.key(), 200, &json!({})))
            }
        }
    }

    fn secret_ok(&self, request: &WebhookRequest) -> bool {
        match &self.config.webhook_secret {
            Some(secret) => request
                .header("x-dimelo-secret")
                .is_some_and(|given| signature::secret_eq(secret.expose_secret().as_bytes(), given.as_bytes())),
            None => self.config.allow_unsigned_webhooks,
        }
    }

    /// §7.1: `GET ?hub.mode=subscribe&hub.challenge=…&hub.verify_token=…`.
    fn validate(&self, request: &WebhookRequest) -> WebhookReply {
        let token_ok = match (&self.config.webhook_verify_token, request.query_param("hub.verify_token")) {
            (Some(expected), Some(given)) => {
                signature::secret_eq(expected.expose_secret().as_bytes(), given.as_bytes())
            }
            _ => false,
        };
        match (request.query_param("hub.mode"), request.query_param("hub.challenge")) {
            (Some("subscribe"), Some(challenge)) if token_ok && self.secret_ok(request) => {
                WebhookReply::text(200, challenge)
            }
            _ => WebhookReply::text(403, "webhook validation failed: check `webhook_verify_token`"),
        }
    }

    /// §7.2: REST webhook events.
    async fn events(&self, request: &WebhookRequest) -> Accepted<Item> {
        if !self.secret_ok(request) {
            tracing::warn!("rejected a webhook without the right X-Dimelo-Secret");
            return Accepted::reply(WebhookReply::text(401, "X-Dimelo-Secret is missing or wrong"));
        }
        let events = match wire::parse_events(&request.body) {
            Ok(events) => events,
            Err(error) => return Accepted::reply(WebhookReply::text(400, error.message().to_owned())),
        };
        let mut redeliver = false;
        let mut items = Vec::new();
        for event in events {
            if event.source_id.as_deref().is_some_and(|s| s != self.config.source_id) {
                continue;
            }
            let delivery = match event.kind {
                EventKind::InterventionOpen => Delivery::InterventionOpen(event.resource_id.clone()),
                EventKind::InterventionClosed => Delivery::InterventionClosed,
                EventKind::InterventionCanceled => Delivery::InterventionCanceled,
                EventKind::Other => continue,
            };
            let Some(engage) = event.thread_id.as_deref() else { continue };
            let known = lock(&self.threads).get(engage).cloned();
            let thread = match known {
                Some(thread) => thread,
                None => match self.client.thread_foreign_id(engage).await {
                    Ok(Some(thread)) => thread,
                    Ok(None) => continue,
                    Err(error) if error.kind() == ErrorKind::SessionNotFound => continue,
                    Err(error) => {
                        tracing::warn!(%error, "could not map an event's thread; asking for a redelivery");
                        redeliver = true;
                        continue;
                    }
                },
            };
            let key = format!("event:{}", event.id);
            let item = Item { key: key.clone(), delivery };
            items.push(Routable::new(thread, key, item, request.body.len()));
        }
        // Those mapped are kept (a redelivery repeats them; their ids drop the repeats).
        let reply = if redeliver { WebhookReply::text(503, "redeliver later") } else { WebhookReply::ok() };
        Accepted::items(reply, items).with_busy(WebhookReply::text(503, "redeliver later"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §3.1: the documented example, verified by computation.
    #[test]
    fn the_documented_signature_vector() {
        let key = b"3YJZzqMJ5Ec7i2JGvnt8TgvleD7dtpwpmag4S6MuRA2GQdfvV4STIsxDRJ4fEjO8";
        let body = br#"{"action":"implementation.info","time":"2012-10-01T17:18:40Z"}"#;
        assert_eq!(
            sign(key, body),
            "826b61e7939505b2e773ef43a2aad53ec0385dd9d783fbd1c8fea00d0e2a3e2fb0ae0a5b2eb342356b61c41b5f19baec4c1f7e7e37a5b486fe9b593942017ff9"
        );
        let request = WebhookRequest::post(body.to_vec()).with_header("X-SMCCSDK-SIGNATURE", sign(key, body));
        assert_eq!(verify(key, &request), Ok(()));
        let upper =
            WebhookRequest::post(body.to_vec()).with_header("X-SMCCSDK-SIGNATURE", sign(key, body).to_uppercase());
        assert_eq!(verify(key, &upper), Ok(()), "hex in either case");
        let by_query = WebhookRequest::post(body.to_vec()).with_query(format!("signature={}", sign(key, body)));
        assert_eq!(verify(key, &by_query), Ok(()));
        let pretty = br#"{ "action": "implementation.info", "time": "2012-10-01T17:18:40Z" }"#;
        let reformatted = WebhookRequest::post(pretty.to_vec()).with_header("X-SMCCSDK-SIGNATURE", sign(key, body));
        assert_eq!(verify(key, &reformatted), Err(SignatureError::Mismatch), "raw bytes, never re-serialized");
        assert_eq!(verify(key, &WebhookRequest::post(body.to_vec())), Err(SignatureError::Missing));
    }

    #[test]
    fn callbacks_outside_the_window_are_replays() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let window = Duration::from_secs(600);
        let at = |time: &str| format!(r#"{{"action":"messages.create","time":"{time}"}}"#).into_bytes();
        assert_eq!(check_time(&at("2023-11-14T22:13:20Z"), window, now), Ok(()));
        assert_eq!(check_time(&at("2023-11-14T22:05:00Z"), window, now), Ok(()));
        assert_eq!(
            check_time(&at("2023-11-14T21:00:00Z"), window, now),
            Err(SignatureError::Stale { window_secs: 600 })
        );
        assert_eq!(check_time(&at("yesterday"), window, now), Err(SignatureError::Malformed));
        assert_eq!(check_time(br#"{"action":"messages.create"}"#, window, now), Ok(()));
    }

    #[test]
    fn replies_are_signed_over_their_exact_bytes() {
        let reply = signed_reply(b"k", 200, &json!([]));
        assert_eq!(reply.body, b"[]");
        let header = reply.headers.iter().find(|(k, _)| k == SIGNATURE_HEADER).map(|(_, v)| v.clone());
        assert_eq!(header, Some(sign(b"k", b"[]")));
    }
}
