//! The Application API endpoints (`protocols/liveagent-chatwoot.md` §3) and `parse_error`.

use std::borrow::Cow;
use std::time::Duration;

use handover_core::{Attachment, Error, ErrorKind, HandoverRequest, Priority, Result};
use handover_transport::http::{self, HttpConfig};
use handover_transport::reqwest::header::HeaderMap;
use handover_transport::reqwest::{self, Method, RequestBuilder, StatusCode};
use handover_transport::retry::{self, Idempotency, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use url::Url;

use crate::NAME;
use crate::config::LiveAgentConfig;

/// Turns a failed response into an error. Bodies vary: `{"error": …}`,
/// `{"message": …, "attributes": […]}`, `{"errors": […]}` or text.
pub fn parse_error(op: impl Into<Cow<'static, str>>, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(json) => {
            let mut message = json["error"]
                .as_str()
                .or_else(|| json["message"].as_str())
                .map(str::to_owned)
                .or_else(|| {
                    json["errors"].as_array().map(|e| {
                        e.iter()
                            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                })
                .unwrap_or_default();
            if let Some(attributes) = json["attributes"].as_array().filter(|a| !a.is_empty()) {
                let names: Vec<String> =
                    attributes.iter().map(|a| a.as_str().map_or_else(|| a.to_string(), str::to_owned)).collect();
                message = format!("{message} ({})", names.join(", "));
            }
            message
        }
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    http::status_error(NAME, op, status, headers, message)
}

/// The conversation's custom attributes (§3): the configured ones, the request's routing
/// attributes, skills and languages (config and request, comma-separated, each once) and
/// the bot session id.
pub(crate) fn conversation_attributes(config: &LiveAgentConfig, request: &HandoverRequest) -> Map<String, Value> {
    let join = |a: &[String], b: &[String]| {
        let mut all: Vec<&str> = Vec::new();
        for item in a.iter().chain(b) {
            if !all.contains(&item.as_str()) {
                all.push(item);
            }
        }
        all.join(",")
    };
    let mut attributes = config.custom_attributes.clone();
    for (key, value) in &request.routing.attributes {
        attributes.insert(key.clone(), value.clone());
    }
    let skills = join(&config.skills, &request.routing.skills);
    if !skills.is_empty() {
        attributes.insert("skills".to_owned(), json!(skills));
    }
    let languages = join(&config.languages, &request.routing.languages);
    if !languages.is_empty() {
        attributes.insert("languages".to_owned(), json!(languages));
    }
    attributes.insert("bot_session_id".to_owned(), json!(request.session_id));
    attributes
}

/// The priority to set (§3, `toggle_priority`): the configured one, else the request's
/// named priority in lower case.
pub(crate) fn priority(config: &LiveAgentConfig, request: &HandoverRequest) -> Option<String> {
    config.priority.clone().or_else(|| match &request.routing.priority {
        Some(Priority::Named(name)) => Some(name.to_lowercase()),
        _ => None,
    })
}

/// The largest file the desk takes: Chatwoot's attachment limit, 40 MB (maintainer in
/// chatwoot/chatwoot#8171: "There is a 40MB limit on the attachments"; `Attachment`
/// `validate_file_size`: `40.megabytes`, newer versions read the installation's
/// `MAXIMUM_FILE_UPLOAD_SIZE`, default 40). Cognigy Live Agent's own limit is unconfirmed.
pub(crate) const MAX_ATTACHMENT_BYTES: u64 = 40 * 1024 * 1024;

/// How long an upload may take (the default whole-request timeout is for small bodies).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A contact and its source id in the inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Contact {
    pub(crate) id: u64,
    pub(crate) source_id: String,
}

pub(crate) struct Client {
    http: reqwest::Client,
    account: Url,
    token: SecretString,
    inbox_id: u64,
    retry: RetryPolicy,
}

impl Client {
    pub(crate) fn new(config: &LiveAgentConfig, retry: RetryPolicy) -> Result<Self> {
        let base = http::base_url(NAME, "base_url", &config.base_url, config.allow_insecure_http)?;
        if !base.path().trim_end_matches('/').ends_with("/api/v1") {
            return Err(Error::config(
                NAME,
                "[liveagent] `base_url` must end with /api/v1 (e.g. https://liveagent-app.cognigy.ai/api/v1)",
            ));
        }
        Ok(Self {
            http: http::client(NAME, &HttpConfig::default())?,
            account: http::join(&base, &format!("/accounts/{}", config.account_id)),
            token: config.api_access_token.clone(),
            inbox_id: config.inbox_id,
            retry,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, http::join(&self.account, path))
            .header("api_access_token", self.token.expose_secret())
    }

    async fn call(
        &self,
        op: &'static str,
        idempotency: Idempotency,
        method: Method,
        path: &str,
        body: Option<&Value>,
        query: &[(&str, String)],
    ) -> Result<Value> {
        let build = || {
            let request = self.request(method.clone(), path).query(query);
            match body {
                Some(body) => request.json(body),
                None => request,
            }
        };
        let limit = http::DEFAULT_BODY_LIMIT;
        let bytes = retry::exchange(&self.retry, NAME, op, idempotency, build, limit, |status, headers, body| {
            let error = parse_error(op, status, headers, body);
            if status == StatusCode::UNAUTHORIZED {
                return Error::unauthenticated(NAME, op, format!("{}; check `api_access_token`", error.message()));
            }
            error
        })
        .await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        http::decode_json(NAME, op, &bytes)
    }

    /// Finds the contact with `identifier`, or creates it, and returns its source id in the
    /// inbox (§2 step 1).
    pub(crate) async fn contact(
        &self,
        identifier: &str,
        name: Option<&str>,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Contact> {
        let mut body =
            json!({ "inbox_id": self.inbox_id, "identifier": identifier, "name": name.unwrap_or(identifier) });
        if let Some(email) = email {
            body["email"] = json!(email);
        }
        if let Some(phone) = phone {
            body["phone_number"] = json!(phone);
        }
        match self.call("create contact", Idempotency::NotIdempotent, Method::POST, "/contacts", Some(&body), &[]).await
        {
            Ok(created) => {
                let payload = &created["payload"];
                let id = payload["contact"]["id"].as_u64();
                let source = payload["contact_inbox"]["source_id"].as_str();
                match (id, source) {
                    (Some(id), Some(source)) => Ok(Contact { id, source_id: source.to_owned() }),
                    _ => Err(Error::protocol(NAME, "create contact", "the answer has no contact id or source id")),
                }
            }
            // §3: a duplicate identifier (or e-mail) is refused: use the existing contact.
            Err(error) if error.kind() == ErrorKind::InvalidInput => self.existing_contact(identifier).await,
            Err(error) => Err(error),
        }
    }

    async fn existing_contact(&self, identifier: &str) -> Result<Contact> {
        let op = "find contact";
        let found = self
            .call(op, Idempotency::Idempotent, Method::GET, "/contacts/search", None, &[("q", identifier.to_owned())])
            .await?;
        let list =
            found["payload"].as_array().or_else(|| found["data"]["payload"].as_array()).cloned().unwrap_or_default();
        let contact = list
            .iter()
            .find(|c| c["identifier"].as_str() == Some(identifier))
            .ok_or_else(|| Error::protocol(NAME, op, "the contact exists but the search does not find it"))?;
        let id = contact["id"].as_u64().ok_or_else(|| Error::protocol(NAME, op, "the contact has no id"))?;
        let source = contact["contact_inboxes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|ci| ci["inbox"]["id"].as_u64() == Some(self.inbox_id))
            .and_then(|ci| ci["source_id"].as_str());
        if let Some(source) = source {
            return Ok(Contact { id, source_id: source.to_owned() });
        }
        let created = self
            .call(
                "create contact inbox",
                Idempotency::NotIdempotent,
                Method::POST,
                &format!("/contacts/{id}/contact_inboxes"),
                Some(&json!({ "inbox_id": self.inbox_id })),
                &[],
            )
            .await?;
        let source = created["source_id"]
            .as_str()
            .ok_or_else(|| Error::protocol(NAME, "create contact inbox", "no source_id"))?;
        Ok(Contact { id, source_id: source.to_owned() })
    }

    /// §3: a conversation in the inbox; returns its id and status (an inbox locked to one
    /// conversation returns the existing one).
    pub(crate) async fn create_conversation(
        &self,
        contact: &Contact,
        custom_attributes: &Map<String, Value>,
    ) -> Result<(u64, String)> {
        let op = "create conversation";
        let body = json!({
            "source_id": contact.source_id,
            "inbox_id": self.inbox_id,
            "contact_id": contact.id,
            "status": "open",
            "custom_attributes": custom_attributes,
        });
        let created =
            self.call(op, Idempotency::NotIdempotent, Method::POST, "/conversations", Some(&body), &[]).await?;
        let id =
            created["id"].as_u64().ok_or_else(|| Error::protocol(NAME, op, "the answer has no conversation id"))?;
        Ok((id, created["status"].as_str().unwrap_or("open").to_owned()))
    }

    /// `toggle_status`.
    pub(crate) async fn set_status(&self, conversation: u64, status: &str) -> Result<()> {
        self.call(
            "change status",
            Idempotency::Idempotent,
            Method::POST,
            &format!("/conversations/{conversation}/toggle_status"),
            Some(&json!({ "status": status })),
            &[],
        )
        .await
        .map(drop)
    }

    /// `toggle_priority` (§8.7: not accepted on create).
    pub(crate) async fn set_priority(&self, conversation: u64, priority: &str) -> Result<()> {
        self.call(
            "set priority",
            Idempotency::Idempotent,
            Method::POST,
            &format!("/conversations/{conversation}/toggle_priority"),
            Some(&json!({ "priority": priority })),
            &[],
        )
        .await
        .map(drop)
    }

    /// Posts a message; returns its id.
    pub(crate) async fn post_message(
        &self,
        conversation: u64,
        content: &str,
        message_type: &str,
        private: bool,
        echo_id: &str,
    ) -> Result<Option<u64>> {
        let body = json!({ "content": content, "message_type": message_type, "private": private, "echo_id": echo_id });
        let posted = self
            .call(
                "post message",
                Idempotency::NotIdempotent,
                Method::POST,
                &format!("/conversations/{conversation}/messages"),
                Some(&body),
                &[],
            )
            .await?;
        Ok(posted["id"].as_u64())
    }

    /// §3: a file from the user: the "create message" call as `multipart/form-data` with
    /// `content` (the caption, may be empty), `message_type=incoming`, `echo_id` and the
    /// file as `attachments[]` (the desk's `MessageBuilder` attaches each uploaded file).
    /// Returns the message id. A `413` or `415` (a proxy's or the desk's refusal of the
    /// file) is an `InvalidInput` error saying so.
    pub(crate) async fn post_attachment(
        &self,
        conversation: u64,
        attachment: &Attachment,
        echo_id: &str,
    ) -> Result<Option<u64>> {
        let op = "send attachment";
        // `file_part` refuses only a URL or a media type that does not parse: checked here,
        // before the first attempt, every attempt below builds the same part.
        handover_transport::attachment::file_part(NAME, attachment)?;
        let path = format!("/conversations/{conversation}/messages");
        let caption = attachment.caption.clone().unwrap_or_default();
        let build = || {
            let mut form = reqwest::multipart::Form::new()
                .text("content", caption.clone())
                .text("message_type", "incoming")
                .text("echo_id", echo_id.to_owned());
            if let Ok(part) = handover_transport::attachment::file_part(NAME, attachment) {
                form = form.part("attachments[]", part);
            }
            self.request(Method::POST, &path).multipart(form).timeout(UPLOAD_TIMEOUT)
        };
        let limit = http::DEFAULT_BODY_LIMIT;
        let bytes = retry::exchange(
            &self.retry,
            NAME,
            op,
            Idempotency::NotIdempotent,
            build,
            limit,
            |status, headers, body| {
                let error = parse_error(op, status, headers, body);
                match status {
                    StatusCode::UNAUTHORIZED => {
                        Error::unauthenticated(NAME, op, format!("{}; check `api_access_token`", error.message()))
                    }
                    StatusCode::PAYLOAD_TOO_LARGE => Error::invalid_input(
                        NAME,
                        op,
                        format!(
                            "the desk refused the file as too large ({}); its limit is usually 40 MB",
                            error.message()
                        ),
                    )
                    .with_status(status.as_u16()),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::invalid_input(
                        NAME,
                        op,
                        format!("the desk refused the file's type `{}` ({})", attachment.media_type, error.message()),
                    )
                    .with_status(status.as_u16()),
                    _ => error,
                }
            },
        )
        .await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        let posted: Value = http::decode_json(NAME, op, &bytes)?;
        Ok(posted["id"].as_u64())
    }

    /// The conversation (for its status and assignee after a resume).
    pub(crate) async fn conversation(&self, conversation: u64) -> Result<Value> {
        self.call(
            "get conversation",
            Idempotency::Idempotent,
            Method::GET,
            &format!("/conversations/{conversation}"),
            None,
            &[],
        )
        .await
    }

    /// The conversation's messages with ids above `after`, oldest first, at most 100 (the
    /// desk's `MessageFinder`: `after` lists `id > after` in creation order).
    pub(crate) async fn messages_after(&self, conversation: u64, after: u64) -> Result<Vec<Value>> {
        let query = [("after", after.to_string())];
        let listed = self
            .call(
                "list messages",
                Idempotency::Idempotent,
                Method::GET,
                &format!("/conversations/{conversation}/messages"),
                None,
                &query,
            )
            .await?;
        Ok(listed["payload"].as_array().cloned().unwrap_or_default())
    }

    /// The inbox (`GET /inboxes/{id}`): proves the token, the account and the inbox id.
    pub(crate) async fn inbox(&self) -> Result<Value> {
        let path = format!("/inboxes/{}", self.inbox_id);
        self.call("read inbox", Idempotency::Idempotent, Method::GET, &path, None, &[]).await
    }

    /// Open, unassigned conversations of the inbox (§7.1: the queue is computed from them).
    pub(crate) async fn unassigned(&self, page: u32) -> Result<Vec<Value>> {
        let query = [
            ("inbox_id", self.inbox_id.to_string()),
            ("status", "open".to_owned()),
            ("assignee_type", "unassigned".to_owned()),
            ("page", page.to_string()),
        ];
        let listed = self
            .call("list conversations", Idempotency::Idempotent, Method::GET, "/conversations", None, &query)
            .await?;
        Ok(listed["data"]["payload"].as_array().or_else(|| listed["payload"].as_array()).cloned().unwrap_or_default())
    }
}
