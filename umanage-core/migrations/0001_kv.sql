-- umanage-core: the shared key-value table (umanage_core::kv::PostgresKvStore).
CREATE TABLE IF NOT EXISTS umanage_kv (
    key        text        PRIMARY KEY,
    value      bytea       NOT NULL,
    expires_at timestamptz
);

-- purge_expired() scans by deadline.
CREATE INDEX IF NOT EXISTS umanage_kv_expires_at ON umanage_kv (expires_at)
    WHERE expires_at IS NOT NULL;
