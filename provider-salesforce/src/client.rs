//! The visitor-side Chat REST endpoints (`protocols/salesforce-chat.md` §3, §4), the
//! bodies of every `Chasitor/*` POST (§5), and `parse_error`.

use std::borrow::Cow;
use std::time::Duration;

use handover_core::{Error, HandoverRequest, Result, transcript};
use handover_transport::http::{self, HttpConfig};
use handover_transport::reqwest::header::HeaderMap;
use handover_transport::reqwest::{self, Method, RequestBuilder, Response, StatusCode};
use handover_transport::retry::{self, Idempotency, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::NAME;
use crate::config::SalesforceConfig;

/// Turns a failed response into an error. Bodies are unspecified (often plain text): the
/// text is kept as the message.
pub fn parse_error(op: impl Into<Cow<'static, str>>, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let text = String::from_utf8_lossy(body);
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(json) => json["message"].as_str().or_else(|| json["error"].as_str()).unwrap_or(text.trim()).to_owned(),
        Err(_) => text.trim().to_owned(),
    };
    http::status_error(NAME, op, status, headers, message)
}

/// `GET /chat/rest/System/SessionId`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionInfo {
    pub(crate) id: String,
    pub(crate) key: String,
    pub(crate) affinity_token: String,
    #[serde(default = "default_poll_timeout")]
    pub(crate) client_poll_timeout: u64,
}

fn default_poll_timeout() -> u64 {
    40
}

/// The session's credentials for a request.
pub(crate) struct Keys<'a> {
    pub(crate) affinity: &'a str,
    pub(crate) key: &'a SecretString,
}

/// What a `Chasitor/*` POST came back with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Posted {
    Done,
    /// 503: the affinity changed; reconnect (§6.1).
    Failover,
    /// 403: the session is no longer valid.
    Gone,
}

/// What a poll came back with.
#[derive(Debug)]
pub(crate) enum Polled {
    Batch(Vec<u8>),
    Empty,
    Failover,
    Gone,
    /// 409: a second poll terminated the chat.
    Conflict,
}

/// A `Chasitor/*` POST: its noun and body (§5).
pub(crate) enum Chasitor<'a> {
    /// `ChasitorInit`: the chat request, its body built by [`chasitor_init`].
    Init(Value),
    /// `ChatMessage`.
    Message(&'a str),
    /// `ChasitorTyping` / `ChasitorNotTyping`.
    Typing(bool),
    /// `ChatEnd` with reason `client` (the one value the API documents for a visitor's end).
    End,
    /// `ChasitorResyncState` after a reconnect.
    ResyncState {
        /// The org id.
        organization_id: &'a str,
    },
}

impl Chasitor<'_> {
    fn noun(&self) -> &'static str {
        match self {
            Chasitor::Init(_) => "ChasitorInit",
            Chasitor::Message(_) => "ChatMessage",
            Chasitor::Typing(true) => "ChasitorTyping",
            Chasitor::Typing(false) => "ChasitorNotTyping",
            Chasitor::End => "ChatEnd",
            Chasitor::ResyncState { .. } => "ChasitorResyncState",
        }
    }

    fn body(&self) -> Value {
        match self {
            Chasitor::Init(body) => body.clone(),
            Chasitor::Message(text) => json!({ "text": text }),
            Chasitor::Typing(_) => json!({}),
            Chasitor::End => json!({ "reason": "client" }),
            Chasitor::ResyncState { organization_id } => json!({ "organizationId": organization_id }),
        }
    }
}

/// §5.1: the `ChasitorInit` body of session `session_id` for `request`.
pub(crate) fn chasitor_init(config: &SalesforceConfig, request: &HandoverRequest, session_id: &str) -> Value {
    let language = config.language.clone().or_else(|| request.user.language.clone()).unwrap_or_default();
    json!({
        "organizationId": config.organization_id,
        "deploymentId": config.deployment_id,
        "buttonId": config.button_id,
        "agentId": config.agent_id.clone().unwrap_or_default(),
        "doFallback": config.agent_id.is_some(),
        "sessionId": session_id,
        "userAgent": concat!("handover/", env!("CARGO_PKG_VERSION")),
        "language": language,
        "screenResolution": "",
        "visitorName": request.user.display_name(),
        "prechatDetails": prechat_details(config, request),
        "prechatEntities": [],
        "buttonOverrides": [],
        "receiveQueueUpdates": true,
        "isPost": true,
    })
}

