//! The provider: built once from its config, it starts, resumes and checks handovers and
//! receives Engage's callbacks and webhook events for all of them.

use std::sync::Arc;

use async_trait::async_trait;
use handover_core::{
    Applied, Capabilities, CheckReport, Error, EventStream, HandoverRequest, Inbound, Ingested, Provider, ProviderInfo,
    Result, Session, SessionSnapshot, WebhookReply, WebhookRequest,
};
use handover_transport::events;
use handover_transport::push::{self, Link, PendingLimits, PushRouter};
use handover_transport::retry::RetryPolicy;
use handover_transport::session::CloseReceiver;

use crate::NAME;
use crate::client::{self, Client, MAX_ATTACHMENT_BYTES, MAX_BODY};
use crate::config::RingCentralConfig;
use crate::session::{self, Inner, Snapshot, State};
use crate::webhook::Ingress;
use crate::wire::Item;

/// What Engage supports: queue position and wait (`messaging.queuing_update`, with task
/// mode on), user typing, text up to 20 000 characters, files both ways (the user's as
/// bytes or as a URL Engage fetches, up to 10 MB: unconfirmed for SDK sources, see
/// `client::MAX_ATTACHMENT_BYTES`; the agent's as Engage's URLs). Agent joins are not
/// reported to a Source SDK source; the agent shows with the first reply.
pub fn capabilities() -> Capabilities {
    Capabilities::none()
        .with_typing(true)
        .with_queue_position(true)
        .with_estimated_wait(true)
        .with_resume(true)
        .with_max_message_chars(Some(MAX_BODY))
        .with_attachment_uploads(true)
        .with_attachment_links(true)
        .with_attachments_to_user(true)
        .with_max_attachment_bytes(Some(MAX_ATTACHMENT_BYTES))
        .with_attachment_media_types(&[])
}

/// RingCentral Engage Digital through a Source SDK source.
///
/// Build it with [`RingCentralProvider::builder`] (or [`RingCentralProvider::new`] for the
/// defaults); one value serves every handover and receives every callback and webhook
/// event of the source.
pub struct RingCentralProvider {
    info: ProviderInfo,
    config: Arc<RingCentralConfig>,
    client: Arc<Client>,
    ingress: Ingress,
    capacity: usize,
}

/// Builds a [`RingCentralProvider`]: checks everything, constructs once.
///
/// ```
/// use provider_ringcentral::{RingCentralConfig, RingCentralProvider};
///
/// let config = RingCentralConfig::new("acme.digital.ringcentral.com", "source", "source-token", "api-token", "42")
///     .with_webhook_secret("secret");
/// let provider = RingCentralProvider::builder(config).build()?;
/// # Ok::<(), handover_core::Error>(())
/// ```
#[must_use]
pub struct RingCentralBuilder {
    config: RingCentralConfig,
    retry: RetryPolicy,
    pending: PendingLimits,
    capacity: usize,
}

handover_transport::provider_builder_setters!(RingCentralBuilder, pending);

impl RingCentralBuilder {
    /// Checks the config and builds the provider (no I/O).
    pub fn build(self) -> Result<RingCentralProvider> {
        self.config.validate()?;
        let client = Arc::new(Client::new(&self.config, self.retry)?);
        let config = Arc::new(self.config);
        Ok(RingCentralProvider {
            info: ProviderInfo::new(NAME, "RingCentral Engage Digital", capabilities()),
            ingress: Ingress {
                config: config.clone(),
                client: client.clone(),
                router: Arc::new(PushRouter::with_limits(4096, self.pending)),
                threads: Default::default(),
            },
            config,
            client,
            capacity: self.capacity,
        })
    }
}

impl RingCentralProvider {
    /// A builder for `config`.
    pub fn builder(config: RingCentralConfig) -> RingCentralBuilder {
        RingCentralBuilder {
            config,
            retry: RetryPolicy::default(),
            pending: PendingLimits::default(),
            capacity: events::DEFAULT_CAPACITY,
        }
    }

