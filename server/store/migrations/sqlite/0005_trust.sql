-- Trust policy: the minimum quality and liveness a capture needs and the duplicate-identity
-- check of enrollments, per tenant; the quality and liveness of each challenge's captures.

ALTER TABLE tenants ADD COLUMN min_quality REAL NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN min_liveness REAL NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN duplicate_check TEXT NOT NULL DEFAULT 'flag';
ALTER TABLE challenges ADD COLUMN captures TEXT;

-- The audit log: append-only, one hash chain per tenant. Kept when its tenant is deleted.
CREATE TABLE audit_log (
    tenant_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    at BIGINT NOT NULL,
    actor_type TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (tenant_id, sequence)
);
CREATE INDEX audit_log_action ON audit_log (tenant_id, action, sequence);

-- Each chain's last sequence and hash: appends take its row lock, one at a time per tenant.
CREATE TABLE audit_heads (
    tenant_id TEXT PRIMARY KEY,
    last_sequence BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);
