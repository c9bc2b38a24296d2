//! `POST /v1/handovers`, `GET` and `DELETE /v1/handovers/{id}`, and inputs.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use handover::node::NodeInput;
use handover::{EndUser, HandoverRequest, Priority, Routing, TranscriptEntry};
use handover_store::{HandoverRecord, HandoverState, NewHandover, NewInput};

use super::types::{
    Accepted, CallbackStatus, Closing, CreateHandover, Created, HandoverBody, HandoverList, InputBody, ListQuery,
    PriorityBody, Speaker, StateBody,
};
use super::{ApiError, json_body};
use crate::app::App;
use crate::callbacks::{CallbackSpec, secret_key};
use crate::runner::{CLOSE_INPUT_ID, Input, Spec};

/// The longest `Idempotency-Key`, session id or input id taken.
const MAX_ID_LEN: usize = 255;

fn events_url(id: &str) -> String {
    format!("/v1/handovers/{id}/events")
}

/// Hands a conversation over to a contact center.
#[utoipa::path(
    post,
    path = "/v1/handovers",
    operation_id = "createHandover",
    tag = "handovers",
    request_body = CreateHandover,
    params(("Idempotency-Key" = Option<String>, Header, description = "A repeat with the same key returns the first handover and starts nothing (at most 255 characters).")),
    responses(
        (status = 201, description = "Created; the contact center is being asked.", body = Created),
        (status = 200, description = "A repeated Idempotency-Key: the first handover.", body = Created),
        (status = 400, description = "The body is not JSON.", body = super::types::ErrorBody),
        (status = 401, description = "No or a wrong API key.", body = super::types::ErrorBody),
        (status = 413, description = "The body is too large.", body = super::types::ErrorBody),
        (status = 422, description = "An unknown provider, or a field unknown or wrong.", body = super::types::ErrorBody),
        (status = 503, description = "The instance drains, or the store is unreachable: retry.", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let idempotency_key = match headers.get("idempotency-key") {
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_ID_LEN)
                .ok_or_else(|| ApiError::invalid("`Idempotency-Key` must be 1 to 255 visible ASCII characters"))?;
            Some(key.to_owned())
        }
        None => None,
    };
    let body: CreateHandover = json_body(body, app.config.limits.max_body_bytes).await?;
    if !app.providers.contains_key(&body.provider) {
        let configured = app.providers.keys().cloned().collect::<Vec<_>>().join(", ");
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_provider",
            format!(
                "`provider`: no provider configuration `{}`; this service has: {}",
                handover_transport::log::untrusted(&body.provider),
                if configured.is_empty() { "none" } else { &configured }
            ),
        ));
    }
    let node = app.config.node.clone().merged(body.node.unwrap_or_default());
    node.to_config().map_err(|message| ApiError::invalid(format!("`node`: {message}")))?;
    let callback = match body.callback {
        Some(callback) => Some(check_callback(&app, callback.url, callback.secret)?),
        None => None,
    };
    if app.draining.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this instance is shutting down; send the request to another one",
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let session_id = body.session_id.unwrap_or_else(|| id.clone());
    if session_id.is_empty() || session_id.len() > MAX_ID_LEN {
        return Err(ApiError::invalid("`session_id` must be 1 to 255 characters"));
    }
    let request = request(session_id, body.user, body.transcript, body.routing);
    let has_callback = callback.is_some();
    let spec = Spec { request, node, callback };
    let spec = serde_json::to_value(&spec)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let mut new = NewHandover::new(&id, &body.provider, spec);
    if let Some(key) = idempotency_key {
        new = new.with_idempotency_key(key);
    }
    if has_callback {
        new = new.with_callback();
    }
    let created =
        app.store.create(new, &app.config.instance_id, app.config.lease_ttl).await.map_err(|e| ApiError::store(&e))?;
    let record = created.record;
    let answer = Created { id: record.id.clone(), state: StateBody::Starting, events_url: events_url(&record.id) };
    match created.lease {
        Some(lease) if !created.existing => {
            app.metrics.started(&record.provider);
            tracing::info!(handover = %record.id, provider = %record.provider, "handover created");
            crate::fleet::run(&app, lease, Some(record));
            Ok((StatusCode::CREATED, Json(answer)))
        }
        _ => Ok((StatusCode::OK, Json(answer))),
    }
}

fn check_callback(app: &App, url: String, secret: String) -> Result<CallbackSpec, ApiError> {
    let parsed = url::Url::parse(&url).map_err(|e| ApiError::invalid(format!("`callback.url`: not a URL ({e})")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(host)) => host == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback || app.config.allow_insecure_http => {}
        "http" => {
            return Err(ApiError::invalid(
                "`callback.url`: plain http is taken on loopback only; use https (or set [server] \
                 `allow_insecure_http = true`)",
            ));
        }
        _ => return Err(ApiError::invalid("`callback.url` must be an https:// URL")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ApiError::invalid("`callback.url` must not carry credentials; the signature authenticates"));
    }
    secret_key(&secret).map_err(|message| ApiError::invalid(format!("`callback.secret`: {message}")))?;
    Ok(CallbackSpec { url, secret })
}

