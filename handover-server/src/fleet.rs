//! What keeps an instance's share of the fleet: the lease keeper (one write renews every
//! lease it holds), the claimer (orphaned handovers), the work poll (the backstop behind
//! the store's hints) and the hint dispatcher.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use handover_store::{ChangeKind, Lease, POLL_BACKSTOP};
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::{App, RunnerEntry, lock};

/// Starts the instance's background work.
pub(crate) fn spawn(app: Arc<App>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(dispatch_hints(app.clone())),
        tokio::spawn(keep_leases(app.clone())),
        tokio::spawn(claim(app.clone())),
        tokio::spawn(poll_work(app)),
    ]
}

/// Starts the runner of a handover this instance was just granted, unless one runs it
/// already with this epoch or a newer one.
pub(crate) fn run(app: &Arc<App>, lease: Lease, known: Option<handover_store::HandoverRecord>) {
    let work = Arc::new(Notify::new());
    let lost = CancellationToken::new();
    {
        let mut runners = lock(&app.runners);
        if let Some(existing) = runners.get(&lease.handover_id) {
            if existing.epoch >= lease.epoch {
                return;
            }
            existing.lost.cancel();
        }
        let now = Instant::now();
        runners.insert(
            lease.handover_id.clone(),
            RunnerEntry {
                work: work.clone(),
                lost: lost.clone(),
                deadline: now + app.config.lease_ttl,
                registered: now,
                epoch: lease.epoch,
            },
        );
        app.metrics.leases(runners.len());
    }
    // Whatever the runner sees first, it looks for work once at its start.
    work.notify_one();
    let app = app.clone();
    tokio::spawn(async move {
        let id = lease.handover_id.clone();
        let epoch = lease.epoch;
        crate::runner::run(app.clone(), lease, known, work, lost).await;
        let mut runners = lock(&app.runners);
        if runners.get(&id).is_some_and(|entry| entry.epoch == epoch) {
            runners.remove(&id);
        }
        app.metrics.leases(runners.len());
    });
}

/// Turns the store's hints into wake-ups.
async fn dispatch_hints(app: Arc<App>) {
    let mut changes = app.store.changes();
    loop {
        match changes.recv().await {
            Ok(change) => match change.kind {
                // A runner of this instance publishes its own commits, with their events.
                ChangeKind::Committed if !lock(&app.runners).contains_key(&change.handover_id) => {
                    app.log_hints.notify(&change.handover_id);
                }
                ChangeKind::Work => {
                    if let Some(runner) = lock(&app.runners).get(&change.handover_id) {
                        runner.work.notify_one();
                    }
                }
                ChangeKind::Released => app.claim_wake.notify_one(),
                _ => {}
            },
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "store hints lagged; waking every reader and runner");
                app.log_hints.notify_all();
                for runner in lock(&app.runners).values() {
                    runner.work.notify_one();
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Renews every lease this instance holds at a third of the TTL, in one write; stops the
/// runners whose lease is gone, and every runner once the store has been unreachable
/// until their deadline (by then a peer may hold their leases).
async fn keep_leases(app: Arc<App>) {
    let ttl = app.config.lease_ttl;
    let mut next_renew = Instant::now() + ttl / 3;
    loop {
        let earliest_deadline = lock(&app.runners).values().map(|r| r.deadline).min();
        let wake = earliest_deadline.map_or(next_renew, |d| d.min(next_renew));
        tokio::time::sleep_until(wake).await;
        let now = Instant::now();
        if now >= next_renew {
            let sent = Instant::now();
            // A store that hangs (a paused database) must not hold the deadline check below.
            let renewed = tokio::time::timeout(ttl / 3, app.store.renew_owned(&app.config.instance_id, ttl))
                .await
                .unwrap_or_else(|_| {
                    Err(handover_store::StoreError::Database(
                        "the renewal took longer than a third of lease_ttl_ms".to_owned(),
                    ))
                });
            match renewed {
                Ok(leases) => {
                    let live: HashSet<&str> = leases.iter().map(|l| l.handover_id.as_str()).collect();
                    let mut runners = lock(&app.runners);
                    for (id, runner) in runners.iter_mut() {
                        if live.contains(id.as_str()) {
                            runner.deadline = runner.deadline.max(sent + ttl);
                        } else if runner.registered < sent && !runner.lost.is_cancelled() {
                            tracing::info!(handover = %id, "the lease was taken over; stopping without ending");
                            app.metrics.fenced();
                            runner.lost.cancel();
                        }
                    }
                    next_renew = sent + ttl / 3;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not renew the leases; retrying");
                    next_renew = Instant::now() + (ttl / 10).max(Duration::from_millis(50));
                }
            }
        }
        let now = Instant::now();
        for (id, runner) in lock(&app.runners).iter() {
            if runner.deadline <= now && !runner.lost.is_cancelled() {
                tracing::warn!(handover = %id, "the lease ran out before it could be renewed; stopping");
                runner.lost.cancel();
            }
        }
    }
}

/// Claims orphaned handovers every `claim_interval_ms`, and at once when a peer releases
/// one (a drain); stops claiming once this instance drains.
async fn claim(app: Arc<App>) {
    const BATCH: u32 = 256;
    loop {
        tokio::select! {
            () = app.draining.cancelled() => return,
            () = tokio::time::sleep(app.config.claim_interval) => {}
            () = app.claim_wake.notified() => {}
        }
        loop {
            if app.draining.is_cancelled() {
                return;
            }
            match app.store.claim_orphans(&app.config.instance_id, app.config.lease_ttl, BATCH).await {
                Ok(leases) => {
                    let claimed = leases.len();
                    if claimed > 0 {
                        tracing::info!(claimed, "claimed orphaned handovers");
                        app.metrics.takeovers(claimed);
                    }
                    for lease in leases {
                        run(&app, lease, None);
                    }
                    if claimed < BATCH as usize {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not look for orphaned handovers");
                    break;
                }
            }
        }
    }
}

/// The backstop behind the hints: every [`POLL_BACKSTOP`], one read finds this instance's
/// handovers with inputs or deliveries waiting (hints from other SQLite processes, or
/// lost ones).
async fn poll_work(app: Arc<App>) {
    loop {
        tokio::time::sleep(POLL_BACKSTOP).await;
        if app.owned() == 0 {
            continue;
        }
        match app.store.pending_work(&app.config.instance_id).await {
            Ok(ids) => {
                let runners = lock(&app.runners);
                for id in ids {
                    if let Some(runner) = runners.get(&id) {
                        runner.work.notify_one();
                    }
                }
            }
            Err(error) => tracing::debug!(%error, "could not poll for work"),
        }
    }
}
