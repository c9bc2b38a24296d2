//! `/livez`, `/readyz`, `/metrics`, `/openapi.json`: no API key needed.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::types::Health;
use crate::app::App;

/// Alive: answers without touching the store.
#[utoipa::path(get, path = "/livez", tag = "health", responses((status = 200, description = "The process serves.", body = Health)))]
pub(crate) async fn livez(State(app): State<Arc<App>>) -> Json<Health> {
    Json(Health { status: "ok".to_owned(), instance: app.config.instance_id.clone() })
}

/// Ready: the store answers and the instance is not draining.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready for traffic.", body = Health),
        (status = 503, description = "Draining, or the store is unreachable.", body = Health),
    )
)]
pub(crate) async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, Json<Health>) {
    let instance = app.config.instance_id.clone();
    if app.draining.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "draining".to_owned(), instance }));
    }
    match tokio::time::timeout(Duration::from_secs(2), app.store.now_ms()).await {
        Ok(Ok(_)) => (StatusCode::OK, Json(Health { status: "ok".to_owned(), instance })),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readyz: the store failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "store unreachable".to_owned(), instance }))
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "store timed out".to_owned(), instance })),
    }
}

/// Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format.", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics() -> Response {
    let text = crate::metrics::handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json")))]
pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document()).into_response()
}
