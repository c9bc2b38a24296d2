//! The visitor-side Chat REST endpoints (`protocols/salesforce-chat.md` §3, §4) and
//! `parse_error`.

use std::borrow::Cow;
use std::time::Duration;

use handover_core::{Error, Result};
use handover_transport::http::{self, HttpConfig};
use handover_transport::reqwest::header::HeaderMap;
use handover_transport::reqwest::{self, Method, RequestBuilder, Response, StatusCode};
use handover_transport::retry::{self, Idempotency, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
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

pub(crate) struct Client {
    http: reqwest::Client,
    stream_http: reqwest::Client,
    base: Url,
    version: String,
    pub(crate) retry: RetryPolicy,
}

impl Client {
    pub(crate) fn new(config: &SalesforceConfig) -> Result<Self> {
        let base = http::base_url(NAME, "base_url", &config.base_url, config.allow_insecure_http)?;
        if base.path().trim_end_matches('/').ends_with("/chat/rest") {
            return Err(Error::config(NAME, "[salesforce] `base_url` must not include /chat/rest; give the host only"));
        }
        for (key, value) in [
            ("organization_id", &config.organization_id),
            ("deployment_id", &config.deployment_id),
            ("button_id", &config.button_id),
        ] {
            if value.trim().is_empty() {
                return Err(Error::config(NAME, format!("[salesforce] `{key}` must not be empty")));
            }
        }
        let http_config = HttpConfig::default();
        Ok(Self {
            http: http::client(NAME, &http_config)?,
            stream_http: http::streaming_client(NAME, &http_config)?,
            base,
            version: config.api_version.clone(),
            // §6.1: a 503 means "reconnect", never "try again".
            retry: RetryPolicy::default().with_retry_unavailable(false),
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

    async fn failure(op: &'static str, response: Response) -> Error {
        let status = response.status();
        let headers = response.headers().clone();
        let body = http::read_body(NAME, op, response, 64 * 1024).await.unwrap_or_default();
        parse_error(op, status, &headers, &body)
    }

    /// §4: a new session (affinity is the literal `null`).
    pub(crate) async fn session_id(&self) -> Result<SessionInfo> {
        let op = "create session";
        let response = retry::send(&self.retry, NAME, op, Idempotency::Idempotent, || {
            self.request(&self.http, Method::GET, "/chat/rest/System/SessionId").header("X-LIVEAGENT-AFFINITY", "null")
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
        let response = retry::send(&self.retry, NAME, op, Idempotency::Idempotent, || {
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
        noun: &str,
        keys: &Keys<'_>,
        sequence: u64,
        body: &Value,
    ) -> Result<Posted> {
        let path = format!("/chat/rest/Chasitor/{noun}");
        let response = retry::send(&self.retry, NAME, op, Idempotency::Idempotent, || {
            self.session(self.request(&self.http, Method::POST, &path), keys)
                .header("X-LIVEAGENT-SEQUENCE", sequence.to_string())
                .json(body)
        })
        .await?;
        match response.status() {
            status if status.is_success() => Ok(Posted::Done),
            StatusCode::SERVICE_UNAVAILABLE => Ok(Posted::Failover),
            StatusCode::FORBIDDEN => Ok(Posted::Gone),
            _ => Err(Self::failure(op, response).await),
        }
    }

    /// §6: one long poll (no sequence header).
    pub(crate) async fn poll(&self, keys: &Keys<'_>, ack: i64, timeout: Duration) -> Result<Polled> {
        let op = "poll messages";
        let request = self
            .session(self.request(&self.stream_http, Method::GET, "/chat/rest/System/Messages"), keys)
            .query(&[("ack", ack.to_string())])
            .timeout(timeout);
        let response = request.send().await.map_err(|e| http::request_error(NAME, op, e))?;
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
        let response = retry::send(&policy, NAME, op, Idempotency::Idempotent, || {
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

    /// §4: deletes the session (the key goes in the path).
    pub(crate) async fn delete_session(&self, keys: &Keys<'_>) -> Result<()> {
        let op = "delete session";
        let path = format!("/chat/rest/System/SessionId/{}", keys.key.expose_secret());
        let response = retry::send(&self.retry, NAME, op, Idempotency::Idempotent, || {
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
