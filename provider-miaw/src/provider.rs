//! The provider: built once from its config, it starts, resumes and checks handovers.

use std::sync::Arc;

use async_trait::async_trait;
use handover_core::{
    Capabilities, CheckReport, EndReason, Error, HandoverRequest, Provider, ProviderInfo, Result, Session,
    SessionSnapshot, transcript,
};
use handover_transport::events;
use handover_transport::retry::RetryPolicy;
use handover_transport::sse::SseConfig;
use secrecy::SecretString;

use crate::auth::{self, AccessToken, Identity, SessionToken};
use crate::client::{self, Client};
use crate::config::MiawConfig;
use crate::session::{self, Inner, Snapshot, State};
use crate::{NAME, TRANSCRIPT_CHUNK_CHARS};

/// The largest file the provider uploads, in bytes: 5 MB.
///
/// Botpress's MIAW connector (botpress/growth, `integrations/hitl-salesforce/src/client.ts`,
/// `sendFile`, citing the Enhanced Chat API reference) reads a `413` as "maximum size of
/// each file is 5 MB". Whether that MB is 10⁶ or 2²⁰ bytes is unconfirmed, so the bound is
/// the smaller; the deployment's own setting (`attachments.maxFileSize` in the token
/// response, unit unconfirmed) may be lower, and a `413` then comes back as `InvalidInput`.
pub const MAX_ATTACHMENT_BYTES: u64 = 5_000_000;

/// What MIAW supports (§6.2: queue position payload is undocumented, EWT is). The end
/// user's files are uploaded (§3 #10; which types Salesforce accepts is not documented, a
/// refusal is a `415`); the agent's arrive as URLs on `Attachments` messages.
pub fn capabilities() -> Capabilities {
    Capabilities::none()
        .with_typing(true)
        .with_estimated_wait(true)
        .with_participant_change(true)
        .with_resume(true)
        .with_max_message_chars(Some(TRANSCRIPT_CHUNK_CHARS))
        .with_attachment_uploads(true)
        .with_attachments_to_user(true)
        .with_max_attachment_bytes(Some(MAX_ATTACHMENT_BYTES))
}

/// Salesforce Messaging for In-App and Web.
///
/// Build it with [`MiawProvider::builder`] (or [`MiawProvider::new`] for the defaults). One
/// value serves any number of concurrent handovers; each gets its own access token (a
/// Messaging token belongs to one end user).
pub struct MiawProvider {
    info: Arc<ProviderInfo>,
    config: Arc<MiawConfig>,
    client: Arc<Client>,
    identity: Arc<Identity>,
    sse: SseConfig,
    capacity: usize,
}

/// Builds a [`MiawProvider`]: checks everything, constructs once.
///
/// ```
/// use provider_miaw::{MiawConfig, MiawProvider};
///
/// let config = MiawConfig::new("https://acme.my.salesforce-scrt.com", "00D000000000001", "Web_Chat");
/// let provider = MiawProvider::builder(config).channel_capacity(128).build()?;
/// # Ok::<(), handover_core::Error>(())
/// ```
#[must_use]
pub struct MiawBuilder {
    config: MiawConfig,
    retry: RetryPolicy,
    sse: SseConfig,
    capacity: usize,
}

handover_transport::provider_builder_setters!(MiawBuilder);

impl MiawBuilder {
    /// The SSE reconnect policy and idle timeout.
    pub fn sse(mut self, config: SseConfig) -> Self {
        self.sse = config;
        self
    }

    /// Checks the config and builds the provider (no I/O).
    pub fn build(self) -> Result<MiawProvider> {
        self.config.validate()?;
        let identity = Identity::from_config(&self.config)?;
        let client = Client::new(&self.config, self.retry)?;
        Ok(MiawProvider {
            info: Arc::new(ProviderInfo::new(NAME, "Salesforce Messaging for In-App and Web", capabilities())),
            config: Arc::new(self.config),
            client: Arc::new(client),
            identity: Arc::new(identity),
            sse: self.sse,
            capacity: self.capacity,
        })
    }
}

