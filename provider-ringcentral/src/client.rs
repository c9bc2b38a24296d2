//! The Send API (`protocols/ringcentral-engage.md` §4) with every object it carries (the
//! user, the bot, threads, messages, the transcript, typing), the REST API (§5), and
//! `parse_error`.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use handover_core::{
    Attachment, AttachmentContent, Error, ErrorKind, HandoverRequest, Result, Speaker, TranscriptEntry, transcript,
};
use handover_transport::http::{self, HttpConfig, segment};
use handover_transport::reqwest::header::HeaderMap;
use handover_transport::reqwest::{self, Method, RequestBuilder, StatusCode};
use handover_transport::retry::{self, Idempotency, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use url::Url;

use crate::NAME;
use crate::config::RingCentralConfig;
use crate::webhook::{SIGNATURE_HEADER, sign};

/// Turns a failed REST or Send API response into an error. REST bodies are
/// `{"error": "<id>", "message": "<text>", "status": <code>}`; the Send API answers text.
pub fn parse_error(op: impl Into<Cow<'static, str>>, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(json) => match (json["error"].as_str(), json["message"].as_str()) {
            (Some(id), Some(text)) => format!("{id}: {text}"),
            (Some(text), None) | (None, Some(text)) => text.to_owned(),
            (None, None) => json.to_string(),
        },
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let mut message = message;
    match status {
        StatusCode::UNAUTHORIZED => message.push_str("; check `access_token`"),
        StatusCode::UNPROCESSABLE_ENTITY if message.contains("Invalid signature") => {
            message.push_str("; check `source_token` (the source's own API access token)");
        }
        StatusCode::UNPROCESSABLE_ENTITY if message.contains("Source not found") => {
            message.push_str("; check `source_id`");
        }
        _ => {}
    }
    http::status_error(NAME, op, status, headers, message)
}

/// §4: the longest message body.
pub(crate) const MAX_BODY: usize = 20_000;

/// The largest file sent: **unconfirmed** for Source SDK sources. Engage documents no
/// per-file limit for them; this is Engage Messaging's documented one ("Attachment size
/// must be smaller than 10M", engage-digital-api-docs
/// `docs/interactions/web-messaging/attachments.md`), and, base64-encoded (13.4 MB), it
/// stays well inside the Send API's request limit of 20 971 520 bytes (`send-api.md`,
/// error `413 Invalid request size`).
pub(crate) const MAX_ATTACHMENT_BYTES: u64 = 10_000_000;

/// The Send API's request limit (§4: `413 Invalid request size (max: 20971520 bytes)`).
const MAX_REQUEST_BYTES: usize = 20_971_520;

/// How long a request carrying a file may take (the default timeout is for small bodies).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// §4 Message `attachments` entry for `attachment`: `{content: <base64>, filename}` for
/// bytes, `{url, filename}` for a URL Engage fetches (the documented URL form is `{url}`;
/// Engage ignores fields it does not take, and the name keeps a pre-signed URL's file
/// name). An `.mp4` also says whether it is `audio` or `video`, as the docs ask.
pub(crate) fn attachment_object(attachment: &Attachment) -> Value {
    let mut object = match &attachment.content {
        AttachmentContent::Bytes(data) => {
            json!({ "content": base64::engine::general_purpose::STANDARD.encode(data), "filename": attachment.name })
        }
        AttachmentContent::Url(url) => json!({ "url": url, "filename": attachment.name }),
    };
    let essence = attachment.media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if (essence.ends_with("/mp4") || attachment.name.to_ascii_lowercase().ends_with(".mp4"))
        && let Some(kind @ ("audio" | "video")) = essence.split('/').next()
    {
        object["type"] = json!(kind);
    }
    object
}

fn now() -> String {
    handover_transport::time::now_iso8601()
}

/// `context_data` keys are `[a-zA-Z-]`.
fn context_key(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphabetic() { c } else { '-' }).collect()
}

/// The user's identity object: name, contact details, and the request's routing as
/// `context_data`.
pub(crate) fn user_object(request: &HandoverRequest) -> Value {
    let user = &request.user;
    let mut context = Map::new();
    context.insert("bot-session".into(), json!(request.session_id));
    if let Some(language) = &user.language {
        context.insert("language".into(), json!(language));
    }
    if !request.routing.skills.is_empty() {
        context.insert("skills".into(), json!(request.routing.skills.join(",")));
    }
    for (key, value) in &request.routing.attributes {
        let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        context.insert(context_key(key), json!(text));
    }
    let stamp = now();
    let mut object = json!({
        "id": user.id,
        "screenname": user.name.clone().unwrap_or_else(|| user.id.clone()),
        "puppetizable": false,
        "created_at": stamp,
        "updated_at": stamp,
        "context_data": context,
    });
    if let Some(email) = &user.email {
        object["email"] = json!(email);
    }
    if let Some(phone) = &user.phone {
        object["mobile_phone"] = json!(phone);
    }
    object
}

