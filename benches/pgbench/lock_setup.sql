DROP SCHEMA IF EXISTS pgperf_bench CASCADE;
CREATE SCHEMA pgperf_bench;
SET search_path = pgperf_bench;
CREATE TABLE challenges (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, status TEXT NOT NULL, result TEXT, captures TEXT, finished_at BIGINT, expires_at BIGINT NOT NULL);
CREATE TABLE outbox_events (event_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, event_type TEXT NOT NULL, payload TEXT NOT NULL, occurred_at BIGINT NOT NULL, dispatched_at BIGINT);
CREATE TABLE audit_heads (tenant_id TEXT PRIMARY KEY, last_sequence BIGINT NOT NULL, last_hash TEXT NOT NULL);
CREATE TABLE audit_log (tenant_id TEXT NOT NULL, sequence BIGINT NOT NULL, at BIGINT NOT NULL, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (tenant_id, sequence));
CREATE TABLE audit_pending (id BIGSERIAL PRIMARY KEY, tenant_id TEXT NOT NULL, at BIGINT NOT NULL, details TEXT NOT NULL);
INSERT INTO audit_heads VALUES ('t1', 0, repeat('0', 64));
