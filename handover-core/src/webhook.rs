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
