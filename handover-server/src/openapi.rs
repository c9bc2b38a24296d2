//! The OpenAPI 3.1 document, generated from the handlers' types; `handover-server/openapi.json`
//! holds a copy that a test keeps equal to it.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::types;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "handover",
        description = "Hand a chatbot conversation over to a human agent in a contact center, from a bot in any \
                       language. Every `/v1` call needs `Authorization: Bearer <key>`; errors are \
                       `{\"error\":{\"code\":\"…\",\"message\":\"…\"}}`.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        crate::api::handovers::create,
        crate::api::handovers::get,
        crate::api::handovers::close,
        crate::api::handovers::input,
        crate::api::events::events,
        crate::api::health::livez,
        crate::api::health::readyz,
        crate::api::health::metrics,
        crate::api::health::openapi,
    ),
    components(schemas(
        types::CreateHandover,
        types::User,
        types::Speaker,
        types::TranscriptLine,
        types::PriorityBody,
        types::RoutingBody,
        types::CallbackBody,
        types::StateBody,
        types::Created,
        types::StatusSchema,
        types::StatusError,
        types::CallbackStatus,
        types::HandoverBody,
        types::InputBody,
        types::Accepted,
        types::Closing,
        types::EventType,
        types::EventSchema,
        types::EventsPage,
        types::ErrorBody,
        types::ErrorDetail,
        types::Health,
        handover::config::NodeKeys,
        handover::node::FlowContinuation,
    )),
    modifiers(&Bearer),
    tags(
        (name = "handovers", description = "Start, read, feed and close handovers."),
        (name = "events", description = "A handover's events: SSE, long-poll (and signed callbacks)."),
        (name = "health", description = "Liveness, readiness, metrics, this document."),
    )
)]
struct Api;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document, as pretty JSON with a final newline.
pub fn document() -> String {
    let mut doc = Api::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut text = doc.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}