fn request(
    session_id: String,
    user: Option<super::types::User>,
    transcript: Vec<super::types::TranscriptLine>,
    routing: Option<super::types::RoutingBody>,
) -> HandoverRequest {
    let user = match user {
        Some(user) => {
            let mut end_user = EndUser::new(user.id.unwrap_or_else(|| session_id.clone()));
            end_user.name = user.name;
            end_user.email = user.email;
            end_user.phone = user.phone;
            end_user.language = user.language;
            end_user
        }
        None => EndUser::new(session_id.clone()),
    };
    let transcript = transcript
        .into_iter()
        .map(|line| {
            let from = match line.from {
                Speaker::User => handover::Speaker::User,
                Speaker::Bot => handover::Speaker::Bot,
                Speaker::Agent => handover::Speaker::Agent,
            };
            let entry = TranscriptEntry::new(from, line.text);
            match line.at {
                Some(at) => entry.at(at),
                None => entry,
            }
        })
        .collect();
    let mut request = HandoverRequest::new(session_id, user).with_transcript(transcript);
    if let Some(body) = routing {
        let mut routing = Routing::default();
        routing.skills = body.skills;
        routing.languages = body.languages;
        routing.priority = body.priority.map(|p| match p {
            PriorityBody::Level(n) => Priority::Level(n),
            PriorityBody::Named(name) => Priority::Named(name),
        });
        routing.attributes = body.attributes;
        request = request.with_routing(routing);
    }
    request
}

async fn record(app: &App, id: &str) -> Result<HandoverRecord, ApiError> {
    app.store.get(id).await.map_err(|e| ApiError::store(&e))?.ok_or_else(|| ApiError::not_found(id))
}

/// What `GET` answers for `record`, with `pending_inputs` not sent yet.
pub(crate) fn handover_body(record: &HandoverRecord, pending_inputs: u64) -> HandoverBody {
    let has_callback = record.spec.get("callback").is_some_and(|c| !c.is_null());
    let callback = has_callback.then(|| {
        let state = record.callback_state.as_ref();
        let attempts = state.and_then(|s| s.get("attempts")).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let last_error = state
            .and_then(|s| s.get("last_error").or_else(|| s.get("error")))
            .and_then(|e| e.as_str())
            .map(str::to_owned);
        CallbackStatus { acked_seq: record.callback_seq, failed: !record.callback_pending, attempts, last_error }
    });
    HandoverBody {
        id: record.id.clone(),
        provider: record.provider.clone(),
        state: record.state.into(),
        last_seq: record.last_seq,
        pending_inputs,
        status: record.status.clone(),
        callback,
        owner: lease_holder(record),
        epoch: record.epoch,
    }
}

/// The instance holding `record`'s lease now (by this instance's clock), if any.
fn lease_holder(record: &HandoverRecord) -> Option<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    (record.state != HandoverState::Ended && record.lease_until_ms > now).then(|| record.owner.clone()).flatten()
}

/// The newest handovers first, optionally in one state (what the live view at `/ui` shows).
#[utoipa::path(
    get,
    path = "/v1/handovers",
    operation_id = "listHandovers",
    tag = "handovers",
    params(ListQuery),
    responses(
        (status = 200, description = "The handovers, newest first.", body = HandoverList),
        (status = 401, description = "No or a wrong API key.", body = super::types::ErrorBody),
        (status = 422, description = "An unknown state, or a limit out of range.", body = super::types::ErrorBody),
        (status = 503, description = "The store is unreachable: retry.", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HandoverList>, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("`limit` must be 1 to 1000"));
    }
    let state = match query.state.as_deref() {
        None => None,
        Some("starting") => Some(HandoverState::Starting),
        Some("queued") => Some(HandoverState::Queued),
        Some("active") => Some(HandoverState::Active),
        Some("ended") => Some(HandoverState::Ended),
        Some(other) => {
            return Err(ApiError::invalid(format!("`state` = {other:?}: expected starting, queued, active or ended")));
        }
    };
    let records = app.store.list(state, limit).await.map_err(|e| ApiError::store(&e))?;
    let handovers = records.iter().map(|record| handover_body(record, 0)).collect();
    Ok(Json(HandoverList { handovers }))
}

