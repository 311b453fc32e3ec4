SET search_path = pgperf_mix;
INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'bench', 0);
INSERT INTO oauth_clients (id, tenant_id, name, scopes, secret_hash, created_at) VALUES ('c1', 't1', 'bench', 'verify', 'x', 0);
INSERT INTO devices (id, tenant_id, device_name, location, status, hardware_id, secret_hash, paired_at, last_seen_at, created_at)
  SELECT 'd' || i, 't1', 'bench', 'lab', 'paired', 'hw-' || i, 'secret-' || i, 0, 0, 0 FROM generate_series(0, 63) i;
INSERT INTO users (id, tenant_id, external_user_id, created_at) SELECT 'u' || i, 't1', 'user-' || i, 0 FROM generate_series(0, 63) i;
INSERT INTO palms (feature_id, tenant_id, user_id, palm_type, enrolled_at, vendor, challenge_id)
  SELECT 'f' || i, 't1', 'u' || i, 'right', 0, 'mock', 'x' FROM generate_series(0, 63) i;
INSERT INTO template_log_heads VALUES ('t1', 128);
INSERT INTO audit_heads VALUES ('t1', 0, repeat('0', 64));
