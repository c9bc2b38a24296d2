//! The Chat Gateway endpoints (`protocols/8x8.md` §4), the create-conversation body
//! (§5.1), and the error bodies (§7).

use std::borrow::Cow;
use std::fmt;

use handover_core::{Attachment, Error, HandoverRequest, Result, Speaker, TranscriptEntry, transcript};
use handover_transport::attachment::file_part;
use handover_transport::http::{self, HttpConfig, segment};
use handover_transport::reqwest::header::HeaderMap;
use handover_transport::reqwest::multipart::Form;
use handover_transport::reqwest::{self, Method, RequestBuilder, StatusCode};
use handover_transport::retry::{self, Idempotency, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use crate::NAME;
use crate::config::EightByEightConfig;

const PREFIX: &str = "/chat-gateway/v1";

/// One entry of an error body's `errors`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ErrorDetail {
    /// A machine-readable code (`invalid_queue`, `access_denied`, …), when given.
    #[serde(default)]
    pub code: Option<String>,
    /// What went wrong.
    #[serde(default)]
    pub message: Option<String>,
}

/// An error body of the Chat Gateway, whichever of its shapes it came in: `errors` as an
/// array of objects, an array of strings, or a single object; `referenceId` when given.
///
/// It is the [`source`](std::error::Error::source) of the [`Error`] a failed call returns.
///
/// ```
/// use handover_transport::reqwest::StatusCode;
/// use provider_8x8::ApiError;
///
/// let body = br#"{"message":"The tenant does not belong to customer.",
///                 "errors":["Header X-8x8-Tenant doesn't match tenant information"]}"#;
/// let error = ApiError::parse(StatusCode::FORBIDDEN, body);
/// assert_eq!(error.errors[0].message.as_deref(), Some("Header X-8x8-Tenant doesn't match tenant information"));
/// assert_eq!(error.reference_id, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The top-level `message` (or the body's text when it is not JSON).
    pub message: String,
    /// The `errors` entries.
    pub errors: Vec<ErrorDetail>,
    /// `referenceId`, for 8x8 support.
    pub reference_id: Option<String>,
}

