//! The five scenarios, each run with the library and with its floor.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use handover::node::{Node, NodeConfig, NodeInput, NodeOutput};
use handover::{
    CancellationToken, EndUser, HandoverRequest, Provider, Registry, Speaker, TranscriptEntry, WebhookRequest,
};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use crate::floor::{self, GenesysFloor, MiawFloor, now_us};
use crate::remote::{KEY_SEED, Remote};
use crate::report::{Better, Row};
use crate::sys::{cpu_secs, percentile, rss_kib};

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn build(name: &str, table: toml::Value) -> Result<Arc<dyn Provider>, String> {
    Registry::new().build(name, table).map_err(|e| e.to_string())
}

/// A transcript whose rendering splits into exactly `chunks` chunks of `chunk_chars`.
fn transcript(chunk_chars: usize, chunks: usize) -> Vec<TranscriptEntry> {
    let line = "x".repeat(chunk_chars / 4);
    let mut entries = Vec::new();
    loop {
        let speaker = if entries.len() % 2 == 0 { Speaker::User } else { Speaker::Bot };
        entries.push(TranscriptEntry::new(speaker, line.clone()));
        let rendered = handover::transcript::render(&entries);
        let count = handover::transcript::split(&rendered, chunk_chars).map(|c| c.len()).unwrap_or(0);
        if count >= chunks {
            return entries;
        }
    }
}

/// The floor's transcript: the same rendering, split the same way.
fn transcript_chunks(entries: &[TranscriptEntry], chunk_chars: usize) -> Vec<String> {
    let rendered = handover::transcript::render(entries);
    handover::transcript::split(&rendered, chunk_chars)
        .map(|chunks| chunks.into_iter().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn request(n: usize, transcript: Vec<TranscriptEntry>) -> HandoverRequest {
    HandoverRequest::new(format!("bench-{n}"), EndUser::new(format!("user-{n}")).with_name("Jane"))
        .with_transcript(transcript)
}

/// Runs `count` jobs with at most `parallel` at once; returns their results in order.
pub(crate) async fn many<T: Send + 'static, F: Future<Output = T> + Send + 'static>(
    count: usize,
    parallel: usize,
    job: impl Fn(usize) -> F,
) -> Vec<T> {
    let permits = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let permits = permits.clone();
        let future = job(i);
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            future.await
        }));
    }
    let mut results = Vec::with_capacity(count);
    for task in tasks {
        if let Ok(result) = task.await {
            results.push(result);
        }
    }
    results
}

/// The process's cost of holding what it opened: KiB of RSS each (over `base_kib`) and
/// ms of CPU each per minute idle.
async fn idle_cost(opened: usize, base_kib: u64, idle: Duration) -> (f64, f64) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kib = rss_kib().saturating_sub(base_kib) as f64 / opened.max(1) as f64;
    let cpu_start = cpu_secs();
    tokio::time::sleep(idle).await;
    let cpu_ms = (cpu_secs() - cpu_start) * 1000.0 / opened.max(1) as f64 * 60.0 / idle.as_secs_f64();
    (kib, cpu_ms)
}

