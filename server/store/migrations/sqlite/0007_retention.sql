-- Retention: the days a tenant keeps finished challenges, events and delivery logs (NULL:
-- for ever), and the index the purge reads a tenant's old events by.

ALTER TABLE tenants ADD COLUMN retention_days BIGINT;
CREATE INDEX outbox_events_tenant_occurred ON outbox_events (tenant_id, occurred_at);
