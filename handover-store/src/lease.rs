//! Holding a lease: acting only while it is surely still ours.

use std::time::Duration;

use tokio::time::Instant;

use crate::{Lease, Store, StoreResult};

/// A lease and the holder's own deadline.
///
/// The store decides expiry on its own clock; the holder cannot see that clock, so it
/// keeps a deadline on its monotonic clock measured from *before* the request that granted
/// or renewed the lease: whatever the request's latency, the store's expiry is no earlier.
/// When renewing fails (the store is unreachable), the deadline stays, and the holder stops
/// acting at it: by then another instance may hold the lease.
#[derive(Clone, Debug)]
pub struct LeaseHolder {
    lease: Lease,
    ttl: Duration,
    deadline: Instant,
}

impl LeaseHolder {
    /// Holds `lease`, granted for `ttl` by a request sent at `sent_at`.
    pub fn new(lease: Lease, ttl: Duration, sent_at: Instant) -> Self {
        Self { lease, ttl, deadline: sent_at + ttl }
    }

    /// The lease (to fence writes with).
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Whether the holder may still act.
    pub fn is_live(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// When the holder must stop acting, unless renewed.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// When to renew next: a third of the TTL after the last grant (DESIGN.md §7.1).
    pub fn renew_at(&self) -> Instant {
        self.deadline - self.ttl + self.ttl / 3
    }

    /// Renews the lease; on success the deadline moves to `ttl` after this call was sent.
    /// A failed renew leaves the deadline as it was; a fenced one means the lease is gone.
    pub async fn renew(&mut self, store: &dyn Store) -> StoreResult<()> {
        let sent_at = Instant::now();
        self.lease = store.renew(&self.lease, self.ttl).await?;
        self.deadline = sent_at + self.ttl;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_renew_leaves_the_deadline_and_the_holder_stops_at_it() {
        let store = crate::open("sqlite::memory:", crate::Sealer::plaintext()).await.unwrap();
        let ttl = Duration::from_millis(600);
        let sent_at = Instant::now();
        let created = store.create(crate::NewHandover::new("h1", "p", serde_json::json!({})), "a", ttl).await.unwrap();
        let mut holder = LeaseHolder::new(created.lease.unwrap(), ttl, sent_at);
        assert_eq!(holder.renew_at(), sent_at + Duration::from_millis(200));
        let before = Instant::now();
        holder.renew(store.as_ref()).await.unwrap();
        assert!(holder.deadline() >= before + ttl && holder.deadline() <= Instant::now() + ttl);
        let renewed = holder.deadline();
        // Another instance takes over: the renew is fenced, the deadline does not move.
        store.release(holder.lease()).await.unwrap();
        store.claim_orphans("b", ttl, 1).await.unwrap();
        assert!(holder.renew(store.as_ref()).await.unwrap_err().is_fenced());
        assert_eq!(holder.deadline(), renewed);
        assert!(holder.is_live());
        tokio::time::sleep_until(renewed).await;
        assert!(!holder.is_live(), "the holder stops at its own deadline");
    }
}
