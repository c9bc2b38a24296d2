//! The HTTP API (DESIGN.md §7.3): JSON, bearer keys on every `/v1` call, errors as
//! `{"error":{"code":"…","message":"…"}}` naming the field or key at fault.

pub(crate) mod events;
pub(crate) mod handovers;
pub(crate) mod health;
pub(crate) mod types;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;

use self::types::{ErrorBody, ErrorDetail};
use crate::app::App;

/// An API error: status, a stable code and a message that says what to do.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub(crate) fn not_found(id: &str) -> Self {
        let id = handover_transport::log::untrusted(id);
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no handover `{id}`"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    pub(crate) fn store(error: &handover_store::StoreError) -> Self {
        tracing::warn!(%error, "the store failed a request");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the store is unreachable; retry shortly")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Reads a JSON body of at most `limit` bytes: `400` when it is not JSON, `422` naming the
/// field when it is JSON of the wrong shape, `413` when it is too large.
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(body: Body, limit: usize) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("the body is over {limit} bytes"))
    })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not JSON: {e}")))?;
    typed(value)
}

/// A JSON value as `T`; the error names the field at fault.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e: serde_path_to_error::Error<serde_json::Error>| {
        let message = handover_transport::log::sanitize(&e.inner().to_string());
        match e.path().to_string().as_str() {
            "." | "" => ApiError::invalid(message),
            path => ApiError::invalid(format!("`{path}`: {message}")),
        }
    })
}

/// The live view's page and assets, embedded in the binary (served with `ui = true`).
const UI_HTML: &str = include_str!("../../assets/ui.html");
const UI_JS: &str = include_str!("../../assets/ui.js");
const UI_CSS: &str = include_str!("../../assets/ui.css");

/// A static asset of the live view. The page holds no data: it asks for an API key and
/// reads the API with it.
fn ui_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
            ),
        ],
        body,
    )
        .into_response()
}

/// The service's routes: the API, provider webhooks, health, and (unless it has its own
/// listener) `/metrics`.
pub(crate) fn router(app: Arc<App>, with_metrics: bool) -> Router {
    let timeout = TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(30));
    let v1 = Router::new()
        .route("/v1/handovers", post(handovers::create).get(handovers::list))
        .route("/v1/handovers/{id}", get(handovers::get).delete(handovers::close))
        .route("/v1/handovers/{id}/inputs", post(handovers::input))
        .layer(timeout)
        // Long-polls and SSE streams run for as long as they are meant to.
        .route("/v1/handovers/{id}/events", get(events::events))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_key));
    let mut routes = Router::new()
        .merge(v1)
        .route("/webhooks/{name}", any(webhooks::deliver))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(health::openapi));
    if with_metrics {
        routes = routes.route("/metrics", get(health::metrics));
    }
    if app.config.ui {
        routes = routes
            .route("/ui", get(|| async { ui_asset("text/html; charset=utf-8", UI_HTML) }))
            .route("/ui/ui.js", get(|| async { ui_asset("text/javascript; charset=utf-8", UI_JS) }))
            .route("/ui/ui.css", get(|| async { ui_asset("text/css; charset=utf-8", UI_CSS) }));
    }
    routes
        .fallback(not_a_route)
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the request failed; it is logged")
                .into_response()
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(app)
}

/// `/metrics` alone, for `metrics_listen`.
pub(crate) fn metrics_router() -> Router {
    Router::new().route("/metrics", get(health::metrics)).fallback(not_a_route)
}

async fn not_a_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see /openapi.json")
}

/// Every `/v1` call needs `Authorization: Bearer <key>`.
async fn require_key(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match presented {
        Some(key) if app.is_api_key(key) => next.run(request).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the API key is not one of this service's")
            .into_response(),
        None => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "send the API key as `Authorization: Bearer <key>`")
                .into_response()
        }
    }
}

/// Counts requests by route template and status, and logs them with the request id (never
/// the headers: they hold the API key).
async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| route_label(p.as_str())).unwrap_or("other");
    let method = request.method().clone();
    let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let started = tokio::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    app.metrics.api(route, status);
    tracing::debug!(%method, route, status, request_id, took_ms = started.elapsed().as_millis() as u64, "request");
    response
}

/// The route templates as metric labels (a fixed set).
fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/handovers" => "/v1/handovers",
        "/v1/handovers/{id}" => "/v1/handovers/{id}",
        "/v1/handovers/{id}/inputs" => "/v1/handovers/{id}/inputs",
        "/v1/handovers/{id}/events" => "/v1/handovers/{id}/events",
        "/webhooks/{name}" => "/webhooks/{name}",
        "/livez" => "/livez",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        _ => "other",
    }
}