/// §5.1: pre-chat details carrying the user, the routing attributes and the transcript.
fn prechat_details(config: &SalesforceConfig, request: &HandoverRequest) -> Vec<Value> {
    let detail = |label: &str, value: &str, fields: Vec<String>| json!({ "label": label, "value": value, "transcriptFields": fields, "displayToAgent": true });
    let mut details = Vec::new();
    if let Some(name) = &request.user.name {
        details.push(detail("Name", name, Vec::new()));
    }
    if let Some(email) = &request.user.email {
        details.push(detail("Email", email, Vec::new()));
    }
    if !request.routing.skills.is_empty() {
        details.push(detail("Skills", &request.routing.skills.join(", "), Vec::new()));
    }
    for (key, value) in &request.routing.attributes {
        let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        details.push(detail(key, &value, Vec::new()));
    }
    let rendered = transcript::render(&request.transcript);
    if !rendered.is_empty() {
        let fields = config.transcript_field.iter().cloned().collect();
        details.push(detail("Bot transcript", &rendered, fields));
    }
    details
}

pub(crate) struct Client {
    http: reqwest::Client,
    stream_http: reqwest::Client,
    base: Url,
    version: String,
    retry: RetryPolicy,
}

impl Client {
    /// A client for `config`; `retry` never retries a 503 (§6.1: it means "reconnect").
    pub(crate) fn new(config: &SalesforceConfig, retry: RetryPolicy) -> Result<Self> {
        let base = http::base_url(NAME, "base_url", &config.base_url, config.allow_insecure_http)?;
        if base.path().trim_end_matches('/').ends_with("/chat/rest") {
            return Err(Error::config(NAME, "[salesforce] `base_url` must not include /chat/rest; give the host only"));
        }
        let http_config = HttpConfig::default();
        Ok(Self {
            http: http::client(NAME, &http_config)?,
            stream_http: http::streaming_client(NAME, &http_config)?,
            base,
            version: config.api_version.clone(),
            // §6.1: a 503 means "reconnect", never "try again".
            retry: retry.with_retry_unavailable(false),
        })
    }

    fn request(&self, client: &reqwest::Client, method: Method, path: &str) -> RequestBuilder {
        client.request(method, http::join(&self.base, path)).header("X-LIVEAGENT-API-VERSION", &self.version)
    }

    fn session(&self, request: RequestBuilder, keys: &Keys<'_>) -> RequestBuilder {
        request
            .header("X-LIVEAGENT-AFFINITY", keys.affinity)
            .header("X-LIVEAGENT-SESSION-KEY", keys.key.expose_secret())
    }

    /// The one send every request goes through (all are safe to repeat: the server
    /// deduplicates POSTs by sequence), retried per `policy`; the response as it came, for
    /// the caller to read its status.
    async fn send(
        &self,
        op: &'static str,
        policy: &RetryPolicy,
        build: impl FnMut() -> RequestBuilder,
    ) -> Result<Response> {
        retry::send(policy, NAME, op, Idempotency::Idempotent, build).await
    }

    async fn failure(op: &'static str, response: Response) -> Error {
        let status = response.status();
        let headers = response.headers().clone();
        let body = http::read_body(NAME, op, response, 64 * 1024).await.unwrap_or_default();
        parse_error(op, status, &headers, &body)
    }

    /// §4: a new session (affinity is the literal `null`).
    pub(crate) async fn session_id(&self) -> Result<SessionInfo> {
        let op = "create session";
        let response = self
            .send(op, &self.retry, || {
                self.request(&self.http, Method::GET, "/chat/rest/System/SessionId")
                    .header("X-LIVEAGENT-AFFINITY", "null")
            })
            .await?;
        if !response.status().is_success() {
            return Err(Self::failure(op, response).await);
        }
        http::read_json(NAME, op, response).await
    }

