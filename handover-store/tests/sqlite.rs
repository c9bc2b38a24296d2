//! The conformance suite on SQLite: a fresh database file per scenario, shared by the
//! scenario's handles as by several processes of one host.

#![allow(clippy::unwrap_used)] // test harness: a panic is the failure report

use std::path::PathBuf;
use std::sync::Arc;

use handover_store::suite::StoreHarness;
use handover_store::{Sealer, SqlStore, Store, StoreError};
use sqlx::Connection as _;

struct SqliteHarness {
    path: PathBuf,
    store: Arc<dyn Store>,
}

impl SqliteHarness {
    fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    async fn raw(&self) -> sqlx::SqliteConnection {
        sqlx::SqliteConnection::connect(&self.url()).await.unwrap()
    }
}

#[async_trait::async_trait]
impl StoreHarness for SqliteHarness {
    async fn setup(sealer: Sealer) -> Self {
        let path = std::env::temp_dir().join(format!("handover-store-{}.db", uuid::Uuid::new_v4()));
        let store = SqlStore::open(&format!("sqlite://{}", path.display()), sealer).await.unwrap();
        Self { path, store: Arc::new(store) }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn reopen(&self, sealer: Sealer) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(SqlStore::open(&self.url(), sealer).await?))
    }

    async fn insert_quietly(&self, provider: &str, conversation_key: &str, delivery_id: &str, payload: Vec<u8>) {
        sqlx::query(
            "INSERT INTO inbox (provider, conversation_key, delivery_id, payload, received_at) VALUES (?, ?, ?, ?, 0)",
        )
        .bind(provider)
        .bind(conversation_key)
        .bind(delivery_id)
        .bind(payload)
        .execute(&mut self.raw().await)
        .await
        .unwrap();
    }

    async fn plant_newer_migration(&self) {
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99991231000000, 'from the future', 1, X'00', 0)",
        )
        .execute(&mut self.raw().await)
        .await
        .unwrap();
    }

    async fn sealed_at_rest(&self) -> Vec<Vec<u8>> {
        let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
            "SELECT spec FROM handovers UNION ALL SELECT snapshot FROM handovers WHERE snapshot IS NOT NULL \
             UNION ALL SELECT payload FROM inbox",
        )
        .fetch_all(&mut self.raw().await)
        .await
        .unwrap();
        rows.into_iter().map(|(blob,)| blob).collect()
    }

    async fn teardown(self) {
        let path = self.path.clone();
        drop(self);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}

handover_store::store_suite!(SqliteHarness);

#[tokio::test]
async fn an_in_memory_store_works_for_tests() {
    let store = handover_store::open("sqlite::memory:", handover_store::suite::key()).await.unwrap();
    let created = store
        .create(
            handover_store::NewHandover::new("h1", "sales", serde_json::json!({})),
            "a",
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(created.record.state, handover_store::HandoverState::Starting);
}

#[tokio::test]
async fn an_unknown_url_names_the_forms_it_takes() {
    let error = handover_store::open("mysql://root@localhost/x", Sealer::plaintext()).await.unwrap_err();
    assert!(error.to_string().contains("sqlite://path/to/file.db"), "{error}");
    assert!(!error.to_string().contains("root"), "the credentials of a URL are not echoed: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_started_together_on_one_new_file_all_open_it() {
    let path = std::env::temp_dir().join(format!("handover-store-{}.db", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}", path.display());
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { SqlStore::open(&url, Sealer::plaintext()).await.map(|_| ()) })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
    let _ = std::fs::remove_file(&path);
}
