//! The trait each contact-center crate implements.

use async_trait::async_trait;

use crate::{
    Applied, CheckReport, Error, ErrorKind, HandoverRequest, Inbound, Ingested, ProviderInfo, Result, Session,
    SessionSnapshot, WebhookReply, WebhookRequest,
};

/// A contact center that can take a handover.
///
/// Object safe: the facade keeps providers as `Arc<dyn Provider>`. One provider value
/// serves many concurrent sessions and shares what the API allows to share between them
/// (an OAuth token, an HTTP connection pool).
///
/// # Contract
///
/// - [`start`](Provider::start) returns once the contact center has accepted the request
///   (the conversation exists and its event source is open); the session's events then
///   follow the [`EventStream`](crate::EventStream) contract.
/// - Anything the provider cannot do is refused with
///   [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) before any I/O.
/// - [`resume`](Provider::resume) picks a session up from a
///   [`SessionSnapshot`] written by the same provider, in this or another process,
///   without repeating messages already delivered.
/// - Push providers verify, deduplicate and route deliveries in
///   [`webhook`](Provider::webhook); pull providers answer `404`.
/// - For many instances, a push provider's ingress splits in two (DESIGN.md §7.2):
///   [`ingest`](Provider::ingest) verifies and decodes a request on any instance with the
///   provider's config alone, and [`apply`](Provider::apply) hands one kept delivery to
///   the session in the process that owns it, returning once the session has emitted what
///   the delivery causes. Its sessions' snapshots name the
///   [`conversation_key`](SessionSnapshot::conversation_key) deliveries are routed by.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Static facts: name and capabilities.
    fn info(&self) -> &ProviderInfo;

    /// Hands `request` over: authenticates, opens the event source, creates the
    /// conversation with the user's details, routing and transcript.
    async fn start(&self, request: HandoverRequest) -> Result<Session>;

    /// Picks up a session from a snapshot.
    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session>;

    /// Checks configuration and credentials against the contact center without starting a
    /// handover: an error names what is wrong; the report says what was verified and what
    /// could not be without a conversation.
    async fn check(&self) -> Result<CheckReport>;

    /// Handles one inbound webhook delivery: verifies its signature on the raw body,
    /// deduplicates it, routes it to its session and returns what the provider expects
    /// back. Providers that do not receive webhooks answer `404`.
    async fn webhook(&self, request: WebhookRequest) -> WebhookReply {
        let _ = request;
        WebhookReply::text(404, format!("provider `{}` does not receive webhooks", self.info().name))
    }

    /// Verifies and decodes one inbound webhook request without touching any session
    /// (signature, replay window, decode), on any instance: the deliveries it carries and
    /// the reply to send once they are kept. Providers that do not receive webhooks answer
    /// `404` with no delivery.
    async fn ingest(&self, request: WebhookRequest) -> Ingested {
        let _ = request;
        Ingested::reply(WebhookReply::text(404, format!("provider `{}` does not receive webhooks", self.info().name)))
    }

    /// Applies a delivery [`ingest`](Provider::ingest) yielded (kept meanwhile, maybe by
    /// another instance) to the live session of its conversation in this process; returns
    /// once that session has emitted every event the delivery causes, so the caller can
    /// keep those events before it drops the delivery.
    async fn apply(&self, inbound: Inbound) -> Result<Applied> {
        let _ = inbound;
        Err(Error::new(ErrorKind::Unsupported, self.info().name, "apply", "this provider does not receive webhooks"))
    }
}
