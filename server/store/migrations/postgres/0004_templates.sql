-- PalmLink schema, version 4 (PostgreSQL): templates in the database, sealed under per-tenant
-- data keys, and the per-tenant template log the galleries follow.

-- The master key's check value, sealed under the master key.
CREATE TABLE keyring (
    id BIGINT PRIMARY KEY,
    check_value BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- The token signing key (PKCS#8), wrapped by the master key: every node signs and
-- verifies with it.
CREATE TABLE signing_keys (
    id BIGINT PRIMARY KEY,
    wrapped_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- Each tenant's data key, wrapped by the master key. Deleting the row crypto-shreds the
-- tenant's templates.
CREATE TABLE tenant_keys (
    tenant_id TEXT PRIMARY KEY,
    wrapped_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- Palms carry their sealed template; the gallery row of the node that enrolled them is kept
-- only for palms written before this version, whose templates are moved in at start-up.
ALTER TABLE palms ADD COLUMN template BYTEA;
ALTER TABLE palms DROP CONSTRAINT IF EXISTS palms_tenant_id_row_id_key;
ALTER TABLE palms RENAME COLUMN row_id TO legacy_row_id;
ALTER TABLE palms ALTER COLUMN legacy_row_id DROP NOT NULL;
CREATE INDEX palms_tenant ON palms (tenant_id, feature_id);

-- The ordered log of inserts and erasures of each tenant (ids only, never a template).
-- Sequences are drawn from the tenant's head row inside the writing transaction, whose row
-- lock makes a second writer of the tenant wait: sequences are committed in order.
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

-- The log position a decision must have seen.
ALTER TABLE challenges ADD COLUMN log_position BIGINT NOT NULL DEFAULT 0;
