//! The provider: built once from its config, it starts, resumes and checks handovers and
//! receives the Gateway's webhooks for all of them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use handover_core::{
    Applied, Capabilities, CheckReport, EventStream, HandoverRequest, Inbound, Ingested, Provider, ProviderInfo,
    Result, Session, SessionSnapshot, WebhookReply, WebhookRequest,
};
use handover_transport::events;
use handover_transport::push::{self, Link, PendingLimits, PushRouter};
use handover_transport::retry::RetryPolicy;

use crate::NAME;
use crate::client::{self, Client};
use crate::config::EightByEightConfig;
use crate::jws::KeyCache;
use crate::session::{self, Inner, Snapshot, State};
use crate::webhook::Ingress;
use crate::wire::Item;

/// The largest file the provider uploads, in bytes (10 MB).
///
/// **Unconfirmed**: neither the Chat Gateway OpenAPI (`addconversationattachments`,
/// 8x8Cloud/public-developer-docs, mirrored in api-evangelist/8x8) nor the 8x8 developer
/// docs state a size limit or accepted types for uploads; this is a conservative bound, and
/// a refusal by the Gateway (413, 415) still comes back as an `InvalidInput` error.
pub const MAX_ATTACHMENT_BYTES: u64 = 10_000_000;

/// What 8x8 supports. The Gateway reports queueing without a position or wait, and has
/// no "stopped typing" call (the indicator times out). The user's files are uploaded
/// (`protocols/8x8.md` row 16) and referenced from a message; the agent's arrive as
/// pre-signed URLs on `MESSAGE` events. The Gateway takes no file URLs.
pub fn capabilities() -> Capabilities {
    Capabilities::none()
        .with_typing(true)
        .with_participant_change(true)
        .with_resume(true)
        .with_attachment_uploads(true)
        .with_attachments_to_user(true)
        .with_max_attachment_bytes(Some(MAX_ATTACHMENT_BYTES))
}

/// 8x8 Contact Center through the Chat Gateway v1.
///
/// Build it with [`EightByEightProvider::builder`] (or [`EightByEightProvider::new`] for
/// the defaults); one value serves every handover and receives every webhook of the
/// channel.
pub struct EightByEightProvider {
    info: ProviderInfo,
    config: Arc<EightByEightConfig>,
    client: Arc<Client>,
    ingress: Ingress,
    capacity: usize,
}

/// Builds an [`EightByEightProvider`]: checks everything, constructs once.
///
/// ```
/// use provider_8x8::{EightByEightConfig, EightByEightProvider};
///
/// let config = EightByEightConfig::new("api-key", "channel-1").with_tenant("tenant-1");
/// let provider = EightByEightProvider::builder(config).build()?;
/// # Ok::<(), handover_core::Error>(())
/// ```
#[must_use]
pub struct EightByEightBuilder {
    config: EightByEightConfig,
    retry: RetryPolicy,
    pending: PendingLimits,
    capacity: usize,
}

handover_transport::provider_builder_setters!(EightByEightBuilder, pending);

impl EightByEightBuilder {
    /// Checks the config and builds the provider (no I/O).
    pub fn build(self) -> Result<EightByEightProvider> {
        let client = Arc::new(Client::new(&self.config, self.retry)?);
        self.config.validate()?;
        let ingress = Ingress {
            keys: KeyCache::new(self.config.webhook_key_ids.clone(), self.config.key_fetches_per_minute),
            client: client.clone(),
            window: Duration::from_secs(self.config.webhook_replay_window_secs),
            router: Arc::new(PushRouter::with_limits(4096, self.pending)),
        };
        Ok(EightByEightProvider {
            info: ProviderInfo::new(NAME, "8x8 Contact Center", capabilities()),
            config: Arc::new(self.config),
            client,
            ingress,
            capacity: self.capacity,
        })
    }
}

impl EightByEightProvider {
    /// A builder for `config`.
    pub fn builder(config: EightByEightConfig) -> EightByEightBuilder {
        EightByEightBuilder {
            config,
            retry: RetryPolicy::default(),
            pending: PendingLimits::default(),
            capacity: events::DEFAULT_CAPACITY,
        }
    }

    /// Checks `config` and builds the provider with the defaults (no I/O).
    pub fn new(config: EightByEightConfig) -> Result<Self> {
        Self::builder(config).build()
    }

    /// Registers `conversation` for webhooks: call it as soon as its id is known.
    fn link(&self, conversation: &str) -> (Link<Item>, EventStream) {
        Link::open(&self.ingress.router, conversation, self.capacity)
    }
}

#[async_trait]
impl Provider for EightByEightProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        let body = client::create_body(&self.config, &request);
        let conversation = self.client.create_conversation(&body).await?;
        // Deliveries for the conversation reach this session from now on.
        let link = self.link(&conversation);
        tracing::info!(%conversation, "conversation created");
        let provider = (&self.info, &self.config, &self.client);
        let (inner, closed) = Inner::new(provider, request.session_id.clone(), conversation, State::default());
        Ok(session::open(inner, closed, link, false))
    }

    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session> {
        let saved = Snapshot::read(&snapshot)?;
        let provider = (&self.info, &self.config, &self.client);
        let session_id = snapshot.session_id().to_owned();
        let link = self.link(&saved.conversation);
        let (inner, closed) = Inner::new(provider, session_id, saved.conversation, saved.state);
        Ok(session::open(inner, closed, link, true).resumed_from(&snapshot))
    }

    /// Reads the configured channel: proves the key, the tenant and the channel id.
    async fn check(&self) -> Result<CheckReport> {
        self.client.channel(&self.config.channel_id).await?;
        let mut report = CheckReport::new().verified("base_url, api_key, tenant and channel_id: the channel was read");
        if self.config.queue_id.is_some() {
            report = report.unverified("queue_id: only a conversation shows that it routes");
        }
        Ok(report.unverified("the webhook signing keys: only a delivery from 8x8 proves them"))
    }

    /// §6: verify the signature, read, route (the `webhook` module).
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
