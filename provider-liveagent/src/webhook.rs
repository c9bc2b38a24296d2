//! Webhook deliveries (`protocols/liveagent-chatwoot.md` §5): verification and reading.

use std::time::{Duration, SystemTime};

use handover_core::{Agent, Error, Result, WebhookRequest};
use handover_transport::signature::{self, Algorithm, Encoding, SignatureError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::NAME;

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

/// What a delivery means.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// A human agent wrote to the user.
    AgentMessage {
        /// The message id.
        id: u64,
        /// Text (attachments as `[attachment] url` lines).
        text: String,
        /// The agent.
        agent: Agent,
    },
    /// An agent was assigned (or another agent took over).
    Assigned(Agent),
    /// The assignee was removed: back to the queue.
    Unassigned,
    /// The conversation was resolved (or abandoned).
    Resolved {
        /// `resolved`, `abandoned`, …
        status: String,
    },
    /// The agent typed.
    Typing(bool),
    /// Nothing for the user (incoming echoes, private notes, bots, other events).
    Ignore(&'static str),
}

/// A parsed delivery: the conversation it concerns, a dedup key and its meaning.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// The conversation id (the display id used in API paths); `None` when the delivery
    /// names no conversation (nothing a session waits for).
    pub conversation: Option<u64>,
    /// Key to drop repeats on, from what the signature covers: `message:<id>` for a message,
    /// else a digest of the body. Never the `X-Chatwoot-Delivery` header, which is not
    /// signed: a replay with a new header must not pass as new.
    pub dedup_key: String,
    /// What it means.
    pub delivery: Delivery,
}

fn agent_of(user: &Value) -> Agent {
    let mut agent = Agent::unknown();
    agent.name = user["available_name"].as_str().or_else(|| user["name"].as_str()).map(str::to_owned);
    agent.id = user["id"].as_u64().map(|id| id.to_string());
    agent
}

/// Reads a delivery's body.
pub fn parse(body: &[u8]) -> Result<Parsed> {
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        Error::protocol(
            NAME,
            "read webhook",
            format!("the body is not a webhook payload: {}", handover_transport::log::sanitize(&e.to_string())),
        )
    })?;
    if !json.is_object() {
        return Err(Error::protocol(NAME, "read webhook", "the body is not a JSON object"));
    }
    let event = json["event"].as_str().unwrap_or_default();
    let conversation = json["conversation"]["id"]
        .as_u64()
        .or_else(|| if event.starts_with("conversation_") { json["id"].as_u64() } else { None });
    let delivery = match event {
        "message_created" => message(&json),
        "conversation_status_changed" => status(json["status"].as_str()),
        "conversation_updated" => conversation_updated(&json),
        "conversation_typing_on" | "conversation_typing_off" => {
            if json["user"]["type"].as_str().is_some_and(|t| t != "user") || json["is_private"] == true {
                Delivery::Ignore("typing of someone else")
            } else {
                Delivery::Typing(event == "conversation_typing_on")
            }
        }
        "conversation_resolved" => status(Some("resolved")),
        _ => Delivery::Ignore("event not used by the handover"),
    };
    let dedup_key = match &delivery {
        Delivery::AgentMessage { id, .. } => format!("message:{id}"),
        _ => format!("body:{}", handover_transport::ids::content_key(body)),
    };
    Ok(Parsed { conversation, dedup_key, delivery })
}

fn status(status: Option<&str>) -> Delivery {
    match status {
        Some(s @ ("resolved" | "abandoned" | "closed")) => Delivery::Resolved { status: s.to_owned() },
        _ => Delivery::Ignore("status other than resolved"),
    }
}

/// What a message (from a `message_created` delivery or the message list) means.
pub(crate) fn message(json: &Value) -> Delivery {
    // §8.1-8.2: only public outgoing messages of human agents reach the user.
    if json["message_type"] != "outgoing" && json["message_type"] != 1 {
        return Delivery::Ignore("not an outgoing message");
    }
    if json["private"] == true {
        return Delivery::Ignore("private note");
    }
    if json["sender"]["type"].as_str().is_some_and(|t| t != "user") {
        return Delivery::Ignore("not sent by a human agent");
    }
    let mut lines: Vec<String> =
        json["content"].as_str().filter(|c| !c.is_empty()).map(str::to_owned).into_iter().collect();
    for attachment in json["attachments"].as_array().into_iter().flatten() {
        if let Some(url) = attachment["data_url"].as_str() {
            lines.push(format!("[attachment] {url}"));
        }
    }
    if lines.is_empty() {
        return Delivery::Ignore("message without content");
    }
    let Some(id) = json["id"].as_u64() else { return Delivery::Ignore("message without id") };
    Delivery::AgentMessage { id, text: lines.join("\n"), agent: agent_of(&json["sender"]) }
}

fn conversation_updated(json: &Value) -> Delivery {
    for change in json["changed_attributes"].as_array().into_iter().flatten() {
        if let Some(status_change) = change.get("status") {
            // §8.8: some transitions only show here.
            if let Delivery::Resolved { status } = status(status_change["current_value"].as_str()) {
                return Delivery::Resolved { status };
            }
        }
        if let Some(assignee) = change.get("assignee_id") {
            if assignee["current_value"].is_null() {
                return Delivery::Unassigned;
            }
            let mut agent = agent_of(&json["meta"]["assignee"]);
            if agent.id.is_none() {
                agent.id = assignee["current_value"].as_u64().map(|id| id.to_string());
            }
            return Delivery::Assigned(agent);
        }
    }
    Delivery::Ignore("update without assignee or status change")
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
