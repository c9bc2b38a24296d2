//! `handover-chaos --fleet`: three `handover serve` processes on one store (a SQLite file,
//! then PostgreSQL), the emulators of all six providers, a load balancer in front of the
//! webhooks, and a bot that reads events the way real bots do: one SSE reader that
//! reconnects to any instance with `Last-Event-ID`, and one callback endpoint. Each fault
//! is a column; each provider on each store is a row.
//!
//! Every handover is created on instance A, so A owns all of them when the fault hits A.
//! The agent writes messages before and after the fault, the bot sends one message before
//! and one after (the one before is confirmed sent first: an input caught between its send
//! and its record is in doubt, see the README). A cell passes when every agent message
//! reached the bot once and in order, over SSE and over callbacks (acknowledged callbacks
//! once; redeliveries of an unacknowledged one are counted but allowed, as Standard Webhooks
//! promises at-least-once), each bot message reached the agent once, the event log has no
//! gap or repeat, and the handover completed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine as _;
use futures_util::StreamExt as _;
use handover_emulator::{AgentAction, Emulator, EmulatorOptions};
use handover_transport::reqwest;
use handover_transport::session::lock;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Barrier, Notify};

use crate::cell::Protocol;

const API_KEY: &str = "chaos-key-0123456789abcdef";
/// Any fixed 32-byte key: the store is sealed as in production.
const STORE_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const CALLBACK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Short leases, so that a takeover after a crash comes within a run's patience.
const LEASE_TTL_MS: u64 = 2_000;
/// How long any one wait of a cell may take before the cell fails.
const WAIT: Duration = Duration::from_secs(90);
const INSTANCES: usize = 3;

/// A column of the fleet matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FleetFault {
    Kill,
    Pause,
    Drain,
    NonOwnerWebhooks,
    CallbackDown,
    SseCut,
    PostgresRestart,
    StreamDropOnTakeover,
}

impl FleetFault {
    pub(crate) const ALL: [FleetFault; 8] = [
        FleetFault::Kill,
        FleetFault::Pause,
        FleetFault::Drain,
        FleetFault::NonOwnerWebhooks,
        FleetFault::CallbackDown,
        FleetFault::SseCut,
        FleetFault::PostgresRestart,
        FleetFault::StreamDropOnTakeover,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            FleetFault::Kill => "owner SIGKILL",
            FleetFault::Pause => "owner SIGSTOP past the lease",
            FleetFault::Drain => "owner SIGTERM",
            FleetFault::NonOwnerWebhooks => "webhooks to two non-owners at once",
            FleetFault::CallbackDown => "callback endpoint down",
            FleetFault::SseCut => "SSE cut, resumed elsewhere",
            FleetFault::PostgresRestart => "PostgreSQL restarted",
            FleetFault::StreamDropOnTakeover => "stream dropped during takeover",
        }
    }

    /// Why the fault cannot happen to `protocol` on `store`, if it cannot.
    fn not_applicable(self, protocol: &Protocol, store: StoreKind) -> Option<&'static str> {
        match self {
            FleetFault::NonOwnerWebhooks if !protocol.push => Some("receives no webhooks"),
            FleetFault::PostgresRestart if store == StoreKind::Sqlite => Some("SQLite"),
            FleetFault::StreamDropOnTakeover if !protocol.stream => Some("holds no stream"),
            _ => None,
        }
    }

    /// Whether the fault takes the owner (instance A) away.
    fn takes_the_owner(self) -> bool {
        matches!(self, FleetFault::Kill | FleetFault::Pause | FleetFault::Drain | FleetFault::StreamDropOnTakeover)
    }
}

/// The store the fleet shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }
}

/// What one handover of a fleet run saw.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct FleetOutcome {
    pub(crate) pass: bool,
    pub(crate) not_applicable: Option<String>,
    /// Agent messages sent.
    pub(crate) expected: usize,
    /// Of those, how many reached the bot over SSE.
    pub(crate) delivered: usize,
    /// Extra copies over SSE.
    pub(crate) duplicates: usize,
    /// Agent messages out of order over SSE.
    pub(crate) out_of_order: usize,
    /// Bot messages that reached the agent exactly once (of 2).
    pub(crate) user_once: usize,
    /// Callback POSTs repeated for an event not acknowledged yet (allowed: at-least-once).
    pub(crate) callback_redeliveries: usize,
    /// Agent messages whose webhook the fleet refused (503 while the store was down) and the
    /// contact center never sent again: Chatwoot sends each webhook once.
    pub(crate) refused: usize,
    /// From the fault to the first agent message after it at the bot, in ms.
    pub(crate) takeover_ms: Option<u64>,
    pub(crate) status: String,
    pub(crate) note: String,
}

impl FleetOutcome {
    fn failed(note: impl Into<String>) -> Self {
        Self { note: note.into(), status: "-".into(), ..Self::default() }
    }