/// The bot's identity object (presence lines and the bot's transcript lines).
pub(crate) fn bot_object(config: &RingCentralConfig) -> Value {
    let stamp = now();
    json!({
        "id": config.bot_identity_id,
        "screenname": config.bot_name,
        "puppetizable": true,
        "created_at": stamp,
        "updated_at": stamp,
    })
}

fn transcript_body(entry: &TranscriptEntry) -> String {
    match entry.from {
        Speaker::Agent => format!("{}: {}", entry.from.label(), entry.text),
        _ => entry.text.clone(),
    }
}

/// §4 Message object: our id, the author, a text body, our thread.
fn message_params(thread: &str, id: &str, author: &Value, body: &str, created_at: String) -> Value {
    json!({
        "id": id,
        "author": author,
        "body": body,
        "format": "text",
        "thread_id": thread,
        "created_at": created_at,
    })
}

pub(crate) struct Client {
    http: reqwest::Client,
    api: Url,
    realtime: Url,
    token: SecretString,
    source_token: SecretString,
    retry: RetryPolicy,
}

impl Client {
    pub(crate) fn new(config: &RingCentralConfig, retry: RetryPolicy) -> Result<Self> {
        let (api, realtime) = config.urls().map_err(|message| Error::config(NAME, message))?;
        let api = http::base_url(NAME, "api_url", &api, config.allow_insecure_http)?;
        if !api.path().trim_end_matches('/').ends_with("/1.0") {
            return Err(Error::config(NAME, "[ringcentral] `api_url` must end with /1.0"));
        }
        let realtime = http::base_url(NAME, "realtime_url", &realtime, config.allow_insecure_http)?;
        if !realtime.path().contains("/realtime/sdk/") {
            return Err(Error::config(
                NAME,
                "[ringcentral] `realtime_url` is the source's Realtime Endpoint URL (…/realtime/sdk/<source_id>)",
            ));
        }
        Ok(Self {
            http: http::client(NAME, &HttpConfig::default())?,
            api,
            realtime,
            token: config.access_token.clone(),
            source_token: config.source_token.clone(),
            retry,
        })
    }

    /// The one exchange every request goes through: retried per the policy, a failure
    /// read by [`parse_error`].
    async fn exchange(
        &self,
        op: &'static str,
        idempotency: Idempotency,
        build: impl FnMut() -> RequestBuilder,
        limit: usize,
    ) -> Result<Vec<u8>> {
        retry::exchange(&self.retry, NAME, op, idempotency, build, limit, |status, headers, body| {
            parse_error(op, status, headers, body)
        })
        .await
    }

    /// §4: a signed Send API request; Engage answers `200 ok` and imports asynchronously.
    /// Our object ids make a repeated request harmless.
    async fn send(&self, op: &'static str, action: &str, params: &Value) -> Result<()> {
        let body = json!({ "action": action, "params": params }).to_string();
        if body.len() > MAX_REQUEST_BYTES {
            return Err(Error::invalid_input(
                NAME,
                op,
                format!("the request has {} bytes, more than the Send API's {MAX_REQUEST_BYTES}", body.len()),
            ));
        }
        let signature = sign(self.source_token.expose_secret().as_bytes(), body.as_bytes());
        // A request carrying a file may take longer than the default timeout allows.
        let timeout = (body.len() > 64 * 1024).then_some(UPLOAD_TIMEOUT);
        let build = || {
            let request = self
                .http
                .post(self.realtime.clone())
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .body(body.clone());
            match timeout {
                Some(timeout) => request.timeout(timeout),
                None => request,
            }
        };
        self.exchange(op, Idempotency::Idempotent, build, 64 * 1024).await.map(drop)
    }

    /// §4 `threads.create`: our thread `thread`, opened by `user` with an introduction.
    pub(crate) async fn create_thread(&self, thread: &str, user: &Value, name: &str) -> Result<()> {
        let params = json!({
            "id": thread,
            "title": format!("Chat with {name}"),
            "body": format!("{name} asked for an agent."),
            "author": user,
            "format": "text",
            "created_at": now(),
        });
        self.send("create thread", "threads.create", &params).await
    }

    /// §4 `messages.create`: a message on our thread, now, with our id
    /// `<thread>:m:<message_id>` (Engage keeps it as `foreign_id`; whether it deduplicates
    /// on it is not documented).
    pub(crate) async fn post_message(
        &self,
        op: &'static str,
        thread: &str,
        message_id: &str,
        author: &Value,
        body: &str,
    ) -> Result<()> {
        let id = format!("{thread}:m:{message_id}");
        self.create_message(op, thread, &id, author, body, now()).await
    }

