-- umanage-password: current password hashes and their history.
CREATE TABLE IF NOT EXISTS umanage_credentials (
    user_id    uuid        PRIMARY KEY,
    hash       text        NOT NULL,
    changed_at timestamptz NOT NULL,
    version    bigint      NOT NULL CHECK (version > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Earlier hashes of a user; `seq` is the credential version the hash was current at, so
-- the newest entry has the highest seq.
CREATE TABLE IF NOT EXISTS umanage_credential_history (
    user_id    uuid        NOT NULL REFERENCES umanage_credentials (user_id) ON DELETE CASCADE,
    seq        bigint      NOT NULL,
    hash       text        NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, seq)
);