    pub(crate) fn cell(&self) -> String {
        if self.not_applicable.is_some() {
            return "n/a".into();
        }
        let verdict = if self.pass { "ok" } else { "FAIL" };
        let mut cell = format!(
            "{verdict} {}/{} {}dup {}ooo u{} {}",
            self.delivered, self.expected, self.duplicates, self.out_of_order, self.user_once, self.status
        );
        if self.refused > 0 {
            cell.push_str(&format!(" ({} refused, not retried)", self.refused));
        }
        if let Some(ms) = self.takeover_ms {
            cell.push_str(&format!(" {:.1}s", ms as f64 / 1000.0));
        }
        cell
    }
}

/// What a whole fleet run (one store, one fault) saw beyond its handovers.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct RunReport {
    pub(crate) store: String,
    pub(crate) fault: String,
    /// Writes the instances refused because the lease had moved (`handover_fenced_writes_total`).
    pub(crate) fenced_writes_rejected: u64,
    /// Callback POSTs with a bad signature (must be 0).
    pub(crate) bad_callback_signatures: usize,
    pub(crate) seconds: f64,
}

/// The whole matrix: per (provider, store) row, per fault column.
pub(crate) struct Matrix {
    pub(crate) cells: BTreeMap<(String, StoreKind, usize), FleetOutcome>,
    pub(crate) runs: Vec<RunReport>,
}

/// Settings of a matrix run.
pub(crate) struct Settings {
    pub(crate) quick: bool,
    pub(crate) protocols: Vec<Protocol>,
    pub(crate) stores: Vec<StoreKind>,
}

/// Runs every (store, fault) fleet in turn.
pub(crate) async fn run(settings: &Settings) -> Result<Matrix, String> {
    let bin = std::env::var("HANDOVER_BIN").map_err(|_| {
        "HANDOVER_BIN is not set: it names the built `handover` binary; run through `cargo xtask chaos --fleet`"
            .to_owned()
    })?;
    let bin = PathBuf::from(bin);
    if !bin.is_file() {
        return Err(format!("HANDOVER_BIN={} is not a file", bin.display()));
    }
    let mut matrix = Matrix { cells: BTreeMap::new(), runs: Vec::new() };
    for &store in &settings.stores {
        for (index, fault) in FleetFault::ALL.into_iter().enumerate() {
            let started = Instant::now();
            let applicable: Vec<Protocol> =
                settings.protocols.iter().filter(|p| fault.not_applicable(p, store).is_none()).cloned().collect();
            for protocol in &settings.protocols {
                if let Some(why) = fault.not_applicable(protocol, store) {
                    let outcome = FleetOutcome { pass: true, not_applicable: Some(why.into()), ..Default::default() };
                    matrix.cells.insert((protocol.name.to_owned(), store, index), outcome);
                }
            }
            if applicable.is_empty() {
                continue;
            }
            println!("fleet: {} / {} ({} providers)", store.name(), fault.label(), applicable.len());
            let (outcomes, mut report) = match run_one(&bin, store, fault, &applicable, settings.quick).await {
                Ok(done) => done,
                Err(error) => {
                    let outcomes = applicable
                        .iter()
                        .map(|p| (p.name.to_owned(), FleetOutcome::failed(format!("the fleet failed: {error}"))))
                        .collect();
                    (outcomes, RunReport::default())
                }
            };
            for (name, outcome) in outcomes {
                if !outcome.pass {
                    eprintln!("  {name} / {} / {}: {}", store.name(), fault.label(), outcome.note);
                }
                matrix.cells.insert((name, store, index), outcome);
            }
            report.store = store.name().to_owned();
            report.fault = fault.label().to_owned();
            report.seconds = started.elapsed().as_secs_f64();
            matrix.runs.push(report);
        }
    }
    Ok(matrix)
}

/// One `handover serve` child process.
struct Instance {
    name: String,
    url: String,
    child: Mutex<Child>,
    pid: u32,
    log: PathBuf,
}

impl Instance {
    fn spawn(bin: &Path, dir: &Path, name: &str, config: &str) -> Result<Self, String> {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        let port = config
            .lines()
            .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
            .and_then(|rest| rest.trim_end_matches('"').parse::<u16>().ok())
            .ok_or("no port in the config")?;
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(&path)
            .args(["--log", "info,handover_server=debug"])
            .env("CHAOS_STORE_KEY", STORE_KEY)
            // Held open and never written, as a supervisor leaves it.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id();
        Ok(Self { name: name.to_owned(), url: format!("http://127.0.0.1:{port}"), child: Mutex::new(child), pid, log })
    }