    /// §4 `messages.create`: a file (with its caption as the body, if any) on our thread,
    /// with our id `<thread>:m:<message_id>` like a text's. Bytes go as base64 `content`,
    /// a URL as `url`. A `413` (the request over the Send API's 20 MiB) is an
    /// `InvalidInput` error saying so.
    pub(crate) async fn post_attachment(
        &self,
        thread: &str,
        message_id: &str,
        author: &Value,
        attachment: &Attachment,
    ) -> Result<()> {
        let op = "send attachment";
        let id = format!("{thread}:m:{message_id}");
        let caption = attachment.caption.as_deref().unwrap_or_default();
        if caption.chars().count() > MAX_BODY {
            // Engage silently ignores a message whose body is over the limit.
            return Err(Error::invalid_input(NAME, op, format!("the caption is longer than {MAX_BODY} characters")));
        }
        let mut params = message_params(thread, &id, author, caption, now());
        // `body` is required unless attachments are present.
        if caption.is_empty()
            && let Some(params) = params.as_object_mut()
        {
            params.remove("body");
        }
        params["attachments"] = json!([attachment_object(attachment)]);
        self.send(op, "messages.create", &params).await.map_err(|error| {
            if http::is_status(&error, StatusCode::PAYLOAD_TOO_LARGE) {
                Error::invalid_input(
                    NAME,
                    op,
                    format!(
                        "Engage refused the file as too large ({}); the Send API takes 20 MiB a request, \
                         base64 included",
                        error.message()
                    ),
                )
                .with_status(413)
            } else {
                error
            }
        })
    }

    async fn create_message(
        &self,
        op: &'static str,
        thread: &str,
        id: &str,
        author: &Value,
        body: &str,
        created_at: String,
    ) -> Result<()> {
        self.send(op, "messages.create", &message_params(thread, id, author, body, created_at)).await
    }

    /// The bot's transcript on our thread, each entry split to [`MAX_BODY`]: the user's
    /// lines from `user`, the others from `bot`, ids `<thread>:t:<entry>.<part>`.
    pub(crate) async fn send_transcript(
        &self,
        thread: &str,
        user: &Value,
        bot: &Value,
        entries: &[TranscriptEntry],
    ) -> Result<()> {
        for (n, entry) in entries.iter().filter(|e| !e.text.trim().is_empty()).enumerate() {
            let author = if entry.from == Speaker::User { user } else { bot };
            let body = transcript_body(entry);
            let parts = transcript::split(&body, MAX_BODY)
                .map_err(|e| Error::invalid_input(NAME, "send transcript", e.to_string()))?;
            for (k, part) in parts.into_iter().enumerate() {
                let created_at = entry.at.map_or_else(now, |ms| {
                    handover_transport::time::iso8601_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                });
                let id = format!("{thread}:t:{n}.{k}");
                self.create_message("send transcript", thread, &id, author, part, created_at).await?;
            }
        }
        Ok(())
    }

    /// §4 `typing.start` (with a preview) or `typing.stop` on our thread.
    pub(crate) async fn typing(&self, thread: &str, on: bool) -> Result<()> {
        let (action, params) = if on {
            ("typing.start", json!({ "thread_id": thread, "preview": "…" }))
        } else {
            ("typing.stop", json!({ "thread_id": thread }))
        };
        self.send("send typing", action, &params).await
    }

