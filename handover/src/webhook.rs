//! An axum router serving `POST /webhooks/<provider>` for push providers.
//!
//! Each delivery is handed to [`Provider::webhook`] with
//! its raw body (signatures are computed over the raw bytes), lower-cased headers and raw
//! query string; the provider's [`WebhookReply`] goes back as is. Bodies over
//! [`MAX_BODY_BYTES`] are refused with `413` before anything parses them. `GET` is routed
//! too, for validation handshakes (RingCentral's `hub.challenge`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use handover_core::{Provider, WebhookReply, WebhookRequest};

/// The largest webhook body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

type Providers = Arc<BTreeMap<String, Arc<dyn Provider>>>;

/// A router for `providers`, keyed by their names (`/webhooks/genesys`, …).
pub fn router(providers: impl IntoIterator<Item = Arc<dyn Provider>>) -> Router {
    let providers: Providers = Arc::new(providers.into_iter().map(|p| (p.info().name.to_owned(), p)).collect());
    Router::new()
        .route("/webhooks/{provider}", any(deliver))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(providers)
}

async fn deliver(
    State(providers): State<Providers>,
    Path(name): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(provider) = providers.get(&name) else {
        return (StatusCode::NOT_FOUND, format!("no provider `{name}` here")).into_response();
    };
    let mut request = WebhookRequest::post(body.to_vec()).with_method(method.as_str());
    request.query = query;
    for (key, value) in &headers {
        if let Ok(value) = value.to_str() {
            request.headers.push((key.as_str().to_owned(), value.to_owned()));
        }
    }
    reply(provider.webhook(request).await)
}

fn reply(reply: WebhookReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, reply.body).into_response();
    for (key, value) in reply.headers {
        if let (Ok(key), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            response.headers_mut().insert(key, value);
        }
    }
    response
}
