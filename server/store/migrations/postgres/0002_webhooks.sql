-- Webhook subscriptions and their durable deliveries, on PostgreSQL.
-- Timestamps are BIGINT microseconds since the Unix epoch; ids are UUID text; `active` is 0 or 1.

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    events TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    api_key TEXT,
    secret TEXT NOT NULL,
    old_secret TEXT,
    old_secret_expires_at BIGINT,
    active BIGINT NOT NULL,
    disabled_reason TEXT,
    failing_since BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, endpoint)
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, created_at);

-- The worker reads a tenant's undispatched events in order.
CREATE INDEX outbox_events_tenant_pending ON outbox_events (tenant_id, dispatched_at, occurred_at);

-- One row per (event, subscription): the fan-out of the outbox, written in the same
-- transaction that marks the event dispatched.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    cycle_start BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_status_code BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    delivered_at BIGINT,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, created_at);

CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL,
    status_code BIGINT,
    latency_ms BIGINT NOT NULL,
    error TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
