//! The raw MIAW endpoints (`protocols/salesforce-miaw.md` §3), the routing attributes they
//! carry, and `parse_error`.

use std::borrow::Cow;

use handover_core::{Attachment, Error, ErrorKind, HandoverRequest, Result};
use handover_transport::attachment::file_part;
use handover_transport::http::{self, HttpConfig, segment};
use handover_transport::reqwest::header::HeaderMap;
use handover_transport::reqwest::multipart::{Form, Part};
use handover_transport::reqwest::{self, Method, RequestBuilder, Response, StatusCode};
use handover_transport::retry::{self, Idempotency, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use crate::NAME;
use crate::config::MiawConfig;
use crate::wire::{self, WireEntry};

/// The token endpoints' answer (§4.1).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    #[serde(default)]
    pub(crate) last_event_id: Option<Value>,
    #[serde(default)]
    pub(crate) context: Value,
}

impl TokenResponse {
    /// `lastEventId` as a string (the API sends a string; accept a number too).
    pub(crate) fn last_event_id(&self) -> Option<String> {
        match &self.last_event_id {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    /// `context.endUser.subject`, else the token's `sub` claim.
    pub(crate) fn subject(&self) -> Option<String> {
        self.context["endUser"]["subject"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| crate::auth::read_claims(&self.access_token).sub)
    }
}

/// Whether a message was accepted or the messaging session is gone (417).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    Accepted,
    NoMessagingSession,
}

/// The endpoints of one deployment.
pub(crate) struct Client {
    http: reqwest::Client,
    stream_http: reqwest::Client,
    base: Url,
    org_id: String,
    es_developer_name: String,
    retry: RetryPolicy,
}

/// Merges the configured routing attributes with the request's (the request wins).
pub(crate) fn routing_attributes(config: &MiawConfig, request: &HandoverRequest) -> Map<String, Value> {
    let mut attributes = config.routing_attributes.clone();
    for (key, value) in &request.routing.attributes {
        attributes.insert(key.clone(), value.clone());
    }
    attributes
}

/// Turns a failed response into an error: the kind from the status, the message from the
/// JSON body's `message` (and `errorCode`), else the body text.
pub fn parse_error(op: impl Into<Cow<'static, str>>, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let text = String::from_utf8_lossy(body);
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(json) => {
            let message = json["message"].as_str().or_else(|| json["error"].as_str()).unwrap_or_default();
            match json.get("errorCode").filter(|c| !c.is_null()) {
                Some(code) => {
                    format!("{message} (errorCode {})", code.as_str().map_or_else(|| code.to_string(), str::to_owned))
                }
                None => message.to_owned(),
            }
        }
        Err(_) => text.trim().to_owned(),
    };
    let op = op.into();
    let message = match status {
        // §8: the file endpoint's refusals (#10).
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("{message}; the file is larger than Salesforce accepts (5 MB per file)")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => format!("{message}; Salesforce does not accept this type of file"),
        _ => message,
    };
    let mut error = http::status_error(NAME, op, status, headers, &message);
    if status == StatusCode::UNAUTHORIZED {
        error = Error::unauthenticated(
            NAME,
            error.op().to_owned(),
            format!("{}; the access token was rejected", error.message()),
        );
    }
    error
}

impl Client {
    pub(crate) fn new(config: &MiawConfig, retry: RetryPolicy) -> Result<Self> {
        let base = http::base_url(NAME, "scrt_url", &config.scrt_url, config.allow_insecure_http)?;
        let http_config = HttpConfig::default();
        Ok(Self {
            http: http::client(NAME, &http_config)?,
            stream_http: http::streaming_client(NAME, &http_config)?,
            base,
            org_id: config.org_id.clone(),
            es_developer_name: config.es_developer_name.clone(),
            retry,
        })
    }

    fn url(&self, path: &str) -> Url {
        http::join(&self.base, path)
    }