/// Where a handover is.
#[utoipa::path(
    get,
    path = "/v1/handovers/{id}",
    operation_id = "getHandover",
    tag = "handovers",
    params(("id" = String, Path, description = "The handover's id.")),
    responses(
        (status = 200, description = "The handover.", body = HandoverBody),
        (status = 401, description = "No or a wrong API key.", body = super::types::ErrorBody),
        (status = 404, description = "No such handover.", body = super::types::ErrorBody),
        (status = 503, description = "The store is unreachable: retry.", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<HandoverBody>, ApiError> {
    let record = record(&app, &id).await?;
    let pending = app.store.inputs(&id).await.map_err(|e| ApiError::store(&e))?.len();
    Ok(Json(handover_body(&record, pending as u64)))
}

/// Sends one input to the agent side (kept first, then sent in order by the handover's
/// owner).
#[utoipa::path(
    post,
    path = "/v1/handovers/{id}/inputs",
    operation_id = "sendInput",
    tag = "handovers",
    params(("id" = String, Path, description = "The handover's id.")),
    request_body = InputBody,
    responses(
        (status = 202, description = "Kept; it goes to the agent in order. A repeated message `id` is sent once.", body = Accepted),
        (status = 400, description = "The body is not JSON.", body = super::types::ErrorBody),
        (status = 401, description = "No or a wrong API key.", body = super::types::ErrorBody),
        (status = 404, description = "No such handover.", body = super::types::ErrorBody),
        (status = 409, description = "The handover has ended.", body = super::types::ErrorBody),
        (status = 413, description = "The body is too large.", body = super::types::ErrorBody),
        (status = 422, description = "An unknown input type, or a field unknown or wrong.", body = super::types::ErrorBody),
        (status = 503, description = "The store is unreachable: retry.", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn input(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let record = record(&app, &id).await?;
    let body: InputBody = json_body(body, app.config.limits.max_body_bytes).await?;
    if record.state == HandoverState::Ended {
        return Err(ended(&id));
    }
    let fresh = || format!("in:{}", uuid::Uuid::new_v4());
    let (input_id, input) = match body {
        InputBody::Message { text, id } => {
            let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            if id.is_empty() || id.len() > MAX_ID_LEN {
                return Err(ApiError::invalid("`id` must be 1 to 255 characters"));
            }
            (format!("in:{id}"), Input::Node(NodeInput::Message { text, id: Some(id) }))
        }
        InputBody::Attachment { name, media_type, url, data, caption, fetch, id } => {
            let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            if id.is_empty() || id.len() > MAX_ID_LEN {
                return Err(ApiError::invalid("`id` must be 1 to 255 characters"));
            }
            if url.is_some() == data.is_some() {
                return Err(ApiError::invalid("an attachment needs exactly one of `url` or `data`"));
            }
            if name.trim().is_empty() {
                return Err(ApiError::invalid("`name` must not be empty"));
            }
            if let Some(url) = &url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(ApiError::invalid("`url` must be an http(s) URL"));
            }
            if let Some(data) = &data
                && base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data.as_bytes()).is_err()
            {
                return Err(ApiError::invalid("`data` is not standard base64"));
            }
            let input = NodeInput::Attachment {
                name: Some(name),
                media_type,
                url,
                path: None,
                data,
                caption,
                fetch,
                id: Some(id.clone()),
            };
            (format!("in:{id}"), Input::Node(input))
        }
        InputBody::Intent { name } => (fresh(), Input::Node(NodeInput::Intent { name })),
        InputBody::Button { text } => (fresh(), Input::Node(NodeInput::Button { text })),
        InputBody::Connected => (fresh(), Input::Node(NodeInput::Connected)),
        InputBody::Disconnected => (fresh(), Input::Node(NodeInput::Disconnected)),
        InputBody::Typing { on } => (fresh(), Input::Typing { on }),
    };
    let payload = serde_json::to_value(&input)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let new = app.store.put_input(&id, NewInput::new(&input_id, payload)).await.map_err(|e| ApiError::store(&e))?;
    let input_id = input_id.trim_start_matches("in:").to_owned();
    Ok((StatusCode::ACCEPTED, Json(Accepted { handover_id: id, input_id, duplicate: !new })))
}

fn ended(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "handover_ended",
        format!("handover `{id}` has ended; read its status with GET /v1/handovers/{id}"),
    )
}

/// Closes the handover (the flow's Close Handover): the conversation is closed at the
/// contact center and the final status is `completed`.
#[utoipa::path(
    delete,
    path = "/v1/handovers/{id}",
    operation_id = "closeHandover",
    tag = "handovers",
    params(("id" = String, Path, description = "The handover's id.")),
    responses(
        (status = 202, description = "Kept; the status event follows in the log.", body = Closing),
        (status = 401, description = "No or a wrong API key.", body = super::types::ErrorBody),
        (status = 404, description = "No such handover.", body = super::types::ErrorBody),
        (status = 409, description = "The handover has ended.", body = super::types::ErrorBody),
        (status = 503, description = "The store is unreachable: retry.", body = super::types::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn close(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Closing>), ApiError> {
    let record = record(&app, &id).await?;
    if record.state == HandoverState::Ended {
        return Err(ended(&id));
    }
    let payload = serde_json::to_value(Input::Close)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    app.store.put_input(&id, NewInput::new(CLOSE_INPUT_ID, payload)).await.map_err(|e| ApiError::store(&e))?;
    Ok((StatusCode::ACCEPTED, Json(Closing { id, state: record.state.into() })))
}
