-- umanage-audit: hash-chained audit events, chain heads and signed checkpoints.

-- One row per chain: the last (seq, hash) and the retention cut. Appends lock this row
-- (SELECT ... FOR UPDATE), which serialises appends per chain across all instances.
CREATE TABLE IF NOT EXISTS umanage_audit_chain_heads (
    chain_id    text   PRIMARY KEY,
    seq         bigint NOT NULL CHECK (seq >= 0),
    hash        bytea  NOT NULL,
    pruned_seq  bigint NOT NULL DEFAULT 0 CHECK (pruned_seq >= 0),
    pruned_hash bytea  NOT NULL
);

-- The events. `event` is the canonical JSON that was hashed, kept as `json` (text
-- preserved byte for byte, unlike jsonb). The other columns duplicate fields of it for
-- indexing; verification reads them back into the event, so editing a column is caught.
CREATE TABLE IF NOT EXISTS umanage_audit_events (
    id         uuid        PRIMARY KEY,
    chain_id   text        NOT NULL,
    seq        bigint      NOT NULL CHECK (seq > 0),
    ts         timestamptz NOT NULL,
    event_type text        NOT NULL,
    severity   text        NOT NULL,
    actor_id   text,
    target_id  text,
    result     text        NOT NULL,
    prev_hash  bytea       NOT NULL,
    hash       bytea       NOT NULL,
    event      json        NOT NULL,
    -- Guards against forks: one event per (chain, seq).
    CONSTRAINT umanage_audit_events_chain_seq UNIQUE (chain_id, seq)
);

-- Keyset pagination (ts, id) in either direction, per query dimension.
CREATE INDEX IF NOT EXISTS umanage_audit_events_actor ON umanage_audit_events (actor_id, ts, id);
CREATE INDEX IF NOT EXISTS umanage_audit_events_target ON umanage_audit_events (target_id, ts, id)
    WHERE target_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS umanage_audit_events_type ON umanage_audit_events (event_type, ts, id);
CREATE INDEX IF NOT EXISTS umanage_audit_events_ts ON umanage_audit_events (ts, id);

CREATE TABLE IF NOT EXISTS umanage_audit_checkpoints (
    chain_id   text        NOT NULL,
    seq        bigint      NOT NULL CHECK (seq >= 0),
    hash       bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    key_id     text        NOT NULL,
    signature  bytea       NOT NULL,
    PRIMARY KEY (chain_id, seq, created_at)
);