    fn request(&self, method: Method, path: &str, token: Option<&SecretString>) -> RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match token {
            Some(token) => request.bearer_auth(token.expose_secret()),
            None => request,
        }
    }

    /// The one send every request goes through: retried per the policy; a success's
    /// response for the caller to read, a failure read by [`parse_error`].
    async fn send(
        &self,
        op: &'static str,
        idempotency: Idempotency,
        build: impl FnMut() -> RequestBuilder,
    ) -> Result<Response> {
        let response = retry::send(&self.retry, NAME, op, idempotency, build).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = http::read_body(NAME, op, response, 64 * 1024).await.unwrap_or_default();
        Err(parse_error(op, status, &headers, &body))
    }

    fn token_body(&self) -> Value {
        json!({
            "orgId": self.org_id,
            "esDeveloperName": self.es_developer_name,
            "capabilitiesVersion": "1",
            "platform": "Web",
        })
    }

    /// #1: a guest token.
    pub(crate) async fn guest_token(&self) -> Result<TokenResponse> {
        let op = "get guest access token";
        let body = self.token_body();
        let response = self
            .send(op, Idempotency::Idempotent, || {
                self.request(Method::POST, "/iamessage/api/v2/authorization/unauthenticated/access-token", None)
                    .json(&body)
            })
            .await?;
        http::read_json(NAME, op, response).await
    }

    /// #2: a verified user's token.
    pub(crate) async fn authenticated_token(&self, identity_jwt: &SecretString) -> Result<TokenResponse> {
        let op = "get authenticated access token";
        let mut body = self.token_body();
        body["authorizationType"] = json!("JWT");
        body["customerIdentityToken"] = json!(identity_jwt.expose_secret());
        let response = self
            .send(op, Idempotency::Idempotent, || {
                self.request(Method::POST, "/iamessage/api/v2/authorization/authenticated/access-token", None)
                    .json(&body)
            })
            .await?;
        http::read_json(NAME, op, response).await
    }

    /// #5: creates the conversation (the client picks the id, so a retry is idempotent).
    pub(crate) async fn create_conversation(
        &self,
        token: &SecretString,
        conversation_id: &str,
        routing_attributes: &Map<String, Value>,
        language: Option<&str>,
    ) -> Result<()> {
        let mut body = json!({
            "conversationId": conversation_id,
            "esDeveloperName": self.es_developer_name,
            "routingAttributes": routing_attributes,
        });
        if let Some(language) = language {
            body["language"] = json!(language);
        }
        self.send("create conversation", Idempotency::Idempotent, || {
            self.request(Method::POST, "/iamessage/api/v2/conversation", Some(token)).json(&body)
        })
        .await?;
        Ok(())
    }

    /// #7: sends a text message; on 417 the caller re-sends with a new messaging session.
    pub(crate) async fn send_message(
        &self,
        token: &SecretString,
        conversation_id: &str,
        message_id: &str,
        text: &str,
        new_session: Option<(&Map<String, Value>, Option<&str>)>,
    ) -> Result<Sent> {
        let op = "send message";
        let mut body = json!({
            "message": {
                "id": message_id,
                "messageType": "StaticContentMessage",
                "staticContent": { "formatType": "Text", "text": text },
            },
            "esDeveloperName": self.es_developer_name,
        });
        if let Some((routing_attributes, language)) = new_session {
            body["isNewMessagingSession"] = json!(true);
            body["routingAttributes"] = json!(routing_attributes);
            if let Some(language) = language {
                body["language"] = json!(language);
            }
        }
        let path = format!("/iamessage/api/v2/conversation/{}/message", segment(conversation_id));
        // The message id makes a repeat harmless: retrying is safe.
        match self
            .send(op, Idempotency::Idempotent, || self.request(Method::POST, &path, Some(token)).json(&body))
            .await
        {
            Ok(_) => Ok(Sent::Accepted),
            Err(error) if http::is_status(&error, StatusCode::EXPECTATION_FAILED) => Ok(Sent::NoMessagingSession),
            Err(error) => Err(error),
        }
    }

    /// #10: sends the end user's file with its caption: `multipart/form-data` with the part
    /// `messageEntry` (JSON: `esDeveloperName` and `message {id, fileId, text}`) and the part
    /// `fileData` (the bytes with their file name and media type).
    pub(crate) async fn send_file(
        &self,
        token: &SecretString,
        conversation_id: &str,
        ids: (&str, &str),
        attachment: &Attachment,
    ) -> Result<()> {
        let (message_id, file_id) = ids;
        let entry = file_entry(&self.es_developer_name, message_id, file_id, attachment.caption.as_deref());
        let form = || -> Result<Form> {
            let entry = Part::text(entry.to_string()).mime_str("application/json").map_err(|e| {
                Error::protocol(NAME, "send file", format!("the messageEntry part cannot be built: {e}"))
            })?;
            Ok(Form::new().part("messageEntry", entry).part("fileData", file_part(NAME, attachment)?))
        };
        // Built once before any I/O (a media type that does not parse fails here); each attempt
        // then builds its own body, as sending consumes it.
        form()?;
        let path = format!("/iamessage/api/v2/conversation/{}/file", segment(conversation_id));
        // The message id makes a repeat recognisable, as for text messages.
        self.send("send file", Idempotency::Idempotent, || {
            self.request(Method::POST, &path, Some(token)).multipart(form().unwrap_or_default())
        })
        .await?;
        Ok(())
    }

    /// #8: typing started/stopped.
    pub(crate) async fn send_typing(&self, token: &SecretString, conversation_id: &str, on: bool) -> Result<()> {
        let body = json!({
            "entryType": if on { "TypingStartedIndicator" } else { "TypingStoppedIndicator" },
            "id": uuid::Uuid::new_v4().to_string(),
        });
        let path = format!("/iamessage/api/v2/conversation/{}/entry", segment(conversation_id));
        self.send("send typing indicator", Idempotency::Idempotent, || {
            self.request(Method::POST, &path, Some(token)).json(&body)
        })
        .await?;
        Ok(())
    }

    /// #6: the routing status (`ROUTED`, `NEEDS_ROUTING`, `INITIAL`, `TRANSFER`).
    pub(crate) async fn routing_status(&self, token: &SecretString, conversation_id: &str) -> Result<String> {
        let op = "get routing status";
        let path = format!("/iamessage/api/v2/conversation/{}", segment(conversation_id));
        let response = self.send(op, Idempotency::Idempotent, || self.request(Method::GET, &path, Some(token))).await?;
        let body: Value = http::read_json(NAME, op, response).await?;
        body["routingStatus"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::protocol(NAME, op, "the answer has no `routingStatus`"))
    }

    /// #11: entries from `start_ms` on, oldest first, at most `limit` (≤ 50).
    pub(crate) async fn entries(
        &self,
        token: &SecretString,
        conversation_id: &str,
        start_ms: Option<u64>,
        limit: u32,
    ) -> Result<Vec<WireEntry>> {
        let op = "list conversation entries";
        let path = format!("/iamessage/api/v2/conversation/{}/entries", segment(conversation_id));
        let mut query = vec![("limit", limit.min(50).to_string()), ("direction", "FromStart".to_owned())];
        if let Some(start) = start_ms {
            query.push(("startTimestamp", start.to_string()));
        }
        let response = self
            .send(op, Idempotency::Idempotent, || self.request(Method::GET, &path, Some(token)).query(&query))
            .await?;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            conversation_entries: Vec<Value>,
        }
        let page: Page = http::read_json(NAME, op, response).await?;
        Ok(wire::entries(page.conversation_entries))
    }

    /// #13: closes the conversation. An already closed conversation (404) is fine.
    pub(crate) async fn close_conversation(&self, token: &SecretString, conversation_id: &str) -> Result<()> {
        let path = format!("/iamessage/api/v2/conversation/{}", segment(conversation_id));
        let query = [("esDeveloperName", self.es_developer_name.as_str())];
        match self
            .send("close conversation", Idempotency::Idempotent, || {
                self.request(Method::DELETE, &path, Some(token)).query(&query)
            })
            .await
        {
            Err(error) if error.kind() == ErrorKind::SessionNotFound => Ok(()),
            other => other.map(drop),
        }
    }

    /// #15: the SSE request (the reader adds `Accept` and `Last-Event-ID`).
    pub(crate) fn sse_request(&self, token: &SecretString, last_event_id: Option<&str>) -> RequestBuilder {
        let mut url = self.url("/eventrouter/v1/sse");
        url.query_pairs_mut().append_pair("_ts", &crate::auth::unix_now().to_string());
        let request = self.stream_http.get(url).bearer_auth(token.expose_secret()).header("X-Org-Id", &self.org_id);
        match last_event_id {
            // The API requires the header; before any event the token's lastEventId is used.
            Some(_) => request,
            None => request.header("Last-Event-Id", "0"),
        }
    }
}