/// The child side of scenario 1 (`handover-bench hold <library|floor> <n> <idle s>
/// [miaw|genesys|salesforce]`): opens `n` sessions of `protocol` against its own emulator
/// process, holds them idle and prints `{"kib": …, "cpu_ms": …, "failed": …}`. A process of
/// its own, so the allocator holds nothing from an earlier run. MIAW sessions wait on SSE,
/// Genesys sessions on webhooks (and the notifications socket), Salesforce Chat sessions
/// in long polls.
pub(crate) async fn hold(protocol: &str, kind: &str, n: usize, idle: Duration) -> Result<Value, String> {
    let remote = Arc::new(Remote::spawn(protocol).await?);
    let (kib, cpu, failed) = match (kind, protocol) {
        ("library", _) => {
            let provider = build(protocol, remote.table(json!({}))?)?;
            let base = rss_kib();
            let started = many(n, 200, |i| {
                let provider = provider.clone();
                async move { provider.start(request(i, Vec::new())).await }
            })
            .await;
            let failed = started.iter().filter(|s| s.is_err()).count();
            if let Some(Err(error)) = started.iter().find(|s| s.is_err()) {
                eprintln!("bench: a {protocol} start failed: {error}");
            }
            let sessions: Vec<_> = started.into_iter().flatten().collect();
            let (kib, cpu) = idle_cost(sessions.len(), base, idle).await;
            (kib, cpu, failed)
        }
        (_, "miaw") => {
            let http = floor::client();
            let base = rss_kib();
            let opened = many(n, 200, |_| {
                let http = http.clone();
                let remote = remote.clone();
                async move { MiawFloor::open(&http, &remote, &[], Arc::default()).await }
            })
            .await;
            let failed = opened.iter().filter(|s| s.is_err()).count();
            let floors: Vec<_> = opened.into_iter().flatten().collect();
            let (kib, cpu) = idle_cost(floors.len(), base, idle).await;
            (kib, cpu, failed)
        }
        (_, "genesys") => {
            let http = floor::client();
            // Before the channel and its socket, as the library's base is before its first.
            let base = rss_kib();
            let genesys = Arc::new(GenesysFloor::connect(&http, &remote).await?);
            let opened = many(n, 200, |_| {
                let (http, remote, genesys) = (http.clone(), remote.clone(), genesys.clone());
                async move { genesys.handover(&http, &remote, &[]).await }
            })
            .await;
            let failed = opened.iter().filter(|s| s.is_err()).count();
            let (kib, cpu) = idle_cost(n - failed, base, idle).await;
            drop(genesys);
            (kib, cpu, failed)
        }
        (_, "salesforce") => {
            let http = floor::client();
            let base = rss_kib();
            let opened =
                many(n, 200, |_| floor::salesforce_visitor(http.clone(), remote.url.clone(), remote.config.clone()))
                    .await;
            let failed = opened.iter().filter(|s| s.is_err()).count();
            let visitors: Vec<_> = opened.into_iter().flatten().collect();
            let (kib, cpu) = idle_cost(visitors.len(), base, idle).await;
            for visitor in visitors {
                visitor.abort();
            }
            (kib, cpu, failed)
        }
        (_, other) => return Err(format!("no held-session floor for `{other}`")),
    };
    if let Ok(remote) = Arc::try_unwrap(remote) {
        remote.stop().await;
    }
    Ok(json!({ "kib": kib, "cpu_ms": cpu, "failed": failed }))
}

/// Runs [`hold`] of MIAW sessions in a child process.
pub(crate) async fn hold_in_child(kind: &str, n: usize, idle: Duration) -> Result<(f64, f64, usize), String> {
    hold_protocol_in_child("miaw", kind, n, idle).await
}

/// Runs [`hold`] of `protocol`'s sessions in a child process: (KiB per session, CPU ms per
/// session per minute, failed starts).
pub(crate) async fn hold_protocol_in_child(
    protocol: &str,
    kind: &str,
    n: usize,
    idle: Duration,
) -> Result<(f64, f64, usize), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = tokio::process::Command::new(exe)
        .args(["hold", kind, &n.to_string(), &idle.as_secs().to_string(), protocol])
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .map_err(|e| format!("cannot start the {kind} process: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().ok_or_else(|| format!("the {kind} process said nothing ({})", output.status))?;
    let result: Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
    if let Some(error) = result["error"].as_str() {
        return Err(format!("{kind}: {error}"));
    }
    let number = |key: &str| result[key].as_f64().unwrap_or(f64::NAN);
    Ok((number("kib"), number("cpu_ms"), result["failed"].as_u64().unwrap_or(u64::MAX) as usize))
}

/// How many sessions scenario 1 holds of each inbound shape.
pub(crate) struct HeldSizes<'a> {
    /// MIAW sessions on SSE, one run per size.
    pub(crate) sse: &'a [usize],
    /// Genesys sessions waiting on webhooks (at most 6,327: 19 notification channels of 333
    /// conversations each).
    pub(crate) push: usize,
    /// Salesforce Chat sessions in long polls.
    pub(crate) long_poll: usize,
}

