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
        crate::api::handovers::list,
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
        types::HandoverList,
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
    modifiers(&Bearer, &Links),
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

/// The links from a created handover to the calls that take its id (clients and
/// schema-driven tools follow them).
struct Links;

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::link::LinkBuilder;
        let Some(create) = openapi.paths.paths.get_mut("/v1/handovers").and_then(|item| item.post.as_mut()) else {
            return;
        };
        for status in ["200", "201"] {
            if let Some(RefOr::T(response)) = create.responses.responses.get_mut(status) {
                for (name, operation) in [
                    ("GetHandover", "getHandover"),
                    ("ReadEvents", "readEvents"),
                    ("SendInput", "sendInput"),
                    ("CloseHandover", "closeHandover"),
                ] {
                    let link = LinkBuilder::new().operation_id(operation).parameter("id", "$response.body#/id").build();
                    response.links.insert(name.to_owned(), RefOr::T(link));
                }
            }
        }
    }
}

/// The document, as pretty JSON with a final newline.
pub fn document() -> String {
    let mut doc = Api::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut value = serde_json::to_value(&doc).unwrap_or_default();
    camel_case_links(&mut value);
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}

/// utoipa 5 writes a Link Object's fields in snake case (`operation_id`); OpenAPI spells
/// them in camel case (`operationId`), and tools that follow links need that.
fn camel_case_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else { return };
    for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
        for operation in item.values_mut().filter_map(|o| o.as_object_mut()) {
            let Some(responses) = operation.get_mut("responses").and_then(|r| r.as_object_mut()) else { continue };
            for response in responses.values_mut() {
                let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else { continue };
                for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                    for (snake, camel) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(value) = link.remove(snake) {
                            link.insert(camel.to_owned(), value);
                        }
                    }
                }
            }
        }
    }
}