/// The `messageEntry` part of a file upload (#10): the deployment, the message id, the
/// file id and the caption (empty without one).
pub(crate) fn file_entry(es_developer_name: &str, message_id: &str, file_id: &str, caption: Option<&str>) -> Value {
    json!({
        "esDeveloperName": es_developer_name,
        "message": { "id": message_id, "fileId": file_id, "text": caption.unwrap_or_default() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_file_says_why() {
        let headers = HeaderMap::new();
        let body = br#"{"message":"Request Entity Too Large"}"#;
        let error = parse_error("send file", StatusCode::PAYLOAD_TOO_LARGE, &headers, body);
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            error.message(),
            "HTTP 413 Payload Too Large: Request Entity Too Large; the file is larger than Salesforce accepts (5 MB per file)"
        );
        let error = parse_error("send file", StatusCode::UNSUPPORTED_MEDIA_TYPE, &headers, b"");
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert!(error.message().ends_with("Salesforce does not accept this type of file"), "{}", error.message());
    }

    #[test]
    fn parse_error_reads_message_and_error_code() {
        let headers = HeaderMap::new();
        let error = parse_error(
            "create conversation",
            StatusCode::BAD_REQUEST,
            &headers,
            br#"{"message":"Specify the conversationId in UUID format.","errorCode":"INVALID_INPUT"}"#,
        );
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            error.to_string(),
            "miaw create conversation: invalid input: HTTP 400 Bad Request: Specify the conversationId in UUID format. (errorCode INVALID_INPUT)"
        );
    }

    #[test]
    fn parse_error_reads_text_bodies_and_401s() {
        let error = parse_error("open event stream", StatusCode::UNAUTHORIZED, &HeaderMap::new(), b"Jwt is expired");
        assert_eq!(error.kind(), ErrorKind::Unauthenticated);
        assert!(error.to_string().contains("Jwt is expired"), "{error}");
        let error = parse_error("send message", StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"");
        assert_eq!(error.kind(), ErrorKind::Transport);
        assert_eq!(error.message(), "HTTP 502 Bad Gateway");
    }
}
