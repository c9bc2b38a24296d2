-- The handover store's schema (SQLite). The PostgreSQL migration of the same number holds
-- the same tables and columns in its dialect. Times are Unix milliseconds on the store's
-- clock; blobs marked "sealed" are encrypted by the store's key.

CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE handovers (
    id              TEXT PRIMARY KEY,
    provider        TEXT NOT NULL,                -- the provider configuration's name
    idempotency_key TEXT UNIQUE,                  -- a repeat of POST /v1/handovers
    spec            BLOB NOT NULL,                -- sealed: request, node config, callback
    state           TEXT NOT NULL,                -- starting | queued | active | ended
    snapshot        BLOB,                         -- sealed: the provider's session snapshot
    node_state      TEXT,                         -- the node runtime's own state (JSON)
    status          TEXT,                         -- the final status (JSON), once ended
    owner           TEXT,                         -- the lease holder
    epoch           INTEGER NOT NULL DEFAULT 0,   -- grows on every grant: the fencing token
    lease_until     INTEGER NOT NULL DEFAULT 0,
    last_seq        INTEGER NOT NULL DEFAULT 0,   -- the event log's last seq
    callback_seq    INTEGER NOT NULL DEFAULT 0,   -- the last seq the callback took (2xx)
    callback_state  TEXT,                         -- JSON: attempts, next try, failure
    callback_pending INTEGER NOT NULL DEFAULT 0, -- 1 while a callback endpoint must get every event
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE INDEX handovers_orphans ON handovers (state, lease_until);
CREATE INDEX handovers_owner ON handovers (owner);

CREATE TABLE handover_events (
    handover_id TEXT NOT NULL REFERENCES handovers (id),
    seq         INTEGER NOT NULL,
    event_id    TEXT,                             -- the provider's id, unique per handover
    body        TEXT NOT NULL,                    -- the event as the bot sees it (JSON)
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (handover_id, seq)
);

CREATE UNIQUE INDEX handover_events_ids ON handover_events (handover_id, event_id);

CREATE TABLE conversation_keys (
    provider         TEXT NOT NULL,
    conversation_key TEXT NOT NULL,
    handover_id      TEXT NOT NULL REFERENCES handovers (id),
    PRIMARY KEY (provider, conversation_key)
);

CREATE TABLE inbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    provider         TEXT NOT NULL,
    conversation_key TEXT NOT NULL,
    delivery_id      TEXT NOT NULL,
    payload          BLOB NOT NULL,               -- sealed: the verified delivery
    received_at      INTEGER NOT NULL,
    consumed_at      INTEGER,
    UNIQUE (provider, delivery_id)
);

CREATE INDEX inbox_pending ON inbox (provider, conversation_key, consumed_at);

CREATE TABLE outbox (
    handover_id TEXT NOT NULL REFERENCES handovers (id),
    input_id    TEXT NOT NULL,
    position    INTEGER NOT NULL,                 -- arrival order within the handover
    payload     TEXT NOT NULL,                    -- the bot's input (JSON)
    created_at  INTEGER NOT NULL,
    sent_at     INTEGER,
    PRIMARY KEY (handover_id, input_id)
);

CREATE INDEX outbox_pending ON outbox (handover_id, sent_at, position);
