//! The store on SQL: one implementation for SQLite and PostgreSQL through sqlx's `Any`
//! driver, the same SQL wherever the dialects allow (`$N` parameters, `RETURNING`,
//! `ON CONFLICT`), and the few places they do not marked by [`Backend`].

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{AnyPool, Row};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    Change, ChangeKind, Commit, Committed, ConversationKey, Created, HandoverRecord, HandoverState, InboxDelivery,
    Lease, NewDelivery, NewHandover, NewInput, OutboxInput, Sealer, Store, StoreError, StoreResult, StoredEvent,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
#[cfg(feature = "postgres")]
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel PostgreSQL notifications go out on.
#[cfg(feature = "postgres")]
const CHANNEL: &str = "handover_store";

/// The handovers someone should own: not ended, or ended with events their callback
/// endpoint has not taken yet.
macro_rules! claimable {
    () => {
        "(state <> 'ended' OR (callback_pending = 1 AND callback_seq < last_seq))"
    };
}

/// How many change hints wait for a slow receiver before it lags (and polls).
const CHANGES_CAPACITY: usize = 16 * 1024;

/// Which database a [`SqlStore`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
}

impl Backend {
    /// How a writing transaction begins: SQLite takes the write lock at once (a deferred
    /// transaction that reads first and then writes fails with SQLITE_BUSY instead of
    /// waiting its turn).
    fn begin(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            #[cfg(feature = "postgres")]
            Backend::Postgres => "BEGIN",
        }
    }

    /// The store's clock in Unix milliseconds.
    fn now(self) -> &'static str {
        match self {
            Backend::Sqlite => "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            #[cfg(feature = "postgres")]
            Backend::Postgres => "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// A `VALUES` list's columns are `column1, column2, …` on SQLite and
    /// `column1, column2, …` on PostgreSQL too, but PostgreSQL types them from the first row
    /// only when told: the event insert casts its columns there.
    fn values_columns(self, sql: &str, _width: usize) -> String {
        match self {
            Backend::Sqlite => sql.to_owned(),
            #[cfg(feature = "postgres")]
            Backend::Postgres => sql.replace(
                "SELECT v.column1, v.column2, v.column3, v.column4,",
                "SELECT v.column1::text, v.column2::bigint, v.column3::text, v.column4::text,",
            ),
        }
    }

    /// Claims expired handovers; PostgreSQL skips rows another claimer has locked.
    fn claim(self) -> &'static str {
        match self {
            Backend::Sqlite => concat!(
                "UPDATE handovers SET owner = $1, epoch = epoch + 1, lease_until = $2, updated_at = $3 ",
                "WHERE id IN (SELECT id FROM handovers WHERE lease_until < $3 AND ",
                claimable!(),
                " ORDER BY lease_until LIMIT $4) RETURNING id, epoch, lease_until"
            ),
            #[cfg(feature = "postgres")]
            Backend::Postgres => concat!(
                "UPDATE handovers SET owner = $1, epoch = epoch + 1, lease_until = $2, updated_at = $3 ",
                "WHERE id IN (SELECT id FROM handovers WHERE lease_until < $3 AND ",
                claimable!(),
                " ORDER BY lease_until LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING id, epoch, lease_until"
            ),
        }
    }
}

/// The store on SQLite (a file, WAL, `BEGIN IMMEDIATE`; several processes of one host may
/// share it) or PostgreSQL (feature `postgres`: a pool, `FOR UPDATE SKIP LOCKED`,
/// `LISTEN/NOTIFY` as a wake-up hint).
pub struct SqlStore {
    /// Reads.
    pool: AnyPool,
    /// Writes (on SQLite, one connection; on PostgreSQL, the same pool).
    writes: AnyPool,
    backend: Backend,
    sealer: Sealer,
    changes: broadcast::Sender<Change>,
    /// The writer's queue of owner commits.
    committer: mpsc::Sender<Job>,
    writer: tokio::task::JoinHandle<()>,
    #[cfg(feature = "postgres")]
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore").field("backend", &self.backend).field("sealer", &self.sealer).finish()
    }
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        self.writer.abort();
        #[cfg(feature = "postgres")]
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

