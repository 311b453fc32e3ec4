\set n random(1, 1000000000)
BEGIN;
INSERT INTO challenges (id, tenant_id, status, expires_at) VALUES ('c' || :n || '-' || :client_id || '-' || random(), 't1', 'pending', 0) ON CONFLICT DO NOTHING;
INSERT INTO outbox_events VALUES (gen_random_uuid()::text, 't1', 'verification.complete', repeat('x', 600), 1, NULL);
INSERT INTO audit_heads VALUES ('t1', 0, repeat('0', 64)) ON CONFLICT (tenant_id) DO NOTHING;
SELECT last_sequence, last_hash FROM audit_heads WHERE tenant_id = 't1' FOR UPDATE;
INSERT INTO audit_log SELECT 't1', last_sequence + 1, 1, repeat('d', 400), last_hash, md5(random()::text) || md5(random()::text) FROM audit_heads WHERE tenant_id = 't1';
UPDATE audit_heads SET last_sequence = last_sequence + 1, last_hash = md5(random()::text) || md5(random()::text) WHERE tenant_id = 't1';
COMMIT;
