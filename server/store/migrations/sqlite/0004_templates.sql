-- PalmLink schema, version 4: templates in the database, sealed under per-tenant data keys,
-- and the per-tenant template log the galleries follow.

-- The master key's check value: sealed under the master key, so a wrong key is refused
-- before it touches anything.
CREATE TABLE keyring (
    id BIGINT PRIMARY KEY,
    check_value BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

-- The token signing key (PKCS#8), wrapped by the master key: every node signs and
-- verifies with it.
CREATE TABLE signing_keys (
    id BIGINT PRIMARY KEY,
    wrapped_key BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

-- Each tenant's data key, wrapped by the master key. Deleting the row crypto-shreds the
-- tenant's templates.
CREATE TABLE tenant_keys (
    tenant_id TEXT PRIMARY KEY,
    wrapped_key BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

-- Palms carry their sealed template; `row_id` (a position in one node's gallery) is no
-- longer what finds a template and stays only for databases written before this version,
-- whose templates are moved in at start-up.
CREATE TABLE palms_v4 (
    feature_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    palm_type TEXT NOT NULL,
    template BLOB,
    legacy_row_id BIGINT,
    enrolled_at BIGINT NOT NULL,
    vendor TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    UNIQUE (user_id, palm_type)
);
INSERT INTO palms_v4 (feature_id, tenant_id, user_id, palm_type, template, legacy_row_id,
    enrolled_at, vendor, challenge_id)
    SELECT feature_id, tenant_id, user_id, palm_type, NULL, row_id, enrolled_at, vendor,
        challenge_id FROM palms;
DROP TABLE palms;
ALTER TABLE palms_v4 RENAME TO palms;
CREATE INDEX palms_tenant ON palms (tenant_id, feature_id);

-- The ordered log of inserts and erasures of each tenant (ids only, never a template).
-- Sequences are drawn from the tenant's head row inside the writing transaction, so they
-- are committed in order.
CREATE TABLE template_log_heads (
    tenant_id TEXT PRIMARY KEY,
    last_sequence BIGINT NOT NULL
);
CREATE TABLE template_log (
    tenant_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    op TEXT NOT NULL,
    feature_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    palm_type TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, sequence)
);

-- The log position a decision must have seen: every enrollment and erasure acknowledged
-- before the challenge was created.
ALTER TABLE challenges ADD COLUMN log_position BIGINT NOT NULL DEFAULT 0;
