-- PalmLink schema, version 3, on PostgreSQL: indexes that keep the hot paths' work
-- independent of how much the database holds.

-- The indexes that find pending challenges hold only those: a challenge leaves them when it
-- finishes, so they stay as small as the open work and a commit rewrites a page or two of
-- each rather than one page per challenge.
DROP INDEX challenges_device_pending;
DROP INDEX challenges_status_expiry;
CREATE INDEX challenges_device_pending ON challenges (device_id, created_at) WHERE status = 'pending';
CREATE INDEX challenges_pending_expiry ON challenges (expires_at) WHERE status = 'pending';

-- A challenge names its scanner by hardware id: found among the tenant's scanners by index,
-- whatever their status, rather than by reading every scanner of the tenant.
CREATE INDEX devices_hardware ON devices (tenant_id, hardware_id);
