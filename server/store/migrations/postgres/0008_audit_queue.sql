-- PalmLink schema, version 8, on PostgreSQL: audit entries queued by the changes they record,
-- chained afterwards in batches.
--
-- An audited change inserts its entry here in its own transaction and takes no lock of its
-- tenant's chain, so one tenant's changes commit side by side. A sealer then moves queued
-- entries, in `id` order and under the chain head's row lock, into `audit_log` with their
-- sequences and hashes, many per transaction; every read of the log seals first.
CREATE TABLE audit_queue (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor_type TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX audit_queue_tenant ON audit_queue (tenant_id, id);
