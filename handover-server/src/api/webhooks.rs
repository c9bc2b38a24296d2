//! `POST /webhooks/{name}`: provider ingress on any instance. A delivery is verified here
//! with the provider configuration alone, kept in the store's inbox, and only then
//! acknowledged; the instance that owns its handover applies it (DESIGN.md §7.2).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use handover_store::NewDelivery;

use crate::app::App;

pub(crate) async fn deliver(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(provider) = app.providers.get(&name).cloned() else {
        let name = handover_transport::log::untrusted(&name);
        return (StatusCode::NOT_FOUND, format!("no provider configuration `{name}` here")).into_response();
    };
    let limit = app.config.limits.max_body_bytes;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        app.metrics.webhook(&name, "too_large");
        return (StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {limit} bytes")).into_response();
    };
    let ingested = provider.ingest(handover::webhook::request(&method, query, &headers, body.to_vec())).await;
    if !ingested.reply.is_success() {
        app.metrics.webhook(&name, "refused");
        return handover::webhook::reply(ingested.reply);
    }
    let mut kept = 0;
    for item in ingested.items {
        let delivery = NewDelivery::new(&name, item.conversation_key, item.delivery_id, item.payload);
        match keep(&app, delivery).await {
            Ok(true) => kept += 1,
            Ok(false) => app.metrics.webhook(&name, "duplicate"),
            Err(error) => {
                // Not kept: not acknowledged, so the provider delivers it again.
                tracing::warn!(%error, provider = %name, "a verified delivery could not be kept; answering 503");
                app.metrics.webhook(&name, "store_error");
                return (StatusCode::SERVICE_UNAVAILABLE, "the delivery could not be kept; retry").into_response();
            }
        }
    }
    app.metrics.webhook(&name, if kept > 0 { "kept" } else { "empty" });
    handover::webhook::reply(ingested.reply)
}

/// How long a webhook waits for an unreachable store before it is refused. Some contact
/// centers never send a webhook again (Chatwoot, behind Live Agent), so a database
/// failover or restart shorter than this loses nothing; a longer one is refused, 503.
const KEEP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Keeps `delivery`, retrying while the store is unreachable for at most [`KEEP_PATIENCE`]
/// (a pooled connection the database dropped fails once, then a fresh one is tried).
async fn keep(app: &App, delivery: NewDelivery) -> Result<bool, handover_store::StoreError> {
    let deadline = tokio::time::Instant::now() + KEEP_PATIENCE;
    let mut pause = std::time::Duration::from_millis(50);
    loop {
        match app.store.put_delivery(delivery.clone()).await {
            Err(handover_store::StoreError::Database(error)) if tokio::time::Instant::now() + pause < deadline => {
                tracing::debug!(%error, "the store failed keeping a delivery; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            other => return other,
        }
    }
}
