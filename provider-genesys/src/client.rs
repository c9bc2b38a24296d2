//! The Genesys Platform API endpoints the provider uses (`protocols/genesys.md` §4), the
//! first message's custom attributes and the opening texts (§5.4), and `parse_error`.

use std::borrow::Cow;

use handover_core::attachment::redact_url;
use handover_core::{Attachment, Error, ErrorKind, HandoverRequest, Result, transcript};
use handover_transport::http;
use handover_transport::reqwest::header::HeaderMap;
use handover_transport::reqwest::{self, Method, RequestBuilder, Response, StatusCode};
use handover_transport::retry::{self, Idempotency, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use crate::config::GenesysConfig;
use crate::{NAME, TRANSCRIPT_CHUNK_CHARS};

/// Turns a failed response into an error: the Platform API's `{message, code, contextId}`
/// when present (the context id helps Genesys support), else the body text. A `413` or
/// `415` says first what it means for a file sent with the message.
pub fn parse_error(op: impl Into<Cow<'static, str>>, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let said = match serde_json::from_slice::<Value>(body) {
        Ok(json) => {
            let mut message = json["message"].as_str().unwrap_or_default().to_owned();
            if let Some(code) = json["code"].as_str() {
                message = format!("{message} ({code})");
            }
            if let Some(context) = json["contextId"].as_str() {
                message = format!("{message} [contextId {context}]");
            }
            message
        }
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!("Genesys refused the message as too large: {said}"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => format!("Genesys does not accept this media type: {said}"),
        _ => said,
    };
    http::status_error(NAME, op, status, headers, message)
}

/// Whether Genesys refused an attachment message for its content (genesys.md §11 item 7:
/// the integration's supported-content profile): `400`, `413`, `415` or `422`. Which
/// status and code Genesys gives for a refused media type is not documented; these are
/// the statuses that can mean "this content", as opposed to auth, rate or server errors.
pub(crate) fn refuses_media(error: &Error) -> bool {
    matches!(error.status(), Some(400 | 413 | 415 | 422))
}

/// Genesys's `mediaType` for a media type (`OpenContentAttachment.mediaType`: `Image`,
/// `Video`, `Audio`, `File`; genesys.md §5.1).
pub(crate) fn media_type_of(mime: &str) -> &'static str {
    let top = mime.split('/').next().unwrap_or_default().trim();
    if top.eq_ignore_ascii_case("image") {
        "Image"
    } else if top.eq_ignore_ascii_case("video") {
        "Video"
    } else if top.eq_ignore_ascii_case("audio") {
        "Audio"
    } else {
        "File"
    }
}

/// The text that stands in for an attachment the integration refuses (genesys.md §11 item
/// 7): the caption, then `<file name>: <url>`. The URL is the caller's own and goes to
/// Genesys as they gave it; it is never logged.
pub(crate) fn attachment_link_text(attachment: &Attachment) -> String {
    let link = format!("{}: {}", attachment.name, attachment.url_str().unwrap_or_default());
    match attachment.caption.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(caption) => format!("{caption}\n{link}"),
        None => link,
    }
}

/// `error` with `url` (a pre-signed URL carries its token in its query or path) reduced to
/// its host in its message, should Genesys echo the attachment URL in an error.
pub(crate) fn without_url(error: Error, url: &str) -> Error {
    let query = url.split_once(['?', '#']).map(|(_, q)| q).filter(|q| !q.is_empty());
    if !error.message().contains(url) && !query.is_some_and(|q| error.message().contains(q)) {
        return error;
    }
    let mut message = error.message().replace(url, &redact_url(url));
    if let Some(query) = query {
        message = message.replace(query, "…");
    }
    let mut scrubbed = Error::new(error.kind(), NAME, error.op().to_owned(), message);
    if let Some(status) = error.status() {
        scrubbed = scrubbed.with_status(status);
    }
    if let Some(after) = error.retry_after() {
        scrubbed = scrubbed.with_retry_after(after);
    }
    error.hints().iter().fold(scrubbed, |e, hint| e.with_hint(hint.clone()))
}

