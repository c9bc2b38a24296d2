//! One OAuth client-credentials token per provider, shared by every session and the
//! notifications detector, renewed before expiry and once on `401` (`protocols/genesys.md`
//! §3).

use std::future::Future;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use handover_core::{Error, Result};
use handover_transport::http;
use handover_transport::reqwest::header::CONTENT_TYPE;
use handover_transport::reqwest::{self, StatusCode};
use handover_transport::retry::{self, Idempotency, RetryPolicy};
use handover_transport::session::refresh_once_on_401;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::NAME;

/// Renew this long before the token says it expires.
const MARGIN: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Cached {
    token: SecretString,
    expires_at: Instant,
}

/// The shared token.
pub(crate) struct TokenCache {
    http: reqwest::Client,
    url: Url,
    client_id: String,
    client_secret: SecretString,
    retry: RetryPolicy,
    current: RwLock<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
    requests: AtomicU64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenCache {
    pub(crate) fn new(
        http: reqwest::Client,
        login: &Url,
        client_id: String,
        client_secret: SecretString,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            http,
            url: http::join(login, "/oauth/token"),
            client_id,
            client_secret,
            retry,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            requests: AtomicU64::new(0),
        }
    }

    /// Token requests made so far (one per renewal).
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn cached(&self) -> Option<Cached> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// A valid token: the cached one, or a new one (one request at a time).
    pub(crate) async fn token(&self) -> Result<SecretString> {
        if let Some(cached) = self.cached().filter(|c| c.expires_at > Instant::now()) {
            return Ok(cached.token);
        }
        let _single_flight = self.refresh.lock().await;
        if let Some(cached) = self.cached().filter(|c| c.expires_at > Instant::now()) {
            return Ok(cached.token);
        }
        self.fetch().await
    }

    /// Calls `call` with a valid token; on `401`, renews the token once and calls again.
    pub(crate) async fn authorized<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let token = self.token().await?;
        refresh_once_on_401(token, call, |rejected| async move { self.renew(&rejected).await }).await
    }

    /// The API rejected `rejected` (401): get a new token unless another task already did.
    pub(crate) async fn renew(&self, rejected: &SecretString) -> Result<SecretString> {
        let _single_flight = self.refresh.lock().await;
        if let Some(cached) = self.cached()
            && cached.token.expose_secret() != rejected.expose_secret()
            && cached.expires_at > Instant::now()
        {
            return Ok(cached.token);
        }
        self.fetch().await
    }

    async fn fetch(&self) -> Result<SecretString> {
        let op = "get OAuth token";
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = retry::send(&self.retry, NAME, op, Idempotency::Idempotent, || {
            self.http
                .post(self.url.clone())
                .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
        })
        .await?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let body = http::read_body(NAME, op, response, 64 * 1024).await.unwrap_or_default();
            let error = crate::client::parse_error(op, status, &headers, &body);
            if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN) {
                return Err(Error::unauthenticated(
                    NAME,
                    op,
                    format!("the OAuth client was rejected ({}); check client_id and client_secret", error.message()),
                ));
            }
            return Err(error);
        }
        let body: TokenResponse = http::read_json(NAME, op, response).await?;
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(3600));
        let token = SecretString::from(body.access_token);
        let expires_at = handover_transport::time::deadline_after(Instant::now(), lifetime.saturating_sub(MARGIN));
        let cached = Cached { token: token.clone(), expires_at };
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cached);
        Ok(token)
    }
}