/// Scenario 1: handovers held open, for each inbound shape: client memory and idle CPU per
/// session, and failed starts. MIAW on SSE at every size; Genesys on webhooks and Salesforce
/// Chat on long-poll once each.
pub(crate) async fn sessions(sizes: &HeldSizes<'_>, idle: Duration, rows: &mut Vec<Row>) -> Result<(), String> {
    for &n in sizes.sse {
        let scenario = format!("1. {n} MIAW sessions on SSE");
        let (kib, cpu, failed) = hold_in_child("library", n, idle).await?;
        let (floor_kib, floor_cpu, floor_failed) = hold_in_child("floor", n, idle).await?;
        let last = n >= 10_000;
        let mut memory = Row::new(&scenario, "client RSS per session", "KiB", kib, Some(floor_kib), Better::Lower);
        if last {
            let within = memory.ratio.is_some_and(|r| r <= 1.25);
            memory = memory.target("≤ 1.25× floor", within);
        }
        rows.push(memory);
        rows.push(Row::new(&scenario, "idle CPU per session", "ms/min", cpu, Some(floor_cpu), Better::Lower));
        let mut failures = failed_row(&scenario, "sessions failed to start", failed, floor_failed);
        if last {
            failures = failures.target("0", failed == 0);
        }
        rows.push(failures);
    }
    for (protocol, n, scenario, cpu_metric) in [
        ("genesys", sizes.push, format!("1. {} Genesys sessions on webhooks", sizes.push), "idle CPU per session"),
        (
            "salesforce",
            sizes.long_poll,
            format!("1. {} Salesforce Chat sessions on long-poll", sizes.long_poll),
            "CPU per session",
        ),
    ] {
        let (kib, cpu, failed) = hold_protocol_in_child(protocol, "library", n, idle).await?;
        let (floor_kib, floor_cpu, floor_failed) = hold_protocol_in_child(protocol, "floor", n, idle).await?;
        rows.push(Row::new(&scenario, "client RSS per session", "KiB", kib, Some(floor_kib), Better::Lower));
        rows.push(Row::new(&scenario, cpu_metric, "ms/min", cpu, Some(floor_cpu), Better::Lower));
        rows.push(failed_row(&scenario, "sessions failed to start", failed, floor_failed));
    }
    Ok(())
}

/// A count of failures, the library's against the floor's.
fn failed_row(scenario: &str, metric: &str, failed: usize, floor_failed: usize) -> Row {
    Row::new(scenario, metric, "count", failed as f64, Some(floor_failed as f64), Better::Lower)
}

fn latency_rows(scenario: &str, what: &str, library: &mut [f64], floor: &mut [f64], rows: &mut Vec<Row>) {
    library.sort_by(f64::total_cmp);
    floor.sort_by(f64::total_cmp);
    for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
        let lib = percentile(library, p);
        let flo = percentile(floor, p);
        let mut row = Row::new(scenario, &format!("{what} {name}"), "ms", lib, Some(flo), Better::Lower);
        if name == "p99" {
            let ratio = row.ratio.unwrap_or(f64::INFINITY);
            row = row.target("≤ 1.25× floor", ratio <= 1.25);
        }
        rows.push(row);
    }
}