    async fn ready(&self, http: &reqwest::Client) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(response) = http.get(format!("{}/readyz", self.url)).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline || lock(&self.child).try_wait().ok().flatten().is_some() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(format!("instance {} never became ready:\n{log}", self.name));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, name: &str) {
        let _ = Command::new("kill").arg(format!("-{name}")).arg(self.pid.to_string()).stderr(Stdio::null()).status();
    }

    /// Waits for the process to exit, at most `patience`.
    async fn exited(&self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if lock(&self.child).try_wait().ok().flatten().is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Instance {
    /// Kills the process (resumed first, should it be stopped) and reaps it.
    fn stop(&self) {
        self.signal("CONT");
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The fleet as the bot and the load balancer see it.
struct Fleet {
    instances: Vec<Instance>,
    /// Which instances the load balancer sends to (its health checks, in effect).
    up: Vec<AtomicBool>,
    /// Webhooks go to every instance but A (the owner), at once.
    non_owner: AtomicBool,
    /// Every webhook's body and the answer the contact center got for it.
    webhooks: Mutex<Vec<(bool, Bytes)>>,
    next: AtomicUsize,
    http: reqwest::Client,
}

impl Fleet {
    /// A live instance, round robin, other than `not`.
    fn pick(&self, not: Option<usize>) -> usize {
        for _ in 0..INSTANCES * 2 {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % INSTANCES;
            if Some(i) != not && self.up[i].load(Ordering::SeqCst) {
                return i;
            }
        }
        (0..INSTANCES).find(|i| Some(*i) != not).unwrap_or(0)
    }

    fn api(&self, i: usize, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.instances[i].url)).bearer_auth(API_KEY)
    }

    /// Sends a request to live instances until one answers (a bot retries elsewhere).
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let i = self.pick(None);
            let mut request = self.api(i, method.clone(), path);
            if let Some(body) = body {
                request = request.json(body);
            }
            match request.timeout(Duration::from_secs(10)).send().await {
                Ok(response) if response.status().as_u16() != 503 => {
                    let status = response.status().as_u16();
                    let body = response.json().await.unwrap_or(Value::Null);
                    return Ok((status, body));
                }
                _ if Instant::now() > deadline => return Err(format!("{method} {path}: no instance answered")),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The load balancer: a webhook goes to one live instance (the next if it cannot be
    /// reached), or, in `non_owner` mode, to both non-owners at the same moment. Records
    /// whether the contact center's delivery was acknowledged.
    async fn forward(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> (StatusCode, Bytes) {
        let answer = self.route(method, uri, headers, body.clone()).await;
        lock(&self.webhooks).push((answer.0.is_success(), body));
        answer
    }

    /// Whether `text` was in a webhook the fleet refused and in none it acknowledged: a
    /// delivery the contact center did not retry, lost at the contact center's side.
    fn only_refused(&self, text: &str) -> bool {
        let webhooks = lock(&self.webhooks);
        // As a JSON string, so that message 1 is not found inside message 10.
        let quoted = format!("\"{text}\"");
        let carries = |body: &Bytes| String::from_utf8_lossy(body).contains(&quoted);
        webhooks.iter().any(|(ok, body)| !ok && carries(body))
            && !webhooks.iter().any(|(ok, body)| *ok && carries(body))
    }

    async fn route(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> (StatusCode, Bytes) {
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let send = |i: usize| {
            let mut request = self.http.request(method.clone(), format!("{}{path}", self.instances[i].url));
            for (name, value) in &headers {
                if name != "host" && name != "content-length" {
                    request = request.header(name.as_str(), value.as_bytes());
                }
            }
            let request = request.body(body.clone()).timeout(Duration::from_secs(10));
            async move {
                let response = request.send().await.ok()?;
                let status = StatusCode::from_u16(response.status().as_u16()).ok()?;
                Some((status, response.bytes().await.unwrap_or_default()))
            }
        };
        if self.non_owner.load(Ordering::SeqCst) {
            let answers = futures_util::future::join_all((1..INSTANCES).map(send)).await;
            let answers: Vec<_> = answers.into_iter().flatten().collect();
            return answers
                .iter()
                .find(|(status, _)| status.is_success())
                .or(answers.first())
                .cloned()
                .unwrap_or((StatusCode::BAD_GATEWAY, Bytes::new()));
        }
        let first = self.pick(None);
        for i in (0..INSTANCES).map(|k| (first + k) % INSTANCES) {
            if !self.up[i].load(Ordering::SeqCst) {
                continue;
            }
            if let Some(answer) = send(i).await {
                return answer;
            }
        }
        (StatusCode::BAD_GATEWAY, Bytes::new())
    }

    /// Sums a counter over the instances still answering.
    async fn counter(&self, name: &str) -> u64 {
        let mut total = 0;
        for instance in &self.instances {
            let Ok(response) = self.http.get(format!("{}/metrics", instance.url)).send().await else { continue };
            let text = response.text().await.unwrap_or_default();
            total += text
                .lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64;
        }
        total
    }
}

/// The bot's callback endpoint: checks every Standard Webhooks signature, keeps every
/// event per handover (redeliveries too), and answers 503 while `down`.
#[derive(Default)]
struct Callbacks {
    down: AtomicBool,
    received: Mutex<HashMap<String, Vec<Value>>>,
    bad_signatures: AtomicUsize,
}

impl Callbacks {
    fn receive(&self, headers: &HeaderMap, body: &[u8]) -> StatusCode {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let (id, timestamp, signature) =
            (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
        if !signature.split(' ').any(|s| s == sign(&id, &timestamp, body)) {
            self.bad_signatures.fetch_add(1, Ordering::SeqCst);
            return StatusCode::UNAUTHORIZED;
        }
        if self.down.load(Ordering::SeqCst) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let Ok(event) = serde_json::from_slice::<Value>(body) else { return StatusCode::BAD_REQUEST };
        let handover = event["handover_id"].as_str().unwrap_or_default().to_owned();
        lock(&self.received).entry(handover).or_default().push(event);
        StatusCode::NO_CONTENT
    }

    /// The events of `id`, once the status event came (or the patience ran out).
    async fn until_status(&self, id: &str, patience: Duration) -> Vec<Value> {
        let deadline = Instant::now() + patience;
        loop {
            let events = lock(&self.received).get(id).cloned().unwrap_or_default();
            if events.iter().any(|e| e["type"] == "status") || Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The Standard Webhooks signature, computed independently of the service's code.
fn sign(id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(CALLBACK_SECRET.trim_start_matches("whsec_"))
        .unwrap_or_default();
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else { return String::new() };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Serves `router` on a fresh loopback port until the handle is aborted; its address.
async fn serve(router: axum::Router) -> Result<(String, tokio::task::JoinHandle<()>), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((format!("http://{addr}"), task))
}

fn free_port() -> Result<u16, String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port())
}

/// A fresh store for one fleet run.
async fn store_url(store: StoreKind, dir: &Path) -> Result<String, String> {
    match store {
        StoreKind::Sqlite => Ok(format!("sqlite://{}/store.db", dir.display())),
        StoreKind::Postgres => {
            let base = std::env::var("DATABASE_URL").map_err(|_| {
                "DATABASE_URL is not set: the PostgreSQL rows need one; run through `cargo xtask chaos --fleet`"
                    .to_owned()
            })?;
            let name = format!("chaos_{}", uuid::Uuid::new_v4().simple());
            use sqlx::Connection as _;
            let mut conn =
                sqlx::PgConnection::connect(&with_database(&base, "postgres")).await.map_err(|e| format!("{e}"))?;
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.map_err(|e| e.to_string())?;
            Ok(with_database(&base, &name))
        }
    }
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (head, tail) = url.rsplit_once('/').unwrap_or((url, ""));
    let query = tail.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    format!("{head}/{db}{query}")
}

/// The config of instance `name`.
fn config(name: &str, port: u16, store: &str, providers: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nstore = \"{store}\"\ninstance_id = \"{name}\"\n\
         api_keys = [\"{API_KEY}\"]\nencryption_key_env = \"CHAOS_STORE_KEY\"\nlease_ttl_ms = {LEASE_TTL_MS}\n\
         claim_interval_ms = 200\ndrain_ms = 10000\n\n\
         [node]\naccepted_message = \"Connecting you to an agent.\"\nsend_queue_event = true\n\
         send_active_event = true\nsend_resolve_event = true\n\n{providers}"
    )
}

/// The `[providers.*]` tables for the emulators.
fn provider_tables(emulators: &[(Protocol, Emulator)]) -> Result<String, String> {
    let mut providers = toml::Table::new();
    for (protocol, emulator) in emulators {
        let mut config = emulator.provider_config();
        if let (Some(config), Value::Object(overrides)) = (config.as_object_mut(), (protocol.overrides)()) {
            config.extend(overrides);
        }
        let mut table = toml::Table::new();
        table.insert("type".into(), toml::Value::String(protocol.name.to_owned()));
        if let toml::Value::Table(keys) = toml::Value::try_from(config).map_err(|e| e.to_string())? {
            table.extend(keys);
        }
        providers.insert(protocol.name.to_owned(), toml::Value::Table(table));
    }
    let mut root = toml::Table::new();
    root.insert("providers".into(), toml::Value::Table(providers));
    toml::to_string(&root).map_err(|e| e.to_string())
}

/// One fleet: three instances, the emulators of `protocols`, one handover each, `fault`.
async fn run_one(
    bin: &Path,
    store: StoreKind,
    fault: FleetFault,
    protocols: &[Protocol],
    quick: bool,
) -> Result<(Vec<(String, FleetOutcome)>, RunReport), String> {
    let dir = std::env::temp_dir().join(format!("handover-chaos-fleet-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let store_url = store_url(store, &dir).await?;

    // The load balancer first: the emulators need its address for their webhooks.
    let fleet_cell: Arc<OnceLock<Arc<Fleet>>> = Arc::default();
    let lb = {
        let fleet = fleet_cell.clone();
        axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let fleet = fleet.clone();
            async move {
                match fleet.get() {
                    Some(fleet) => fleet.forward(method, uri, headers, body).await,
                    None => (StatusCode::SERVICE_UNAVAILABLE, Bytes::new()),
                }
            }
        })
    };
    let (lb_url, lb_task) = serve(lb).await?;
    let mut emulators = Vec::new();
    for protocol in protocols {
        let mut options = EmulatorOptions::default();
        if protocol.push {
            options = options.with_webhook_url(format!("{lb_url}/webhooks/{}", protocol.name));
        }
        let emulator = Emulator::start(protocol.name, options).await.map_err(|e| e.to_string())?;
        emulators.push((protocol.clone(), emulator));
    }
    let tables = provider_tables(&emulators)?;
    let mut instances = Vec::new();
    for name in ["a", "b", "c"].into_iter().take(INSTANCES) {
        let text = config(name, free_port()?, &store_url, &tables);
        instances.push(Instance::spawn(bin, &dir, name, &text)?);
    }
    let http =
        reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(5)).build().map_err(|e| e.to_string())?;
    for instance in &instances {
        instance.ready(&http).await?;
    }
    let fleet = Arc::new(Fleet {
        instances,
        up: (0..INSTANCES).map(|_| AtomicBool::new(true)).collect(),
        non_owner: AtomicBool::new(false),
        webhooks: Mutex::default(),
        next: AtomicUsize::new(1),
        http,
    });
    let _ = fleet_cell.set(fleet.clone());
    let callbacks = Arc::new(Callbacks::default());
    let (callback_url, callback_task) = {
        let callbacks = callbacks.clone();
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let callbacks = callbacks.clone();
                async move { callbacks.receive(&headers, &body) }
            }),
        );
        let (url, task) = serve(router).await?;
        (format!("{url}/hook"), task)
    };

    let messages = if quick { 4 } else { 10 };
    let parties = emulators.len() + 1;
    let before = Arc::new(Barrier::new(parties));
    let after = Arc::new(Barrier::new(parties));
    let fault_at: Arc<OnceLock<Instant>> = Arc::default();
    let sse_cut = Arc::new(Notify::new());
    let emulators: Vec<(Protocol, Arc<Emulator>)> = emulators.into_iter().map(|(p, e)| (p, Arc::new(e))).collect();
    let mut tasks = Vec::new();
    for (protocol, emulator) in &emulators {
        let handover = Handover {
            fleet: fleet.clone(),
            callbacks: callbacks.clone(),
            callback_url: callback_url.clone(),
            protocol: protocol.clone(),
            emulator: emulator.clone(),
            messages,
            fault,
            fault_at: fault_at.clone(),
            sse_cut: sse_cut.clone(),
        };
        let (before, after) = (before.clone(), after.clone());
        tasks.push(tokio::spawn(async move {
            let outcome = handover.play(&before, &after).await;
            (handover.protocol.name.to_owned(), outcome)
        }));
    }

    // The fault, once every handover is mid-conversation.
    before.wait().await;
    let _ = fault_at.set(Instant::now());
    let owner = &fleet.instances[0];
    let mut healing = None;
    match fault {
        FleetFault::Kill | FleetFault::StreamDropOnTakeover | FleetFault::Drain => {
            fleet.up[0].store(false, Ordering::SeqCst);
            owner.signal(if fault == FleetFault::Drain { "TERM" } else { "KILL" });
            if fault == FleetFault::StreamDropOnTakeover {
                for (_, emulator) in &emulators {
                    emulator.hub().faults.drop_streams();
                }
            }
        }
        FleetFault::Pause => {
            fleet.up[0].store(false, Ordering::SeqCst);
            owner.signal("STOP");
            let fleet = fleet.clone();
            healing = Some(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(LEASE_TTL_MS + 1_000)).await;
                fleet.instances[0].signal("CONT");
                fleet.up[0].store(true, Ordering::SeqCst);
            }));
        }
        FleetFault::NonOwnerWebhooks => fleet.non_owner.store(true, Ordering::SeqCst),
        FleetFault::CallbackDown => {
            callbacks.down.store(true, Ordering::SeqCst);
            let callbacks = callbacks.clone();
            let down = Duration::from_secs(if quick { 3 } else { 30 });
            healing = Some(tokio::spawn(async move {
                tokio::time::sleep(down).await;
                callbacks.down.store(false, Ordering::SeqCst);
            }));
        }
        FleetFault::SseCut => sse_cut.notify_waiters(),
        FleetFault::PostgresRestart => {
            let command = std::env::var("HANDOVER_CHAOS_PG_RESTART").map_err(|_| {
                "HANDOVER_CHAOS_PG_RESTART is not set: it restarts the PostgreSQL of DATABASE_URL; run through \
                 `cargo xtask chaos --fleet`"
                    .to_owned()
            });
            healing = Some(tokio::spawn(async move {
                match command {
                    Ok(command) => {
                        let status = tokio::process::Command::new("sh").arg("-c").arg(&command).status().await;
                        if !status.is_ok_and(|s| s.success()) {
                            eprintln!("  the PostgreSQL restart command failed: {command}");
                        }
                    }
                    Err(error) => eprintln!("  {error}"),
                }
            }));
        }
    }
    after.wait().await;
    let mut outcomes = Vec::new();
    for task in tasks {
        match task.await {
            Ok(done) => outcomes.push(done),
            Err(error) => return Err(format!("a handover's task panicked: {error}")),
        }
    }
    if let Some(healing) = healing {
        let _ = healing.await;
    }
    if fault == FleetFault::Drain && !fleet.instances[0].exited(Duration::from_secs(15)).await {
        for (_, outcome) in &mut outcomes {
            outcome.pass = false;
            outcome.note.push_str("; the drained instance did not exit");
        }
    }
    if fault == FleetFault::PostgresRestart && std::env::var("HANDOVER_CHAOS_PG_RESTART").is_err() {
        for (_, outcome) in &mut outcomes {
            outcome.pass = false;
            outcome.note.push_str("; PostgreSQL was not restarted (HANDOVER_CHAOS_PG_RESTART is not set)");
        }
    }
    let report = RunReport {
        fenced_writes_rejected: fleet.counter("handover_fenced_writes_total").await,
        bad_callback_signatures: callbacks.bad_signatures.load(Ordering::SeqCst),
        ..RunReport::default()
    };
    if report.bad_callback_signatures > 0 {
        for (_, outcome) in &mut outcomes {
            outcome.pass = false;
            outcome.note.push_str("; a callback came with a bad signature");
        }
    }
    // Stop everything before the next run; keep the logs of a failed run.
    let failed = outcomes.iter().any(|(_, o)| !o.pass);
    lb_task.abort();
    callback_task.abort();
    for instance in &fleet.instances {
        instance.stop();
    }
    if failed {
        eprintln!("  the instances' logs are in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok((outcomes, report))
}

/// One handover of a fleet run, as the bot and the agent play it.
struct Handover {
    fleet: Arc<Fleet>,
    callbacks: Arc<Callbacks>,
    callback_url: String,
    protocol: Protocol,
    emulator: Arc<Emulator>,
    messages: usize,
    fault: FleetFault,
    fault_at: Arc<OnceLock<Instant>>,
    sse_cut: Arc<Notify>,
}

/// An SSE event as the reader got it.
struct Frame {
    seq: u64,
    data: Value,
    at: Instant,
}

impl Handover {
    fn text(&self, k: usize) -> String {
        format!("{}-agent-{k}", self.protocol.name)
    }

    fn user_text(&self, k: usize) -> String {
        format!("{}-user-{k}", self.protocol.name)
    }

    /// The whole script; the barriers wait whatever happened, so one failed handover
    /// cannot hold the others.
    async fn play(&self, before: &Barrier, after: &Barrier) -> FleetOutcome {
        let frames: Arc<Mutex<Vec<Frame>>> = Arc::default();
        let first = self.first_half(&frames).await;
        before.wait().await;
        after.wait().await;
        let id = match first {
            Ok(id) => id,
            Err(error) => return FleetOutcome::failed(error),
        };
        match self.second_half(&id, &frames).await {
            Ok(()) => self.check(&id, &frames).await,
            Err(error) => {
                let mut outcome = self.check(&id, &frames).await;
                outcome.pass = false;
                outcome.note = format!("{error}; {}", outcome.note);
                outcome
            }
        }
    }

    async fn first_half(&self, frames: &Arc<Mutex<Vec<Frame>>>) -> Result<String, String> {
        let body = json!({
            "provider": self.protocol.name,
            "session_id": format!("chaos-{}", uuid::Uuid::new_v4().simple()),
            "user": { "id": "u-1", "name": "Jane Doe", "email": "jane@example.com" },
            "transcript": [{ "from": "user", "text": "I was charged twice" }, { "from": "bot", "text": "Let me get someone." }],
            "callback": { "url": self.callback_url, "secret": CALLBACK_SECRET },
        });
        // Created on A: A owns every handover when the fault hits it.
        let response = self
            .fleet
            .api(0, Method::POST, "/v1/handovers")
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("create: {e}"))?;
        if response.status() != 201 {
            return Err(format!("create: {}", response.status()));
        }
        let created: Value = response.json().await.map_err(|e| e.to_string())?;
        let id = created["id"].as_str().ok_or("create: no id")?.to_owned();
        tokio::spawn(read_sse(self.fleet.clone(), id.clone(), frames.clone(), self.sse_cut.clone()));

        let conversation = tokio::time::timeout(WAIT, self.emulator.hub().conversation(0))
            .await
            .map_err(|_| "the conversation never reached the contact center")?;
        let hub = self.emulator.hub();
        hub.agent(&conversation, AgentAction::Joined { agent: "Ann".into() });
        let half = self.messages / 2;
        for k in 1..=half {
            hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: self.text(k) });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.input(&id, 1).await?;
        self.wait_sent(1).await?;
        // Sent and recorded as sent: nothing of the first half is in doubt at the fault.
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, body) = self.fleet.call(Method::GET, &format!("/v1/handovers/{id}"), None).await?;
            if body["pending_inputs"] == 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err("the first bot message was never recorded as sent".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.wait_texts(frames, half).await?;
        Ok(id)
    }

    async fn second_half(&self, id: &str, frames: &Arc<Mutex<Vec<Frame>>>) -> Result<(), String> {
        let conversation = self.emulator.hub().conversation(0).await;
        let hub = self.emulator.hub();
        for k in self.messages / 2 + 1..=self.messages {
            hub.agent(&conversation, AgentAction::Message { agent: "Ann".into(), text: self.text(k) });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.input(id, 2).await?;
        self.wait_sent(2).await?;
        self.wait_texts(frames, self.messages).await?;
        hub.agent(&conversation, AgentAction::Ended);
        let deadline = Instant::now() + WAIT;
        while !lock(frames).iter().any(|f| f.data["type"] == "status") {
            if Instant::now() > deadline {
                return Err("no status event came".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Sends the bot's message `k` (with its id: a retry is sent once) to any live
    /// instance, retrying while the store is unreachable.
    async fn input(&self, id: &str, k: usize) -> Result<(), String> {
        let body = json!({ "type": "message", "text": self.user_text(k), "id": format!("u-{k}") });
        let (status, answer) =
            self.fleet.call(Method::POST, &format!("/v1/handovers/{id}/inputs"), Some(&body)).await?;
        if status == 202 { Ok(()) } else { Err(format!("input {k}: {status} {answer}")) }
    }

    async fn wait_sent(&self, k: usize) -> Result<(), String> {
        let text = self.user_text(k);
        let deadline = Instant::now() + WAIT;
        loop {
            let conversation = self.emulator.hub().conversation(0).await;
            if conversation.customer_texts().contains(&text) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("the bot's message {k} never reached the agent"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the bot has agent messages 1..=n over SSE.
    async fn wait_texts(&self, frames: &Arc<Mutex<Vec<Frame>>>, n: usize) -> Result<(), String> {
        let want = self.text(n);
        let deadline = Instant::now() + WAIT;
        loop {
            // A webhook the fleet refused (the store down) and the contact center did not
            // retry never comes: `check` accounts for it.
            if lock(frames).iter().any(|f| f.data["text"] == want.as_str()) || self.fleet.only_refused(&want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("agent message {n} never reached the bot"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Compares what the bot and the agent got with what was sent, both ways.
    async fn check(&self, id: &str, frames: &Arc<Mutex<Vec<Frame>>>) -> FleetOutcome {
        let frames = std::mem::take(&mut *lock(frames));
        let expected: Vec<String> = (1..=self.messages).map(|k| self.text(k)).collect();
        let mut outcome = FleetOutcome { expected: expected.len(), ..FleetOutcome::default() };
        let mut problems = Vec::new();

        // The log over SSE: seqs 1..=n, no gap, no repeat.
        let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
        if seqs != (1..=seqs.len() as u64).collect::<Vec<_>>() {
            problems.push(format!("SSE seqs are not 1..=n: {seqs:?}"));
        }
        let texts: Vec<&str> = frames
            .iter()
            .filter(|f| f.data["type"] == "agent_message")
            .filter_map(|f| f.data["text"].as_str())
            .collect();
        let unique: BTreeSet<&str> = texts.iter().copied().collect();
        outcome.delivered = expected.iter().filter(|t| unique.contains(t.as_str())).count();
        outcome.refused =
            expected.iter().filter(|t| !unique.contains(t.as_str()) && self.fleet.only_refused(t)).count();
        outcome.duplicates = texts.len() - unique.len();
        let stray = unique.iter().filter(|t| !expected.iter().any(|e| e == *t)).count();
        if stray > 0 {
            problems.push(format!("{stray} agent messages nobody sent"));
        }
        let mut seen = BTreeSet::new();
        let in_order: Vec<&str> = texts.iter().copied().filter(|t| seen.insert(*t)).collect();
        let want: Vec<&str> = expected.iter().map(String::as_str).filter(|t| unique.contains(t)).collect();
        outcome.out_of_order = in_order.iter().zip(&want).filter(|(a, b)| a != b).count();
        if let Some(at) = self.fault_at.get()
            && self.fault.takes_the_owner()
        {
            let next = self.text(self.messages / 2 + 1);
            outcome.takeover_ms = frames
                .iter()
                .find(|f| f.data["text"] == next.as_str())
                .map(|f| u64::try_from(f.at.saturating_duration_since(*at).as_millis()).unwrap_or(u64::MAX));
        }
        let last = frames.last().map(|f| &f.data);
        outcome.status =
            last.filter(|d| d["type"] == "status").and_then(|d| d["status"].as_str()).unwrap_or("none").to_owned();

        // The callbacks: once acknowledged, never again; in order; the same events as SSE.
        let patience = Duration::from_secs(if self.fault == FleetFault::CallbackDown { 90 } else { 30 });
        let posted = self.callbacks.until_status(id, patience).await;
        let mut by_seq: BTreeMap<u64, &Value> = BTreeMap::new();
        let mut firsts = Vec::new();
        for event in &posted {
            let seq = event["seq"].as_u64().unwrap_or(0);
            if by_seq.insert(seq, event).is_some() {
                outcome.callback_redeliveries += 1;
            } else {
                firsts.push(seq);
            }
        }
        if !firsts.is_sorted() {
            problems.push(format!("callbacks out of order: {firsts:?}"));
        }
        let callback_events: Vec<&Value> = by_seq.values().copied().collect();
        let sse_events: Vec<&Value> = frames.iter().map(|f| &f.data).collect();
        if callback_events != sse_events {
            problems.push(format!(
                "callbacks differ from the log: {} events by callback, {} over SSE",
                callback_events.len(),
                sse_events.len()
            ));
        }

        // The agent's side: each bot message once.
        let sent = self.emulator.hub().conversation(0).await.customer_texts();
        outcome.user_once = (1..=2).filter(|k| sent.iter().filter(|t| **t == self.user_text(*k)).count() == 1).count();

        // Only a database outage may refuse a delivery; what the fleet acknowledged must arrive.
        let allowed = if self.fault == FleetFault::PostgresRestart { outcome.refused } else { 0 };
        if outcome.delivered + allowed != outcome.expected {
            problems.push(format!(
                "{} of {} agent messages reached the bot ({} refused and not retried by the contact center)",
                outcome.delivered, outcome.expected, outcome.refused
            ));
        }
        if outcome.duplicates > 0 || outcome.out_of_order > 0 {
            problems.push(format!("{} duplicated, {} out of order", outcome.duplicates, outcome.out_of_order));
        }
        if outcome.user_once != 2 {
            problems.push(format!("the bot's messages at the agent: {sent:?}"));
        }
        if outcome.status != "completed" {
            problems.push(format!("status {}", outcome.status));
        }
        outcome.pass = problems.is_empty();
        outcome.note = problems.join("; ");
        outcome
    }
}

/// The bot's SSE reader: reads from any live instance, and after a cut or an error
/// reconnects to another one with `Last-Event-ID`, until the status event.
async fn read_sse(fleet: Arc<Fleet>, id: String, frames: Arc<Mutex<Vec<Frame>>>, cut: Arc<Notify>) {
    let deadline = Instant::now() + WAIT * 3;
    let mut last: Option<u64> = None;
    let mut avoid = None;
    while Instant::now() < deadline {
        let i = fleet.pick(avoid);
        let mut request =
            fleet.api(i, Method::GET, &format!("/v1/handovers/{id}/events")).header("accept", "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let Ok(response) = request.send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if response.status() != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        let cut_now = cut.notified();
        tokio::pin!(cut_now);
        loop {
            let chunk = tokio::select! {
                () = &mut cut_now => {
                    // Cut by the bot's side (a proxy timeout, a deploy): resume elsewhere.
                    avoid = Some(i);
                    break;
                }
                chunk = stream.next() => chunk,
            };
            let Some(Ok(chunk)) = chunk else {
                avoid = Some(i);
                break;
            };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let (mut seq, mut data) = (None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        seq = v.parse::<u64>().ok();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str::<Value>(v).ok();
                    }
                }
                if let (Some(seq), Some(data)) = (seq, data) {
                    let done = data["type"] == "status";
                    last = Some(seq);
                    lock(&frames).push(Frame { seq, data, at: Instant::now() });
                    if done {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints the matrix as a Markdown table, one row per provider and store.
pub(crate) fn print_table(settings: &Settings, matrix: &Matrix) {
    let mut header = String::from("| provider | store |");
    let mut rule = String::from("|---|---|");
    for fault in FleetFault::ALL {
        header.push_str(&format!(" {} |", fault.label()));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    for store in &settings.stores {
        for protocol in &settings.protocols {
            let mut row = format!("| {} | {} |", protocol.name, store.name());
            for index in 0..FleetFault::ALL.len() {
                let cell = matrix
                    .cells
                    .get(&(protocol.name.to_owned(), *store, index))
                    .map_or_else(|| "?".to_owned(), FleetOutcome::cell);
                row.push_str(&format!(" {cell} |"));
            }
            println!("{row}");
        }
    }
    println!(
        "\ncell: agent messages at the bot / sent, duplicates, out of order, bot messages at the agent exactly once \
         (of 2), final status, and for a fault that takes the owner away the time from the fault to the first agent \
         message relayed after it"
    );
    let mut takeovers: Vec<u64> = matrix
        .cells
        .iter()
        .filter(|((_, _, index), _)| {
            matches!(FleetFault::ALL[*index], FleetFault::Kill | FleetFault::StreamDropOnTakeover)
        })
        .filter_map(|(_, o)| o.takeover_ms)
        .collect();
    takeovers.sort_unstable();
    let mut drains: Vec<u64> = matrix
        .cells
        .iter()
        .filter(|((_, _, index), _)| FleetFault::ALL[*index] == FleetFault::Drain)
        .filter_map(|(_, o)| o.takeover_ms)
        .collect();
    drains.sort_unstable();
    let p = |v: &[u64], q: f64| v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied();
    let show = |v: Option<u64>| v.map_or("-".to_owned(), |ms| format!("{:.2} s", ms as f64 / 1000.0));
    println!(
        "takeover after SIGKILL: p50 {}, p99 {} (lease_ttl_ms {LEASE_TTL_MS}); after SIGTERM: p50 {}, p99 {}",
        show(p(&takeovers, 0.5)),
        show(p(&takeovers, 0.99)),
        show(p(&drains, 0.5)),
        show(p(&drains, 0.99))
    );
    let fenced: u64 = matrix.runs.iter().map(|r| r.fenced_writes_rejected).sum();
    println!("fenced writes rejected (handover_fenced_writes_total, instances still up): {fenced}");
}
