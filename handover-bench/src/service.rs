//! Scenarios 6–9: the service (`handover serve`, in a process of its own) against the library
//! alone on the same emulator, and the store against hand-written SQL.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use handover_store::{Commit, NewEvent, NewHandover, Sealer};
use handover_transport::reqwest;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::floor::{self, now_us};
use crate::remote::{KEY_SEED, Remote};
use crate::report::{Better, Row};
use crate::scenarios::{self, lock, many, wait_for};
use crate::sys::percentile;

const API_KEY: &str = "bench-key-0123456789abcdef";
const STORE_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// `handover-bench server <config>`: the child side, a `handover serve` until SIGTERM.
pub(crate) fn server_main(config: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let config = handover_server::ServerConfig::load(std::path::Path::new(config)).map_err(|e| e.to_string())?;
        let server =
            handover_server::Server::start(config, &handover::Registry::new()).await.map_err(|e| e.to_string())?;
        println!("{}", json!({ "url": format!("http://{}", server.local_addr()) }));
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
        term.recv().await;
        server.drain().await;
        Ok(())
    })
}

/// A `handover serve` child process.
pub(crate) struct ServerProc {
    child: Child,
    pub(crate) url: String,
    http: reqwest::Client,
    dir: PathBuf,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join(format!("{}.toml", self.child.id().unwrap_or(0))));
    }
}

/// What a server runs against: its store and the provider configurations.
pub(crate) struct Setup<'a> {
    pub(crate) store: String,
    pub(crate) instance: &'a str,
    pub(crate) providers: &'a [(&'a str, &'a Remote)],
    pub(crate) extra: &'a str,
}