/// A lease from a row of `id`, `epoch`, `lease_until`.
fn lease_of(row: &AnyRow, owner: &str) -> StoreResult<Lease> {
    Ok(Lease {
        handover_id: row.try_get("id")?,
        owner: owner.to_owned(),
        epoch: unsigned(row.try_get("epoch")?),
        until_ms: row.try_get("lease_until")?,
    })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl SqlStore {
    /// Opens the store at `url` (see [`crate::open`]).
    pub async fn open(url: &str, sealer: Sealer) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let (backend, url, max) = if let Some(rest) = url.strip_prefix("sqlite:") {
            if rest == ":memory:" || rest == "//:memory:" {
                // One connection: each connection of a pool would see its own database.
                (Backend::Sqlite, "sqlite::memory:".to_owned(), 1)
            } else {
                let path = rest.trim_start_matches("//");
                let sep = if path.contains('?') { '&' } else { '?' };
                (Backend::Sqlite, format!("sqlite://{path}{sep}mode=rwc"), 8)
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                (Backend::Postgres, url.to_owned(), 16)
            }
            #[cfg(not(feature = "postgres"))]
            {
                return Err(StoreError::Config(
                    "a postgres:// store needs the `postgres` feature of handover-store".to_owned(),
                ));
            }
        } else {
            return Err(StoreError::Config(format!(
                "unknown store URL `{}`: use sqlite://path/to/file.db, sqlite::memory: or postgres://user@host/db",
                url.split('@').next_back().unwrap_or_default()
            )));
        };
        let connect = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            use sqlx::Executor as _;
                            // WAL: readers never block the writer; busy_timeout: writers of
                            // other processes wait their turn instead of failing at once.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                        }
                        Ok(())
                    })
                })
                .connect(&url)
        };
        let pool = connect(max).await.map_err(|e| StoreError::Database(format!("cannot open the store: {e}")))?;
        // SQLite has one writer at a time: this process's writes queue for one connection
        // (an async wait) instead of meeting the file lock (where SQLite's busy handler
        // sleeps in steps of milliseconds). Readers use the other pool and never block.
        let writes = if backend == Backend::Sqlite && max > 1 {
            connect(1).await.map_err(|e| StoreError::Database(format!("cannot open the store: {e}")))?
        } else {
            pool.clone()
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            #[cfg(feature = "postgres")]
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        // PostgreSQL serializes concurrent migrators with an advisory lock; SQLite has none, so
        // instances started together on one file may race: the loser retries and finds the
        // schema applied.
        let mut attempt = 0u32;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(MigrateError::VersionMissing(version)) => {
                    return Err(StoreError::NewerSchema(format!(
                        "it holds migration {version}, which this version does not know"
                    )));
                }
                Err(other) if attempt >= 4 => {
                    return Err(StoreError::Database(format!("the schema could not be applied: {other}")));
                }
                Err(other) => {
                    attempt += 1;
                    tracing::debug!(error = %other, attempt, "applying the schema failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
            }
        }
        let changes = broadcast::channel(CHANGES_CAPACITY).0;
        let (committer, jobs) = mpsc::channel(4 * GROUP);
        let writer = tokio::spawn(write_commits(writes.clone(), backend, changes.clone(), jobs));
        let store = Self {
            pool,
            writes,
            backend,
            sealer,
            changes,
            committer,
            writer,
            #[cfg(feature = "postgres")]
            listener: None,
        };
        store.check_key().await?;
        #[cfg(feature = "postgres")]
        let store = if backend == Backend::Postgres { store.listen(&url).await? } else { store };
        Ok(store)
    }

    /// Records the key check on first open; refuses a store written with another key.
    async fn check_key(&self) -> StoreResult<()> {
        let check = self.sealer.key_check()?;
        sqlx::query("INSERT INTO store_meta (key, value) VALUES ('key_check', $1) ON CONFLICT (key) DO NOTHING")
            .bind(check)
            .execute(&self.pool)
            .await?;
        let recorded: String = sqlx::query("SELECT value FROM store_meta WHERE key = 'key_check'")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        self.sealer.verify(&recorded)
    }

    /// Turns PostgreSQL notifications (from any process) into change hints; the listener
    /// reconnects by itself, and notifications sent meanwhile are lost (readers poll).
    #[cfg(feature = "postgres")]
    async fn listen(mut self, url: &str) -> StoreResult<Self> {
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        let changes = self.changes.clone();
        self.listener = Some(tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        if let Some(change) = Change::from_payload(notification.payload()) {
                            let _ = changes.send(change);
                        }
                    }
                    // The connection dropped and reconnects on the next call: hints sent
                    // meanwhile are lost, which readers' polls make up for.
                    Ok(None) => tracing::debug!("the store's notification listener reconnects"),
                    Err(error) => {
                        tracing::debug!(%error, "the store's notification listener failed; reconnecting");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }));
        Ok(self)
    }

    /// Tells this process's receivers (PostgreSQL's listener tells them for every process).
    fn changed(&self, change: Change) {
        #[cfg(feature = "postgres")]
        if self.backend == Backend::Postgres {
            return;
        }
        let _ = self.changes.send(change);
    }

    /// Tells other processes (PostgreSQL: delivered on commit; a hint, lost if nobody
    /// listens).
    async fn notify(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, change: &Change) -> StoreResult<()> {
        #[cfg(feature = "postgres")]
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(change.to_payload()).execute(&mut **tx).await?;
        }
        let _ = (tx, change);
        Ok(())
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(self.writes.begin_with(self.backend.begin()).await?)
    }

    async fn now_in(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> StoreResult<i64> {
        Ok(sqlx::query(self.backend.now()).fetch_one(&mut **tx).await?.try_get(0)?)
    }

    fn record(&self, row: &AnyRow) -> StoreResult<HandoverRecord> {
        let text = |name: &str| -> StoreResult<Option<String>> { Ok(row.try_get::<Option<String>, _>(name)?) };
        let json = |name: &str| -> StoreResult<Option<Value>> {
            text(name)?.map(|t| serde_json::from_str(&t)).transpose().map_err(StoreError::from)
        };
        let spec: Vec<u8> = row.try_get("spec")?;
        let snapshot: Option<Vec<u8>> = row.try_get("snapshot")?;
        let state: String = row.try_get("state")?;
        Ok(HandoverRecord {
            id: row.try_get("id")?,
            provider: row.try_get("provider")?,
            idempotency_key: text("idempotency_key")?,
            spec: serde_json::from_slice(&self.sealer.open(&spec)?)?,
            state: HandoverState::parse(&state)
                .ok_or_else(|| StoreError::Database(format!("unknown handover state `{state}`")))?,
            snapshot: snapshot.map(|s| self.sealer.open(&s)).transpose()?,
            node_state: json("node_state")?,
            status: json("status")?,
            owner: text("owner")?,
            epoch: unsigned(row.try_get("epoch")?),
            lease_until_ms: row.try_get("lease_until")?,
            last_seq: unsigned(row.try_get("last_seq")?),
            callback_seq: unsigned(row.try_get("callback_seq")?),
            callback_state: json("callback_state")?,
            callback_pending: row.try_get::<i64, _>("callback_pending")? != 0,
            created_at_ms: row.try_get("created_at")?,
            updated_at_ms: row.try_get("updated_at")?,
        })
    }

    async fn get_in(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, id: &str) -> StoreResult<Option<HandoverRecord>> {
        let row = sqlx::query("SELECT * FROM handovers WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
        row.map(|row| self.record(&row)).transpose()
    }

    fn fenced(lease: &Lease) -> StoreError {
        StoreError::Fenced { handover_id: lease.handover_id.clone(), epoch: lease.epoch }
    }
}

/// One owner commit waiting for the writer.
struct Job {
    lease: Lease,
    commit: Commit,
    /// The snapshot, sealed by the caller.
    snapshot: Option<Vec<u8>>,
    done: oneshot::Sender<StoreResult<Committed>>,
}

/// The most commits the writer puts in one transaction.
const GROUP: usize = 64;

/// The writer: commits go through one task that takes whatever has queued (up to
/// [`GROUP`]) and writes it in one transaction, each commit under its own savepoint and its
/// own fence, so a fenced or failing commit leaves the others whole. Many handovers
/// committing at once then cost one write transaction (one WAL commit on SQLite, one
/// flush on PostgreSQL) instead of one each.
async fn write_commits(
    pool: AnyPool,
    backend: Backend,
    changes: broadcast::Sender<Change>,
    mut jobs: mpsc::Receiver<Job>,
) {
    let mut batch = Vec::with_capacity(GROUP);
    while jobs.recv_many(&mut batch, GROUP).await > 0 {
        let mut results = Vec::with_capacity(batch.len());
        let outcome = write_group(&pool, backend, &batch, &mut results).await;
        match outcome {
            Ok(notices) => {
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.done.send(result);
                }
                #[cfg(feature = "postgres")]
                let local = backend != Backend::Postgres;
                #[cfg(not(feature = "postgres"))]
                let local = true;
                if local {
                    for change in notices {
                        let _ = changes.send(change);
                    }
                }
            }
            Err(error) => {
                // The group failed (the database is gone, a write was refused): nothing of
                // it was written.
                let message = error.to_string();
                for job in batch.drain(..) {
                    let _ = job.done.send(Err(StoreError::Database(message.clone())));
                }
            }
        }
    }
}

