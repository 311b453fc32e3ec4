-- PalmLink schema, version 1, on PostgreSQL: the tables and columns of the SQLite schema.
-- Timestamps are BIGINT microseconds since the Unix epoch; ids are UUID text.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    match_thresholds TEXT,
    match_policy TEXT,
    match_k BIGINT
);

CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    old_secret_hash TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    device_name TEXT NOT NULL,
    location TEXT NOT NULL,
    status TEXT NOT NULL,
    hardware_id TEXT,
    pairing_code TEXT,
    pairing_expires_at BIGINT,
    secret_hash TEXT,
    paired_at BIGINT,
    cert_valid_until BIGINT,
    last_seen_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX devices_tenant ON devices (tenant_id, created_at);
CREATE UNIQUE INDEX devices_pairing_code ON devices (pairing_code);
CREATE UNIQUE INDEX devices_secret_hash ON devices (secret_hash);
CREATE UNIQUE INDEX devices_paired_hardware ON devices (tenant_id, hardware_id) WHERE status = 'paired';

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    external_user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, external_user_id)
);

CREATE TABLE palms (
    feature_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    palm_type TEXT NOT NULL,
    row_id BIGINT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    vendor TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    UNIQUE (user_id, palm_type),
    UNIQUE (tenant_id, row_id)
);

CREATE TABLE challenges (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    kind TEXT NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices(id),
    hardware_id TEXT NOT NULL,
    external_user_id TEXT,
    palm_type TEXT NOT NULL,
    top_k BIGINT,
    status TEXT NOT NULL,
    metadata TEXT NOT NULL,
    result TEXT,
    failure_reason TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX challenges_tenant ON challenges (tenant_id, created_at);
CREATE INDEX challenges_device_pending ON challenges (device_id, status);
CREATE INDEX challenges_status_expiry ON challenges (status, expires_at);

CREATE TABLE outbox_events (
    event_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    dispatched_at BIGINT
);
CREATE INDEX outbox_events_pending ON outbox_events (dispatched_at, occurred_at);

CREATE TABLE idempotency_keys (
    client_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code BIGINT,
    response_body TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, idem_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
