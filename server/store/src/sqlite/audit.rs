//! [`AuditStore`] on SQLite, and the append every audited change runs in its transaction.
//! The single writer serialises appends; the head row records each chain's end.

use rusqlite::{params, Connection, Row};
use serde_json::Value;
use uuid::Uuid;

use super::sql::{execute, fetch_all, fetch_optional, json_column, parsed};
use super::SqliteStore;
use crate::{Actor, AuditEntry, AuditFilter, AuditRecord, AuditStore, StoreResult, GENESIS_HASH};

/// The columns [`entry_row`] reads.
macro_rules! audit_cols {
    () => {
        "tenant_id, sequence, at, actor_type, actor_id, action, resource_type, resource_id, \
         outcome, details, prev_hash, hash"
    };
}

fn entry_row(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        sequence: u64::try_from(row.get::<_, i64>("sequence")?).unwrap_or(0),
        record: AuditRecord {
            tenant_id: parsed(row, "tenant_id")?,
            at: row.get("at")?,
            actor: Actor {
                kind: parsed(row, "actor_type")?,
                id: row.get("actor_id")?,
            },
            action: row.get("action")?,
            resource_type: row.get("resource_type")?,
            resource_id: row.get("resource_id")?,
            outcome: row.get("outcome")?,
            details: json_column(row, "details")?.unwrap_or(Value::Null),
        },
        prev_hash: row.get("prev_hash")?,
        hash: row.get("hash")?,
    })
}

/// Appends `record` to its tenant's chain inside the caller's transaction.
pub(super) fn append(c: &Connection, record: &AuditRecord) -> rusqlite::Result<AuditEntry> {
    let tenant = record.tenant_id.to_string();
    let head = fetch_optional(
        c,
        "SELECT last_sequence, last_hash FROM audit_heads WHERE tenant_id = $1",
        [&tenant],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
    )?;
    let (last, prev) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
    let entry = AuditEntry::chained(record.clone(), u64::try_from(last).unwrap_or(0) + 1, prev);
    let sequence = last + 1;
    execute(
        c,
        concat!(
            "INSERT INTO audit_log (",
            audit_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ),
        params![
            tenant,
            sequence,
            record.at,
            record.actor.kind.as_str(),
            record.actor.id,
            record.action,
            record.resource_type,
            record.resource_id,
            record.outcome,
            record.details.to_string(),
            entry.prev_hash,
            entry.hash,
        ],
    )?;
    execute(
        c,
        "INSERT INTO audit_heads (tenant_id, last_sequence, last_hash) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id) DO UPDATE SET last_sequence = excluded.last_sequence, \
         last_hash = excluded.last_hash",
        params![tenant, sequence, entry.hash],
    )?;
    Ok(entry)
}

#[async_trait::async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<AuditEntry> {
        Ok(self.db.write(|c| append(c, record)).await?)
    }

    async fn list_audit(
        &self,
        tenant: Uuid,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AuditEntry>, i64)> {
        let tenant = tenant.to_string();
        self.audit_page(Some(&tenant), filter, offset, limit)
    }

    async fn list_audit_across(
        &self,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AuditEntry>, i64)> {
        self.audit_page(None, filter, offset, limit)
    }

    async fn audit_entries(
        &self,
        tenant: Uuid,
        from: u64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                concat!(
                    "SELECT ",
                    audit_cols!(),
                    " FROM audit_log WHERE tenant_id = $1 AND sequence >= $2 \
                     ORDER BY sequence LIMIT $3"
                ),
                params![tenant.to_string(), from, limit],
                entry_row,
            )
        })?)
    }

    async fn audit_head(&self, tenant: Uuid) -> StoreResult<Option<(u64, String)>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                "SELECT last_sequence, last_hash FROM audit_heads WHERE tenant_id = $1",
                [tenant.to_string()],
                |r| {
                    Ok((
                        u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        r.get::<_, String>(1)?,
                    ))
                },
            )
        })?)
    }

    async fn audit_tenants(&self) -> StoreResult<Vec<Uuid>> {
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                "SELECT DISTINCT tenant_id FROM audit_log UNION \
                 SELECT tenant_id FROM audit_heads ORDER BY tenant_id",
                [],
                |r| parsed(r, "tenant_id"),
            )
        })?)
    }
}

impl SqliteStore {
    /// A page of one chain's entries, or of every chain's, and the total matching.
    fn audit_page(
        &self,
        tenant: Option<&str>,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AuditEntry>, i64)> {
        // One chain's list is read along its primary key; `$1` is NULL across chains.
        let chain = match tenant {
            Some(_) => "tenant_id = $1",
            None => "$1 IS NULL",
        };
        let cond = format!(
            "{chain} AND ($2 IS NULL OR at >= $2) AND ($3 IS NULL OR action = $3) \
             AND ($4 IS NULL OR actor_type = $4)"
        );
        let order = filter.order(tenant.is_some());
        let actor_type = filter.actor_type.map(|k| k.as_str());
        Ok(self.db.read(|c| {
            let rows = fetch_all(
                c,
                &format!(
                    concat!(
                        "SELECT ",
                        audit_cols!(),
                        " FROM audit_log WHERE {} ORDER BY {} LIMIT $5 OFFSET $6"
                    ),
                    cond, order
                ),
                params![
                    tenant,
                    filter.since,
                    filter.action,
                    actor_type,
                    limit,
                    offset
                ],
                entry_row,
            )?;
            let total = c
                .prepare_cached(&format!("SELECT COUNT(*) FROM audit_log WHERE {cond}"))?
                .query_row(
                    params![tenant, filter.since, filter.action, actor_type],
                    |r| r.get(0),
                )?;
            Ok((rows, total))
        })?)
    }
}

/// Runs `change` (which returns the rows it changed) and, if it changed a row, appends
/// `record`, in one transaction; returns the rows changed.
pub(super) async fn audited(
    store: &SqliteStore,
    record: &AuditRecord,
    change: impl FnOnce(&Connection) -> rusqlite::Result<usize>,
) -> StoreResult<usize> {
    Ok(store
        .db
        .write(|c| {
            let n = change(c)?;
            if n > 0 {
                append(c, record)?;
            }
            Ok(n)
        })
        .await?)
}
