//! The Send API (`protocols/ringcentral-engage.md` §4) and the REST API (§5).

use std::borrow::Cow;

use handover_core::{Error, ErrorKind, Result};
use handover_transport::http::{self, HttpConfig, segment};
use handover_transport::reqwest::header::HeaderMap;
use handover_transport::reqwest::{self, Method, RequestBuilder, StatusCode};
use handover_transport::retry::{self, Idempotency, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
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

pub(crate) struct Client {
    http: reqwest::Client,
    api: Url,
    realtime: Url,
    token: SecretString,
    source_token: SecretString,
    pub(crate) retry: RetryPolicy,
}

impl Client {
    pub(crate) fn new(config: &RingCentralConfig) -> Result<Self> {
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
        for (key, value) in [("source_token", &config.source_token), ("access_token", &config.access_token)] {
            if value.expose_secret().trim().is_empty() {
                return Err(Error::config(NAME, format!("[ringcentral] `{key}` is empty")));
            }
        }
        Ok(Self {
            http: http::client(NAME, &HttpConfig::default())?,
            api,
            realtime,
            token: config.access_token.clone(),
            source_token: config.source_token.clone(),
            retry: RetryPolicy::default(),
        })
    }

    /// §4: a signed Send API request; Engage answers `200 ok` and imports asynchronously.
    /// Our object ids make a repeated request harmless.
    pub(crate) async fn send(&self, op: &'static str, action: &str, params: &Value) -> Result<()> {
        let body = serde_json::json!({ "action": action, "params": params }).to_string();
        let signature = sign(self.source_token.expose_secret().as_bytes(), body.as_bytes());
        let build = || {
            self.http
                .post(self.realtime.clone())
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .body(body.clone())
        };
        retry::exchange(&self.retry, NAME, op, Idempotency::Idempotent, build, 64 * 1024, |status, headers, body| {
            parse_error(op, status, headers, body)
        })
        .await
        .map(drop)
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
        let body = retry::exchange(&self.retry, NAME, op, idempotency, build, limit, |status, headers, body| {
            parse_error(op, status, headers, body)
        })
        .await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        http::decode_json(NAME, op, &body)
    }

    /// §6: Engage's thread created from our `thread_id`, if imported yet.
    pub(crate) async fn find_thread(&self, source_id: &str, foreign_id: &str) -> Result<Option<String>> {
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