/// Writes `batch` in one transaction; each commit's result goes to `results` in order, and
/// the hints to send once the transaction is in.
///
/// The whole group costs a handful of statements however many commits it holds: one fences
/// every commit (a fenced one writes nothing and is answered `Fenced`), one finds event ids
/// the log holds already, one inserts every event, and one moves every handover's row;
/// only the rare parts (inbox, outbox, conversation keys) go one by one. Any failure other
/// than a fence fails the whole group: nothing of it is written, and every caller gets the
/// error (and may retry).
async fn write_group(
    pool: &AnyPool,
    backend: Backend,
    batch: &[Job],
    results: &mut Vec<StoreResult<Committed>>,
) -> StoreResult<Vec<Change>> {
    let mut tx = pool.begin_with(backend.begin()).await?;
    let now = match backend {
        // SQLite is embedded: its clock is this host's, so no round trip for it.
        Backend::Sqlite => system_now_ms(),
        #[cfg(feature = "postgres")]
        Backend::Postgres => sqlx::query(backend.now()).fetch_one(&mut *tx).await?.try_get(0)?,
    };

    // 1. The fence of every commit, in one statement: the handovers whose lease (id,
    //    epoch, owner) is still current, and their log's last seq, locked till the end.
    let leases: Vec<&Lease> = batch.iter().map(|job| &job.lease).collect();
    let mut live: HashMap<(String, u64, String), i64> = HashMap::new();
    for chunk in leases.chunks(200) {
        let tuples = placeholders(chunk.len(), 3, 2);
        let sql = format!(
            "UPDATE handovers SET updated_at = $1 WHERE (id, epoch, owner) IN (VALUES {tuples}) \
             RETURNING id, epoch, owner, last_seq"
        );
        let mut query = sqlx::query(&sql).bind(now);
        for lease in chunk {
            query = query.bind(&lease.handover_id).bind(signed(lease.epoch)).bind(&lease.owner);
        }
        for row in query.fetch_all(&mut *tx).await? {
            let key = (row.try_get::<String, _>("id")?, unsigned(row.try_get("epoch")?), row.try_get("owner")?);
            live.insert(key, row.try_get("last_seq")?);
        }
    }

    // 2. Event ids the log holds already (repeats are skipped and use no seq).
    let ids: Vec<(&str, &str)> = batch
        .iter()
        .flat_map(|job| {
            job.commit.events.iter().filter_map(|e| Some((job.lease.handover_id.as_str(), e.event_id.as_deref()?)))
        })
        .collect();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for chunk in ids.chunks(400) {
        let tuples = placeholders(chunk.len(), 2, 1);
        let sql = format!(
            "SELECT handover_id, event_id FROM handover_events WHERE (handover_id, event_id) IN (VALUES {tuples})"
        );
        let mut query = sqlx::query(&sql);
        for (handover, event) in chunk {
            query = query.bind(*handover).bind(*event);
        }
        for row in query.fetch_all(&mut *tx).await? {
            seen.insert((row.try_get("handover_id")?, row.try_get("event_id")?));
        }
    }

    // Seqs, in batch order per handover; the rows of the events; each handover's final row.
    let mut rows: Vec<(&str, i64, Option<&str>, String)> = Vec::new();
    let mut finals: Vec<Final> = Vec::new();
    let mut notices = Vec::new();
    for job in batch {
        let lease = &job.lease;
        let key = (lease.handover_id.clone(), lease.epoch, lease.owner.clone());
        let Some(last_seq) = live.get_mut(&key) else {
            results.push(Err(SqlStore::fenced(lease)));
            continue;
        };
        let mut appended = Vec::new();
        let mut seqs = Vec::with_capacity(job.commit.events.len());
        for event in &job.commit.events {
            if let Some(id) = &event.event_id
                && !seen.insert((lease.handover_id.clone(), id.clone()))
            {
                seqs.push(None);
                continue;
            }
            *last_seq += 1;
            rows.push((&lease.handover_id, *last_seq, event.event_id.as_deref(), event.body.to_string()));
            appended.push(unsigned(*last_seq));
            seqs.push(Some(unsigned(*last_seq)));
        }
        match finals.iter_mut().find(|f| f.id == lease.handover_id) {
            Some(existing) => existing.merge(job, *last_seq),
            None => finals.push(Final::of(job, *last_seq)),
        }
        notices.push(Change::new(&lease.handover_id, ChangeKind::Committed));
        results.push(Ok(Committed { appended, seqs, last_seq: unsigned(*last_seq), at_ms: now }));
    }

    // 3. Every event, in one statement (a chunk per few hundred rows).
    for chunk in rows.chunks(400) {
        let tuples = placeholders(chunk.len(), 4, 2);
        let sql = format!(
            "INSERT INTO handover_events (handover_id, seq, event_id, body, created_at) \
             SELECT v.column1, v.column2, v.column3, v.column4, $1 FROM (VALUES {tuples}) AS v"
        );
        let sql = backend.values_columns(&sql, 4);
        let mut query = sqlx::query(&sql).bind(now);
        for (handover, seq, event_id, body) in chunk {
            query = query.bind(*handover).bind(*seq).bind(*event_id).bind(body.as_str());
        }
        query.execute(&mut *tx).await?;
    }

    // The rare parts, one by one.
    for (job, result) in batch.iter().zip(results.iter()) {
        if result.is_err() {
            continue;
        }
        let (lease, commit) = (&job.lease, &job.commit);
        for id in &commit.consumed {
            sqlx::query("UPDATE inbox SET consumed_at = $2 WHERE id = $1 AND consumed_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        for input_id in &commit.sent_inputs {
            sqlx::query("UPDATE outbox SET sent_at = $3 WHERE handover_id = $1 AND input_id = $2 AND sent_at IS NULL")
                .bind(&lease.handover_id)
                .bind(input_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        for key in &commit.conversation_keys {
            sqlx::query(
                "INSERT INTO conversation_keys (provider, conversation_key, handover_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (provider, conversation_key) DO UPDATE SET handover_id = excluded.handover_id",
            )
            .bind(&key.provider)
            .bind(&key.key)
            .bind(&lease.handover_id)
            .execute(&mut *tx)
            .await?;
        }
    }

    // 4. Every handover's row, one statement per handover (their values differ).
    for last in &finals {
        sqlx::query(
            "UPDATE handovers SET last_seq = $2, snapshot = COALESCE($3, snapshot), \
             node_state = COALESCE($4, node_state), state = COALESCE($5, state), status = COALESCE($6, status), \
             callback_seq = COALESCE($7, callback_seq), callback_state = COALESCE($8, callback_state), \
             callback_pending = CASE WHEN $9 = 1 THEN 0 ELSE callback_pending END WHERE id = $1",
        )
        .bind(&last.id)
        .bind(last.last_seq)
        .bind(last.snapshot.clone())
        .bind(last.node_state.clone())
        .bind(last.state)
        .bind(last.status.clone())
        .bind(last.callback_seq)
        .bind(last.callback_state.clone())
        .bind(i64::from(last.callback_failed))
        .execute(&mut *tx)
        .await?;
    }

    #[cfg(feature = "postgres")]
    if backend == Backend::Postgres {
        for change in &notices {
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(change.to_payload()).execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(notices)
}

/// What one handover's row becomes after the commits of a group (later ones win).
struct Final {
    id: String,
    last_seq: i64,
    snapshot: Option<Vec<u8>>,
    node_state: Option<String>,
    state: Option<&'static str>,
    status: Option<String>,
    callback_seq: Option<i64>,
    callback_state: Option<String>,
    callback_failed: bool,
}

impl Final {
    fn of(job: &Job, last_seq: i64) -> Self {
        let commit = &job.commit;
        Self {
            id: job.lease.handover_id.clone(),
            last_seq,
            snapshot: job.snapshot.clone(),
            node_state: commit.node_state.as_ref().map(Value::to_string),
            state: commit.state.map(HandoverState::as_str),
            status: commit.status.as_ref().map(Value::to_string),
            callback_seq: commit.callback.as_ref().map(|c| signed(c.acked_seq)),
            callback_state: commit.callback.as_ref().and_then(|c| c.state.as_ref()).map(Value::to_string),
            callback_failed: commit.callback.as_ref().is_some_and(|c| c.failed),
        }
    }

    fn merge(&mut self, job: &Job, last_seq: i64) {
        let later = Self::of(job, last_seq);
        self.last_seq = later.last_seq;
        self.snapshot = later.snapshot.or(self.snapshot.take());
        self.node_state = later.node_state.or(self.node_state.take());
        self.state = later.state.or(self.state);
        self.status = later.status.or(self.status.take());
        self.callback_seq = later.callback_seq.or(self.callback_seq);
        self.callback_state = later.callback_state.or(self.callback_state.take());
        self.callback_failed |= later.callback_failed;
    }
}

/// `($2, $3, $4), ($5, $6, $7), …`: `rows` tuples of `width` parameters from `$first`.
fn placeholders(rows: usize, width: usize, first: usize) -> String {
    (0..rows)
        .map(|r| {
            let params: Vec<String> = (0..width).map(|c| format!("${}", first + r * width + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// This host's clock in Unix milliseconds (SQLite's `now`).
fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[async_trait]
impl Store for SqlStore {
    async fn now_ms(&self) -> StoreResult<i64> {
        Ok(sqlx::query(self.backend.now()).fetch_one(&self.pool).await?.try_get(0)?)
    }

    async fn create(&self, new: NewHandover, owner: &str, ttl: Duration) -> StoreResult<Created> {
        let spec = self.sealer.seal(&serde_json::to_vec(&new.spec)?)?;
        for attempt in 0..2 {
            let mut tx = self.begin().await?;
            if let Some(key) = &new.idempotency_key {
                let existing: Option<String> = sqlx::query("SELECT id FROM handovers WHERE idempotency_key = $1")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| row.try_get(0))
                    .transpose()?;
                if let Some(existing) = existing {
                    let record = self.get_in(&mut tx, &existing).await?.ok_or(StoreError::NotFound(existing))?;
                    tx.commit().await?;
                    return Ok(Created { record, lease: None, existing: true });
                }
            }
            let now = self.now_in(&mut tx).await?;
            let until = now.saturating_add(millis(ttl));
            let inserted = sqlx::query(
                "INSERT INTO handovers (id, provider, idempotency_key, spec, state, owner, epoch, lease_until, \
                 callback_pending, created_at, updated_at) VALUES ($1, $2, $3, $4, 'starting', $5, 1, $6, $8, $7, $7)",
            )
            .bind(&new.id)
            .bind(&new.provider)
            .bind(&new.idempotency_key)
            .bind(&spec)
            .bind(owner)
            .bind(until)
            .bind(now)
            .bind(i64::from(new.callback))
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                // Two instances created with the same key at once: the other one won.
                Err(sqlx::Error::Database(error)) if error.is_unique_violation() && attempt == 0 => continue,
                Err(error) => return Err(error.into()),
            }
            let record = self.get_in(&mut tx, &new.id).await?.ok_or_else(|| StoreError::NotFound(new.id.clone()))?;
            tx.commit().await?;
            let lease = Lease { handover_id: new.id.clone(), owner: owner.to_owned(), epoch: 1, until_ms: until };
            return Ok(Created { record, lease: Some(lease), existing: false });
        }
        Err(StoreError::Database("the handover could not be created".to_owned()))
    }

    async fn get(&self, id: &str) -> StoreResult<Option<HandoverRecord>> {
        let row = sqlx::query("SELECT * FROM handovers WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|row| self.record(&row)).transpose()
    }

    async fn list(&self, state: Option<HandoverState>, limit: u32) -> StoreResult<Vec<HandoverRecord>> {
        let rows = match state {
            Some(state) => {
                sqlx::query("SELECT * FROM handovers WHERE state = $1 ORDER BY created_at DESC, id LIMIT $2")
                    .bind(state.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM handovers ORDER BY created_at DESC, id LIMIT $1")
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(|row| self.record(row)).collect()
    }

    async fn acquire(&self, id: &str, owner: &str, ttl: Duration) -> StoreResult<Option<Lease>> {
        let mut tx = self.begin().await?;
        let now = self.now_in(&mut tx).await?;
        let row = sqlx::query(concat!(
            "UPDATE handovers SET owner = $2, epoch = epoch + 1, lease_until = $3, updated_at = $4 ",
            "WHERE id = $1 AND (owner IS NULL OR lease_until < $4) AND ",
            claimable!(),
            " RETURNING epoch, lease_until"
        ))
        .bind(id)
        .bind(owner)
        .bind(now.saturating_add(millis(ttl)))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(|row| {
            Ok(Lease {
                handover_id: id.to_owned(),
                owner: owner.to_owned(),
                epoch: unsigned(row.try_get("epoch")?),
                until_ms: row.try_get("lease_until")?,
            })
        })
        .transpose()
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> StoreResult<Lease> {
        let mut tx = self.begin().await?;
        let now = self.now_in(&mut tx).await?;
        let until = now.saturating_add(millis(ttl));
        let renewed = sqlx::query(
            "UPDATE handovers SET lease_until = $4, updated_at = $5 WHERE id = $1 AND epoch = $2 AND owner = $3",
        )
        .bind(&lease.handover_id)
        .bind(signed(lease.epoch))
        .bind(&lease.owner)
        .bind(until)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if renewed.rows_affected() == 0 {
            return Err(Self::fenced(lease));
        }
        tx.commit().await?;
        Ok(Lease { until_ms: until, ..lease.clone() })
    }

    async fn renew_owned(&self, owner: &str, ttl: Duration) -> StoreResult<Vec<Lease>> {
        let mut tx = self.begin().await?;
        let now = self.now_in(&mut tx).await?;
        let rows = sqlx::query(
            "UPDATE handovers SET lease_until = $2, updated_at = $3 WHERE owner = $1 AND lease_until >= $3 \
             RETURNING id, epoch, lease_until",
        )
        .bind(owner)
        .bind(now.saturating_add(millis(ttl)))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(|row| lease_of(row, owner)).collect()
    }

    async fn pending_work(&self, owner: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT o.handover_id FROM outbox o JOIN handovers h ON h.id = o.handover_id \
             WHERE h.owner = $1 AND o.sent_at IS NULL \
             UNION SELECT k.handover_id FROM inbox i JOIN conversation_keys k \
             ON k.provider = i.provider AND k.conversation_key = i.conversation_key \
             JOIN handovers h ON h.id = k.handover_id WHERE h.owner = $1 AND i.consumed_at IS NULL",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>()?)
    }

    async fn release(&self, lease: &Lease) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let released = sqlx::query(
            "UPDATE handovers SET owner = NULL, lease_until = 0 WHERE id = $1 AND epoch = $2 AND owner = $3",
        )
        .bind(&lease.handover_id)
        .bind(signed(lease.epoch))
        .bind(&lease.owner)
        .execute(&mut *tx)
        .await?;
        if released.rows_affected() == 0 {
            return Err(Self::fenced(lease));
        }
        let change = Change::new(&lease.handover_id, ChangeKind::Released);
        self.notify(&mut tx, &change).await?;
        tx.commit().await?;
        self.changed(change);
        Ok(())
    }

    async fn claim_orphans(&self, owner: &str, ttl: Duration, limit: u32) -> StoreResult<Vec<Lease>> {
        let mut tx = self.begin().await?;
        let now = self.now_in(&mut tx).await?;
        let rows = sqlx::query(self.backend.claim())
            .bind(owner)
            .bind(now.saturating_add(millis(ttl)))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(|row| lease_of(row, owner)).collect()
    }

    async fn commit(&self, lease: &Lease, commit: Commit) -> StoreResult<Committed> {
        // Sealing is CPU work: done here, in parallel, not in the writer's transaction.
        let snapshot = commit.snapshot.as_deref().map(|s| self.sealer.seal(s)).transpose()?;
        let (done, result) = oneshot::channel();
        let job = Job { lease: lease.clone(), commit, snapshot, done };
        self.committer.send(job).await.map_err(|_| StoreError::Database("the store is closed".to_owned()))?;
        result.await.map_err(|_| StoreError::Database("the store's writer stopped".to_owned()))?
    }

    async fn events(&self, id: &str, after: u64, limit: u32) -> StoreResult<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT seq, event_id, body, created_at FROM handover_events WHERE handover_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(id)
        .bind(signed(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let body: String = row.try_get("body")?;
                Ok(StoredEvent {
                    seq: unsigned(row.try_get("seq")?),
                    event_id: row.try_get("event_id")?,
                    body: serde_json::from_str(&body)?,
                    created_at_ms: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn put_delivery(&self, delivery: NewDelivery) -> StoreResult<bool> {
        let payload = self.sealer.seal(&delivery.payload)?;
        let mut tx = self.begin().await?;
        let now = self.now_in(&mut tx).await?;
        let inserted = sqlx::query(
            "INSERT INTO inbox (provider, conversation_key, delivery_id, payload, received_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (provider, delivery_id) DO NOTHING",
        )
        .bind(&delivery.provider)
        .bind(&delivery.conversation_key)
        .bind(&delivery.delivery_id)
        .bind(payload)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let new = inserted.rows_affected() == 1;
        // The owner is told when the conversation is known; otherwise it reads the inbox
        // when it maps the key (in the commit that maps it).
        let owner = if new {
            sqlx::query("SELECT handover_id FROM conversation_keys WHERE provider = $1 AND conversation_key = $2")
                .bind(&delivery.provider)
                .bind(&delivery.conversation_key)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get::<String, _>(0))
                .transpose()?
        } else {
            None
        };
        let change = owner.map(|id| Change::new(id, ChangeKind::Work));
        if let Some(change) = &change {
            self.notify(&mut tx, change).await?;
        }
        tx.commit().await?;
        if let Some(change) = change {
            self.changed(change);
        }
        Ok(new)
    }

    async fn deliveries(&self, id: &str, limit: u32) -> StoreResult<Vec<InboxDelivery>> {
        let rows = sqlx::query(
            "SELECT i.id, i.provider, i.conversation_key, i.delivery_id, i.payload, i.received_at FROM inbox i \
             JOIN conversation_keys k ON k.provider = i.provider AND k.conversation_key = i.conversation_key \
             WHERE k.handover_id = $1 AND i.consumed_at IS NULL ORDER BY i.id LIMIT $2",
        )
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let payload: Vec<u8> = row.try_get("payload")?;
                Ok(InboxDelivery {
                    id: row.try_get("id")?,
                    provider: row.try_get("provider")?,
                    conversation_key: row.try_get("conversation_key")?,
                    delivery_id: row.try_get("delivery_id")?,
                    payload: self.sealer.open(&payload)?,
                    received_at_ms: row.try_get("received_at")?,
                })
            })
            .collect()
    }

    async fn handover_for_key(&self, key: &ConversationKey) -> StoreResult<Option<String>> {
        let row =
            sqlx::query("SELECT handover_id FROM conversation_keys WHERE provider = $1 AND conversation_key = $2")
                .bind(&key.provider)
                .bind(&key.key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }

    async fn put_input(&self, id: &str, input: NewInput) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let now = self.now_in(&mut tx).await?;
        let inserted = sqlx::query(
            "INSERT INTO outbox (handover_id, input_id, position, payload, created_at) \
             SELECT $1, $2, COALESCE(MAX(position), 0) + 1, $3, $4 FROM outbox WHERE handover_id = $1 \
             ON CONFLICT (handover_id, input_id) DO NOTHING",
        )
        .bind(id)
        .bind(&input.input_id)
        .bind(input.payload.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let new = inserted.rows_affected() == 1;
        let change = Change::new(id, ChangeKind::Work);
        if new {
            self.notify(&mut tx, &change).await?;
        }
        tx.commit().await?;
        if new {
            self.changed(change);
        }
        Ok(new)
    }

    async fn inputs(&self, id: &str) -> StoreResult<Vec<OutboxInput>> {
        let rows = sqlx::query(
            "SELECT input_id, position, payload FROM outbox WHERE handover_id = $1 AND sent_at IS NULL \
             ORDER BY position, created_at, input_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let payload: String = row.try_get("payload")?;
                Ok(OutboxInput {
                    input_id: row.try_get("input_id")?,
                    position: row.try_get("position")?,
                    payload: serde_json::from_str(&payload)?,
                })
            })
            .collect()
    }

    fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}