/// The custom attributes of the first message (§5.4): language, skills and priority
/// under the configured keys, the configured and requested attributes, and the user id.
pub(crate) fn custom_attributes(config: &GenesysConfig, request: &HandoverRequest) -> Map<String, Value> {
    let mut attributes = Map::new();
    let stringify = |value: &Value| match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (key, value) in config.custom_attributes.iter().chain(request.routing.attributes.iter()) {
        attributes.insert(key.clone(), json!(stringify(value)));
    }
    let language = config
        .language
        .clone()
        .or_else(|| request.routing.languages.first().cloned())
        .or_else(|| request.user.language.clone());
    if let Some(language) = language {
        attributes.insert(config.language_attribute.clone(), json!(language));
    }
    let skills: Vec<&str> =
        config.skills.iter().chain(request.routing.skills.iter()).map(String::as_str).collect::<Vec<_>>();
    if !skills.is_empty() {
        let mut unique = Vec::new();
        for skill in skills {
            if !unique.contains(&skill) {
                unique.push(skill);
            }
        }
        attributes.insert(config.skills_attribute.clone(), json!(unique.join(",")));
    }
    let priority =
        config.priority.map(|p| p.to_string()).or_else(|| request.routing.priority.as_ref().map(ToString::to_string));
    if let Some(priority) = priority {
        attributes.insert(config.priority_attribute.clone(), json!(priority));
    }
    attributes.entry("userId").or_insert_with(|| json!(request.user.id));
    attributes
}

/// The texts that open the conversation: the rendered transcript in chunks (when
/// `send_transcript` is on and there is one), else the handover message.
pub(crate) fn opening_texts(config: &GenesysConfig, request: &HandoverRequest) -> Result<Vec<String>> {
    let rendered = transcript::render(&request.transcript);
    let mut texts: Vec<String> = if config.send_transcript && !rendered.is_empty() {
        transcript::split(&rendered, TRANSCRIPT_CHUNK_CHARS)
            .map_err(|e| Error::invalid_input(NAME, "send transcript", e.to_string()))?
            .into_iter()
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    if texts.is_empty() {
        texts.push(config.handover_message.clone());
    }
    Ok(texts)
}

/// Who the customer is on the wire (`channel.from`).
#[derive(Clone, Debug)]
pub(crate) struct Customer {
    pub(crate) id: String,
    pub(crate) nickname: Option<String>,
    pub(crate) email: Option<String>,
}

/// The `channel` of an inbound message: our message id, the time, the customer.
fn channel(customer: &Customer, message_id: &str) -> Value {
    json!({
        "messageId": message_id,
        "time": handover_transport::time::now_iso8601(),
        "from": customer.json(),
    })
}

impl Customer {
    fn json(&self) -> Value {
        let mut from = json!({ "id": self.id, "idType": "Opaque" });
        if let Some(nickname) = &self.nickname {
            from["nickname"] = json!(nickname);
            let mut parts = nickname.splitn(2, ' ');
            if let (Some(first), Some(last)) = (parts.next(), parts.next()) {
                from["firstName"] = json!(first);
                from["lastName"] = json!(last);
            }
        }
        if let Some(email) = &self.email {
            from["email"] = json!(email);
        }
        from
    }
}

/// The part of an inbound message answer the provider reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Accepted {
    #[serde(default)]
    pub(crate) conversation_id: Option<String>,
}

/// A participant of a message conversation (§4 #9).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Participant {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) purpose: String,
    #[serde(default)]
    pub(crate) state: String,
    #[serde(default)]
    pub(crate) disconnect_type: Option<String>,
    #[serde(default)]
    pub(crate) user: Option<Value>,
}

/// A notification channel (§7.1).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Channel {
    pub(crate) id: String,
    pub(crate) connect_uri: String,
}

/// The API endpoints.
pub(crate) struct Client {
    http: reqwest::Client,
    api: Url,
    integration_id: String,
    retry: RetryPolicy,
}

impl Client {
    pub(crate) fn new(http: reqwest::Client, api: Url, integration_id: String, retry: RetryPolicy) -> Self {
        Self { http, api, integration_id, retry }
    }

    fn request(&self, method: Method, path: &str, token: &SecretString) -> RequestBuilder {
        self.http
            .request(method, http::join(&self.api, path))
            .bearer_auth(token.expose_secret())
            .header("Accept", "application/json")
    }

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

    fn inbound(&self, kind: &str) -> String {
        format!("/api/v2/conversations/messages/{}/inbound/open/{kind}", self.integration_id)
    }

    /// §4 #4: an inbound message. The first carries the custom attributes and asks for the
    /// conversation id.
    pub(crate) async fn send_message(
        &self,
        token: &SecretString,
        customer: &Customer,
        message_id: &str,
        text: &str,
        custom_attributes: Option<&Map<String, Value>>,
    ) -> Result<Accepted> {
        let mut channel = channel(customer, message_id);
        if let Some(attributes) = custom_attributes {
            channel["metadata"] = json!({ "customAttributes": attributes });
        }
        let body = json!({ "channel": channel, "text": text });
        self.post_message("send inbound message", token, &body, custom_attributes.is_some()).await
    }

