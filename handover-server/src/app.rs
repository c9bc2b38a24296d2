//! One instance of the service: its store, its providers, the handovers it owns, and the
//! background work that keeps them (DESIGN.md §7.3).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use handover::{Provider, Registry};
use handover_store::{Sealer, Store};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ServerConfig, redact_url};
use crate::hints::LogHints;
use crate::metrics::Metrics;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The config is wrong (the message names the key).
    #[error("{0}")]
    Config(String),
    /// The store could not be opened.
    #[error("the store at {url} could not be opened: {source}")]
    Store {
        /// The store URL, password removed.
        url: String,
        /// Why.
        #[source]
        source: handover_store::StoreError,
    },
    /// A provider configuration could not be built.
    #[error("[providers.{name}]: {source}")]
    Provider {
        /// The configuration's name.
        name: String,
        /// Why.
        #[source]
        source: handover::Error,
    },
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A handover this instance owns: how to wake its runner and stop it.
pub(crate) struct RunnerEntry {
    /// Inputs or deliveries are waiting.
    pub(crate) work: Arc<Notify>,
    /// The lease is lost (taken over, or expired while the store was unreachable): stop
    /// at once, writing nothing and ending nothing.
    pub(crate) lost: CancellationToken,
    /// When this instance must stop acting on it unless the lease is renewed.
    pub(crate) deadline: Instant,
    /// When the runner was registered (a renew sent before it cannot have covered it).
    pub(crate) registered: Instant,
    /// Its epoch (a newer runner for the same handover replaces an older one).
    pub(crate) epoch: u64,
}

/// The instance's shared state.
pub(crate) struct App {
    pub(crate) config: ServerConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) providers: BTreeMap<String, Arc<dyn Provider>>,
    pub(crate) log_hints: LogHints,
    pub(crate) runners: Mutex<HashMap<String, RunnerEntry>>,
    /// Wakes the claimer (a lease was released).
    pub(crate) claim_wake: Notify,
    /// A drain has begun: `/readyz` fails, no claims, no new handovers; runners save their
    /// state and release their leases.
    pub(crate) draining: CancellationToken,
    pub(crate) metrics: Metrics,
    pub(crate) http: reqwest::Client,
    /// SHA-256 of each API key (compared in constant time, never logged).
    pub(crate) api_keys: Vec<[u8; 32]>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("instance", &self.config.instance_id).finish_non_exhaustive()
    }
}

impl App {
    /// The handovers this instance runs.
    pub(crate) fn owned(&self) -> usize {
        lock(&self.runners).len()
    }

    /// Whether `presented` is one of the API keys (constant time in the key's content).
    pub(crate) fn is_api_key(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.api_keys.iter().fold(subtle::Choice::from(0), |found, key| found | key.ct_eq(&digest)).into()
    }
}

/// A running instance of the service.
pub struct Server {
    app: Arc<App>,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    listener_stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).field("instance", &self.app.config.instance_id).finish()
    }
}

impl Server {
    /// Opens the store, builds the providers, binds `config.listen` and starts serving.
    pub async fn start(config: ServerConfig, registry: &Registry) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServeError::Listen { addr: config.listen, source })?;
        Self::start_on(listener, config, registry).await
    }

    /// Like [`start`](Self::start), on a listener bound already (`config.listen` is then
    /// only checked, not bound).
    pub async fn start_on(
        listener: TcpListener,
        config: ServerConfig,
        registry: &Registry,
    ) -> Result<Self, ServeError> {
        let addr = listener.local_addr().map_err(|source| ServeError::Listen { addr: config.listen, source })?;
        let sealer = match &config.encryption_key {
            Some(key) => Sealer::new(key),
            None => Sealer::plaintext(),
        };
        let store = handover_store::open(&config.store, sealer)
            .await
            .map_err(|source| ServeError::Store { url: redact_url(&config.store), source })?;
        let mut providers = BTreeMap::new();
        for (name, provider) in &config.providers {
            let built = registry
                .build(&provider.kind, provider.table.clone())
                .map_err(|source| ServeError::Provider { name: name.clone(), source })?;
            providers.insert(name.clone(), built);
        }
        let metrics_listener = match config.metrics_listen {
            Some(metrics_addr) => Some(
                TcpListener::bind(metrics_addr)
                    .await
                    .map_err(|source| ServeError::Listen { addr: metrics_addr, source })?,
            ),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(CALLBACK_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ServeError::Config(format!("the HTTP client for callbacks could not be built: {e}")))?;
        let api_keys = config.api_keys.iter().map(|key| Sha256::digest(key.as_bytes()).into()).collect();
        let app = Arc::new(App {
            metrics: Metrics::new(&config.instance_id),
            config,
            store,
            providers,
            log_hints: LogHints::default(),
            runners: Mutex::new(HashMap::new()),
            claim_wake: Notify::new(),
            draining: CancellationToken::new(),
            http,
            api_keys,
        });
        if let Err(error) = handover::webhook::raise_open_file_limit() {
            tracing::debug!(%error, "could not raise the open-file limit");
        }
        let listener_stop = CancellationToken::new();
        let mut tasks = crate::fleet::spawn(app.clone());
        let router = crate::api::router(app.clone(), app.config.metrics_listen.is_none());
        tasks.push(tokio::spawn(handover::webhook::serve(listener, router, app.config.limits, listener_stop.clone())));
        let mut metrics_addr = None;
        if let Some(metrics_listener) = metrics_listener {
            metrics_addr = metrics_listener.local_addr().ok();
            tasks.push(tokio::spawn(handover::webhook::serve(
                metrics_listener,
                crate::api::metrics_router(),
                app.config.limits,
                listener_stop.clone(),
            )));
        }
        tracing::info!(
            instance = %app.config.instance_id,
            %addr,
            store = %redact_url(&app.config.store),
            providers = ?app.providers.keys().collect::<Vec<_>>(),
            "handover serve is up"
        );
        Ok(Self { app, addr, metrics_addr, listener_stop, tasks })
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `/metrics` is served on when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// This instance's id.
    pub fn instance_id(&self) -> &str {
        &self.app.config.instance_id
    }

    /// Drains (DESIGN.md §7.3): fails `/readyz`, stops claiming and taking new handovers,
    /// has every runner save its state and release its lease (peers take over at once),
    /// waits for them at most `drain_ms`, then stops serving. Returns whether every runner
    /// finished in time.
    pub async fn drain(self) -> bool {
        let app = self.app.clone();
        tracing::info!(owned = app.owned(), "draining");
        app.draining.cancel();
        let deadline = Instant::now() + app.config.drain;
        let drained = loop {
            if app.owned() == 0 {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if !drained {
            tracing::warn!(
                left = app.owned(),
                "drain_ms passed with handovers still saving; their leases expire and peers take them over"
            );
        }
        self.stop();
        drained
    }

    /// Stops at once: no state saved, no lease released (peers take over when the leases
    /// expire), as a crash would; for tests.
    pub fn stop(self) {
        self.listener_stop.cancel();
        for runner in lock(&self.app.runners).values() {
            runner.lost.cancel();
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How long a bot's callback endpoint may take to answer.
pub(crate) const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
