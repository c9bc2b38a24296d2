//! A load of owner commits for profiling the store's writer: `handovers` handovers, each
//! committing `rounds` single-event commits with a snapshot, all at once.
//!
//! ```text
//! cargo run --release -p handover-store --example commit_load -- sqlite 1000 3
//! ```

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use handover_store::{Commit, NewEvent, NewHandover, Sealer};
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = match args.first().map(String::as_str) {
        Some("postgres") => {
            std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
        }
        _ => format!("sqlite://{}/load-{}.db", std::env::temp_dir().display(), std::process::id()),
    };
    let handovers: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(3);
    let store = handover_store::open(&url, Sealer::new(&[1; 32])).await.unwrap();
    let mut leases = Vec::new();
    for n in 0..handovers {
        let created = store
            .create(
                NewHandover::new(format!("h{n}-{}", std::process::id()), "miaw", json!({})),
                "a",
                Duration::from_secs(600),
            )
            .await
            .unwrap();
        leases.push(created.lease.unwrap());
    }
    let snapshot = vec![b'x'; 1200];
    let started = Instant::now();
    let tasks: Vec<_> = leases
        .into_iter()
        .map(|lease| {
            let store = store.clone();
            let snapshot = snapshot.clone();
            tokio::spawn(async move {
                let mut worst = Duration::ZERO;
                for round in 0..rounds {
                    let t = Instant::now();
                    let commit = Commit::new()
                        .event(NewEvent::with_id(
                            format!("agent:{round}"),
                            json!({ "type": "agent_message", "text": "hello", "agent": "Ann" }),
                        ))
                        .snapshot(snapshot.clone())
                        .node_state(json!({ "active": true }));
                    store.commit(&lease, commit).await.unwrap();
                    worst = worst.max(t.elapsed());
                }
                worst
            })
        })
        .collect();
    let mut worst = Vec::new();
    for task in tasks {
        worst.push(task.await.unwrap());
    }
    let took = started.elapsed();
    worst.sort();
    println!(
        "{} commits in {:.3} s: {:.0} per s; worst per handover p50 {:?} p99 {:?}",
        handovers * rounds,
        took.as_secs_f64(),
        (handovers * rounds) as f64 / took.as_secs_f64(),
        worst[worst.len() / 2],
        worst[worst.len() * 99 / 100]
    );
    let _ = Arc::strong_count(&store);
}