/// Stamped agent messages to every conversation: every agent joins first, then the
/// messages go out round by round at the driver's pace (the emulator stamps each when it
/// sends it).
pub(crate) async fn agent_messages(remote: &Arc<Remote>, per_conversation: usize) -> Result<usize, String> {
    let conversations = remote.conversations().await?;
    let ids: Arc<Vec<String>> =
        Arc::new(conversations.iter().filter_map(|c| c["id"].as_str().map(str::to_owned)).collect());
    let count = ids.len();
    let joined = many(count, 16, |i| {
        let remote = remote.clone();
        let ids = ids.clone();
        async move { remote.act(&ids[i], &json!({ "action": "joined", "agent": "Ann" })).await }
    })
    .await;
    joined.into_iter().collect::<Result<Vec<()>, String>>()?;
    let mut sends = Vec::with_capacity(count * per_conversation);
    for round in 0..per_conversation {
        for i in 0..count {
            let (remote, ids) = (remote.clone(), ids.clone());
            sends.push(tokio::spawn(async move {
                let action = json!({ "action": "message", "agent": "Ann", "text": "agent-msg", "stamp": true });
                remote.act(&ids[i], &action).await
            }));
            pace(round * count + i).await;
        }
    }
    for send in sends {
        send.await.map_err(|e| e.to_string())??;
    }
    Ok(count * per_conversation)
}

