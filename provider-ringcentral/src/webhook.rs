//! What Engage sends to the connector (`protocols/ringcentral-engage.md` §3, §7): Source
//! SDK callbacks signed with HMAC-SHA512, and REST webhook events with `X-Dimelo-Secret`.

use std::time::Duration;

use handover_core::{Agent, Error, Result, WebhookReply, WebhookRequest};
use handover_transport::signature::{self, Algorithm, Encoding, SignatureError};
use serde_json::{Value, json};

use crate::NAME;

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
/// messages created by agents, a chat-style agent view, queue updates.
pub fn implementation_info() -> Value {
    json!({
        "objects": {
            "messages": ["create", "show", "list"],
            "threads": ["show", "list"],
        },
        "options": ["view.messaging", "messages.text", "messaging.queuing_update"],
    })
}

/// A Source SDK callback.
#[derive(Clone, Debug, PartialEq)]
pub enum Callback {
    /// `implementation.info`.
    ImplementationInfo,
    /// `*.list`: a realtime-only connector answers `[]`.
    List,
    /// `*.show`: a realtime-only connector answers `{}`.
    Show,
    /// `messages.create` / `private_messages.create`: an agent replied.
    AgentReply {
        /// Engage's content id: the idempotency key of retries.
        content_id: String,
        /// Our thread id (absent for unthreaded or private messages).
        thread_id: Option<String>,
        /// Our id of the message answered.
        in_reply_to_id: Option<String>,
        /// The text, attachments as `[attachment] name url` lines.
        text: String,
        /// `sender_name` (the human agent) and `author_id` (the identity used).
        agent: Agent,
    },
    /// `messaging.queuing_update`.
    QueuingUpdate {
        /// Our thread id.
        thread_id: Option<String>,
        /// Our id of the message the update concerns.
        in_reply_to_id: Option<String>,
        /// `position`.
        position: Option<u32>,
        /// `estimated_wait_time`, given in seconds.
        wait: Option<Duration>,
    },
    /// Anything else (answered `422 Invalid action`).
    Unknown(String),
}

fn text_param(params: &Value, key: &str) -> Option<String> {
    match &params[key] {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number_param(params: &Value, key: &str) -> Option<u64> {
    params[key].as_u64().or_else(|| params[key].as_str().and_then(|s| s.trim().parse().ok()))
}

/// Checks the signed `time` of a callback against `now`: outside `window` it is a replay.
/// A callback without `time` passes (the envelope always has one; older integrations may
/// not).
pub fn check_time(body: &[u8], window: Duration, now: std::time::SystemTime) -> Result<(), SignatureError> {
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

/// Reads a callback body (already verified).
pub fn parse_callback(body: &[u8]) -> Result<Callback> {
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        Error::protocol(
            NAME,
            "read callback",
            format!("the body is not a Source SDK request: {}", handover_transport::log::sanitize(&e.to_string())),
        )
    })?;
    let Some(action) = json["action"].as_str() else {
        return Err(Error::protocol(NAME, "read callback", "the request has no action"));
    };
    let params = &json["params"];
    Ok(match action {
        "implementation.info" => Callback::ImplementationInfo,
        "messages.list" | "threads.list" | "private_messages.list" => Callback::List,
        "messages.show" | "threads.show" | "private_messages.show" => Callback::Show,
        "messages.create" | "private_messages.create" => {
            let Some(content_id) = text_param(params, "content_id") else {
                return Err(Error::protocol(NAME, "read callback", format!("`{action}` without content_id")));
            };
            let mut lines: Vec<String> =
                params["body"].as_str().filter(|b| !b.trim().is_empty()).map(str::to_owned).into_iter().collect();
            for attachment in params["attachments"].as_array().into_iter().flatten() {
                let parts: Vec<&str> = [attachment["filename"].as_str(), attachment["url"].as_str()]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .collect();
                if !parts.is_empty() {
                    lines.push(format!("[attachment] {}", parts.join(" ")));
                }
            }
            let mut agent = Agent::unknown();
            agent.name = text_param(params, "sender_name");
            agent.id = text_param(params, "author_id");
            Callback::AgentReply {
                content_id,
                thread_id: text_param(params, "thread_id"),
                in_reply_to_id: text_param(params, "in_reply_to_id"),
                text: lines.join("\n"),
                agent,
            }
        }
        "messaging.queuing_update" => Callback::QueuingUpdate {
            thread_id: text_param(params, "thread_id"),
            in_reply_to_id: text_param(params, "in_reply_to_id"),
            position: number_param(params, "position").and_then(|p| u32::try_from(p).ok()),
            wait: number_param(params, "estimated_wait_time").map(Duration::from_secs),
        },
        other => Callback::Unknown(other.to_owned()),
    })
}

/// What a REST webhook event means for the handover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The intervention was opened, assigned, reassigned, reopened or reactivated.
    InterventionOpen,
    /// The agent closed the intervention: the end (§8).
    InterventionClosed,
    /// The agent canceled the intervention before replying.
    InterventionCanceled,
    /// Anything else.
    Other,
}

/// One event of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngageEvent {
    /// The event id (stable across resends).
    pub id: String,
    /// `type`, e.g. `intervention.closed`.
    pub event_type: String,
    /// What it means.
    pub kind: EventKind,
    /// `resource.id` (the intervention id for intervention events).
    pub resource_id: Option<String>,
    /// `resource.metadata.source_id`.
    pub source_id: Option<String>,
    /// `resource.metadata.thread_id`: Engage's thread id.
    pub thread_id: Option<String>,
}

/// A REST webhook delivery: `{id, domain_id, events: [...]}`.
pub fn parse_events(body: &[u8]) -> Result<Vec<EngageEvent>> {
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        Error::protocol(
            NAME,
            "read webhook",
            format!("the body is not an Engage webhook: {}", handover_transport::log::sanitize(&e.to_string())),
        )
    })?;
    let Some(events) = json["events"].as_array() else {
        return Err(Error::protocol(NAME, "read webhook", "the delivery has no events list"));
    };
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let Some(id) = text_param(event, "id") else {
            return Err(Error::protocol(NAME, "read webhook", "an event has no id"));
        };
        let event_type = event["type"].as_str().unwrap_or_default().to_owned();
        let kind = match event_type.as_str() {
            "intervention.opened"
            | "intervention.assigned"
            | "intervention.user_updated"
            | "intervention.reopened"
            | "intervention.reactivated" => EventKind::InterventionOpen,
            "intervention.closed" => EventKind::InterventionClosed,
            "intervention.canceled" => EventKind::InterventionCanceled,
            _ => EventKind::Other,
        };
        let resource = &event["resource"];
        let metadata = &resource["metadata"];
        out.push(EngageEvent {
            id,
            event_type,
            kind,
            resource_id: text_param(resource, "id"),
            source_id: text_param(metadata, "source_id"),
            thread_id: text_param(metadata, "thread_id"),
        });
    }
    Ok(out)
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
