//! The provider: built once from its config, it starts, resumes and checks handovers.

use std::sync::Arc;

use async_trait::async_trait;
use handover_core::{
    Capabilities, CheckReport, Error, ErrorKind, HandoverRequest, Provider, ProviderInfo, Result, Session,
    SessionSnapshot,
};
use handover_transport::events;
use handover_transport::longpoll::LongPollConfig;
use handover_transport::retry::RetryPolicy;
use secrecy::SecretString;

use crate::NAME;
use crate::client::{self, Chasitor, Client, Keys, Posted};
use crate::config::SalesforceConfig;
use crate::session::{self, Inner, Snapshot, State};

/// What Salesforce Chat supports.
pub fn capabilities() -> Capabilities {
    Capabilities::none()
        .with_typing(true)
        .with_queue_position(true)
        .with_estimated_wait(true)
        .with_participant_change(true)
        .with_resume(true)
}

/// Salesforce Chat (the legacy Live Agent REST API).
///
/// Build it with [`SalesforceProvider::builder`] (or [`SalesforceProvider::new`] for the
/// defaults); one value serves any number of handovers.
pub struct SalesforceProvider {
    info: ProviderInfo,
    config: Arc<SalesforceConfig>,
    client: Arc<Client>,
    poll: LongPollConfig,
    capacity: usize,
}

/// Builds a [`SalesforceProvider`]: checks everything, constructs once.
///
/// ```
/// use provider_salesforce::{SalesforceConfig, SalesforceProvider};
///
/// let config = SalesforceConfig::new(
///     "https://d.la1-c1-ia2.salesforceliveagent.com",
///     "00D000000000001",
///     "572000000000001",
///     "573000000000001",
/// );
/// let provider = SalesforceProvider::builder(config).build()?;
/// # Ok::<(), handover_core::Error>(())
/// ```
///
/// `retry` governs every request but the long poll; 503 is never retried.
#[must_use]
pub struct SalesforceBuilder {
    config: SalesforceConfig,
    retry: RetryPolicy,
    poll: LongPollConfig,
    capacity: usize,
}

handover_transport::provider_builder_setters!(SalesforceBuilder);

impl SalesforceBuilder {
    /// The long-poll backoff (the server hold comes from `clientPollTimeout`).
    pub fn poll(mut self, config: LongPollConfig) -> Self {
        self.poll = config;
        self
    }

    /// Checks the config and builds the provider (no I/O).
    pub fn build(self) -> Result<SalesforceProvider> {
        let client = Client::new(&self.config, self.retry)?;
        self.config.validate()?;
        Ok(SalesforceProvider {
            info: ProviderInfo::new(NAME, "Salesforce Chat (Live Agent REST)", capabilities()),
            config: Arc::new(self.config),
            client: Arc::new(client),
            poll: self.poll,
            capacity: self.capacity,
        })
    }
}

impl SalesforceProvider {
    /// A builder for `config`.
    pub fn builder(config: SalesforceConfig) -> SalesforceBuilder {
        SalesforceBuilder {
            config,
            retry: RetryPolicy::default(),
            poll: LongPollConfig::default(),
            capacity: events::DEFAULT_CAPACITY,
        }
    }

    /// Checks `config` and builds the provider with the defaults (no I/O).
    pub fn new(config: SalesforceConfig) -> Result<Self> {
        Self::builder(config).build()
    }
}

#[async_trait]
impl Provider for SalesforceProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn start(&self, request: HandoverRequest) -> Result<Session> {
        let info = self.client.session_id().await?;
        let body = client::chasitor_init(&self.config, &request, &info.id);
        let provider = (&self.info, &self.config, &self.client);
        let key = SecretString::from(info.key.clone());
        let (inner, closed) = Inner::new(provider, request.session_id.clone(), key, State::new(&info));
        match inner.post("request chat", Chasitor::Init(body)).await? {
            Posted::Done => {}
            Posted::Failover => {
                return Err(Error::transport(
                    NAME,
                    "request chat",
                    "the chat server moved during ChasitorInit (503); retry",
                ));
            }
            Posted::Gone => {
                return Err(Error::new(
                    ErrorKind::SessionNotFound,
                    NAME,
                    "request chat",
                    "the new session was refused (403)",
                ));
            }
        }
        Ok(session::open(inner, closed, &self.poll, self.capacity, false))
    }

    /// A resumed session first reconnects (§6.1): the process that wrote the snapshot may
    /// have left a poll open on the server, and polling next to it would end the chat with
    /// 409.
    async fn resume(&self, snapshot: SessionSnapshot) -> Result<Session> {
        let state = Snapshot::read(&snapshot)?;
        let key = SecretString::from(snapshot.require_secret(NAME, "session_key")?.to_owned());
        let provider = (&self.info, &self.config, &self.client);
        let (inner, closed) = Inner::new(provider, snapshot.session_id().to_owned(), key, state);
        Ok(session::open(inner, closed, &self.poll, self.capacity, true).resumed_from(&snapshot))
    }

    /// There are no credentials: a new session proves the endpoint and the API version, and
    /// the button's availability proves the organization, deployment and button ids.
    async fn check(&self) -> Result<CheckReport> {
        let info = self.client.session_id().await?;
        let key = SecretString::from(info.key);
        self.client.delete_session(&Keys { affinity: &info.affinity_token, key: &key }).await?;
        let config = &self.config;
        let available = self
            .client
            .availability(&config.organization_id, &config.deployment_id, &config.button_id)
            .await
            .map_err(|e| e.in_op("check organization_id and deployment_id"))?;
        let Some(available) = available else {
            return Err(Error::config(
                NAME,
                format!(
                    "[salesforce] Salesforce reports nothing for button `{}` of deployment `{}` in organization `{}`: \
                     check organization_id, deployment_id and button_id",
                    config.button_id, config.deployment_id, config.organization_id
                ),
            ));
        };
        let agents = if available { "agents are online now" } else { "no agent is online now" };
        Ok(CheckReport::new()
            .verified(format!("base_url and api_version {}: a session was opened and closed", config.api_version))
            .verified(format!("organization_id, deployment_id and button_id: the button is known ({agents})"))
            .unverified("the pre-chat details and routing: only a chat request shows how they are routed"))
    }
}
