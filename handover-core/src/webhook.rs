//! Raw webhook deliveries for push providers.

use std::fmt;

/// One inbound HTTP delivery, as received: header names lower-cased, the raw body bytes
/// (signatures are computed over them), and the raw query string.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// Headers with lower-cased names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl WebhookRequest {
    /// A `POST` with `body` and no headers.
    pub fn post(body: impl Into<Vec<u8>>) -> Self {
        Self { method: "POST".to_owned(), headers: Vec::new(), query: None, body: body.into() }
    }

    /// Adds a header (the name is lower-cased).
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Sets the method.
    #[must_use]
    pub fn with_method(mut self, method: &str) -> Self {
        self.method = method.to_ascii_uppercase();
        self
    }

    /// Sets the query string.
    #[must_use]
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`, percent-decoding not applied.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

impl fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Headers may carry signatures or tokens; show names only.
        f.debug_struct("WebhookRequest")
            .field("method", &self.method)
            .field("headers", &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// What to answer a webhook delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookReply {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

impl WebhookReply {
    /// A reply with `status` and an empty body.
    pub fn status(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new() }
    }

    /// `200 OK`, empty body.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// A JSON reply.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: body.to_string().into_bytes(),
        }
    }

    /// A plain-text reply (used for rejections, so senders see why).
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), "text/plain; charset=utf-8".to_owned())],
            body: body.into().into_bytes(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One verified delivery of a webhook, for the session of one conversation: what
/// [`Provider::ingest`](crate::Provider::ingest) yields on any instance and
/// [`Provider::apply`](crate::Provider::apply) hands to the session on the instance that
/// owns it (DESIGN.md §7.2). Keep it in between (the service's inbox): the payload is
/// verified, so nothing checks it again.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inbound {
    /// The key the provider routes by (its conversation id); the same as the owning
    /// session's [`SessionSnapshot::conversation_key`](crate::SessionSnapshot::conversation_key).
    pub conversation_key: String,
    /// The delivery's id (what its signature covers): a repeat is applied once.
    pub delivery_id: String,
    /// What the session needs to apply it, in the provider's own format.
    pub payload: Vec<u8>,
}

impl Inbound {
    /// A delivery `delivery_id` for `conversation_key`.
    pub fn new(conversation_key: impl Into<String>, delivery_id: impl Into<String>, payload: Vec<u8>) -> Self {
        Self { conversation_key: conversation_key.into(), delivery_id: delivery_id.into(), payload }
    }
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload is the user's and the agent's words: its size only.
        f.debug_struct("Inbound")
            .field("conversation_key", &self.conversation_key)
            .field("delivery_id", &self.delivery_id)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// What [`Provider::ingest`](crate::Provider::ingest) made of a webhook request: the reply
/// the provider expects, and the verified deliveries to keep before sending it. A reply
/// that is not 2xx (a bad signature, a malformed body) comes with no items.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ingested {
    /// What to answer, once every item is kept.
    pub reply: WebhookReply,
    /// The deliveries, in arrival order.
    pub items: Vec<Inbound>,
}

impl Ingested {
    /// `reply` and no delivery (a refusal, a validation handshake, an event no session
    /// needs).
    pub fn reply(reply: WebhookReply) -> Self {
        Self { reply, items: Vec::new() }
    }

    /// `reply` once `items` are kept.
    pub fn with_items(reply: WebhookReply, items: Vec<Inbound>) -> Self {
        Self { reply, items }
    }
}

/// What became of an [`Inbound`] handed to [`Provider::apply`](crate::Provider::apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applied {
    /// The live session took it and has emitted every event it causes.
    Processed,
    /// The session had it already.
    Duplicate,
    /// The conversation's handover has ended: nothing will take it.
    Closed,
    /// No live session owns the conversation in this process: keep the delivery and apply
    /// it again once one does.
    NotLive,
}

impl Applied {
    /// Whether the delivery is done with (applied, a repeat, or for an ended handover), so
    /// its keeper may drop it.
    pub fn is_done(self) -> bool {
        !matches!(self, Applied::NotLive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_query_are_looked_up_case_insensitively_and_debug_hides_values() {
        let req = WebhookRequest::post(b"{}".to_vec())
            .with_header("X-Hub-Signature-256", "sha256=secret")
            .with_query("signature=abc&x=1&flag");
        assert_eq!(req.header("x-hub-signature-256"), Some("sha256=secret"));
        assert_eq!(req.query_param("signature"), Some("abc"));
        assert_eq!(req.query_param("flag"), Some(""));
        assert_eq!(req.query_param("missing"), None);
        assert!(!format!("{req:?}").contains("sha256=secret"));
    }
}
