//! A loopback HTTP server that hands every request to a provider's
//! [`Provider::webhook`], for push providers' harnesses.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use handover_core::{Provider, WebhookRequest};
use tokio::net::TcpListener;

type Shared = Arc<RwLock<Option<Arc<dyn Provider>>>>;

/// A bound listener that serves a provider once it exists (the emulator needs the URL
/// before the provider can be built from the emulator's config).
pub struct WebhookServer {
    addr: SocketAddr,
    provider: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookServer {
    /// Binds `127.0.0.1:0` and starts serving; requests before [`set_provider`](Self::set_provider) get 503.
    pub async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let provider: Shared = Arc::default();
        let app = Router::new().fallback(deliver).with_state(provider.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, provider, task }
    }

    /// `http://127.0.0.1:<port>/webhooks/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/webhooks/{name}", self.addr)
    }

    /// The provider that answers deliveries (replacing any earlier one: a restarted
    /// process).
    pub fn set_provider(&self, provider: Arc<dyn Provider>) {
        *self.provider.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(provider);
    }

    /// No provider answers until the next [`set_provider`](Self::set_provider): deliveries
    /// get `503`, as from a process that is down.
    pub fn clear_provider(&self) {
        *self.provider.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn deliver(
    State(provider): State<Shared>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let provider = provider.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let Some(provider) = provider else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no provider right now").into_response();
    };
    let mut request = WebhookRequest::post(body.to_vec()).with_method(method.as_str());
    request.query = query;
    for (name, value) in &headers {
        if let Ok(value) = value.to_str() {
            request.headers.push((name.as_str().to_owned(), value.to_owned()));
        }
    }
    let reply = provider.webhook(request).await;
    let mut response =
        (StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), reply.body).into_response();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::try_from(name), axum::http::HeaderValue::try_from(value))
        {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
