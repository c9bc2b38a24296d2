//! The provider: built once from its config, it starts, resumes and checks handovers and
//! receives Genesys's webhooks for all of them.

use std::sync::Arc;

use async_trait::async_trait;
use handover_core::{
    Applied, Capabilities, CheckReport, Error, ErrorKind, EventStream, HandoverRequest, Inbound, Ingested, Provider,
    ProviderInfo, Result, Session, SessionSnapshot, WebhookReply, WebhookRequest,
};
use handover_transport::events;
use handover_transport::http::{self, HttpConfig};
use handover_transport::push::{self, Link, PendingLimits, PushRouter};
use handover_transport::retry::RetryPolicy;
use handover_transport::session::CloseReceiver;
use handover_transport::ws::WsConfig;

use crate::NAME;
use crate::auth::TokenCache;
use crate::client::{self, Client, Customer};
use crate::config::GenesysConfig;
use crate::notifications::{EndDetector, NotificationsDetector};
use crate::session::{self, Inner, Snapshot};
use crate::webhook::Ingress;
use crate::wire::Outbound;

/// What Genesys Open Messaging supports. Files both ways, as links: the user's go out as
/// URLs Genesys fetches (Open Messaging has no upload from this API), up to
/// [`MAX_ATTACHMENT_BYTES`](crate::MAX_ATTACHMENT_BYTES), any media type; the agent's
/// arrive as Genesys download URLs.
pub fn capabilities() -> Capabilities {
    Capabilities::none()
        .with_typing(true)
        .with_participant_change(true)
        .with_resume(true)
        .with_attachment_links(true)
        .with_attachments_to_user(true)
        .with_max_attachment_bytes(Some(crate::MAX_ATTACHMENT_BYTES))
}

/// Genesys Cloud Open Messaging.
///
/// Build it with [`GenesysProvider::builder`] (or [`GenesysProvider::new`] for the
/// defaults). One value serves many sessions: they share the OAuth token, the notification
/// channels and the webhook router ([`Provider::webhook`]).
pub struct GenesysProvider {
    info: ProviderInfo,
    config: Arc<GenesysConfig>,
    client: Arc<Client>,
    tokens: Arc<TokenCache>,
    detector: Arc<dyn EndDetector>,
    ingress: Ingress,
    capacity: usize,
}

/// Builds a [`GenesysProvider`]: checks everything, constructs once. The retry policy
/// reaches every call the provider makes: the API, the token requests and the
/// notification channels.
///
/// ```
/// use provider_genesys::{GenesysConfig, GenesysProvider};
///
/// let config = GenesysConfig::new("eu_central_1", "client-id", "client-secret", "integration-id", "whsec");
/// let provider = GenesysProvider::builder(config).build()?;
/// # Ok::<(), handover_core::Error>(())
/// ```
///
/// `retry` governs every call: the API, the token requests and the notification channels.
#[must_use]
pub struct GenesysBuilder {
    config: GenesysConfig,
    retry: RetryPolicy,
    ws: WsConfig,
    detector: Option<Arc<dyn EndDetector>>,
    pending: PendingLimits,
    capacity: usize,
}

handover_transport::provider_builder_setters!(GenesysBuilder, pending);

impl GenesysBuilder {
    /// The notification sockets' settings (default
    /// [`NotificationsDetector::default_ws_config`]).
    pub fn ws(mut self, ws: WsConfig) -> Self {
        self.ws = ws;
        self
    }

    /// Replaces the Notifications API end detector (a push-based one, fed by Triggers or
    /// EventBridge).
    pub fn end_detector(mut self, detector: Arc<dyn EndDetector>) -> Self {
        self.detector = Some(detector);
        self
    }

    /// Checks the config and builds the provider (no I/O).
    pub fn build(self) -> Result<GenesysProvider> {
        let (login, api) = self.config.validate()?;
        let http = http::client(NAME, &HttpConfig::default())?;
        let config = Arc::new(self.config);
        let tokens = Arc::new(TokenCache::new(
            http.clone(),
            &login,
            config.client_id.clone(),
            config.client_secret.clone(),
            self.retry.clone(),
        ));
        let client = Arc::new(Client::new(http, api, config.integration_id.clone(), self.retry));
        let detector = self.detector.unwrap_or_else(|| {
            Arc::new(
                NotificationsDetector::new(client.clone(), tokens.clone(), self.ws)
                    .with_conversations_per_channel(config.conversations_per_channel),
            )
        });
        Ok(GenesysProvider {
            info: ProviderInfo::new(NAME, "Genesys Cloud Open Messaging", capabilities()),
            ingress: Ingress {
                secret: config.webhook_secret.clone(),
                router: Arc::new(PushRouter::with_limits(4096, self.pending)),
            },
            config,
            client,
            tokens,
            detector,
            capacity: self.capacity,
        })
    }
}

