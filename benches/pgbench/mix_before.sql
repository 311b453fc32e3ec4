\set d random(0, 63)
SELECT id, tenant_id, name, scopes, secret_hash, old_secret_hash, created_at FROM oauth_clients WHERE id = 'c1';
SELECT id, tenant_id, device_name, location, status, hardware_id, pairing_code, pairing_expires_at, paired_at, cert_valid_until, last_seen_at, created_at FROM devices WHERE tenant_id = 't1' AND hardware_id = 'hw-' || :d ORDER BY CASE WHEN status = 'paired' THEN 0 ELSE 1 END, paired_at DESC NULLS LAST LIMIT 1;
SELECT u.id, u.tenant_id, u.external_user_id, u.created_at, p.feature_id, p.palm_type, p.enrolled_at, p.vendor, p.challenge_id FROM users u LEFT JOIN palms p ON p.tenant_id = u.tenant_id AND p.user_id = u.id WHERE u.tenant_id = 't1' AND u.external_user_id = 'user-' || :d ORDER BY p.palm_type;
SELECT last_sequence FROM template_log_heads WHERE tenant_id = 't1';
INSERT INTO challenges (id, tenant_id, kind, device_id, hardware_id, external_user_id, palm_type, top_k, status, metadata, result, failure_reason, created_at, expires_at, finished_at, log_position, captures) VALUES (gen_random_uuid()::text, 't1', 'verify', 'd' || :d, 'hw-' || :d, 'user-' || :d, 'right', NULL, 'pending', 'null', NULL, NULL, 1, 9000000000000000, NULL, 128, NULL) RETURNING id AS cid \gset
SELECT pg_notify('pgperf_mix', '["challenges","d' || :d || '"]');
SELECT id, tenant_id, device_name, location, status, hardware_id, pairing_code, pairing_expires_at, paired_at, cert_valid_until, last_seen_at, created_at FROM devices WHERE secret_hash = 'secret-' || :d AND status = 'paired';
SELECT id, tenant_id, kind, device_id, hardware_id, external_user_id, palm_type, top_k, status, metadata, result, failure_reason, created_at, expires_at, finished_at, log_position, captures FROM challenges WHERE tenant_id = 't1' AND id = :cid;
SELECT min_quality, min_liveness, duplicate_check FROM tenants WHERE id = 't1';
SELECT u.id, u.tenant_id, u.external_user_id, u.created_at, p.feature_id, p.palm_type, p.enrolled_at, p.vendor, p.challenge_id FROM users u LEFT JOIN palms p ON p.tenant_id = u.tenant_id AND p.user_id = u.id WHERE u.tenant_id = 't1' AND u.external_user_id = 'user-' || :d ORDER BY p.palm_type;
SELECT match_thresholds, match_policy, match_k FROM tenants WHERE id = 't1';
BEGIN;
UPDATE challenges SET status = 'completed', result = repeat('r', 500), captures = '[{"quality":0.9}]', finished_at = 2 WHERE id = :cid AND status = 'pending' AND expires_at > 2;
INSERT INTO outbox_events (event_id, tenant_id, event_type, payload, occurred_at, dispatched_at) VALUES (gen_random_uuid()::text, 't1', 'verification.complete', repeat('p', 600), 2, NULL);
INSERT INTO audit_heads (tenant_id, last_sequence, last_hash) VALUES ('t1', 0, repeat('0', 64)) ON CONFLICT (tenant_id) DO NOTHING;
SELECT last_sequence, last_hash FROM audit_heads WHERE tenant_id = 't1' FOR UPDATE;
INSERT INTO audit_log (tenant_id, sequence, at, actor_type, actor_id, action, resource_type, resource_id, outcome, details, prev_hash, hash) SELECT 't1', last_sequence + 1, 2, 'device', 'd', 'verification.completed', 'challenge', :cid, 'match', repeat('d', 300), last_hash, md5(random()::text) || md5(random()::text) FROM audit_heads WHERE tenant_id = 't1';
UPDATE audit_heads SET last_sequence = last_sequence + 1, last_hash = md5(random()::text) || md5(random()::text) WHERE tenant_id = 't1';
COMMIT;
SELECT pg_notify('pgperf_mix', '["outbox",""]');
