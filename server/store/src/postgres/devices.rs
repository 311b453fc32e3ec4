//! [`DeviceStore`] on PostgreSQL.

use tokio_postgres::Row;
use uuid::Uuid;

use super::audit::{append as append_audit, audited_execute};
use super::challenges::{end_each, FAIL_PENDING_OF_DEVICE};
use super::outbox::insert_event;
use super::sql::{execute, fetch_optional, fetch_page, get, parsed};
use super::PostgresStore;
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

fn device_row(row: &Row) -> StoreResult<Device> {
    Ok(Device {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        device_name: get(row, "device_name")?,
        location: get(row, "location")?,
        status: parsed(row, "status")?,
        hardware_id: get(row, "hardware_id")?,
        pairing_code: get(row, "pairing_code")?,
        pairing_expires_at: get(row, "pairing_expires_at")?,
        paired_at: get(row, "paired_at")?,
        cert_valid_until: get(row, "cert_valid_until")?,
        last_seen_at: get(row, "last_seen_at")?,
        created_at: get(row, "created_at")?,
    })
}

#[async_trait::async_trait]
impl DeviceStore for PostgresStore {
    async fn create_device(&self, d: &Device, audit: &AuditRecord) -> StoreResult<()> {
        audited_execute(
            self,
            "INSERT INTO devices (id, tenant_id, device_name, location, status, hardware_id, \
             pairing_code, pairing_expires_at, secret_hash, paired_at, cert_valid_until, \
             last_seen_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10, $11, $12)",
            &[
                &d.id.to_string(),
                &d.tenant_id.to_string(),
                &d.device_name,
                &d.location,
                &d.status.as_str(),
                &d.hardware_id,
                &d.pairing_code,
                &d.pairing_expires_at,
                &d.paired_at,
                &d.cert_valid_until,
                &d.last_seen_at,
                &d.created_at,
            ],
            audit,
        )
        .await?;
        Ok(())
    }

    async fn get_device(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Device>> {
        fetch_optional(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                device_cols!(),
                " FROM devices WHERE tenant_id = $1 AND id = $2"
            ),
            &[&tenant.to_string(), &id.to_string()],
            device_row,
        )
        .await
    }

    async fn list_devices(
        &self,
        tenant: Uuid,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Device>, i64)> {
        let c = self.pool.get().await?;
        let tenant = tenant.to_string();
        fetch_page(
            &c,
            (
                concat!(
                    "SELECT ",
                    device_cols!(),
                    " FROM devices WHERE tenant_id = $1 ORDER BY created_at DESC, id \
                     LIMIT $2 OFFSET $3"
                ),
                "SELECT COUNT(*) FROM devices WHERE tenant_id = $1",
            ),
            &[&tenant, &limit, &offset],
            1,
            device_row,
        )
        .await
    }

    async fn find_device_by_hardware(
        &self,
        tenant: Uuid,
        hardware_id: &str,
    ) -> StoreResult<Option<Device>> {
        fetch_optional(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                device_cols!(),
                " FROM devices WHERE tenant_id = $1 AND hardware_id = $2 \
                 ORDER BY CASE WHEN status = 'paired' THEN 0 ELSE 1 END, \
                 paired_at DESC NULLS LAST LIMIT 1"
            ),
            &[&tenant.to_string(), &hardware_id],
            device_row,
        )
        .await
    }

    async fn find_device_by_pairing_code(&self, code: &str) -> StoreResult<Option<Device>> {
        fetch_optional(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                device_cols!(),
                " FROM devices WHERE pairing_code = $1"
            ),
            &[&code],
            device_row,
        )
        .await
    }

    async fn find_device_by_secret_hash(&self, hash: &str) -> StoreResult<Option<Device>> {
        fetch_optional(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                device_cols!(),
                " FROM devices WHERE secret_hash = $1 AND status = 'paired'"
            ),
            &[&hash],
            device_row,
        )
        .await
    }

    async fn set_pairing_code(
        &self,
        tenant: Uuid,
        id: Uuid,
        code: &str,
        expires_at: i64,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        let done = audited_execute(
            self,
            "UPDATE devices SET pairing_code = $1, pairing_expires_at = $2 \
             WHERE tenant_id = $3 AND id = $4 AND status = 'pending_pair'",
            &[&code, &expires_at, &tenant.to_string(), &id.to_string()],
            audit,
        )
        .await?;
        Ok(done == 1)
    }

    async fn pair_device(
        &self,
        p: &Pairing,
        event: &OutboxEvent,
        audit: &AuditRecord,
    ) -> StoreResult<Option<Device>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        // Conditional on the code and `pending_pair`: of two scanners with one code, the
        // second waits for the first's row lock and then matches nothing. Of two devices
        // pairing one hardware id, the second waits on the unique index of paired hardware
        // ids and fails with a conflict; its transaction, event included, is rolled back.
        let paired = fetch_optional(
            &tx,
            concat!(
                "UPDATE devices SET status = $1, hardware_id = $2, secret_hash = $3, \
                 paired_at = $4, cert_valid_until = $5, last_seen_at = $4 \
                 WHERE id = $6 AND pairing_code = $7 AND status = 'pending_pair' RETURNING ",
                device_cols!()
            ),
            &[
                &DeviceStatus::Paired.as_str(),
                &p.hardware_id,
                &p.secret_hash,
                &p.paired_at,
                &p.cert_valid_until,
                &p.device_id.to_string(),
                &p.code,
            ],
            device_row,
        )
        .await?;
        if paired.is_some() {
            insert_event(&tx, event).await?;
            append_audit(&tx, audit).await?;
            tx.commit().await?;
            self.sealer.poke(audit.tenant_id);
        }
        Ok(paired)
    }

    async fn touch_device(&self, id: Uuid, now: i64) -> StoreResult<()> {
        execute(
            &self.pool.get().await?,
            "UPDATE devices SET last_seen_at = $1 WHERE id = $2",
            &[&now, &id.to_string()],
        )
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
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let done = execute(
            &tx,
            "UPDATE devices SET status = 'revoked', secret_hash = NULL \
             WHERE tenant_id = $1 AND id = $2 AND status <> 'revoked'",
            &[&tenant.to_string(), &id.to_string()],
        )
        .await?;
        if done != 1 {
            return Ok(false);
        }
        append_audit(&tx, audit).await?;
        // Each pending challenge is locked as it is failed: one completing meanwhile is
        // waited for and, completed, no longer matches.
        end_each(
            &tx,
            FAIL_PENDING_OF_DEVICE,
            &[&now, &id.to_string()],
            records,
        )
        .await?;
        tx.commit().await?;
        self.sealer.poke(audit.tenant_id);
        Ok(true)
    }
}