    /// §5.1: an inbound message carrying one file as a link Genesys fetches
    /// (`content[].attachment {mediaType, url, mime, filename}`), its caption as `text`.
    /// Open Messaging takes no bytes: only a URL. The item carries `contentType:
    /// "Attachment"` as the outbound shape and the go-gcloudcx inbound fixture do (the SDK's
    /// inbound model lists only `attachment`).
    pub(crate) async fn send_attachment(
        &self,
        token: &SecretString,
        customer: &Customer,
        message_id: &str,
        attachment: &Attachment,
    ) -> Result<Accepted> {
        let op = "send attachment";
        let Some(url) = attachment.url_str() else {
            return Err(Error::invalid_input(NAME, op, "Open Messaging takes files as URLs only"));
        };
        let mut body = json!({
            "channel": channel(customer, message_id),
            "content": [{
                "contentType": "Attachment",
                "attachment": {
                    "mediaType": media_type_of(&attachment.media_type),
                    "url": url,
                    "mime": attachment.media_type,
                    "filename": attachment.name,
                },
            }],
        });
        if let Some(caption) = attachment.caption.as_deref().filter(|c| !c.trim().is_empty()) {
            body["text"] = json!(caption);
        }
        self.post_message(op, token, &body, false).await.map_err(|error| without_url(error, url))
    }

    /// Posts an inbound message body; with `prefetch`, asks for the conversation id.
    async fn post_message(
        &self,
        op: &'static str,
        token: &SecretString,
        body: &Value,
        prefetch: bool,
    ) -> Result<Accepted> {
        let path = self.inbound("message");
        let query = [("prefetchConversationId", "true")];
        // A retry carries the same message id (derived from the input's id). Whether Genesys
        // deduplicates on it is not documented (genesys.md §5.1): a retry after a lost answer
        // may show the message twice, which beats losing it.
        let response = self
            .send(op, Idempotency::Idempotent, || {
                let request = self.request(Method::POST, &path, token).json(body);
                if prefetch { request.query(&query) } else { request }
            })
            .await?;
        let body = http::read_body(NAME, op, response, 256 * 1024).await?;
        if body.is_empty() {
            return Ok(Accepted::default());
        }
        http::decode_json(NAME, op, &body)
    }

    /// §4 #5: the customer is typing.
    pub(crate) async fn send_typing(&self, token: &SecretString, customer: &Customer) -> Result<()> {
        let body = json!({
            "channel": { "from": { "id": customer.id, "idType": "Opaque" }, "time": handover_transport::time::now_iso8601() },
            "events": [{ "eventType": "Typing" }],
        });
        let path = self.inbound("event");
        self.send("send typing event", Idempotency::Idempotent, || self.request(Method::POST, &path, token).json(&body))
            .await
            .map(drop)
    }

    /// §4 #9: the conversation's participants.
    pub(crate) async fn participants(&self, token: &SecretString, conversation_id: &str) -> Result<Vec<Participant>> {
        let op = "get conversation";
        let path = format!("/api/v2/conversations/messages/{}", http::segment(conversation_id));
        let response = self.send(op, Idempotency::Idempotent, || self.request(Method::GET, &path, token)).await?;
        #[derive(Deserialize)]
        struct Conversation {
            #[serde(default)]
            participants: Vec<Participant>,
        }
        let conversation: Conversation = http::read_json(NAME, op, response).await?;
        Ok(conversation.participants)
    }

    /// §4 #10: disconnects a participant (the customer, when the bot side ends).
    pub(crate) async fn disconnect(
        &self,
        token: &SecretString,
        conversation_id: &str,
        participant_id: &str,
    ) -> Result<()> {
        let path = format!(
            "/api/v2/conversations/messages/{}/participants/{}",
            http::segment(conversation_id),
            http::segment(participant_id)
        );
        let body = json!({ "state": "disconnected" });
        match self
            .send("disconnect participant", Idempotency::Idempotent, || {
                self.request(Method::PATCH, &path, token).json(&body)
            })
            .await
        {
            Err(error) if error.kind() == ErrorKind::SessionNotFound => Ok(()),
            other => other.map(drop),
        }
    }

    /// The display name of Genesys user `user_id` (`GET /api/v2/users/{id}`), for agent
    /// names: neither the webhook nor the detail events carry one.
    pub(crate) async fn user_name(&self, token: &SecretString, user_id: &str) -> Result<Option<String>> {
        let op = "get user";
        let path = format!("/api/v2/users/{}", http::segment(user_id));
        let response = self.send(op, Idempotency::Idempotent, || self.request(Method::GET, &path, token)).await?;
        let user: Value = http::read_json(NAME, op, response).await?;
        Ok(user["name"].as_str().map(str::to_owned))
    }

