//! The conformance suite on PostgreSQL: a fresh database per scenario, dropped after it.
//!
//! The server is `DATABASE_URL` (any database on it; each scenario creates its own), or
//! `postgres://postgres@127.0.0.1:5432/postgres`. `cargo xtask ci` finds or starts one.
//! Without a server these tests fail, loudly: they never pass by skipping.

#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)] // test harness: a panic is the failure report

use std::sync::Arc;

use handover_store::suite::StoreHarness;
use handover_store::{Sealer, SqlStore, Store, StoreError};
use sqlx::Connection as _;

fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let cut = base.rfind('/').filter(|&at| at > base.find("//").map_or(0, |s| s + 1)).unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..cut]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

async fn admin() -> sqlx::PgConnection {
    let url = server_url();
    sqlx::PgConnection::connect(&url).await.unwrap_or_else(|error| {
        panic!(
            "PostgreSQL is not reachable ({error}). The PostgreSQL suite needs a server: run it through \
             `cargo xtask ci` (which finds or starts one), or set DATABASE_URL"
        )
    })
}

struct PostgresHarness {
    database: String,
    store: Arc<dyn Store>,
}

impl PostgresHarness {
    fn url(&self) -> String {
        with_database(&server_url(), &self.database)
    }

    async fn raw(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url()).await.unwrap()
    }
}

#[async_trait::async_trait]
impl StoreHarness for PostgresHarness {
    async fn setup(sealer: Sealer) -> Self {
        let database = format!("handover_store_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {database}")).execute(&mut admin().await).await.unwrap();
        let store = SqlStore::open(&with_database(&server_url(), &database), sealer).await.unwrap();
        Self { database, store: Arc::new(store) }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn reopen(&self, sealer: Sealer) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(SqlStore::open(&self.url(), sealer).await?))
    }

    async fn insert_quietly(&self, provider: &str, conversation_key: &str, delivery_id: &str, payload: Vec<u8>) {
        sqlx::query(
            "INSERT INTO inbox (provider, conversation_key, delivery_id, payload, received_at) VALUES ($1, $2, $3, $4, 0)",
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
             VALUES (99991231000000, 'from the future', TRUE, '\\x00'::bytea, 0)",
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
        let database = self.database.clone();
        drop(self);
        sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .execute(&mut admin().await)
            .await
            .unwrap();
    }
}

handover_store::store_suite!(PostgresHarness);

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}