    /// Whether the chat button `button_id` of the deployment is available (`GET
    /// /chat/rest/Visitor/Availability`, no session): `None` when Salesforce reports no
    /// result for the button (an unknown button, or an organization or deployment that does
    /// not hold it).
    pub(crate) async fn availability(
        &self,
        org_id: &str,
        deployment_id: &str,
        button_id: &str,
    ) -> Result<Option<bool>> {
        let op = "check availability";
        let ids = format!("[{button_id}]");
        let query = [("org_id", org_id), ("deployment_id", deployment_id), ("Availability.ids", ids.as_str())];
        let response = self
            .send(op, &self.retry, || {
                self.request(&self.http, Method::GET, "/chat/rest/Visitor/Availability").query(&query)
            })
            .await?;
        if !response.status().is_success() {
            return Err(Self::failure(op, response).await);
        }
        let body: Value = http::read_json(NAME, op, response).await?;
        let results = body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["type"] == "Availability")
            .flat_map(|m| m["message"]["results"].as_array().cloned().unwrap_or_default());
        for result in results {
            // Salesforce reports 15-character ids where 18 were given, and the reverse.
            let id = result["id"].as_str().unwrap_or_default();
            if !id.is_empty() && (button_id.starts_with(id) || id.starts_with(button_id)) {
                return Ok(Some(result["isAvailable"] == true));
            }
        }
        Ok(None)
    }

    /// A `Chasitor/*` POST with the sequence header. The server deduplicates by sequence,
    /// so a retry is safe.
    pub(crate) async fn post(
        &self,
        op: &'static str,
        chasitor: &Chasitor<'_>,
        keys: &Keys<'_>,
        sequence: u64,
    ) -> Result<Posted> {
        let path = format!("/chat/rest/Chasitor/{}", chasitor.noun());
        let body = chasitor.body();
        let response = self
            .send(op, &self.retry, || {
                self.session(self.request(&self.http, Method::POST, &path), keys)
                    .header("X-LIVEAGENT-SEQUENCE", sequence.to_string())
                    .json(&body)
            })
            .await?;
        match response.status() {
            status if status.is_success() => Ok(Posted::Done),
            StatusCode::SERVICE_UNAVAILABLE => Ok(Posted::Failover),
            StatusCode::FORBIDDEN => Ok(Posted::Gone),
            _ => Err(Self::failure(op, response).await),
        }
    }

    /// §6: one long poll (no sequence header), never retried here: the long-poll loop
    /// backs off, and a second poll must never be open next to this one.
    pub(crate) async fn poll(&self, keys: &Keys<'_>, ack: i64, timeout: Duration) -> Result<Polled> {
        let op = "poll messages";
        let response = self
            .send(op, &RetryPolicy::none(), || {
                self.session(self.request(&self.stream_http, Method::GET, "/chat/rest/System/Messages"), keys)
                    .query(&[("ack", ack.to_string())])
                    .timeout(timeout)
            })
            .await?;
        match response.status() {
            StatusCode::OK => Ok(Polled::Batch(http::read_body(NAME, op, response, http::DEFAULT_BODY_LIMIT).await?)),
            StatusCode::NO_CONTENT => Ok(Polled::Empty),
            StatusCode::SERVICE_UNAVAILABLE => Ok(Polled::Failover),
            StatusCode::FORBIDDEN => Ok(Polled::Gone),
            StatusCode::CONFLICT => Ok(Polled::Conflict),
            _ => Err(Self::failure(op, response).await),
        }
    }

    /// §6.1: a new affinity after a 503. The doc shows the literal `null` affinity.
    pub(crate) async fn reconnect(&self, key: &SecretString, offset: i64) -> Result<String> {
        let op = "reconnect session";
        let keys = Keys { affinity: "null", key };
        // The server may still be moving: here a 503 is worth another try.
        let policy = self.retry.clone().with_retry_unavailable(true);
        let response = self
            .send(op, &policy, || {
                self.session(self.request(&self.http, Method::GET, "/chat/rest/System/ReconnectSession"), &keys)
                    .query(&[("ReconnectSession.offset", offset.to_string())])
            })
            .await?;
        if !response.status().is_success() {
            return Err(Self::failure(op, response).await);
        }
        let body: Value = http::read_json(NAME, op, response).await?;
        // The envelope is not documented: take `affinityToken` from the top or from a message.
        let affinity = body["affinityToken"]
            .as_str()
            .or_else(|| {
                body["messages"].as_array().into_iter().flatten().find_map(|m| m["message"]["affinityToken"].as_str())
            })
            .ok_or_else(|| Error::protocol(NAME, op, "the answer carries no affinityToken"))?;
        Ok(affinity.to_owned())
    }

    /// §4: deletes the session (the key goes in the path; its `!` separators stay literal,
    /// as the API documents the path, and each part is a percent-encoded segment).
    pub(crate) async fn delete_session(&self, keys: &Keys<'_>) -> Result<()> {
        let op = "delete session";
        let key: Vec<_> = keys.key.expose_secret().split('!').map(http::segment).collect();
        let path = format!("/chat/rest/System/SessionId/{}", key.join("!"));
        let response = self
            .send(op, &self.retry, || {
                self.request(&self.http, Method::DELETE, &path).header("X-LIVEAGENT-AFFINITY", keys.affinity)
            })
            .await?;
        match response.status() {
            status if status.is_success() || status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND => {
                Ok(())
            }
            _ => Err(Self::failure(op, response).await),
        }
    }
}