impl ApiError {
    /// Reads an error body. Never fails: a body that is not one of the documented shapes
    /// becomes the message.
    pub fn parse(status: StatusCode, body: &[u8]) -> Self {
        let mut error =
            Self { status: status.as_u16(), message: String::new(), errors: Vec::new(), reference_id: None };
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            error.message = http::truncate(String::from_utf8_lossy(body).trim(), 300).into_owned();
            return error;
        };
        error.message = json["message"]
            .as_str()
            .or_else(|| json["error"].as_str())
            .or_else(|| json["fault"]["faultstring"].as_str())
            .unwrap_or_default()
            .to_owned();
        error.reference_id = json["referenceId"].as_str().map(str::to_owned);
        let detail = |item: &Value| match item {
            Value::String(text) => ErrorDetail { code: None, message: Some(text.clone()) },
            Value::Object(_) => ErrorDetail {
                code: item["code"].as_str().map(str::to_owned),
                message: item["message"].as_str().map(str::to_owned),
            },
            other => ErrorDetail { code: None, message: Some(other.to_string()) },
        };
        error.errors = match &json["errors"] {
            Value::Array(items) => items.iter().map(detail).collect(),
            Value::Null => Vec::new(),
            single => vec![detail(single)],
        };
        error
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        let details: Vec<String> = self
            .errors
            .iter()
            .map(|d| match (&d.code, &d.message) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(text), None) | (None, Some(text)) => text.clone(),
                (None, None) => String::new(),
            })
            .filter(|d| !d.is_empty() && *d != self.message)
            .collect();
        if !details.is_empty() {
            let sep = if self.message.is_empty() { "" } else { " — " };
            write!(f, "{sep}{}", details.join("; "))?;
        }
        if let Some(reference) = &self.reference_id {
            write!(f, " (reference {reference})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Turns a failed response into an error whose source is the [`ApiError`].
pub fn parse_error(op: impl Into<Cow<'static, str>>, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let api = ApiError::parse(status, body);
    let mut message = api.to_string();
    match status {
        StatusCode::UNAUTHORIZED => message.push_str("; check `api_key` (an API key of the \"Chat Gateway\" product)"),
        StatusCode::FORBIDDEN => message.push_str("; check `tenant` (X-8x8-Tenant) and the key's permissions"),
        StatusCode::PAYLOAD_TOO_LARGE => message.push_str("; the file is larger than the Chat Gateway accepts"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => message.push_str("; the Chat Gateway does not accept this type of file"),
        _ => {}
    }
    http::status_error(NAME, op, status, headers, message).with_source(api)
}

/// §5.1: at most 200 history messages and 30 additional properties.
const MAX_HISTORY: usize = 200;
const MAX_PROPERTIES: usize = 30;

/// The languages the Gateway routes on (§5.1).
const LANGUAGES: [&str; 21] = [
    "en", "ru", "de", "ja", "es", "fr", "pt", "it", "pl", "hr", "nl", "ar", "da", "ko", "no", "sv", "vi", "cy", "th",
    "zh-CN", "zh-TW",
];

/// The create-conversation body (§5.1) for `request`: the user with their language and
/// routing properties, the queue, the transcript as history, then `json_properties`.
pub(crate) fn create_body(config: &EightByEightConfig, request: &HandoverRequest) -> Value {
    let user = &request.user;
    let mut user_json = Map::new();
    user_json.insert("userId".into(), json!(user.id));
    for (key, value) in [("name", &user.name), ("email", &user.email), ("phone", &user.phone)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            user_json.insert(key.into(), json!(value));
        }
    }
    let wanted = user.language.iter().chain(&request.routing.languages);
    if let Some(language) = wanted.filter_map(|l| language(l)).next() {
        user_json.insert("language".into(), json!(language));
    }
    let mut properties: Vec<(String, String)> =
        config.additional_properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (key, value) in &request.routing.attributes {
        properties.push((key.clone(), text_of(value)));
    }
    if !request.routing.skills.is_empty() {
        properties.push(("skills".into(), request.routing.skills.join(",")));
    }
    if let Some(priority) = &request.routing.priority {
        properties.push(("priority".into(), text_of(&serde_json::to_value(priority).unwrap_or(Value::Null))));
    }
    properties.push(("botSessionId".into(), request.session_id.clone()));
    user_json.insert("additionalProperties".into(), Value::Array(fold_properties(properties)));

    let mut body = json!({ "channelId": config.channel_id, "user": user_json });
    if let Some(queue) = config.queue_id.as_deref().filter(|q| !q.is_empty()) {
        body["assignment"] = json!({ "type": "queue", "id": queue });
    }
    let history = history(&request.transcript);
    if !history.is_empty() {
        body["history"] = json!({ "messages": history });
    }
    merge(&mut body, &Value::Object(config.json_properties.clone()));
    body
}

/// Maps a bot-side language (`en-US`, `zh_tw`, `PT`) to one the Gateway accepts.
fn language(tag: &str) -> Option<&'static str> {
    let tag = tag.trim().replace('_', "-");
    let exact = LANGUAGES.iter().find(|l| l.eq_ignore_ascii_case(&tag));
    let primary = tag.split('-').next().unwrap_or_default();
    exact.or_else(|| LANGUAGES.iter().find(|l| !l.contains('-') && l.eq_ignore_ascii_case(primary))).copied()
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// At most 30 entries: the overflow goes into the last one, so nothing is dropped.
fn fold_properties(properties: Vec<(String, String)>) -> Vec<Value> {
    let entry = |k: &str, v: &str| json!({ "key": k, "value": v });
    if properties.len() <= MAX_PROPERTIES {
        return properties.iter().map(|(k, v)| entry(k, v)).collect();
    }
    let (kept, rest) = properties.split_at(MAX_PROPERTIES - 1);
    let mut out: Vec<Value> = kept.iter().map(|(k, v)| entry(k, v)).collect();
    let folded: Vec<String> = rest.iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.push(entry("more", &folded.join("; ")));
    out
}

/// The transcript as history messages; beyond 200, the oldest lines are rendered into the
/// first message.
fn history(entries: &[TranscriptEntry]) -> Vec<Value> {
    let entries: Vec<&TranscriptEntry> = entries.iter().filter(|e| !e.text.trim().is_empty()).collect();
    let message = |e: &TranscriptEntry| match e.from {
        Speaker::User => json!({ "authorType": "user", "text": e.text }),
        Speaker::Bot => json!({ "authorType": "bot", "text": e.text }),
        Speaker::Agent => json!({ "authorType": "bot", "text": format!("{}: {}", e.from.label(), e.text) }),
    };
    if entries.len() <= MAX_HISTORY {
        return entries.into_iter().map(message).collect();
    }
    let split = entries.len() - (MAX_HISTORY - 1);
    let older: Vec<TranscriptEntry> = entries[..split].iter().map(|e| (*e).clone()).collect();
    let mut out = vec![json!({ "authorType": "bot", "text": transcript::render(&older) })];
    out.extend(entries[split..].iter().map(|e| message(e)));
    out
}

/// Merges `extra` into `body`: objects key by key, `additionalProperties` arrays appended,
/// anything else replaced.
fn merge(body: &mut Value, extra: &Value) {
    let (Value::Object(target), Value::Object(extra)) = (body, extra) else { return };
    for (key, value) in extra {
        match (target.get_mut(key), value) {
            (Some(existing @ Value::Object(_)), Value::Object(_)) => merge(existing, value),
            (Some(Value::Array(existing)), Value::Array(more)) if key == "additionalProperties" => {
                existing.extend(more.iter().cloned());
            }
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// A send-message body (§5.2, variant A): `authorType`, the text when there is one, and the
/// ids of uploaded attachments (row 16) when there are any.
pub(crate) fn message_body(author: &str, text: Option<&str>, attachment_ids: &[&str]) -> Value {
    let mut body = json!({ "authorType": author });
    if let Some(text) = text {
        body["text"] = json!(text);
    }
    if !attachment_ids.is_empty() {
        body["attachments"] = attachment_ids.iter().map(|id| json!({ "id": id })).collect();
    }
    body
}

/// A participant of a conversation (`GET …/participants`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Participant {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) removed: bool,
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    api_key: SecretString,
    tenant: Option<String>,
    retry: RetryPolicy,
}

impl Client {
    pub(crate) fn new(config: &EightByEightConfig, retry: RetryPolicy) -> Result<Self> {
        let base = http::base_url(NAME, "base_url", &config.base_url, config.allow_insecure_http)?;
        if base.path().contains("/chat-gateway") {
            return Err(Error::config(
                NAME,
                "[8x8] `base_url` is the host only (e.g. https://api.8x8.com); the /chat-gateway/v1 paths are added",
            ));
        }
        Ok(Self {
            http: http::client(NAME, &HttpConfig::default())?,
            base,
            api_key: config.api_key.clone(),
            tenant: config.tenant.clone().filter(|t| !t.trim().is_empty()),
            retry,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut request = self
            .http
            .request(method, http::join(&self.base, &format!("{PREFIX}{path}")))
            .header("x-api-key", self.api_key.expose_secret())
            .header("accept", "application/hal+json");
        if let Some(tenant) = &self.tenant {
            request = request.header("X-8x8-Tenant", tenant);
        }
        request
    }

    async fn call(
        &self,
        op: &'static str,
        idempotency: Idempotency,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let build = || {
            let request = self.request(method.clone(), path);
            match body {
                Some(body) => request.json(body),
                None => request,
            }
        };
        self.exchange(op, idempotency, build).await
    }

    /// The one send every request goes through: `build` makes each attempt's request; the
    /// answer's JSON (`Null` for an empty body), or the error [`parse_error`] makes.
    async fn exchange(
        &self,
        op: &'static str,
        idempotency: Idempotency,
        build: impl FnMut() -> RequestBuilder,
    ) -> Result<Value> {
        let limit = http::DEFAULT_BODY_LIMIT;
        let bytes = retry::exchange(&self.retry, NAME, op, idempotency, build, limit, |status, headers, body| {
            parse_error(op, status, headers, body)
        })
        .await?;
        // 202/204/201 come with empty bodies (§8.7).
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        http::decode_json(NAME, op, &bytes)
    }

    /// §5.1: creates the conversation; returns its id.
    pub(crate) async fn create_conversation(&self, body: &Value) -> Result<String> {
        let op = "create conversation";
        let created = self.call(op, Idempotency::NotIdempotent, Method::POST, "/conversations", Some(body)).await?;
        created["conversationId"]
            .as_str()
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| Error::protocol(NAME, op, "the answer has no conversationId"))
    }

    /// §5.2: a text message from `author` (`user` or `bot`).
    pub(crate) async fn send_message(&self, conversation: &str, author: &str, text: &str) -> Result<()> {
        let path = format!("/conversations/{}/messages", segment(conversation));
        let body = message_body(author, Some(text), &[]);
        self.call("send message", Idempotency::NotIdempotent, Method::POST, &path, Some(&body)).await.map(drop)
    }

    /// Row 16: uploads the user's file (multipart: part `attachment`, the bytes with their file
    /// name and media type; part `authorType`, `user`) and returns the attachment's id, which
    /// a message then references.
    pub(crate) async fn upload_attachment(&self, conversation: &str, attachment: &Attachment) -> Result<String> {
        let op = "upload attachment";
        let path = format!("/conversations/{}/attachments", segment(conversation));
        let form = || -> Result<Form> {
            Ok(Form::new().part("attachment", file_part(NAME, attachment)?).text("authorType", "user"))
        };
        // Built once before any I/O (a media type that does not parse fails here); each attempt
        // then builds its own body, as sending consumes it.
        form()?;
        // A repeat would upload the file twice: only refusals and connect errors are retried.
        let uploaded = self
            .exchange(op, Idempotency::NotIdempotent, || {
                self.request(Method::POST, &path).multipart(form().unwrap_or_default())
            })
            .await?;
        let id = uploaded["id"].as_str().filter(|id| !id.is_empty());
        let id = id.ok_or_else(|| Error::protocol(NAME, op, "the answer has no attachment id"))?;
        tracing::debug!(
            %conversation,
            name = %attachment.name,
            bytes = uploaded["sizeInBytes"].as_u64().unwrap_or_default(),
            "attachment uploaded"
        );
        Ok(id.to_owned())
    }

    /// §5.2: the user's message carrying the uploaded attachment `attachment_id`, with the
    /// caption as its text.
    pub(crate) async fn send_attachment_message(
        &self,
        conversation: &str,
        attachment_id: &str,
        caption: Option<&str>,
    ) -> Result<()> {
        let path = format!("/conversations/{}/messages", segment(conversation));
        let caption = caption.filter(|c| !c.trim().is_empty());
        let body = message_body("user", caption, &[attachment_id]);
        self.call("send attachment", Idempotency::NotIdempotent, Method::POST, &path, Some(&body)).await.map(drop)
    }

    /// Row 11: the user is typing. The Gateway has no "stopped typing" call.
    pub(crate) async fn typing(&self, conversation: &str) -> Result<()> {
        let path = format!("/conversations/{}/typing", segment(conversation));
        let body = json!({ "authorType": "user" });
        self.call("send typing", Idempotency::Idempotent, Method::POST, &path, Some(&body)).await.map(drop)
    }

    /// Row 15: the user leaves, which ends the interaction.
    pub(crate) async fn remove_user(&self, conversation: &str) -> Result<()> {
        let path = format!("/conversations/{}/participants/user", segment(conversation));
        let body = json!({ "removed": true });
        self.call("remove user", Idempotency::Idempotent, Method::PATCH, &path, Some(&body)).await.map(drop)
    }

    /// Row 14: who is in the conversation (used to catch up after a resume).
    pub(crate) async fn participants(&self, conversation: &str) -> Result<Vec<Participant>> {
        let op = "list participants";
        let path = format!("/conversations/{}/participants", segment(conversation));
        let listed = self.call(op, Idempotency::Idempotent, Method::GET, &path, None).await?;
        let items = listed["_embedded"]["participants"]
            .as_array()
            .ok_or_else(|| Error::protocol(NAME, op, "the answer has no _embedded.participants list"))?;
        Ok(items
            .iter()
            .filter_map(|p| {
                Some(Participant {
                    id: p["id"].as_str()?.to_owned(),
                    kind: p["type"].as_str().unwrap_or_default().to_owned(),
                    removed: p["removed"] == true,
                })
            })
            .collect())
    }

    /// Row "channels/{id}": proves the key, the tenant and the channel.
    pub(crate) async fn channel(&self, channel: &str) -> Result<Value> {
        let path = format!("/channels/{}", segment(channel));
        self.call("read channel", Idempotency::Idempotent, Method::GET, &path, None).await
    }

    /// Row 20: the public JWK `kid` signs webhooks with.
    pub(crate) async fn jwk(&self, kid: &str) -> Result<Value> {
        let path = format!("/jwk/{}/public", segment(kid));
        self.call("fetch webhook key", Idempotency::Idempotent, Method::GET, &path, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use handover_core::{EndUser, Routing};

    #[test]
    fn every_error_shape_is_read() {
        let array = ApiError::parse(
            StatusCode::BAD_REQUEST,
            br#"{"message":"Bad request","errors":[{"code":"invalid_queue","message":"Queue ID 112 is invalid."}]}"#,
        );
        assert_eq!(
            array.errors,
            [ErrorDetail { code: Some("invalid_queue".into()), message: Some("Queue ID 112 is invalid.".into()) }]
        );
        assert_eq!(array.to_string(), "Bad request — invalid_queue: Queue ID 112 is invalid.");

        let object = ApiError::parse(
            StatusCode::BAD_REQUEST,
            br#"{"message":"Invalid","errors":{"code":"invalid_json_object","message":"bad json"},"referenceId":"ref-1"}"#,
        );
        assert_eq!(object.errors.len(), 1);
        assert_eq!(object.reference_id.as_deref(), Some("ref-1"));
        assert_eq!(object.to_string(), "Invalid — invalid_json_object: bad json (reference ref-1)");

        let strings =
            ApiError::parse(StatusCode::NOT_FOUND, br#"{"message":"Not found","errors":["Tenant t does not belong"]}"#);
        assert_eq!(strings.errors[0].code, None);
        assert_eq!(strings.to_string(), "Not found — Tenant t does not belong");

        let text = ApiError::parse(StatusCode::BAD_GATEWAY, b"<html>upstream</html>");
        assert_eq!(text.message, "<html>upstream</html>");
        assert!(text.errors.is_empty());

        let legacy = ApiError::parse(
            StatusCode::UNAUTHORIZED,
            br#"{"fault":{"faultstring":"Invalid ApiKey","detail":{"errorcode":"x"}}}"#,
        );
        assert_eq!(legacy.message, "Invalid ApiKey");
    }

    #[test]
    fn parse_error_keeps_the_typed_body_as_source() {
        let error = parse_error(
            "create conversation",
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            br#"{"message":"Access Denied","errors":[{"message":"Invalid key","code":"access_denied"}],"referenceId":"r9"}"#,
        );
        assert_eq!(error.kind(), handover_core::ErrorKind::Unauthenticated);
        assert!(error.message().contains("access_denied: Invalid key"), "{}", error.message());
        assert!(error.message().contains("check `api_key`"));
        let source = std::error::Error::source(&error).and_then(|s| s.downcast_ref::<ApiError>());
        assert_eq!(source.and_then(|a| a.reference_id.as_deref()), Some("r9"));
    }

    #[test]
    fn languages_map_to_the_allowed_list() {
        assert_eq!(language("en-US"), Some("en"));
        assert_eq!(language("zh_tw"), Some("zh-TW"));
        assert_eq!(language("PT-br"), Some("pt"));
        assert_eq!(language("tlh"), None);
    }

    #[test]
    fn properties_beyond_thirty_are_folded_not_dropped() {
        let many: Vec<(String, String)> = (0..33).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
        let folded = fold_properties(many);
        assert_eq!(folded.len(), 30);
        assert_eq!(folded[28], json!({ "key": "k28", "value": "v28" }));
        assert_eq!(folded[29], json!({ "key": "more", "value": "k29=v29; k30=v30; k31=v31; k32=v32" }));
    }

    #[test]
    fn long_transcripts_keep_every_line_within_two_hundred_messages() {
        let lines: Vec<TranscriptEntry> = (0..205)
            .map(|i| TranscriptEntry::new(if i % 2 == 0 { Speaker::User } else { Speaker::Bot }, format!("line {i}")))
            .collect();
        let history = history(&lines);
        assert_eq!(history.len(), 200);
        let first = history[0]["text"].as_str().unwrap();
        for i in 0..6 {
            assert!(first.contains(&format!("line {i}\n")) || first.ends_with(&format!("line {i}")), "{first}");
        }
        assert_eq!(history[1], json!({ "authorType": "user", "text": "line 6" }));
        assert_eq!(history[199], json!({ "authorType": "user", "text": "line 204" }));
    }

    #[test]
    fn json_properties_merge_into_the_body() {
        let mut config = EightByEightConfig::new("k", "chan");
        config.json_properties = serde_json::from_value(json!({
            "user": { "company": "ACME", "additionalProperties": [{ "key": "tier", "value": "gold" }] },
            "assignment": { "type": "script", "id": "s1" },
        }))
        .unwrap();
        config.queue_id = Some("q1".into());
        let request = HandoverRequest::new("s-1", EndUser::new("u-1").with_name("Jo"))
            .with_routing(Routing::new().with_skills(["billing"]));
        let body = create_body(&config, &request);
        assert_eq!(body["user"]["company"], "ACME");
        assert_eq!(body["user"]["name"], "Jo");
        assert_eq!(body["assignment"], json!({ "type": "script", "id": "s1" }));
        assert_eq!(
            body["user"]["additionalProperties"],
            json!([
                { "key": "skills", "value": "billing" },
                { "key": "botSessionId", "value": "s-1" },
                { "key": "tier", "value": "gold" },
            ])
        );
        assert!(body.get("history").is_none());
    }
}
