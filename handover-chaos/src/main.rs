//! `cargo xtask chaos`: every provider against its emulator under every fault the emulator
//! can inject, one scripted handover per cell. A cell passes when every agent message the
//! provider should deliver arrives once, nothing forged or repeated arrives, the user's
//! message reaches the agent side once, and the handover ends with the right status.
//!
//! With `--fleet`, the fleet matrix instead: three `handover serve` processes (the binary
//! in `HANDOVER_BIN`) on one store, SQLite and PostgreSQL (`DATABASE_URL`), under process,
//! network and database faults (see `fleet.rs`).
//!
//! ```text
//! handover-chaos [--quick] [--fleet [--store sqlite|postgres]...] [--provider NAME]... [--json PATH]
//! ```

// A command-line report: the table goes to stdout, failures to stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod cell;
mod fleet;

use cell::{Fault, Outcome, Protocol};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut quick = false;
    let mut only: Vec<String> = Vec::new();
    let mut json_path: Option<String> = None;
    let mut fleet = false;
    let mut stores = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--provider" => only.extend(args.next()),
            "--json" => json_path = args.next(),
            "--fleet" => fleet = true,
            "--store" => match args.next().as_deref() {
                Some("sqlite") => stores.push(fleet::StoreKind::Sqlite),
                Some("postgres") => stores.push(fleet::StoreKind::Postgres),
                other => {
                    eprintln!("error: --store takes sqlite or postgres, not {other:?}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{HELP}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("error: unknown argument `{other}`; try --help");
                return ExitCode::from(2);
            }
        }
    }
    let protocols: Vec<Protocol> =
        Protocol::all().into_iter().filter(|p| only.is_empty() || only.iter().any(|o| o == p.name)).collect();
    if protocols.is_empty() {
        eprintln!("error: no such provider; expected one of {:?}", Protocol::all().map(|p| p.name));
        return ExitCode::from(2);
    }
    if fleet {
        if stores.is_empty() {
            stores = vec![fleet::StoreKind::Sqlite, fleet::StoreKind::Postgres];
        }
        return run_fleet(&fleet::Settings { quick, protocols, stores }, json_path.as_deref()).await;
    }
    let messages = if quick { 3 } else { 8 };
    let started = Instant::now();
    // A few cells at a time: each holds an emulator, a provider and sometimes a webhook
    // server; the machine has two cores.
    let permits = Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = Vec::new();
    for protocol in &protocols {
        for fault in Fault::ALL {
            let protocol = protocol.clone();
            let permits = permits.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let outcome = if fault.applies_to(&protocol) {
                    match tokio::time::timeout(Duration::from_secs(90), cell::run(&protocol, fault, messages)).await {
                        Ok(outcome) => outcome,
                        Err(_) => Outcome::failed("the cell did not finish within 90 s"),
                    }
                } else {
                    Outcome::not_applicable()
                };
                (protocol.name, fault, outcome)
            }));
        }
    }
    let mut results: BTreeMap<(&'static str, usize), Outcome> = BTreeMap::new();
    for task in tasks {
        match task.await {
            Ok((name, fault, outcome)) => {
                results.insert((name, fault.index()), outcome);
            }
            Err(error) => {
                eprintln!("error: a cell panicked: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    print_table(&protocols, &results);
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, o)| !o.pass)
        .map(|((name, fault), o)| format!("{name} / {}: {}", Fault::ALL[*fault].label(), o.note))
        .collect();
    println!(
        "\n{} cells, {} not applicable, {} failed, in {:.1} s ({} messages per cell)",
        results.len(),
        results.values().filter(|o| o.not_applicable).count(),
        failed.len(),
        started.elapsed().as_secs_f64(),
        messages
    );
    if let Some(path) = json_path {
        let report: Vec<serde_json::Value> = results
            .iter()
            .map(|((name, fault), o)| {
                serde_json::json!({ "provider": name, "fault": Fault::ALL[*fault].label(), "outcome": o })
            })
            .collect();
        if let Err(error) = std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap_or_default()) {
            eprintln!("error: cannot write {path}: {error}");
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for failure in failed {
            eprintln!("FAILED {failure}");
        }
        ExitCode::FAILURE
    }
}

const HELP: &str = "\
handover-chaos [--quick] [--fleet [--store sqlite|postgres]...] [--provider NAME]... [--json PATH]

  (default)   every provider against its emulator under every fault, one handover per cell
  --fleet     three `handover serve` processes (HANDOVER_BIN) on one store under process,
              network and database faults; PostgreSQL from DATABASE_URL, restarted with the
              command in HANDOVER_CHAOS_PG_RESTART (`cargo xtask chaos --fleet` sets all three)
  --store     the fleet's stores (default: both)
  --quick     fewer messages per cell (and a 3 s callback outage instead of 30 s)
  --provider  only these providers
  --json      also write the outcomes as JSON";

/// The fleet matrix: prints the table, writes the JSON, fails on any failed cell.
async fn run_fleet(settings: &fleet::Settings, json_path: Option<&str>) -> ExitCode {
    let started = Instant::now();
    let matrix = match fleet::run(settings).await {
        Ok(matrix) => matrix,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    fleet::print_table(settings, &matrix);
    let failed: Vec<String> = matrix
        .cells
        .iter()
        .filter(|(_, o)| !o.pass)
        .map(|((name, store, fault), o)| {
            format!("{name} / {store:?} / {}: {}", fleet::FleetFault::ALL[*fault].label(), o.note)
        })
        .collect();
    println!(
        "\n{} cells, {} not applicable, {} failed, in {:.1} s",
        matrix.cells.len(),
        matrix.cells.values().filter(|o| o.not_applicable.is_some()).count(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = json_path {
        let cells: Vec<serde_json::Value> = matrix
            .cells
            .iter()
            .map(|((name, store, fault), o)| {
                serde_json::json!({ "provider": name, "store": format!("{store:?}"), "fault": fleet::FleetFault::ALL[*fault].label(), "outcome": o })
            })
            .collect();
        let report = serde_json::json!({ "cells": cells, "runs": matrix.runs });
        if let Err(error) = std::fs::write(path, serde_json::to_string_pretty(&report).unwrap_or_default()) {
            eprintln!("error: cannot write {path}: {error}");
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for failure in failed {
            eprintln!("FAILED {failure}");
        }
        ExitCode::FAILURE
    }
}

fn print_table(protocols: &[Protocol], results: &BTreeMap<(&'static str, usize), Outcome>) {
    let mut header = String::from("| provider |");
    let mut rule = String::from("|---|");
    for fault in Fault::ALL {
        header.push_str(&format!(" {} |", fault.label()));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    for protocol in protocols {
        let mut row = format!("| {} |", protocol.name);
        for fault in Fault::ALL {
            let cell = results.get(&(protocol.name, fault.index())).map_or_else(|| "?".to_owned(), Outcome::cell);
            row.push_str(&format!(" {cell} |"));
        }
        println!("{row}");
    }
    println!(
        "\ncell: delivered/expected agent messages, duplicates, the user's message at the agent side, final status, \
         and in the duplicate and resume columns the files that crossed (+files: a = the agent's file arrived with \
         its message, u = the user's file reached the agent once) (n/a: the protocol has no such fault)"
    );
}
