//! [`DeviceStore`] on SQLite.

use rusqlite::{params, Row};
use uuid::Uuid;

use super::audit::{append as append_audit, audited};
use super::challenges::{end_each, FAIL_PENDING_OF_DEVICE};
use super::outbox::insert_event;
use super::sql::{execute, fetch_all, fetch_optional, parsed};
use super::SqliteStore;
use crate::{
    AuditRecord, Device, DeviceStatus, DeviceStore, EndRecords, OutboxEvent, Pairing, StoreResult,
};

/// The columns [`device_row`] reads.
macro_rules! device_cols {
    () => {
        "id, tenant_id, device_name, location, status, hardware_id, pairing_code, \
         pairing_expires_at, paired_at, cert_valid_until, last_seen_at, created_at"
    };
}

fn device_row(row: &Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        device_name: row.get("device_name")?,
        location: row.get("location")?,
        status: parsed(row, "status")?,
        hardware_id: row.get("hardware_id")?,
        pairing_code: row.get("pairing_code")?,
        pairing_expires_at: row.get("pairing_expires_at")?,
        paired_at: row.get("paired_at")?,
        cert_valid_until: row.get("cert_valid_until")?,
        last_seen_at: row.get("last_seen_at")?,
        created_at: row.get("created_at")?,
    })
}

/// The scanner of tenant `$1` with hardware id `$2`: the paired one if there is one, else
/// the one paired last.
pub(super) const DEVICE_BY_HARDWARE: &str = concat!(
    "SELECT ",
    device_cols!(),
    " FROM devices WHERE tenant_id = $1 AND hardware_id = $2 \
     ORDER BY CASE WHEN status = 'paired' THEN 0 ELSE 1 END, paired_at DESC LIMIT 1"
);

#[async_trait::async_trait]
impl DeviceStore for SqliteStore {
    async fn create_device(&self, d: &Device, audit: &AuditRecord) -> StoreResult<()> {
        self.db
            .write(|c| {
                let n = execute(
                    c,
                    "INSERT INTO devices (id, tenant_id, device_name, location, status, hardware_id, \
                     pairing_code, pairing_expires_at, secret_hash, paired_at, cert_valid_until, \
                     last_seen_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11, $12)",
                    params![
                        d.id.to_string(),
                        d.tenant_id.to_string(),
                        d.device_name,
                        d.location,
                        d.status.as_str(),
                        d.hardware_id,
                        d.pairing_code,
                        d.pairing_expires_at,
                        d.paired_at,
                        d.cert_valid_until,
                        d.last_seen_at,
                        d.created_at,
                    ],
                )?;
                append_audit(c, audit)?;
                Ok(n)
            })
            .await?;
        Ok(())
    }

    async fn get_device(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Device>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                concat!(
                    "SELECT ",
                    device_cols!(),
                    " FROM devices WHERE tenant_id = $1 AND id = $2"
                ),
                [tenant.to_string(), id.to_string()],
                device_row,
            )
        })?)
    }

    async fn list_devices(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Device>, i64)> {
        Ok(self.db.read(|c| {
            let rows = fetch_all(
                c,
                concat!(
                    "SELECT ",
                    device_cols!(),
                    " FROM devices WHERE tenant_id = $1 ORDER BY created_at DESC, id \
                     LIMIT $2 OFFSET $3"
                ),
                params![tenant.to_string(), limit, offset],
                device_row,
            )?;
            let total = c
                .prepare_cached("SELECT COUNT(*) FROM devices WHERE tenant_id = $1")?
                .query_row([tenant.to_string()], |r| r.get(0))?;
            Ok((rows, total))
        })?)
    }

    async fn find_device_by_hardware(
        &self,
        tenant: Uuid,
        hardware_id: &str,
    ) -> StoreResult<Option<Device>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                DEVICE_BY_HARDWARE,
                params![tenant.to_string(), hardware_id],
                device_row,
            )
        })?)
    }

    async fn find_device_by_pairing_code(&self, code: &str) -> StoreResult<Option<Device>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                concat!(
                    "SELECT ",
                    device_cols!(),
                    " FROM devices WHERE pairing_code = $1"
                ),
                [code],
                device_row,
            )
        })?)
    }

    async fn find_device_by_secret_hash(&self, hash: &str) -> StoreResult<Option<Device>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                concat!(
                    "SELECT ",
                    device_cols!(),
                    " FROM devices WHERE secret_hash = $1 AND status = 'paired'"
                ),
                [hash],
                device_row,
            )
        })?)
    }

    async fn set_pairing_code(
        &self,
        tenant: Uuid,
        id: Uuid,
        code: &str,
        expires_at: i64,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        let done = audited(self, audit, |c| {
            execute(
                c,
                "UPDATE devices SET pairing_code = $1, pairing_expires_at = $2 \
                 WHERE tenant_id = $3 AND id = $4 AND status = 'pending_pair'",
                params![code, expires_at, tenant.to_string(), id.to_string()],
            )
        })
        .await?;
        Ok(done == 1)
    }

    async fn pair_device(
        &self,
        p: &Pairing,
        event: &OutboxEvent,
        audit: &AuditRecord,
    ) -> StoreResult<Option<Device>> {
        Ok(self
            .db
            .write(|c| {
                let done = execute(
                    c,
                    "UPDATE devices SET status = $1, hardware_id = $2, secret_hash = $3, \
                     paired_at = $4, cert_valid_until = $5, last_seen_at = $4 \
                     WHERE id = $6 AND pairing_code = $7 AND status = 'pending_pair'",
                    params![
                        DeviceStatus::Paired.as_str(),
                        p.hardware_id,
                        p.secret_hash,
                        p.paired_at,
                        p.cert_valid_until,
                        p.device_id.to_string(),
                        p.code,
                    ],
                )?;
                if done != 1 {
                    return Ok(None);
                }
                insert_event(c, event)?;
                append_audit(c, audit)?;
                fetch_optional(
                    c,
                    concat!("SELECT ", device_cols!(), " FROM devices WHERE id = $1"),
                    [p.device_id.to_string()],
                    device_row,
                )
            })
            .await?)
    }

    async fn touch_device(&self, id: Uuid, now: i64) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    "UPDATE devices SET last_seen_at = $1 WHERE id = $2",
                    params![now, id.to_string()],
                )
            })
            .await?;
        Ok(())
    }

    async fn revoke_device(
        &self,
        tenant: Uuid,
        id: Uuid,
        now: i64,
        audit: &AuditRecord,
        records: &EndRecords,
    ) -> StoreResult<bool> {
        Ok(self
            .db
            .write(|c| {
                let done = execute(
                    c,
                    "UPDATE devices SET status = 'revoked', secret_hash = NULL \
                     WHERE tenant_id = $1 AND id = $2 AND status <> 'revoked'",
                    [tenant.to_string(), id.to_string()],
                )?;
                if done != 1 {
                    return Ok(false);
                }
                append_audit(c, audit)?;
                end_each(
                    c,
                    FAIL_PENDING_OF_DEVICE,
                    params![now, id.to_string()],
                    records,
                )?;
                Ok(true)
            })
            .await?)
    }
}