    /// Checks `config` and builds the provider with the defaults (no I/O).
    pub fn new(config: RingCentralConfig) -> Result<Self> {
        Self::builder(config).build()
    }

    /// Registers our thread id for deliveries: before anything is sent on the thread.
    fn link(&self, thread: &str) -> (Link<Item>, EventStream) {
        Link::open(&self.ingress.router, thread, self.capacity)
    }

    /// Starts the session of `inner`, its Engage thread mapped for webhook events.
    fn open(
        &self,
        inner: Arc<Inner>,
        closed: CloseReceiver,
        link: (Link<Item>, EventStream),
        catch_up: bool,
    ) -> Session {
        if let Some(engage) = inner.engage_thread() {
            self.ingress.remember_thread(engage, inner.thread().to_owned());
        }
        session::open(inner, closed, link, catch_up)
    }
}

#[async_trait]
impl Provider for RingCentralProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        let thread = format!("h-{}", uuid::Uuid::new_v4());
        // Replies and queue updates for the thread reach this session from now on.
        let link = self.link(&thread);
        let user = client::user_object(&request);
        let name = request.user.name.clone().unwrap_or_else(|| request.user.id.clone());
        self.client.create_thread(&thread, &user, &name).await?;
        let bot = client::bot_object(&self.config);
        self.client.send_transcript(&thread, &user, &bot, &request.transcript).await?;
        let engage = self
            .client
            .wait_for_thread(&self.config.source_id, &thread, self.config.thread_lookup_timeout_secs)
            .await?;
        let mut categories = vec![self.config.agent_category_id.clone()];
        for extra in &self.config.additional_category_ids {
            if !categories.contains(extra) {
                categories.push(extra.clone());
            }
        }
        self.client.set_thread_categories(&engage, &categories).await?;
        tracing::info!(%thread, %engage, "thread handed to the agent category");
        let provider = (&self.info, &self.config, &self.client);
        let state = State::on(engage);
        let (inner, closed) = Inner::new(provider, request.session_id.clone(), thread, user, state);
        Ok(self.open(inner, closed, link, false))
    }

    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session> {
        let saved = Snapshot::read(&snapshot)?;
        let provider = (&self.info, &self.config, &self.client);
        let session_id = snapshot.session_id().to_owned();
        let (inner, closed) = Inner::new(provider, session_id, saved.thread, saved.user, saved.state);
        let link = self.link(inner.thread());
        Ok(self.open(inner, closed, link, true).resumed_from(&snapshot))
    }

    /// Reads the source and the configured categories: proves the API token, the source id
    /// and the category ids.
    async fn check(&self) -> Result<CheckReport> {
        let source = self.client.source(&self.config.source_id).await.map_err(|e| e.in_op("check source_id"))?;
        if source["active"] == false {
            return Err(Error::config(
                NAME,
                format!("[ringcentral] the source `{}` is not active", self.config.source_id),
            ));
        }
        let mut wanted = vec![self.config.agent_category_id.clone()];
        wanted.extend(self.config.additional_category_ids.iter().cloned());
        wanted.extend(self.config.bot_category_id.iter().cloned());
        let known = self.client.categories(&wanted).await?;
        let missing: Vec<&String> = wanted.iter().filter(|id| !known.contains(id)).collect();
        if missing.is_empty() {
            return Ok(CheckReport::new()
                .verified("api_url, access_token and source_id: the source was read")
                .verified("agent_category_id and the other category ids: Engage knows them")
                .unverified("source_token and realtime_url: only a message sent or a callback received proves them")
                .unverified("webhook_secret: only a webhook delivery from Engage proves it"));
        }
        let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        Err(Error::config(NAME, format!("[ringcentral] Engage has no category {}", missing.join(", "))))
    }

    /// One endpoint for all of Engage (§1): see [`crate::webhook`].
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