pub(crate) async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Messages go out at 2,000 per second (10 every 5 ms), the same pace for the library and
/// the floor, so the latency is the relay's and not a queue of the driver's making.
pub(crate) async fn pace(i: usize) {
    if i % 10 == 9 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The emulator's latencies of stamped customer messages, once there are `count`.
async fn customer_latencies(remote: &Remote, count: usize) -> Result<Vec<f64>, String> {
    let mut all = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while all.len() < count && Instant::now() < deadline {
        let stats = remote.stats().await?;
        all.extend(
            stats["customer_latencies_us"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .map(|us| us as f64 / 1000.0),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(all)
}

/// Scenario 2: relay latency at `n` open MIAW sessions, through the node runtime. `rounds` runs of
/// the library and the floor, alternating, their samples pooled: sub-millisecond tails on a
/// shared 2-core machine move between runs, and alternation spreads the drift over both.
pub(crate) async fn relay(n: usize, rounds: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let scenario = format!("2. relay at {n} sessions (MIAW), {rounds} rounds");
    let (mut lib_agent, mut lib_user, mut floor_agent, mut floor_user) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (agent, user) = relay_library(n).await?;
        lib_agent.extend(agent);
        lib_user.extend(user);
        let (agent, user) = relay_floor(n).await?;
        floor_agent.extend(agent);
        floor_user.extend(user);
    }
    latency_rows(&scenario, "agent → user", &mut lib_agent, &mut floor_agent, rows);
    latency_rows(&scenario, "user → agent", &mut lib_user, &mut floor_user, rows);
    Ok(())
}

/// Stamped agent messages per conversation in a relay round.
const RELAY_PER_CONVERSATION: usize = 5;

/// One library round: agent → user and user → agent latencies in ms.
pub(crate) async fn relay_library(n: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
    let per = RELAY_PER_CONVERSATION;
    // The library, each handover in a node runtime.
    let remote = Arc::new(Remote::spawn("miaw").await?);
    let provider = build("miaw", remote.table(json!({}))?)?;
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shutdown = CancellationToken::new();
    let mut inputs = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..n {
        let (input_tx, input_rx) = mpsc::channel::<NodeInput>(8);
        let (output_tx, mut output_rx) = mpsc::channel::<NodeOutput>(64);
        inputs.push(input_tx);
        let provider = provider.clone();
        let token = shutdown.clone();
        nodes.push(tokio::spawn(async move {
            // The accepted message is said once the provider session has started.
            let mut config = NodeConfig::default();
            config.accepted_message = "accepted".to_owned();
            Node::new(config).run(provider.as_ref(), request(i, Vec::new()), input_rx, output_tx, token).await
        }));
        let latencies = latencies.clone();
        let started = started.clone();
        tokio::spawn(async move {
            let mut first = true;
            while let Some(output) = output_rx.recv().await {
                if first {
                    first = false;
                    started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                if let NodeOutput::AgentMessage { text, .. } = output {
                    let found = floor::stamps(&text, "agent-msg @", now_us());
                    lock(&latencies).extend(found);
                }
            }
        });
        if i % 100 == 99 {
            tokio::task::yield_now().await;
        }
    }
    wait_for("the library's handovers to start", Duration::from_secs(120), || {
        started.load(std::sync::atomic::Ordering::SeqCst) >= n
    })
    .await?;
    let sent = agent_messages(&remote, per).await?;
    wait_for("the agent messages", Duration::from_secs(60), || lock(&latencies).len() >= sent).await?;
    let lib_agent = std::mem::take(&mut *lock(&latencies));
    let _ = remote.stats().await?;
    for (i, input) in inputs.iter().enumerate() {
        let _ = input.send(NodeInput::Message { text: format!("user-msg @{}", now_us()), id: None }).await;
        pace(i).await;
    }
    let lib_user = customer_latencies(&remote, n).await?;
    shutdown.cancel();
    for node in nodes {
        let _ = node.await;
    }
    drop(provider);
    if let Ok(remote) = Arc::try_unwrap(remote) {
        remote.stop().await;
    }

    Ok((lib_agent, lib_user))
}

/// One floor round: agent → user and user → agent latencies in ms.
async fn relay_floor(n: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
    let per = RELAY_PER_CONVERSATION;
    // The floor.
    let remote = Arc::new(Remote::spawn("miaw").await?);
    let http = floor::client();
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let opened = many(n, 200, |_| {
        let http = http.clone();
        let remote = remote.clone();
        let latencies = latencies.clone();
        async move { MiawFloor::open(&http, &remote, &[], latencies).await }
    })
    .await;
    let floors: Vec<MiawFloor> = opened.into_iter().collect::<Result<_, _>>()?;
    let sent = agent_messages(&remote, per).await?;
    wait_for("the floor's agent messages", Duration::from_secs(60), || lock(&latencies).len() >= sent).await?;
    let floor_agent = std::mem::take(&mut *lock(&latencies));
    let _ = remote.stats().await?;
    let floors = Arc::new(floors);
    for i in 0..n {
        let (http, remote, floors) = (http.clone(), remote.clone(), floors.clone());
        let text = format!("user-msg @{}", now_us());
        tokio::spawn(async move { floors[i].send(&http, &remote, &text).await });
        pace(i).await;
    }
    let floor_user = customer_latencies(&remote, n).await?;
    drop(floors);
    if let Ok(remote) = Arc::try_unwrap(remote) {
        remote.stop().await;
    }

    Ok((floor_agent, floor_user))
}

/// Scenario 3: handovers started per second, with the transcript in 3 chunks.
pub(crate) async fn start_throughput(count: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let parallel = 32;
    for (name, chunk) in [("miaw", 3000), ("genesys", 2000)] {
        let scenario = format!("3. start throughput ({name}, {count} handovers)");
        let entries = transcript(chunk, 3);

        let (lib_rate, lib_auth, failed) = library_starts(name, count, parallel, &entries).await?;

        let remote = Arc::new(Remote::spawn(name).await?);
        let http = floor::client();
        let chunks = Arc::new(transcript_chunks(&entries, chunk));
        let tokens_before = remote.counter("token_requests").await?;
        let genesys =
            if name == "genesys" { Some(Arc::new(GenesysFloor::connect(&http, &remote).await?)) } else { None };
        let started = Instant::now();
        let results = many(count, parallel, |_| {
            let http = http.clone();
            let remote = remote.clone();
            let chunks = chunks.clone();
            let genesys = genesys.clone();
            async move {
                match genesys {
                    Some(genesys) => genesys.handover(&http, &remote, &chunks).await,
                    None => MiawFloor::open(&http, &remote, &chunks, Arc::default()).await.map(drop),
                }
            }
        })
        .await;
        let elapsed = started.elapsed().as_secs_f64();
        let floor_failed = results.iter().filter(|r| r.is_err()).count();
        let floor_rate = (count - floor_failed) as f64 / elapsed;
        let floor_auth = (remote.counter("token_requests").await? - tokens_before) as f64 * 1000.0 / count as f64;
        drop(genesys);
        if let Ok(remote) = Arc::try_unwrap(remote) {
            remote.stop().await;
        }

        let rate = Row::new(&scenario, "handovers started", "per s", lib_rate, Some(floor_rate), Better::Higher);
        let within = rate.ratio.is_some_and(|r| r <= 1.25);
        rows.push(rate.target("≤ 1.25× floor", within));
        rows.push(Row::new(
            &scenario,
            "auth requests per 1,000 handovers",
            "count",
            lib_auth,
            Some(floor_auth),
            Better::Lower,
        ));
        rows.push(failed_row(&scenario, "failed starts", failed, floor_failed));
    }
    Ok(())
}

/// The library's start rate for `name` against a fresh emulator process: `count` starts,
/// `parallel` at once, each with `entries` as transcript; (per s, auth requests per 1,000,
/// failed).
async fn library_starts(
    name: &str,
    count: usize,
    parallel: usize,
    entries: &[TranscriptEntry],
) -> Result<(f64, f64, usize), String> {
    let remote = Arc::new(Remote::spawn(name).await?);
    let provider = build(name, remote.table(json!({}))?)?;
    let tokens_before = remote.counter("token_requests").await?;
    let started = Instant::now();
    let results = many(count, parallel, |i| {
        let provider = provider.clone();
        let entries = entries.to_vec();
        async move { provider.start(request(i, entries)).await.map(drop).map_err(|e| e.to_string()) }
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(error)) = results.iter().find(|r| r.is_err()) {
        eprintln!("bench: a {name} start failed: {error}");
    }
    let rate = (count - failed) as f64 / elapsed;
    let auth = (remote.counter("token_requests").await? - tokens_before) as f64 * 1000.0 / count as f64;
    drop(provider);
    if let Ok(remote) = Arc::try_unwrap(remote) {
        remote.stop().await;
    }
    Ok((rate, auth, failed))
}

/// The library's start rate without a transcript (for scenario 6's comparison).
pub(crate) async fn library_start_rate(
    name: &str,
    count: usize,
    parallel: usize,
    _chunks: usize,
) -> Result<(f64, usize), String> {
    let (rate, _, failed) = library_starts(name, count, parallel, &[]).await?;
    Ok((rate, failed))
}

/// Scenario 4: N Salesforce Chat sessions long-polling: polls per second and CPU.
pub(crate) async fn long_poll(n: usize, window: Duration, rows: &mut Vec<Row>) -> Result<(), String> {
    let scenario = format!("4. long-poll fleet ({n} Salesforce Chat sessions)");
    let remote = Remote::spawn("salesforce").await?;
    let provider = build("salesforce", remote.table(json!({}))?)?;
    let started = many(n, 200, |i| {
        let provider = provider.clone();
        async move { provider.start(request(i, Vec::new())).await }
    })
    .await;
    let failed = started.iter().filter(|s| s.is_err()).count();
    let sessions: Vec<_> = started.into_iter().flatten().collect();
    let (lib_polls, lib_cpu) = poll_rate(&remote, window).await?;
    drop(sessions);
    drop(provider);
    remote.stop().await;

    let remote = Remote::spawn("salesforce").await?;
    let http = floor::client();
    let config = remote.config.clone();
    let base = remote.url.clone();
    let opened = many(n, 200, |_| floor::salesforce_visitor(http.clone(), base.clone(), config.clone())).await;
    let floor_failed = opened.iter().filter(|s| s.is_err()).count();
    let visitors: Vec<_> = opened.into_iter().flatten().collect();
    let (floor_polls, floor_cpu) = poll_rate(&remote, window).await?;
    for visitor in visitors {
        visitor.abort();
    }
    remote.stop().await;

    rows.push(Row::new(&scenario, "polls", "per s", lib_polls, Some(floor_polls), Better::Higher));
    rows.push(Row::new(&scenario, "client CPU", "% of a core", lib_cpu, Some(floor_cpu), Better::Lower));
    rows.push(failed_row(&scenario, "sessions failed to start", failed, floor_failed));
    Ok(())
}

async fn poll_rate(remote: &Remote, window: Duration) -> Result<(f64, f64), String> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let polls = remote.counter("polls").await?;
    let cpu = cpu_secs();
    tokio::time::sleep(window).await;
    let polls = (remote.counter("polls").await? - polls) as f64 / window.as_secs_f64();
    let cpu = (cpu_secs() - cpu) * 100.0 / window.as_secs_f64();
    Ok((polls, cpu))
}

/// Scenario 5: signed webhooks through verify + dedup + route, on one core (a current-thread
/// runtime on its own thread). `rounds` alternating runs; the median rate of each side.
pub(crate) fn ingest(count: usize, rounds: usize, rows: &mut Vec<Row>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        for name in ["genesys", "8x8"] {
            let scenario = format!("5. webhook ingest ({name}, one core), median of {rounds}");
            let remote = Remote::spawn(name).await?;
            let provider = build(name, remote.table(json!({}))?)?;
            let mut session = provider.start(request(0, Vec::new())).await.map_err(|e| e.to_string())?;
            let conversation = remote.conversations().await?.into_iter().next().ok_or("no conversation")?;
            let drain = tokio::spawn(async move { while session.events().recv().await.is_some() {} });
            let (mut lib_rates, mut floor_rates, mut refused) = (Vec::new(), Vec::new(), 0);
            for round in 0..rounds {
                // Fresh event ids every round, so deduplication never short-cuts the work.
                let first = round * (count + 1);
                let deliveries = match name {
                    "genesys" => genesys_deliveries(&remote, &conversation, first, count),
                    _ => eightbyeight_deliveries(&conversation, first, count),
                };
                // Warm up (the 8x8 key is fetched once) with a delivery of its own.
                let _ = provider.webhook(deliveries.1).await;
                let started = Instant::now();
                for request in deliveries.0 {
                    if provider.webhook(request).await.status != 200 {
                        refused += 1;
                    }
                }
                lib_rates.push(count as f64 / started.elapsed().as_secs_f64());
                floor_rates.push(match name {
                    "genesys" => genesys_floor(&remote, &conversation, first, count),
                    _ => eightbyeight_floor(&conversation, first, count),
                }?);
            }
            drain.abort();
            remote.stop().await;
            let (lib_rate, floor_rate) = (median(&mut lib_rates), median(&mut floor_rates));
            let rate = Row::new(&scenario, "verified deliveries", "per s", lib_rate, Some(floor_rate), Better::Higher);
            rows.push(rate.target("≥ 20,000 per s", lib_rate >= 20_000.0));
            rows.push(Row::new(&scenario, "refused", "count", f64::from(refused), None, Better::Lower));
        }
        Ok(())
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(values, 50.0)
}

type Deliveries = (Vec<WebhookRequest>, WebhookRequest);

fn genesys_body(conversation: &Value, i: usize) -> Vec<u8> {
    json!({
        "id": format!("gm-{i}"),
        "channel": {
            "id": "integration", "platform": "Open", "type": "Private", "messageId": format!("gm-{i}"),
            "to": { "id": conversation["owner"], "idType": "Opaque" },
            "from": { "id": "integration", "idType": "Opaque", "nickname": "Acme" },
            "time": "2026-01-21T16:47:08.592Z",
        },
        "direction": "Outbound", "conversationId": conversation["id"], "type": "Text",
        "text": format!("message {i}"), "originatingEntity": "Human",
    })
    .to_string()
    .into_bytes()
}

fn genesys_deliveries(remote: &Remote, conversation: &Value, first: usize, count: usize) -> Deliveries {
    let secret = remote.config["webhook_secret"].as_str().unwrap_or_default().as_bytes().to_vec();
    let sign = |body: Vec<u8>| {
        let signature = handover::genesys::webhook::sign(&secret, &body);
        WebhookRequest::post(body).with_header("x-hub-signature-256", signature)
    };
    let deliveries = (first..first + count).map(|i| sign(genesys_body(conversation, i))).collect();
    (deliveries, sign(genesys_body(conversation, first + count)))
}

fn genesys_floor(remote: &Remote, conversation: &Value, first: usize, count: usize) -> Result<f64, String> {
    use handover_transport::signature::{self, Algorithm, Encoding};
    let secret = remote.config["webhook_secret"].as_str().unwrap_or_default().as_bytes().to_vec();
    let bodies: Vec<(Vec<u8>, String)> = (first..first + count)
        .map(|i| {
            let body = genesys_body(conversation, i);
            let signature = signature::sign(Algorithm::Sha256, Encoding::Base64, &secret, &body);
            (body, signature)
        })
        .collect();
    let (tx, mut rx) = mpsc::channel::<Value>(1024);
    let mut seen = HashSet::new();
    let started = Instant::now();
    for (body, given) in bodies {
        signature::verify(Algorithm::Sha256, Encoding::Base64, &secret, &body, Some(&given))
            .map_err(|e| e.to_string())?;
        let json: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if seen.insert(json["id"].as_str().unwrap_or_default().to_owned()) {
            let _ = tx.try_send(json);
            while rx.try_recv().is_ok() {}
        }
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

fn eightbyeight_body(conversation: &Value, i: usize) -> Vec<u8> {
    json!({
        "eventType": "MESSAGE", "conversationId": conversation["id"], "timestamp": 1_713_100_000_000u64,
        "data": { "isEcho": false, "sender": { "id": "agent-ann", "type": "agent" }, "text": format!("message {i}") },
    })
    .to_string()
    .into_bytes()
}

fn bench_key() -> handover_emulator::eightbyeight::SigningKey {
    handover_emulator::eightbyeight::SigningKey::generate_seeded("emulator-key-1", KEY_SEED.parse().unwrap_or(1))
}

fn eightbyeight_deliveries(conversation: &Value, first: usize, count: usize) -> Deliveries {
    use handover_emulator::eightbyeight::DeliveryMeta;
    let key = bench_key();
    let sign = |body: Vec<u8>, event: String| {
        let headers = key.headers(&body, &DeliveryMeta::new(event));
        headers.into_iter().fold(WebhookRequest::post(body), |r, (k, v)| r.with_header(&k, v))
    };
    let deliveries =
        (first..first + count).map(|i| sign(eightbyeight_body(conversation, i), format!("ev-{i}"))).collect();
    (deliveries, sign(eightbyeight_body(conversation, first + count), format!("ev-{}", first + count)))
}

fn eightbyeight_floor(conversation: &Value, first: usize, count: usize) -> Result<f64, String> {
    use base64::Engine as _;
    use handover_emulator::eightbyeight::DeliveryMeta;
    let key = bench_key();
    let jwk = key.jwk();
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap_or_default(),
        jwk["e"].as_str().unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    let signed: Vec<(Vec<u8>, DeliveryMeta, String)> = (first..first + count)
        .map(|i| {
            let body = eightbyeight_body(conversation, i);
            let meta = DeliveryMeta::new(format!("ev-{i}"));
            let signature = key.sign(&body, &meta);
            (body, meta, signature)
        })
        .collect();
    let (tx, mut rx) = mpsc::channel::<Value>(1024);
    let mut seen = HashSet::new();
    let started = Instant::now();
    for (body, meta, signature) in signed {
        let (header, rest) = signature.split_once("..").ok_or("not detached")?;
        let _header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let payload = meta.payload(&body);
        let input = format!("{header}.{payload}");
        let ok = jsonwebtoken::crypto::verify(rest, input.as_bytes(), &decoding, jsonwebtoken::Algorithm::RS256)
            .map_err(|e| e.to_string())?;
        if !ok {
            return Err("the floor could not verify".into());
        }
        let json: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if seen.insert(meta.event_id) {
            let _ = tx.try_send(json);
            while rx.try_recv().is_ok() {}
        }
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