impl GenesysProvider {
    /// A builder for `config`.
    pub fn builder(config: GenesysConfig) -> GenesysBuilder {
        GenesysBuilder {
            config,
            retry: RetryPolicy::default(),
            ws: NotificationsDetector::default_ws_config(),
            detector: None,
            pending: PendingLimits::default(),
            capacity: events::DEFAULT_CAPACITY,
        }
    }

    /// Checks `config` and builds the provider with the defaults (no I/O): the
    /// Notifications API detector.
    pub fn new(config: GenesysConfig) -> Result<Self> {
        Self::builder(config).build()
    }

    /// OAuth token requests made so far (one token serves every session).
    pub fn token_requests(&self) -> u64 {
        self.tokens.requests()
    }

    /// Registers the customer for webhooks: before anything is sent as the customer, so a
    /// reply Genesys posts at once finds its session.
    fn link(&self, customer_id: &str) -> (Link<Outbound>, EventStream) {
        Link::open(&self.ingress.router, customer_id, self.capacity)
    }

    /// The session of `inner`: its conversation watched, its task started.
    async fn open(
        &self,
        (inner, closed): (Arc<Inner>, CloseReceiver),
        link: (Link<Outbound>, EventStream),
        catch_up: bool,
    ) -> Result<Session> {
        session::open(inner, closed, link, self.detector.clone(), self.capacity, catch_up).await
    }
}

#[async_trait]
impl Provider for GenesysProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        let customer = Customer {
            // §7.4: a fresh id per handover, so Genesys never appends to a stale conversation.
            id: format!("handover-{}", uuid::Uuid::new_v4()),
            nickname: request.user.name.clone().or_else(|| Some(request.user.id.clone())),
            email: request.user.email.clone(),
        };
        let provider = (&self.info, &self.config, &self.client, &self.tokens);
        let (inner, closed) = Inner::new(provider, request.session_id.clone(), customer, Default::default());
        // Route webhooks for this customer before Genesys can send any.
        let link = self.link(inner.customer_id());
        let attributes = client::custom_attributes(&self.config, &request);
        let mut texts = client::opening_texts(&self.config, &request)?.into_iter().enumerate();
        let (_, first) = texts.next().unwrap_or_default();
        inner.send_text("transcript-0", &first, Some(&attributes)).await.map_err(|e| e.in_op("start conversation"))?;
        for (n, text) in texts {
            inner.send_text(&format!("transcript-{n}"), &text, None).await.map_err(|e| e.in_op("send transcript"))?;
        }
        self.open((inner, closed), link, false).await
    }

    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session> {
        let saved = Snapshot::read(&snapshot)?;
        let (customer, state) = saved.into_parts();
        let provider = (&self.info, &self.config, &self.client, &self.tokens);
        let (inner, closed) = Inner::new(provider, snapshot.session_id().to_owned(), customer, state);
        let link = self.link(inner.customer_id());
        Ok(self.open((inner, closed), link, true).await?.resumed_from(&snapshot))
    }

    /// Takes a token (proves the OAuth client) and reads the integration (proves
    /// `integration_id`, when the client may read integrations).
    async fn check(&self) -> Result<CheckReport> {
        let token = self.tokens.token().await?;
        let report = CheckReport::new().verified("login_url, client_id and client_secret: an OAuth token was issued");
        let report = match self.client.integration(&token).await {
            Ok(Some(_)) => report.verified("integration_id: the Open Messaging integration exists"),
            Ok(None) => report.unverified(
                "integration_id: this OAuth client may not read integrations (messaging:integration:view); \
                 the first handover shows whether it is right",
            ),
            Err(error) if error.kind() == ErrorKind::SessionNotFound => {
                return Err(Error::config(
                    NAME,
                    format!(
                        "[genesys] `integration_id` `{}` is not an Open Messaging integration of this org",
                        self.config.integration_id
                    ),
                ));
            }
            Err(error) => return Err(error.in_op("check integration_id")),
        };
        Ok(report.unverified("webhook_secret: only a delivery from Genesys proves it"))
    }

    /// §6: see [`crate::webhook`].
    async fn webhook(&self, request: WebhookRequest) -> WebhookReply {
        self.ingress.receive(request).await
    }

    async fn ingest(&self, request: WebhookRequest) -> Ingested {
        push::ingested(self.ingress.accept(&request).await)
    }

    async fn apply(&self, inbound: Inbound) -> Result<Applied> {
        self.ingress.router.apply(NAME, inbound).await
    }
}