impl MiawProvider {
    /// A builder for `config`.
    pub fn builder(config: MiawConfig) -> MiawBuilder {
        MiawBuilder {
            config,
            retry: RetryPolicy::default(),
            sse: SseConfig::default(),
            capacity: events::DEFAULT_CAPACITY,
        }
    }

    /// Checks `config` and builds the provider with the defaults (no I/O).
    pub fn new(config: MiawConfig) -> Result<Self> {
        Self::builder(config).build()
    }
}

#[async_trait]
impl Provider for MiawProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        if request.user.id.trim().is_empty() {
            return Err(Error::invalid_input(NAME, "start", "the end user needs an id"));
        }
        let (token, last_event_id) = auth::authenticate(&self.client, &self.identity, &request.user.id).await?;
        let conversation_id = uuid::Uuid::new_v4().to_string();
        let token =
            SessionToken::new((&self.client, &self.identity), request.user.id.clone(), conversation_id.clone(), token);
        let state = State::new(last_event_id.clone(), 0, &[]);
        let attributes = client::routing_attributes(&self.config, &request);
        let provider = (&self.info, &self.config, &self.client);
        let (inner, closed) =
            Inner::new(provider, request.session_id.clone(), conversation_id, attributes, token, state);
        let session = session::open(inner.clone(), closed, last_event_id, &self.sse, self.capacity, false).await?;
        let language = self.config.language.clone().or_else(|| request.user.language.clone());
        inner.create_conversation(language.as_deref()).await?;
        if self.config.send_transcript_as_first_message && !request.transcript.is_empty() {
            let text = transcript::render(&request.transcript);
            let chunks = transcript::split(&text, TRANSCRIPT_CHUNK_CHARS)
                .map_err(|e| Error::invalid_input(NAME, "send transcript", e.to_string()))?;
            for (n, chunk) in chunks.into_iter().enumerate() {
                if let Err(error) = inner.send_text(&format!("transcript-{n}"), chunk).await {
                    let _ = session.end(EndReason::Closed).await;
                    return Err(error.in_op("send transcript"));
                }
            }
        }
        Ok(session)
    }

    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session> {
        let saved = Snapshot::read(&snapshot)?;
        let token = AccessToken::new(SecretString::from(snapshot.require_secret(NAME, "access_token")?.to_owned()));
        let token = SessionToken::new(
            (&self.client, &self.identity),
            saved.user_id.clone(),
            saved.conversation_id.clone(),
            token,
        );
        let state = State::new(saved.last_event_id.clone(), saved.watermark_ms, &saved.seen);
        let provider = (&self.info, &self.config, &self.client);
        let session_id = snapshot.session_id().to_owned();
        let (inner, closed) =
            Inner::new(provider, session_id, saved.conversation_id, saved.routing_attributes, token, state);
        inner.refresh_if_expired().await?;
        let session = session::open(inner, closed, saved.last_event_id, &self.sse, self.capacity, true).await?;
        Ok(session.resumed_from(&snapshot))
    }

    /// Takes an access token as the deployment's users would: proves the host, the org and
    /// the deployment (and the identity setup, when configured).
    async fn check(&self) -> Result<CheckReport> {
        let probe_user = "handover-check";
        auth::authenticate(&self.client, &self.identity, probe_user).await?;
        let report = CheckReport::new()
            .verified("scrt_url, org_id and es_developer_name: Salesforce issued an access token for the deployment");
        let report = if self.identity.renewable() {
            report.verified("the identity token or signing key: Salesforce accepted it for a verified user")
        } else {
            report.unverified("identity: none is configured, so handovers run as unverified guests")
        };
        Ok(report.unverified(
            "routing_attributes and the routing flow: only a conversation shows where Salesforce routes it",
        ))
    }
}