impl ServerProc {
    pub(crate) async fn spawn(setup: &Setup<'_>) -> Result<Self, String> {
        let dir = std::env::temp_dir().join("handover-bench");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nstore = \"{}\"\ninstance_id = \"{}\"\napi_keys = [\"{API_KEY}\"]\n\
             encryption_key_env = \"BENCH_STORE_KEY\"\nmax_connections = 60000\n{}\n[node]\naccepted_message = \"accepted\"\n\n",
            setup.store, setup.instance, setup.extra
        );
        for (name, remote) in setup.providers {
            let mut section = toml::Table::new();
            section.insert("type".into(), toml::Value::String((*name).to_owned()));
            if let toml::Value::Table(keys) = remote.table(json!({}))? {
                section.extend(keys);
            }
            let mut providers = toml::Table::new();
            providers.insert((*name).to_owned(), toml::Value::Table(section));
            let mut root = toml::Table::new();
            root.insert("providers".into(), toml::Value::Table(providers));
            text.push_str(&toml::to_string(&root).map_err(|e| e.to_string())?);
        }
        let path = dir.join(format!("{}-{}.toml", setup.instance, uuid::Uuid::new_v4()));
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("server")
            .arg(&path)
            .env("BENCH_STORE_KEY", STORE_KEY)
            .env(handover_emulator::eightbyeight::KEY_SEED_ENV, KEY_SEED)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the server process: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let line = lines.next_line().await.map_err(|e| e.to_string())?.ok_or("the server process said nothing")?;
        let hello: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
        let url = hello["url"].as_str().ok_or("no url")?.to_owned();
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&path);
        Ok(Self { child, url, http, dir })
    }

    /// A request to the API at `path`, with the bench's key.
    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url)).bearer_auth(API_KEY)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// The server process's resident memory in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        crate::sys::rss_kib_of(self.pid())
    }

    /// Creates a handover; its id.
    pub(crate) async fn create(&self, body: &Value) -> Result<String, String> {
        let response =
            self.api(reqwest::Method::POST, "/v1/handovers").json(body).send().await.map_err(|e| e.to_string())?;
        if response.status() != 201 {
            return Err(format!("create: {}", response.status()));
        }
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        body["id"].as_str().map(str::to_owned).ok_or_else(|| "no id".to_owned())
    }

    /// Waits (long-poll) until handover `id` has an event after `after`; the events.
    pub(crate) async fn next_events(&self, id: &str, after: u64) -> Result<Vec<Value>, String> {
        let response = self
            .api(reqwest::Method::GET, &format!("/v1/handovers/{id}/events?after={after}&wait_ms=60000"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        Ok(body["events"].as_array().cloned().unwrap_or_default())
    }

    /// Opens handover `id`'s SSE stream and hands every agent-message latency to `sink`.
    pub(crate) fn sse(&self, id: &str, sink: Arc<Mutex<Vec<f64>>>, opened: Arc<AtomicUsize>) {
        let request =
            self.api(reqwest::Method::GET, &format!("/v1/handovers/{id}/events")).header("accept", "text/event-stream");
        tokio::spawn(async move {
            let Ok(response) = request.send().await else { return };
            opened.fetch_add(1, Ordering::SeqCst);
            let mut stream = response.bytes_stream();
            while let Some(Ok(chunk)) = stream.next().await {
                let now = now_us();
                let text = String::from_utf8_lossy(&chunk);
                let found = floor::stamps(&text, "agent-msg @", now);
                if !found.is_empty() {
                    lock(&sink).extend(found);
                }
            }
        });
    }

    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        let _ = self.child.kill().await;
    }

    pub(crate) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A handover request body for the API.
fn body(i: usize, callback: Option<&str>) -> Value {
    let mut body = json!({
        "provider": "miaw",
        "session_id": format!("bench-{i}"),
        "user": { "id": format!("user-{i}"), "name": "Jane" },
    });
    if let Some(url) = callback {
        body["callback"] = json!({ "url": url, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" });
    }
    body
}

/// A SQLite store in a fresh temporary directory.
fn sqlite_url(tag: &str) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("handover-bench-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(format!("sqlite://{}/store.db", dir.display()))
}

/// A fresh PostgreSQL database for one run, from `DATABASE_URL` (set by `cargo xtask
/// bench`); `None` without one.
async fn postgres_url(tag: &str) -> Result<Option<String>, String> {
    let Ok(base) = std::env::var("DATABASE_URL") else { return Ok(None) };
    let name = format!("bench_{tag}_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx_url(&base, "postgres");
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&admin).await.map_err(|e| format!("postgres: {e}"))?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.map_err(|e| e.to_string())?;
    Ok(Some(sqlx_url(&base, &name)))
}

/// `url` with its database replaced by `db`.
fn sqlx_url(url: &str, db: &str) -> String {
    let (head, tail) = url.rsplit_once('/').unwrap_or((url, ""));
    let query = tail.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    format!("{head}/{db}{query}")
}

/// Scenario 6: handover starts per second through the API, against the library's
/// `Provider::start` on the same emulator: POST, then a long-poll that returns with the
/// first event (said once the contact center took the request).
pub(crate) async fn api_starts(count: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let scenario = format!("6. starts through the API (miaw, {count} handovers, SQLite)");
    let parallel = 32;
    let remote = Arc::new(Remote::spawn("miaw").await?);
    let server = Arc::new(
        ServerProc::spawn(&Setup {
            store: sqlite_url("starts")?,
            instance: "a",
            providers: &[("miaw", &remote)],
            extra: "",
        })
        .await?,
    );
    let started = Instant::now();
    let results = many(count, parallel, |i| {
        let server = server.clone();
        async move {
            let id = server.create(&body(i, None)).await?;
            let events = server.next_events(&id, 0).await?;
            if events.first().is_some_and(|e| e["type"] == "say") { Ok(()) } else { Err(format!("{events:?}")) }
        }
    })
    .await;
    let api_rate = results.iter().filter(|r| r.is_ok()).count() as f64 / started.elapsed().as_secs_f64();
    let api_failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(error)) = results.iter().find(|r| r.is_err()) {
        eprintln!("bench: an API start failed: {error}");
    }
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
    if let Ok(remote) = Arc::try_unwrap(remote) {
        remote.stop().await;
    }
    let (lib_rate, lib_failed) = scenarios::library_start_rate("miaw", count, parallel, 0).await?;
    let row = Row::new(&scenario, "handovers started", "per s", api_rate, Some(lib_rate), Better::Higher);
    let met = row.ratio.is_some_and(|r| r <= 1.5);
    rows.push(row.target("≤ 1.5× the library", met));
    rows.push(Row::new(&scenario, "failed starts", "count", api_failed as f64, Some(lib_failed as f64), Better::Lower));
    Ok(())
}

/// A bot's callback endpoint for the bench: takes every POST (2xx) and records the latency
/// of stamped agent messages.
async fn callback_sink(sink: Arc<Mutex<Vec<f64>>>) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let found = floor::stamps(&String::from_utf8_lossy(&body), "agent-msg @", now_us());
                if !found.is_empty() {
                    lock(&sink).extend(found);
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// Scenario 7: agent → bot latency at `n` concurrent handovers through SSE and through
/// callbacks, against the library's node runtime on the same emulator (scenario 2's
/// library side), in one run.
pub(crate) async fn api_relay(n: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let scenario = format!("7. agent → bot through the service at {n} handovers (MIAW, SQLite)");
    let per = 3;
    let remote = Arc::new(Remote::spawn("miaw").await?);
    let sse: Arc<Mutex<Vec<f64>>> = Arc::default();
    let callbacks: Arc<Mutex<Vec<f64>>> = Arc::default();
    let sink = callback_sink(callbacks.clone()).await?;
    let server = Arc::new(
        ServerProc::spawn(&Setup {
            store: sqlite_url("relay")?,
            instance: "a",
            providers: &[("miaw", &remote)],
            extra: "",
        })
        .await?,
    );
    let callback_url = format!("http://{sink}/hook");
    let ids = many(n, 32, |i| {
        let server = server.clone();
        // Half the handovers are read over SSE, half through callbacks.
        let callback = (i % 2 == 1).then(|| callback_url.clone());
        async move {
            let id = server.create(&body(i, callback.as_deref())).await?;
            server.next_events(&id, 0).await?;
            Ok::<_, String>((id, callback.is_some()))
        }
    })
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    let opened = Arc::new(AtomicUsize::new(0));
    let readers = ids.iter().filter(|(_, callback)| !callback).count();
    for (id, callback) in &ids {
        if !callback {
            server.sse(id, sse.clone(), opened.clone());
        }
    }
    wait_for("the SSE streams", Duration::from_secs(60), || opened.load(Ordering::SeqCst) >= readers).await?;
    let sent = scenarios::agent_messages(&remote, per).await?;
    wait_for("the agent messages at the bot", Duration::from_secs(120), || {
        lock(&sse).len() + lock(&callbacks).len() >= sent
    })
    .await?;
    let mut sse = std::mem::take(&mut *lock(&sse));
    let mut callbacks = std::mem::take(&mut *lock(&callbacks));
    if std::env::var_os("HANDOVER_BENCH_METRICS").is_some() {
        let text = reqwest::get(format!("{}/metrics", server.url))
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .unwrap_or_default();
        for line in text.lines().filter(|l| {
            l.contains("commit_seconds")
                && (l.contains("quantile") || l.contains("_sum") || l.contains("_count") || l.contains("le=\"0.00"))
        }) {
            eprintln!("server: {line}");
        }
    }
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
    if let Ok(remote) = Arc::try_unwrap(remote) {
        remote.stop().await;
    }
    let (mut library, _) = scenarios::relay_library(n).await?;
    library.sort_by(f64::total_cmp);
    for (path, samples) in [("SSE", &mut sse), ("callback", &mut callbacks)] {
        samples.sort_by(f64::total_cmp);
        for (name, p) in [("p50", 50.0), ("p99", 99.0)] {
            let (ours, lib) = (percentile(samples, p), percentile(&library, p));
            let mut row =
                Row::new(&scenario, &format!("agent → bot {name} via {path}"), "ms", ours, Some(lib), Better::Lower);
            if name == "p99" {
                row = row.target("≤ library + 2 ms", ours <= lib + 2.0);
            }
            rows.push(row);
        }
    }
    Ok(())
}

/// Scenario 8: `n` handovers held by one instance, with SQLite and with PostgreSQL: the
/// server process's RSS per handover, against the library's per-session RSS (scenario 1's
/// measuring process) at the same `n`.
pub(crate) async fn held(n: usize, idle: Duration, rows: &mut Vec<Row>) -> Result<(), String> {
    let (library_kib, _, _) = scenarios::hold_in_child("library", n, idle).await?;
    let mut stores = vec![("SQLite", sqlite_url("held")?)];
    match postgres_url("held").await? {
        Some(url) => stores.push(("PostgreSQL", url)),
        None => eprintln!("bench: no DATABASE_URL: the PostgreSQL row of scenario 8 is left out"),
    }
    for (store_name, store) in stores {
        let scenario = format!("8. {n} handovers held by one instance ({store_name})");
        let remote = Arc::new(Remote::spawn("miaw").await?);
        let server = Arc::new(
            ServerProc::spawn(&Setup { store, instance: "a", providers: &[("miaw", &remote)], extra: "" }).await?,
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let base = server.rss_kib();
        let results = many(n, 64, |i| {
            let server = server.clone();
            async move {
                let id = server.create(&body(i, None)).await?;
                server.next_events(&id, 0).await.map(drop)
            }
        })
        .await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        if let Some(Err(error)) = results.iter().find(|r| r.is_err()) {
            eprintln!("bench: a held handover failed: {error}");
        }
        tokio::time::sleep(idle.min(Duration::from_secs(5))).await;
        let kib = server.rss_kib().saturating_sub(base) as f64 / (n - failed).max(1) as f64;
        rows.push(Row::new(&scenario, "server RSS per handover", "KiB", kib, Some(library_kib), Better::Lower));
        let row = Row::new(&scenario, "handovers failed", "count", failed as f64, None, Better::Lower);
        rows.push(row.target("0", failed == 0));
        if let Ok(server) = Arc::try_unwrap(server) {
            server.stop().await;
        }
        if let Ok(remote) = Arc::try_unwrap(remote) {
            remote.stop().await;
        }
    }
    Ok(())
}

/// Scenario 9: the store's event appends (one event per commit, fenced, sealed snapshot
/// left out) against the hand-written floor: the same rows inserted with plain sqlx, one
/// transaction per event. Once with one handover and one writer, once across `handovers`
/// handovers each with its own writer (the floor's writers share a pool: one connection on
/// SQLite, which has one writer at a time, sixteen on PostgreSQL, as the store's).
pub(crate) async fn appends(count: usize, handovers: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let mut stores = vec![("SQLite", sqlite_url("appends")?)];
    if let Some(url) = postgres_url("appends").await? {
        stores.push(("PostgreSQL", url));
    }
    let event = json!({ "type": "agent_message", "text": "x".repeat(80), "agent": "Ann" });
    for (name, url) in stores {
        for writers in [1, handovers] {
            let scenario = format!("9. event appends ({name}, {count} commits, {writers} handovers)");
            let store = Arc::new(handover_store::open(&url, Sealer::new(&[7; 32])).await.map_err(|e| e.to_string())?);
            let mut leases = Vec::new();
            for h in 0..writers {
                let new = NewHandover::new(format!("h-{writers}-{h}"), "miaw", json!({}));
                let created = store.create(new, "a", Duration::from_secs(600)).await.map_err(|e| e.to_string())?;
                leases.push(created.lease.ok_or("no lease")?);
            }
            let each = count / writers;
            let started = Instant::now();
            let tasks: Vec<_> = leases
                .into_iter()
                .map(|lease| {
                    let (store, event) = (store.clone(), event.clone());
                    tokio::spawn(async move {
                        for i in 0..each {
                            let commit = Commit::new().event(NewEvent::with_id(format!("agent:{i}"), event.clone()));
                            store.commit(&lease, commit).await.map_err(|e| e.to_string())?;
                        }
                        Ok::<(), String>(())
                    })
                })
                .collect();
            for task in tasks {
                task.await.map_err(|e| e.to_string())??;
            }
            let ours = (each * writers) as f64 / started.elapsed().as_secs_f64();
            drop(store);
            let floor = floor_appends(&url, each, writers, &event).await?;
            let row = Row::new(&scenario, "events appended", "per s", ours, Some(floor), Better::Higher);
            rows.push(row.target("≤ 1.3× floor", ours * 1.3 >= floor));
        }
    }
    Ok(())
}

/// The floor of scenario 9: plain sqlx, a table of the same shape, no fence, no JSON
/// re-encoding; `writers` tasks of `each` single-insert transactions.
async fn floor_appends(url: &str, each: usize, writers: usize, event: &Value) -> Result<f64, String> {
    let body = Arc::new(event.to_string());
    let table = format!("floor_events_{writers}");
    let create = format!(
        "CREATE TABLE {table} (handover_id TEXT, seq BIGINT, event_id TEXT, body TEXT, PRIMARY KEY (handover_id, seq))"
    );
    let insert = Arc::new(format!("INSERT INTO {table} VALUES ($1, $2, $3, $4)"));
    macro_rules! run {
        ($pool:expr) => {{
            let pool = $pool;
            sqlx::query(&create).execute(&pool).await.map_err(|e| e.to_string())?;
            let started = Instant::now();
            let tasks: Vec<_> = (0..writers)
                .map(|h| {
                    let (pool, body, insert) = (pool.clone(), body.clone(), insert.clone());
                    tokio::spawn(async move {
                        for i in 0..each {
                            let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
                            sqlx::query(insert.as_str())
                                .bind(format!("h-{h}"))
                                .bind(i as i64 + 1)
                                .bind(format!("agent:{i}"))
                                .bind(body.as_str())
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| e.to_string())?;
                            tx.commit().await.map_err(|e| e.to_string())?;
                        }
                        Ok::<(), String>(())
                    })
                })
                .collect();
            for task in tasks {
                task.await.map_err(|e| e.to_string())??;
            }
            Ok((each * writers) as f64 / started.elapsed().as_secs_f64())
        }};
    }
    if url.starts_with("sqlite:") {
        let options = format!("{url}?mode=rwc")
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .map_err(|e| e.to_string())?
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| e.to_string())?;
        run!(pool)
    } else {
        let pool =
            sqlx::postgres::PgPoolOptions::new().max_connections(16).connect(url).await.map_err(|e| e.to_string())?;
        run!(pool)
    }
}

/// Scenario 10: takeover time. Two instances on one SQLite store; `n` handovers owned by
/// A; A killed with SIGKILL (then, in a second round, drained with SIGTERM); the time until
/// B owns each one, read from the store, against `lease_ttl_ms` + `claim_interval_ms`.
pub(crate) async fn takeover(n: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let ttl_ms = 2000.0;
    let claim_ms = 250.0;
    let extra = format!("lease_ttl_ms = {ttl_ms}\nclaim_interval_ms = {claim_ms}");
    for signal in ["KILL", "TERM"] {
        let scenario = format!("10. takeover of {n} handovers after SIG{signal} (SQLite, lease_ttl_ms {ttl_ms})");
        let remote = Arc::new(Remote::spawn("miaw").await?);
        let store = sqlite_url("takeover")?;
        let a = Arc::new(
            ServerProc::spawn(&Setup {
                store: store.clone(),
                instance: "a",
                providers: &[("miaw", &remote)],
                extra: &extra,
            })
            .await?,
        );
        let b = ServerProc::spawn(&Setup {
            store: store.clone(),
            instance: "b",
            providers: &[("miaw", &remote)],
            extra: &extra,
        })
        .await?;
        let ids = many(n, 32, |i| {
            let a = a.clone();
            async move {
                let id = a.create(&body(i, None)).await?;
                a.next_events(&id, 0).await?;
                Ok::<_, String>(id)
            }
        })
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let reader = handover_store::open(&store, Sealer::from_base64(STORE_KEY).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        let a = Arc::try_unwrap(a).map_err(|_| "a is shared")?;
        let killed = Instant::now();
        if signal == "KILL" {
            a.kill().await;
        } else {
            let pid = a.pid();
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
            tokio::spawn(a.stop());
        }
        let mut taken: HashMap<String, f64> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while taken.len() < ids.len() && Instant::now() < deadline {
            for id in &ids {
                if taken.contains_key(id) {
                    continue;
                }
                if let Ok(Some(record)) = reader.get(id).await
                    && record.owner.as_deref() == Some("b")
                {
                    taken.insert(id.clone(), killed.elapsed().as_secs_f64() * 1000.0);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut times: Vec<f64> = taken.values().copied().collect();
        times.sort_by(f64::total_cmp);
        let bound = if signal == "KILL" { ttl_ms + 1000.0 } else { 1000.0 };
        for (name, p) in [("p50", 50.0), ("p99", 99.0)] {
            let value = percentile(&times, p);
            let mut row =
                Row::new(&scenario, &format!("takeover {name}"), "ms", value, Some(ttl_ms + claim_ms), Better::Lower);
            if name == "p99" {
                let label = if signal == "KILL" { "≤ lease_ttl_ms + 1 s" } else { "≤ 1 s" };
                row = row.target(label, value <= bound && times.len() == ids.len());
            }
            rows.push(row);
        }
        rows.push(Row::new(
            &scenario,
            "not taken over",
            "count",
            (ids.len() - times.len()) as f64,
            None,
            Better::Lower,
        ));
        b.stop().await;
        if let Ok(remote) = Arc::try_unwrap(remote) {
            remote.stop().await;
        }
    }
    Ok(())
}

/// A JSON API call to `server` with the bench's key; the status.
async fn post_input(server: &ServerProc, id: &str, body: &Value) -> Result<u16, String> {
    let response = server
        .api(reqwest::Method::POST, &format!("/v1/handovers/{id}/inputs"))
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

/// Inputs handover `id` still has to send to the contact center.
async fn pending_inputs(server: &ServerProc, id: &str) -> Result<u64, String> {
    let response =
        server.api(reqwest::Method::GET, &format!("/v1/handovers/{id}")).send().await.map_err(|e| e.to_string())?;
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    body["pending_inputs"].as_u64().ok_or_else(|| format!("no pending_inputs in {body}"))
}

/// The bytes a store holds: the SQLite file with its WAL, or the PostgreSQL database.
async fn store_bytes(store: &str) -> Result<u64, String> {
    if let Some(path) = store.strip_prefix("sqlite://") {
        let size = |p: String| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        return Ok(size(path.to_owned()) + size(format!("{path}-wal")));
    }
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(store).await.map_err(|e| e.to_string())?;
    let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// Scenario 11: the fleet under load. Three instances on one store (SQLite, then
/// PostgreSQL); `n` MIAW handovers created round robin, each read over SSE from an instance
/// that does not own it; agent messages at 2,000 per second and bot messages through the
/// API at the same time. Reports the relayed messages per second, agent → bot latency
/// against the library alone at the same pace (one process, no store: the floor), the
/// store's bytes per handover, each instance's RSS per handover against the library's per
/// session, and the takeover of the third the killed instance owned while the agents go on.
pub(crate) async fn fleet_load(n: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let per = 5;
    let ttl_ms = 2000.0;
    let claim_ms = 250.0;
    let extra = format!("lease_ttl_ms = {ttl_ms}\nclaim_interval_ms = {claim_ms}");
    let (mut library, _) = scenarios::relay_library(n).await?;
    library.sort_by(f64::total_cmp);
    let (library_kib, _, _) = scenarios::hold_in_child("library", n, Duration::from_secs(3)).await?;
    let mut stores = vec![("SQLite", sqlite_url("fleet")?)];
    match postgres_url("fleet").await? {
        Some(url) => stores.push(("PostgreSQL", url)),
        None => eprintln!("bench: no DATABASE_URL: the PostgreSQL rows of scenario 11 are left out"),
    }
    for (store_name, store) in stores {
        let scenario = format!("11. fleet of 3 instances, {n} handovers (MIAW, {store_name})");
        let remote = Arc::new(Remote::spawn("miaw").await?);
        let mut servers = Vec::new();
        for instance in ["a", "b", "c"] {
            let setup = Setup { store: store.clone(), instance, providers: &[("miaw", &remote)], extra: &extra };
            servers.push(Arc::new(ServerProc::spawn(&setup).await?));
        }
        let servers = Arc::new(servers);
        let base_rss: Vec<u64> = servers.iter().map(|s| s.rss_kib()).collect();
        let ids = many(n, 32, |i| {
            let servers = servers.clone();
            async move {
                let owner = &servers[i % 3];
                let id = owner.create(&body(i, None)).await?;
                owner.next_events(&id, 0).await?;
                Ok::<_, String>(id)
            }
        })
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let sse: Arc<Mutex<Vec<f64>>> = Arc::default();
        let opened = Arc::new(AtomicUsize::new(0));
        for (i, id) in ids.iter().enumerate() {
            servers[(i + 1) % 3].sse(id, sse.clone(), opened.clone());
        }
        wait_for("the SSE streams", Duration::from_secs(60), || opened.load(Ordering::SeqCst) >= n).await?;

        // Steady traffic both ways at once.
        let started = Instant::now();
        let bot = {
            let (servers, ids) = (servers.clone(), Arc::new(ids.clone()));
            tokio::spawn(async move {
                let mut sends = Vec::with_capacity(n * per);
                for round in 0..per {
                    for i in 0..n {
                        let (servers, ids) = (servers.clone(), ids.clone());
                        sends.push(tokio::spawn(async move {
                            let input = json!({ "type": "message", "text": "user-msg", "id": format!("u-{round}") });
                            post_input(&servers[(i + 2) % 3], &ids[i], &input).await
                        }));
                        scenarios::pace(round * n + i).await;
                    }
                }
                let mut refused = 0usize;
                for send in sends {
                    if !matches!(send.await, Ok(Ok(202))) {
                        refused += 1;
                    }
                }
                refused
            })
        };
        let sent = scenarios::agent_messages(&remote, per).await?;
        let refused = bot.await.map_err(|e| e.to_string())?;
        wait_for("the agent messages at the bot", Duration::from_secs(120), || lock(&sse).len() >= sent).await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        for (i, id) in ids.iter().enumerate() {
            while pending_inputs(&servers[i % 3], id).await? > 0 {
                if Instant::now() > deadline {
                    return Err("the bot's messages were not all sent".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let relayed = (sent + n * per - refused) as f64 / elapsed;
        let row = Row::new(&scenario, "messages relayed both ways", "per s", relayed, None, Better::Higher);
        rows.push(if store_name == "PostgreSQL" { row.target("≥ 2,000 per s", relayed >= 2000.0) } else { row });
        let mut samples = std::mem::take(&mut *lock(&sse));
        samples.sort_by(f64::total_cmp);
        for (name, p) in [("p50", 50.0), ("p99", 99.0)] {
            let (ours, lib) = (percentile(&samples, p), percentile(&library, p));
            let mut row = Row::new(&scenario, &format!("agent → bot {name}"), "ms", ours, Some(lib), Better::Lower);
            if name == "p99" {
                row = row.target("< 50 ms", ours < 50.0);
            }
            rows.push(row);
        }
        rows.push(
            Row::new(&scenario, "bot messages refused", "count", refused as f64, None, Better::Lower)
                .target("0", refused == 0),
        );
        let bytes = store_bytes(&store).await? as f64 / n as f64 / 1024.0;
        rows.push(Row::new(&scenario, "store size per handover", "KiB", bytes, None, Better::Lower));
        let rss: f64 =
            servers.iter().zip(&base_rss).map(|(s, base)| s.rss_kib().saturating_sub(*base) as f64).sum::<f64>()
                / n as f64;
        rows.push(Row::new(&scenario, "instance RSS per handover", "KiB", rss, Some(library_kib), Better::Lower));

        // A takeover under load: instance a is killed while the agents go on writing.
        let reader = handover_store::open(&store, Sealer::from_base64(STORE_KEY).map_err(|e| e.to_string())?)
            .await
            .map_err(|e| e.to_string())?;
        let owned: Vec<String> = ids.iter().step_by(3).cloned().collect();
        let traffic = {
            let remote = remote.clone();
            tokio::spawn(async move { scenarios::agent_messages(&remote, 2).await })
        };
        let servers = Arc::try_unwrap(servers).map_err(|_| "the servers are shared")?;
        let mut servers = servers.into_iter().map(|s| Arc::try_unwrap(s).map_err(|_| "a server is shared"));
        let a = servers.next().ok_or("no a")??;
        let killed = Instant::now();
        a.kill().await;
        let mut taken: HashMap<String, f64> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while taken.len() < owned.len() && Instant::now() < deadline {
            for id in &owned {
                if taken.contains_key(id) {
                    continue;
                }
                if let Ok(Some(record)) = reader.get(id).await
                    && matches!(record.owner.as_deref(), Some("b" | "c"))
                {
                    taken.insert(id.clone(), killed.elapsed().as_secs_f64() * 1000.0);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut times: Vec<f64> = taken.values().copied().collect();
        times.sort_by(f64::total_cmp);
        for (name, p) in [("p50", 50.0), ("p99", 99.0)] {
            let value = percentile(&times, p);
            let mut row = Row::new(
                &scenario,
                &format!("takeover {name} after SIGKILL under load"),
                "ms",
                value,
                Some(ttl_ms + claim_ms),
                Better::Lower,
            );
            if name == "p99" {
                row = row.target("≤ lease_ttl_ms + 1 s", value <= ttl_ms + 1000.0 && times.len() == owned.len());
            }
            rows.push(row);
        }
        let _ = traffic.await;
        for server in servers.flatten() {
            server.stop().await;
        }
        if let Ok(remote) = Arc::try_unwrap(remote) {
            remote.stop().await;
        }
    }
    Ok(())
}
