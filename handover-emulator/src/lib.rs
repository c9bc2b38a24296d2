#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod agent;
mod control;
pub mod eightbyeight;
pub mod faults;
pub mod genesys;
pub mod liveagent;
pub mod miaw;
pub mod model;
mod multipart;
pub mod ringcentral;
pub mod salesforce;
mod sse;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

pub use crate::agent::AgentScript;
pub use crate::faults::{FaultSettings, Faults};
pub use crate::model::{AgentAction, AgentRecord, Conversation, ConversationView, CustomerAction, EmulatedFile, Hub};

/// The protocols this build emulates, by provider name.
pub const PROTOCOLS: [&str; 6] = ["miaw", "genesys", "salesforce", "liveagent", "8x8", "ringcentral"];

/// How to run an emulator.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct EmulatorOptions {
    /// The scripted agent; `None` leaves the agent side to the control API and tests.
    pub script: Option<AgentScript>,
    /// Where push protocols deliver their webhooks.
    pub webhook_url: Option<String>,
}

impl EmulatorOptions {
    /// With the scripted agent.
    #[must_use]
    pub fn scripted(mut self, script: AgentScript) -> Self {
        self.script = Some(script);
        self
    }

    /// With a webhook target.
    #[must_use]
    pub fn with_webhook_url(mut self, url: impl Into<String>) -> Self {
        self.webhook_url = Some(url.into());
        self
    }
}

/// What every protocol module starts from: the shared contact center, the address the
/// emulator listens on, and where push protocols deliver webhooks.
pub(crate) struct Setup {
    pub(crate) hub: Arc<Hub>,
    pub(crate) addr: SocketAddr,
    pub(crate) webhook_url: Option<String>,
}

/// What a protocol module starts: its handle, its routes, and its background task.
pub(crate) type Started = (Arc<dyn ProtocolHandle>, Router, JoinHandle<()>);

/// How a protocol module starts.
type Start = fn(&Setup) -> Started;

/// Every protocol, by provider name, with how to start it.
const TABLE: [(&str, Start); 6] = [
    ("miaw", miaw::Miaw::start),
    ("genesys", genesys::Genesys::start),
    ("salesforce", salesforce::Salesforce::start),
    ("liveagent", liveagent::LiveAgent::start),
    ("8x8", eightbyeight::EightByEight::start),
    ("ringcentral", ringcentral::RingCentral::start),
];

/// What a protocol module offers besides its routes.
pub trait ProtocolHandle: Send + Sync {
    /// The provider's config table (as JSON) pointing at this emulator at `base_url`.
    fn provider_config(&self, base_url: &str) -> serde_json::Value;

    /// Delivers the last agent-side event of `conversation` again, with the same id.
    fn redeliver_last(&self, conversation: &str) -> bool;

    /// How many agent records of `conversation` the module has turned into wire events.
    fn translated(&self, conversation: &str) -> u64;

    /// Every secret the emulator issued or expects (for leak checks).
    fn secrets(&self) -> Vec<String>;
}

/// A running emulator on loopback. Dropping it stops it.
pub struct Emulator {
    addr: SocketAddr,
    hub: Arc<Hub>,
    protocol: Arc<dyn ProtocolHandle>,
    name: &'static str,
    /// The HTTP server's task (what [`Emulator::wait`] waits for).
    server: Option<JoinHandle<()>>,
    /// The protocol's and the scripted agent's tasks.
    tasks: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Starts the emulator of `protocol` on `127.0.0.1:0`.
    pub async fn start(protocol: &str, options: EmulatorOptions) -> std::io::Result<Self> {
        Self::start_on(protocol, SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    /// Starts the emulator of `protocol` on `addr`.
    pub async fn start_on(protocol: &str, addr: SocketAddr, options: EmulatorOptions) -> std::io::Result<Self> {
        let hub = Arc::new(Hub::new());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        hub.set_base_url(format!("http://{addr}"));
        let mut tasks = Vec::new();
        let Some((name, start)) = TABLE.iter().find(|(name, _)| *name == protocol) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("no emulator for `{protocol}`; available: {}", PROTOCOLS.join(", ")),
            ));
        };
        let setup = Setup { hub: hub.clone(), addr, webhook_url: options.webhook_url.clone() };
        let (handle, routes, task) = start(&setup);
        tasks.push(task);
        let app = routes
            .layer(middleware::from_fn_with_state(hub.clone(), inject_faults))
            .merge(control::routes(hub.clone(), name));
        let server = tokio::spawn(async move {
            // Frames go out as they are written, like a production event server's: no
            // Nagle delay behind an unacknowledged earlier frame.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "emulator server stopped");
            }
        });
        if let Some(script) = options.script {
            tasks.push(agent::spawn(hub.clone(), script));
        }
        tracing::info!(protocol = name, %addr, "emulator listening");
        Ok(Self { addr, hub, protocol: handle, name, server: Some(server), tasks })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The emulated provider's name.
    pub fn protocol(&self) -> &'static str {
        self.name
    }

    /// The shared contact center (conversations, faults).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The provider config table (JSON) that points the provider at this emulator.
    pub fn provider_config(&self) -> serde_json::Value {
        self.protocol.provider_config(&self.url())
    }

    /// Delivers the last agent-side event of `conversation` again, once every agent action
    /// so far has gone out.
    pub async fn redeliver_last(&self, conversation: &str) -> bool {
        self.settled(conversation).await;
        self.protocol.redeliver_last(conversation)
    }

    /// Waits until every agent action of `conversation` so far has gone out on the wire.
    pub async fn settled(&self, conversation: &str) {
        let Some(c) = self.hub.get(conversation) else { return };
        let target = c.view().agent.len() as u64;
        for _ in 0..5000 {
            if self.protocol.translated(conversation) >= target {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Secrets the emulator issued or expects.
    pub fn secrets(&self) -> Vec<String> {
        self.protocol.secrets()
    }

    /// Runs until the server stops (for `handover emulate`).
    pub async fn wait(mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        for task in self.tasks.iter().chain(&self.server) {
            task.abort();
        }
    }
}

async fn inject_faults(State(hub): State<Arc<Hub>>, request: Request, next: Next) -> Response {
    let created_before = hub.conversation_count();
    if let Some((status, retry_after)) = hub.faults.take_failure() {
        tracing::debug!(status, path = request.uri().path(), "injecting a failure");
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut response = (status, "{\"message\":\"injected by the emulator\"}").into_response();
        if let Some(secs) = retry_after
            && let Ok(value) = secs.to_string().parse()
        {
            response.headers_mut().insert("retry-after", value);
        }
        return response;
    }
    let response = next.run(request).await;
    if hub.faults.greeting().is_some() && hub.pushes() {
        // A greeting on creation: answer the create call only once its webhook was answered,
        // so it reaches the connector before `start` returns.
        for conversation in hub.all().into_iter().skip(created_before) {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), hub.wait_delivered(&conversation.id, 1)).await;
        }
    }
    response
}
