//! The provider: built once from its config, it starts, resumes and checks handovers and
//! receives the desk's webhooks for all of them.

use std::sync::Arc;

use async_trait::async_trait;
use handover_core::{
    Applied, Capabilities, CheckReport, Error, HandoverRequest, Inbound, Ingested, Provider, ProviderInfo, Result,
    Session, SessionSnapshot, WebhookReply, WebhookRequest, transcript,
};
use handover_transport::events;
use handover_transport::push::{self, Link, PendingLimits, PushRouter};
use handover_transport::retry::RetryPolicy;

use crate::NAME;
use crate::client::{self, Client, Contact};
use crate::config::LiveAgentConfig;
use crate::session::{self, Inner, Snapshot, State};
use crate::webhook::Ingress;
use crate::wire::Item;

/// The largest private note posted at once (the transcript is split to this).
const NOTE_CHARS: usize = 10_000;

/// What Live Agent supports. Queue position is computed from the inbox's unassigned
/// conversations and the wait estimated from it: the desk has no queue API. Files go both
/// ways: the user's are uploaded (up to 40 MB, any type: an API inbox checks none; the
/// desk takes no file URLs), the agent's arrive as the desk's download URLs.
pub fn capabilities() -> Capabilities {
    Capabilities::none()
        .with_queue_position(true)
        .with_estimated_wait(true)
        .with_participant_change(true)
        .with_resume(true)
        .with_attachment_uploads(true)
        .with_attachment_links(false)
        .with_attachments_to_user(true)
        .with_max_attachment_bytes(Some(client::MAX_ATTACHMENT_BYTES))
        .with_attachment_media_types(&[])
}

/// Cognigy Live Agent, or any Chatwoot desk with an API-channel inbox.
///
/// Build it with [`LiveAgentProvider::builder`] (or [`LiveAgentProvider::new`] for the
/// defaults); one value serves every handover and receives every webhook of the inbox.
pub struct LiveAgentProvider {
    info: ProviderInfo,
    config: Arc<LiveAgentConfig>,
    client: Arc<Client>,
    ingress: Ingress,
    capacity: usize,
}

/// Builds a [`LiveAgentProvider`]: checks everything, constructs once.
///
/// ```
/// use provider_liveagent::{LiveAgentConfig, LiveAgentProvider};
///
/// let mut config = LiveAgentConfig::new("https://desk.example/api/v1", 1, "token", 7);
/// config.webhook_secret = Some("whsec".to_owned().into());
/// let provider = LiveAgentProvider::builder(config).build()?;
/// # Ok::<(), handover_core::Error>(())
/// ```
#[must_use]
pub struct LiveAgentBuilder {
    config: LiveAgentConfig,
    retry: RetryPolicy,
    pending: PendingLimits,
    capacity: usize,
}

handover_transport::provider_builder_setters!(LiveAgentBuilder, pending);

impl LiveAgentBuilder {
    /// Checks the config and builds the provider (no I/O).
    pub fn build(self) -> Result<LiveAgentProvider> {
        let client = Client::new(&self.config, self.retry)?;
        let auth = self.config.validate()?;
        Ok(LiveAgentProvider {
            info: ProviderInfo::new(NAME, "Cognigy Live Agent", capabilities()),
            config: Arc::new(self.config),
            client: Arc::new(client),
            ingress: Ingress { auth, router: Arc::new(PushRouter::with_limits(4096, self.pending)) },
            capacity: self.capacity,
        })
    }
}

impl LiveAgentProvider {
    /// A builder for `config`.
    pub fn builder(config: LiveAgentConfig) -> LiveAgentBuilder {
        LiveAgentBuilder {
            config,
            retry: RetryPolicy::default(),
            pending: PendingLimits::default(),
            capacity: events::DEFAULT_CAPACITY,
        }
    }

    /// Checks `config` and builds the provider with the defaults (no I/O).
    pub fn new(config: LiveAgentConfig) -> Result<Self> {
        Self::builder(config).build()
    }

    /// Registers `conversation` for webhooks: call it as soon as its id is known.
    fn link(&self, conversation: u64) -> (Link<Item>, handover_core::EventStream) {
        Link::open(&self.ingress.router, conversation.to_string(), self.capacity)
    }
}

#[async_trait]
impl Provider for LiveAgentProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        let user = &request.user;
        let contact =
            self.client.contact(&user.id, user.name.as_deref(), user.email.as_deref(), user.phone.as_deref()).await?;
        let attributes = client::conversation_attributes(&self.config, &request);
        let (conversation, status) = self.client.create_conversation(&contact, &attributes).await?;
        // Deliveries for the conversation reach this session from now on, even while the
        // calls below are still in flight (the desk may greet at once and never retries).
        let link = self.link(conversation);
        // §8.5: an inbox locked to one conversation may hand back a resolved one.
        if status != "open" {
            self.client.set_status(conversation, "open").await?;
        }
        if let Some(priority) = client::priority(&self.config, &request)
            && let Err(error) = self.client.set_priority(conversation, &priority).await
        {
            // §8.7: the priority must not abort the handover.
            tracing::warn!(%error, "the conversation's priority could not be set");
        }
        let provider = (&self.info, &self.config, &self.client);
        let (inner, closed) = Inner::new(provider, request.session_id.clone(), conversation, contact, State::default());
        let rendered = transcript::render(&request.transcript);
        if !rendered.is_empty() {
            let chunks = transcript::split(&rendered, NOTE_CHARS)
                .map_err(|e| Error::invalid_input(NAME, "send transcript", e.to_string()))?;
            for chunk in chunks {
                inner.note(chunk).await.map_err(|e| e.in_op("send transcript"))?;
            }
        }
        tracing::info!(conversation, "conversation created");
        Ok(session::open(inner, closed, link, false))
    }

    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session> {
        let saved = Snapshot::read(&snapshot)?;
        let contact = Contact { id: saved.contact_id, source_id: saved.source_id };
        let provider = (&self.info, &self.config, &self.client);
        let session_id = snapshot.session_id().to_owned();
        let (inner, closed) = Inner::new(provider, session_id, saved.conversation, contact, saved.state);
        let link = self.link(saved.conversation);
        Ok(session::open(inner, closed, link, true).resumed_from(&snapshot))
    }

    /// Reads the inbox and its queue: proves the token, the account and the inbox.
    async fn check(&self) -> Result<CheckReport> {
        let inbox = self.client.inbox().await.map_err(|e| e.in_op("check account_id and inbox_id"))?;
        self.client.unassigned(1).await?;
        let channel = inbox["channel_type"].as_str().unwrap_or("unknown");
        let mut report = CheckReport::new()
            .verified(format!("base_url, api_access_token, account_id and inbox_id (a {channel} inbox)"));
        if channel != "Channel::Api" && channel != "unknown" {
            report = report.unverified("the inbox is not an API inbox: incoming messages may be refused");
        }
        Ok(report.unverified("webhook_secret or webhook_token: only a delivery from the desk proves it"))
    }

    /// §5: see [`crate::webhook`].
    async fn webhook(&self, request: WebhookRequest) -> WebhookReply {
        self.ingress.receive(request).await
    }

    async fn ingest(&self, request: WebhookRequest) -> Ingested {
        push::ingested(self.ingress.accept(&request))
    }

    async fn apply(&self, inbound: Inbound) -> Result<Applied> {
        self.ingress.router.apply(NAME, inbound).await
    }
}
