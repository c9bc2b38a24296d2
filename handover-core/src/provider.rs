//! The trait each contact-center crate implements.

use async_trait::async_trait;

use crate::{
    CheckReport, HandoverRequest, ProviderInfo, Result, Session, SessionSnapshot, WebhookReply, WebhookRequest,
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
}
