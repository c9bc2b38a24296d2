//! Webhook ingress for push providers: an axum router serving `POST /webhooks/<provider>`,
//! and a hardened listener to serve it with ([`serve`]).
//!
//! Each delivery is handed to [`Provider::webhook`] with its raw body (signatures are
//! computed over the raw bytes), lower-cased headers and raw query string; the provider's
//! [`WebhookReply`] goes back as is. Bodies over the size limit are refused with `413`
//! before anything parses them (with `Expect: 100-continue`, before they are sent). `GET`
//! is routed too, for validation handshakes (RingCentral's `hub.challenge`).

mod listener;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use handover_core::{Provider, WebhookReply, WebhookRequest};

use self::listener::{BodyRefusal, Shared, read_body};
pub use self::listener::{ListenerLimits, raise_open_file_limit, serve};

/// The largest webhook body accepted by default ([`ListenerLimits::max_body_bytes`]).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

type Providers = Arc<BTreeMap<String, Arc<dyn Provider>>>;

/// A router for `providers`, keyed by their names (`/webhooks/genesys`, …).
pub fn router(providers: impl IntoIterator<Item = Arc<dyn Provider>>) -> Router {
    router_named(providers.into_iter().map(|p| (p.info().name.to_owned(), p)))
}

/// A router for named provider configurations (`/webhooks/<name>`), for a service that
/// holds several configurations of one provider.
pub fn router_named(providers: impl IntoIterator<Item = (String, Arc<dyn Provider>)>) -> Router {
    let providers: Providers = Arc::new(providers.into_iter().collect());
    Router::new().route("/webhooks/{provider}", any(deliver)).with_state(providers)
}

async fn deliver(
    State(providers): State<Providers>,
    Path(name): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    listener: Option<axum::Extension<Arc<Shared>>>,
    body: Body,
) -> Response {
    let Some(provider) = providers.get(&name) else {
        let name = handover_transport::log::untrusted(&name);
        return (StatusCode::NOT_FOUND, format!("no provider `{name}` here")).into_response();
    };
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let shared = listener.as_ref().map(|axum::Extension(shared)| shared.as_ref());
    let (body, _permit) = match read_body(shared, MAX_BODY_BYTES, length, body).await {
        Ok(read) => read,
        Err(BodyRefusal::TooLarge(max)) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {max} bytes")).into_response();
        }
        Err(BodyRefusal::Busy) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "too many request bodies in flight; retry").into_response();
        }
        Err(BodyRefusal::TimedOut) => {
            return (StatusCode::REQUEST_TIMEOUT, "the body was not sent in time").into_response();
        }
        Err(BodyRefusal::Broken) => return (StatusCode::BAD_REQUEST, "the body could not be read").into_response(),
    };
    reply(provider.webhook(request(&method, query, &headers, body)).await)
}

/// The [`WebhookRequest`] of an HTTP request: method, raw query, headers (those that are
/// text), and the raw body its signature covers.
pub fn request(method: &Method, query: Option<String>, headers: &HeaderMap, body: Vec<u8>) -> WebhookRequest {
    let mut request = WebhookRequest::post(body).with_method(method.as_str());
    request.query = query;
    for (key, value) in headers {
        if let Ok(value) = value.to_str() {
            request.headers.push((key.as_str().to_owned(), value.to_owned()));
        }
    }
    request
}

/// The HTTP response of a provider's [`WebhookReply`]: its status, headers and body.
pub fn reply(reply: WebhookReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, reply.body).into_response();
    for (key, value) in reply.headers {
        if let (Ok(key), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            response.headers_mut().insert(key, value);
        }
    }
    response
}