    /// §6: waits up to `timeout` for Engage to import our thread (the Send API is
    /// asynchronous); returns Engage's id of it.
    pub(crate) async fn wait_for_thread(&self, source_id: &str, thread: &str, timeout_secs: u64) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        let mut delay = Duration::from_millis(100);
        loop {
            if let Some(id) = self.find_thread(source_id, thread).await? {
                return Ok(id);
            }
            if Instant::now() + delay > deadline {
                return Err(Error::new(
                    ErrorKind::Rejected,
                    NAME,
                    "find thread",
                    format!(
                        "Engage did not import the thread within {timeout_secs}s; check that the source is active \
                         and that `source_id` and the realtime URL are the source's"
                    ),
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    async fn rest(
        &self,
        op: &'static str,
        idempotency: Idempotency,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value> {
        let url = http::join(&self.api, path);
        let build = || -> RequestBuilder {
            self.http.request(method.clone(), url.clone()).bearer_auth(self.token.expose_secret()).query(query)
        };
        let limit = http::DEFAULT_BODY_LIMIT;
        let body = self.exchange(op, idempotency, build, limit).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        http::decode_json(NAME, op, &body)
    }

    /// §6: Engage's thread created from our `thread_id`, if imported yet.
    async fn find_thread(&self, source_id: &str, foreign_id: &str) -> Result<Option<String>> {
        let query = [("q", format!("foreign:\"{foreign_id}\" source:\"{source_id}\"")), ("limit", "5".to_owned())];
        let found = self.rest("find thread", Idempotency::Idempotent, Method::GET, "/content_threads", &query).await?;
        Ok(found["records"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["foreign_id"].as_str().is_none_or(|f| f == foreign_id))
            .and_then(|t| t["id"].as_str())
            .map(str::to_owned))
    }

    /// Our thread id of Engage's thread `id` (`foreign_id`).
    pub(crate) async fn thread_foreign_id(&self, id: &str) -> Result<Option<String>> {
        let path = format!("/content_threads/{}", segment(id));
        let thread = self.rest("read thread", Idempotency::Idempotent, Method::GET, &path, &[]).await?;
        Ok(thread["foreign_id"].as_str().map(str::to_owned))
    }

    /// §6 mechanism 3: **sets** the thread's categories. `409` (a categorization still
    /// running, §9.6) is retried with backoff.
    pub(crate) async fn set_thread_categories(&self, thread: &str, categories: &[String]) -> Result<()> {
        let path = format!("/content_threads/{}/update_categories", segment(thread));
        let query: Vec<(&str, String)> = categories.iter().map(|c| ("thread_category_ids[]", c.clone())).collect();
        let mut backoff = self.retry.clone().with_max_attempts(8).backoff();
        loop {
            match self.rest("recategorize thread", Idempotency::Idempotent, Method::PUT, &path, &query).await {
                Err(error) if http::is_status(&error, StatusCode::CONFLICT) && backoff.can_retry() => {
                    let delay = backoff.next_delay();
                    tracing::debug!(?delay, "a categorization is still running; retrying");
                    backoff.sleep(delay).await;
                }
                other => return other.map(drop),
            }
        }
    }

    /// The interventions of Engage's thread `thread`.
    pub(crate) async fn interventions(&self, thread: &str) -> Result<Vec<Value>> {
        let query = [("thread_id", thread.to_owned()), ("limit", "50".to_owned())];
        let listed =
            self.rest("list interventions", Idempotency::Idempotent, Method::GET, "/interventions", &query).await?;
        Ok(listed["records"].as_array().cloned().unwrap_or_default())
    }

    /// `PUT /interventions/{id}/close` (needs agent replies) or `DELETE …/cancel` (needs
    /// none).
    pub(crate) async fn finish_intervention(&self, id: &str, close: bool) -> Result<()> {
        let (op, method, path) = if close {
            ("close intervention", Method::PUT, format!("/interventions/{}/close", segment(id)))
        } else {
            ("cancel intervention", Method::DELETE, format!("/interventions/{}/cancel", segment(id)))
        };
        self.rest(op, Idempotency::Idempotent, method, &path, &[]).await.map(drop)
    }

    /// `GET /content_sources/{id}`: the source, proving `source_id` and the API token.
    pub(crate) async fn source(&self, id: &str) -> Result<Value> {
        let path = format!("/content_sources/{}", segment(id));
        self.rest("read source", Idempotency::Idempotent, Method::GET, &path, &[]).await
    }

    /// `GET /categories?ids=…`: the ids Engage knows among `ids`.
    pub(crate) async fn categories(&self, ids: &[String]) -> Result<Vec<String>> {
        let query = [("ids", ids.join(",")), ("limit", "150".to_owned())];
        let listed = self.rest("read categories", Idempotency::Idempotent, Method::GET, "/categories", &query).await?;
        Ok(listed["records"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect())
    }
}

/// Whether `error` is Engage refusing an intervention change for its state (403) or
/// because another change runs (409).
pub(crate) fn is_refused(error: &Error) -> bool {
    error.kind() == ErrorKind::PermissionDenied || http::is_status(error, StatusCode::CONFLICT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_mp4_says_whether_it_is_audio_or_video() {
        let song = Attachment::url("song.mp4", "audio/mp4", "https://files.example/song.mp4");
        assert_eq!(
            attachment_object(&song),
            json!({ "url": "https://files.example/song.mp4", "filename": "song.mp4", "type": "audio" })
        );
        let typed_by_name = Attachment::bytes("clip.MP4", "application/octet-stream", vec![1]);
        assert_eq!(attachment_object(&typed_by_name), json!({ "content": "AQ==", "filename": "clip.MP4" }));
        let photo = Attachment::bytes("a.png", "image/png", vec![0xff]);
        assert_eq!(attachment_object(&photo), json!({ "content": "/w==", "filename": "a.png" }));
    }

    #[test]
    fn context_keys_are_letters_and_dashes() {
        assert_eq!(context_key("my_key 2"), "my-key--");
    }
}
