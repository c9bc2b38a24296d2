//! `cargo xtask bench`: the library against hand-written floors, emulators in a separate
//! process on loopback. Prints a table and writes `target/bench/report.json`.
//!
//! ```text
//! handover-bench [--quick] [--only N]... [--out PATH]
//! handover-bench serve <protocol>        (the emulator process)
//! handover-bench server <config.toml>    (a `handover serve` process)
//! handover-bench hold <library|floor> <n> <idle s> [miaw|genesys|salesforce]
//!                                        (scenario 1's measuring process)
//! ```

// A command-line report: the table goes to stdout, progress to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod floor;
mod remote;
mod report;
mod scenarios;
mod service;
mod sys;

use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    sys::raise_nofile();
    if args.first().map(String::as_str) == Some("serve") {
        return match remote::serve(args.get(1).map_or("miaw", String::as_str)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("bench serve: {error}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some("hold") {
        return hold(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("server") {
        return match service::server_main(args.get(1).map_or("", String::as_str)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("bench server: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only: Vec<u32> = args.windows(2).filter(|w| w[0] == "--only").filter_map(|w| w[1].parse().ok()).collect();
    let out = args.windows(2).find(|w| w[0] == "--out").map_or("target/bench/report.json".to_owned(), |w| w[1].clone());
    let wanted = |n: u32| only.is_empty() || only.contains(&n);

    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut run = |name: &str, result: Result<(), String>| {
        if let Err(error) = result {
            eprintln!("bench: {name} failed: {error}");
            failures.push(format!("{name}: {error}"));
        }
    };
    let (sizes, idle, relay_n, starts, pollers, window, deliveries, rounds): (&[usize], _, _, _, _, _, _, _) = if quick
    {
        (&[200, 500], Duration::from_secs(3), 100, 100, 200, Duration::from_secs(4), 2_000, 1)
    } else {
        (&[1_000, 5_000, 10_000], Duration::from_secs(15), 1_000, 1_000, 2_000, Duration::from_secs(10), 20_000, 3)
    };
    if wanted(1) {
        let held = scenarios::HeldSizes { sse: sizes, push: if quick { 500 } else { 5_000 }, long_poll: pollers };
        eprintln!(
            "bench: 1. held sessions: MIAW on SSE {sizes:?}, {} Genesys on webhooks, {} Salesforce Chat on long-poll",
            held.push, held.long_poll
        );
        run("sessions", runtime.block_on(scenarios::sessions(&held, idle, &mut rows)));
    }
    if wanted(2) {
        eprintln!("bench: 2. relay latency at {relay_n} sessions");
        run("relay", runtime.block_on(scenarios::relay(relay_n, rounds, &mut rows)));
    }
    if wanted(3) {
        eprintln!("bench: 3. start throughput, {starts} handovers");
        run("start throughput", runtime.block_on(scenarios::start_throughput(starts, &mut rows)));
    }
    if wanted(4) {
        eprintln!("bench: 4. long-poll fleet of {pollers}");
        run("long poll", runtime.block_on(scenarios::long_poll(pollers, window, &mut rows)));
    }
    if wanted(5) {
        eprintln!("bench: 5. webhook ingest, {deliveries} deliveries");
        run("ingest", scenarios::ingest(deliveries, rounds, &mut rows));
    }
    let (api_starts, api_relay, held, appends, takeovers, fleet) =
        if quick { (100, 100, 300, 1_000, 20, 60) } else { (1_000, 1_000, 10_000, 10_000, 200, 600) };
    if wanted(6) {
        eprintln!("bench: 6. starts through the API, {api_starts} handovers");
        run("api starts", runtime.block_on(service::api_starts(api_starts, &mut rows)));
    }
    if wanted(7) {
        eprintln!("bench: 7. agent → bot through the service at {api_relay} handovers");
        run("api relay", runtime.block_on(service::api_relay(api_relay, &mut rows)));
    }
    if wanted(8) {
        eprintln!("bench: 8. {held} handovers held by one instance");
        run("held", runtime.block_on(service::held(held, idle, &mut rows)));
    }
    if wanted(9) {
        eprintln!("bench: 9. event appends, {appends} commits");
        let handovers = if quick { 100 } else { 1_000 };
        run("appends", runtime.block_on(service::appends(appends, handovers, &mut rows)));
    }
    if wanted(10) {
        eprintln!("bench: 10. takeover of {takeovers} handovers");
        run("takeover", runtime.block_on(service::takeover(takeovers, &mut rows)));
    }
    if wanted(11) {
        eprintln!("bench: 11. a fleet of 3 instances under load, {fleet} handovers");
        run("fleet load", runtime.block_on(service::fleet_load(fleet, &mut rows)));
    }
    drop(runtime);

    println!("{}", report::table(&rows));
    println!(
        "ratio: the library's cost over the floor's (1.00× = as cheap as the floor); {} mode, {:.0} s",
        if quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64()
    );
    let report = serde_json::json!({
        "mode": if quick { "quick" } else { "full" },
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "rows": rows,
        "failures": failures,
    });
    if let Some(dir) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(error) = std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap_or_default()) {
        eprintln!("bench: cannot write {out}: {error}");
    }
    if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `hold <library|floor> <n> <idle s> [miaw|genesys|salesforce]`: scenario 1's measuring
/// process (MIAW unless another protocol is named).
fn hold(args: &[String]) -> ExitCode {
    let kind = args.first().map_or("library", String::as_str);
    let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1_000);
    let idle = Duration::from_secs(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10));
    let protocol = args.get(3).map_or("miaw", String::as_str);
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| runtime.block_on(scenarios::hold(protocol, kind, n, idle)));
    match result {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("{}", serde_json::json!({ "error": error }));
            ExitCode::FAILURE
        }
    }
}
