\set n random(1, 1000000000)
BEGIN;
INSERT INTO challenges (id, tenant_id, status, expires_at) VALUES ('c' || :n || '-' || :client_id || '-' || random(), 't1', 'pending', 0) ON CONFLICT DO NOTHING;
INSERT INTO outbox_events VALUES (gen_random_uuid()::text, 't1', 'verification.complete', repeat('x', 600), 1, NULL);
INSERT INTO audit_pending (tenant_id, at, details) VALUES ('t1', 1, repeat('d', 400));
COMMIT;
