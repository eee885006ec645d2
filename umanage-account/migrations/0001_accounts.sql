-- umanage-account: user accounts.
-- username_key / email_key are the normalised uniqueness keys computed by the crate
-- (username: NFKC + lower-case; email: whole address lower-cased). The unique constraints
-- are named because the store maps violations of each to a typed error.
CREATE TABLE IF NOT EXISTS umanage_accounts (
    id            uuid        PRIMARY KEY,
    username      text        NOT NULL,
    username_key  text        NOT NULL,
    email         text        NOT NULL,
    email_key     text        NOT NULL,
    display_name  text,
    roles         text[]      NOT NULL DEFAULT '{}',
    status        text        NOT NULL DEFAULT 'active',
    locked_until  timestamptz,
    lock_reason   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    version       bigint      NOT NULL DEFAULT 1 CHECK (version >= 1),
    CONSTRAINT umanage_accounts_username_key_unique UNIQUE (username_key),
    CONSTRAINT umanage_accounts_email_key_unique UNIQUE (email_key),
    CONSTRAINT umanage_accounts_status_check CHECK (
        (status IN ('active', 'disabled') AND locked_until IS NULL AND lock_reason IS NULL)
        OR (status = 'locked' AND lock_reason IS NOT NULL)
    )
);

-- count_with_role ("is there an admin yet?") uses roles @> ARRAY[...].
CREATE INDEX IF NOT EXISTS umanage_accounts_roles_idx ON umanage_accounts USING gin (roles);