    /// The Open Messaging integration (`GET …/integrations/open/{id}`): whether it exists,
    /// or `None` when this OAuth client may not read integrations (`403`).
    pub(crate) async fn integration(&self, token: &SecretString) -> Result<Option<Value>> {
        let op = "read integration";
        let path = format!("/api/v2/conversations/messaging/integrations/open/{}", http::segment(&self.integration_id));
        match self.send(op, Idempotency::Idempotent, || self.request(Method::GET, &path, token)).await {
            Ok(response) => http::read_json(NAME, op, response).await.map(Some),
            Err(error) if error.kind() == ErrorKind::PermissionDenied => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// §4 #14: a notification channel.
    pub(crate) async fn create_channel(&self, token: &SecretString) -> Result<Channel> {
        let op = "create notification channel";
        let response = self
            .send(op, Idempotency::NotIdempotent, || {
                self.request(Method::POST, "/api/v2/notifications/channels", token).json(&json!({}))
            })
            .await?;
        http::read_json(NAME, op, response).await
    }

    /// §4 #15: adds (`POST`) or replaces (`PUT`) a channel's topics.
    pub(crate) async fn subscribe(
        &self,
        token: &SecretString,
        channel_id: &str,
        topics: &[String],
        replace: bool,
    ) -> Result<()> {
        let path = format!("/api/v2/notifications/channels/{}/subscriptions", http::segment(channel_id));
        let body: Vec<Value> = topics.iter().map(|topic| json!({ "id": topic })).collect();
        let method = if replace { Method::PUT } else { Method::POST };
        self.send("subscribe to topics", Idempotency::Idempotent, || {
            self.request(method.clone(), &path, token).json(&body)
        })
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_keeps_code_and_context_id() {
        let error = parse_error(
            "send inbound message",
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"message":"The request could not be understood by the server due to malformed syntax.","code":"bad.request","status":400,"contextId":"7c0d-41"}"#,
        );
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert!(error.to_string().ends_with("malformed syntax. (bad.request) [contextId 7c0d-41]"), "{error}");
        let error = parse_error("x", StatusCode::FORBIDDEN, &HeaderMap::new(), b"missing permission");
        assert_eq!(error.kind(), ErrorKind::PermissionDenied);
    }

    #[test]
    fn a_413_or_415_is_invalid_input_that_says_what_it_means() {
        let body = br#"{"message":"Request entity too large","code":"request.too.large"}"#;
        let error = parse_error("send attachment", StatusCode::PAYLOAD_TOO_LARGE, &HeaderMap::new(), body);
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert!(error.to_string().contains("Genesys refused the message as too large"), "{error}");
        let error = parse_error("send attachment", StatusCode::UNSUPPORTED_MEDIA_TYPE, &HeaderMap::new(), b"");
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert!(error.to_string().contains("Genesys does not accept this media type"), "{error}");
        assert!(refuses_media(&error));
    }

    #[test]
    fn only_content_statuses_are_refusals_of_the_media() {
        for (status, refused) in [
            (400, true),
            (413, true),
            (415, true),
            (422, true),
            (401, false),
            (403, false),
            (404, false),
            (429, false),
            (500, false),
        ] {
            let error = parse_error("send attachment", StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), b"{}");
            assert_eq!(refuses_media(&error), refused, "{status}");
        }
    }

    #[test]
    fn media_types_map_to_genesys_kinds() {
        assert_eq!(media_type_of("image/png"), "Image");
        assert_eq!(media_type_of("Video/mp4"), "Video");
        assert_eq!(media_type_of("audio/mpeg"), "Audio");
        assert_eq!(media_type_of("application/pdf"), "File");
        assert_eq!(media_type_of("nonsense"), "File");
    }

    #[test]
    fn the_link_text_is_the_caption_then_name_and_url() {
        let file = Attachment::url("scan.png", "image/png", "https://files.example/scan.png?sig=abc");
        assert_eq!(attachment_link_text(&file), "scan.png: https://files.example/scan.png?sig=abc");
        let file = file.with_caption("My invoice");
        assert_eq!(attachment_link_text(&file), "My invoice\nscan.png: https://files.example/scan.png?sig=abc");
    }

    #[test]
    fn an_echoed_attachment_url_loses_its_query() {
        let url = "https://files.example/scan.png?sig=t0ken-123";
        let body = format!(r#"{{"message":"Could not fetch {url}","code":"forbidden"}}"#);
        let error = parse_error("send attachment", StatusCode::FORBIDDEN, &HeaderMap::new(), body.as_bytes());
        let error = without_url(error, url);
        assert!(!error.to_string().contains("t0ken-123"), "{error}");
        assert!(error.to_string().contains("https://files.example/…"), "{error}");
        assert_eq!(
            (error.kind(), error.status(), error.op()),
            (ErrorKind::PermissionDenied, Some(403), "send attachment")
        );
        // Nothing secret to take out: the error is the same.
        let plain = parse_error("x", StatusCode::FORBIDDEN, &HeaderMap::new(), b"no");
        assert_eq!(without_url(plain, "https://files.example/a.png").message(), "HTTP 403 Forbidden: no");
    }
}
