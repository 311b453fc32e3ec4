//! [`AuditStore`] on PostgreSQL, and the append every audited change runs in its
//! transaction. Appends to one tenant's chain take its head row's lock (`FOR UPDATE`) and
//! hold it until their transaction ends: one sequence and one predecessor each, whichever
//! node appends.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::sql::{execute, fetch_all, fetch_optional, fetch_page, get, json_column, parsed};
use super::PostgresStore;
use crate::{Actor, AuditEntry, AuditFilter, AuditRecord, AuditStore, StoreResult, GENESIS_HASH};

/// The columns [`entry_row`] reads.
macro_rules! audit_cols {
    () => {
        "tenant_id, sequence, at, actor_type, actor_id, action, resource_type, resource_id, \
         outcome, details, prev_hash, hash"
    };
}

fn entry_row(row: &Row) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        sequence: u64::try_from(get::<i64>(row, "sequence")?).unwrap_or(0),
        record: AuditRecord {
            tenant_id: parsed(row, "tenant_id")?,
            at: get(row, "at")?,
            actor: Actor {
                kind: parsed(row, "actor_type")?,
                id: get(row, "actor_id")?,
            },
            action: get(row, "action")?,
            resource_type: get(row, "resource_type")?,
            resource_id: get(row, "resource_id")?,
            outcome: get(row, "outcome")?,
            details: json_column(row, "details")?.unwrap_or(Value::Null),
        },
        prev_hash: get(row, "prev_hash")?,
        hash: get(row, "hash")?,
    })
}

/// Appends `record` to its tenant's chain inside the caller's transaction.
pub(super) async fn append(
    c: &impl GenericClient,
    record: &AuditRecord,
) -> StoreResult<AuditEntry> {
    let tenant = record.tenant_id.to_string();
    execute(
        c,
        "INSERT INTO audit_heads (tenant_id, last_sequence, last_hash) VALUES ($1, 0, $2) \
         ON CONFLICT (tenant_id) DO NOTHING",
        &[&tenant, &GENESIS_HASH],
    )
    .await?;
    let (last, prev) = fetch_optional(
        c,
        "SELECT last_sequence, last_hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE",
        &[&tenant],
        |r| {
            Ok((
                get::<i64>(r, "last_sequence")?,
                get::<String>(r, "last_hash")?,
            ))
        },
    )
    .await?
    .unwrap_or((0, GENESIS_HASH.to_owned()));
    let sequence = last + 1;
    let entry = AuditEntry::chained(record.clone(), u64::try_from(sequence).unwrap_or(0), prev);
    execute(
        c,
        concat!(
            "INSERT INTO audit_log (",
            audit_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ),
        &[
            &tenant,
            &sequence,
            &record.at,
            &record.actor.kind.as_str(),
            &record.actor.id,
            &record.action,
            &record.resource_type,
            &record.resource_id,
            &record.outcome,
            &record.details.to_string(),
            &entry.prev_hash,
            &entry.hash,
        ],
    )
    .await?;
    execute(
        c,
        "UPDATE audit_heads SET last_sequence = $2, last_hash = $3 WHERE tenant_id = $1",
        &[&tenant, &sequence, &entry.hash],
    )
    .await?;
    Ok(entry)
}

#[async_trait::async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<AuditEntry> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let entry = append(&tx, record).await?;
        tx.commit().await?;
        Ok(entry)
    }

    async fn list_audit(
        &self,
        tenant: Uuid,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AuditEntry>, i64)> {
        self.audit_page(Some(tenant.to_string()), filter, offset, limit)
            .await
    }

    async fn list_audit_across(
        &self,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AuditEntry>, i64)> {
        self.audit_page(None, filter, offset, limit).await
    }

    async fn audit_entries(
        &self,
        tenant: Uuid,
        from: u64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        fetch_all(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                audit_cols!(),
                " FROM audit_log WHERE tenant_id = $1 AND sequence >= $2 \
                 ORDER BY sequence LIMIT $3"
            ),
            &[&tenant.to_string(), &from, &limit],
            entry_row,
        )
        .await
    }

    async fn audit_head(&self, tenant: Uuid) -> StoreResult<Option<(u64, String)>> {
        fetch_optional(
            &self.pool.get().await?,
            "SELECT last_sequence, last_hash FROM audit_heads WHERE tenant_id = $1 \
             AND last_sequence > 0",
            &[&tenant.to_string()],
            |r| {
                Ok((
                    u64::try_from(get::<i64>(r, "last_sequence")?).unwrap_or(0),
                    get::<String>(r, "last_hash")?,
                ))
            },
        )
        .await
    }

    async fn audit_tenants(&self) -> StoreResult<Vec<Uuid>> {
        fetch_all(
            &self.pool.get().await?,
            "SELECT tenant_id FROM audit_log UNION SELECT tenant_id FROM audit_heads \
             ORDER BY tenant_id",
            &[],
            |r| parsed(r, "tenant_id"),
        )
        .await
    }
}

impl PostgresStore {
    /// A page of one chain's entries, or of every chain's, and the total matching.
    async fn audit_page(
        &self,
        tenant: Option<String>,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AuditEntry>, i64)> {
        // One chain's list is read along its primary key; `$1` is NULL across chains.
        let chain = match tenant {
            Some(_) => "tenant_id = $1",
            None => "$1::TEXT IS NULL",
        };
        let cond = format!(
            "{chain} AND ($2::BIGINT IS NULL OR at >= $2) AND ($3::TEXT IS NULL OR action = $3) \
             AND ($4::TEXT IS NULL OR actor_type = $4)"
        );
        let order = filter.order(tenant.is_some());
        let actor_type = filter.actor_type.map(|k| k.as_str());
        let rows = format!(
            concat!(
                "SELECT ",
                audit_cols!(),
                " FROM audit_log WHERE {} ORDER BY {} LIMIT $5 OFFSET $6"
            ),
            cond, order
        );
        let count = format!("SELECT COUNT(*) FROM audit_log WHERE {cond}");
        fetch_page(
            &self.pool.get().await?,
            (rows.as_str(), count.as_str()),
            &[
                &tenant,
                &filter.since,
                &filter.action,
                &actor_type,
                &limit,
                &offset,
            ],
            4,
            entry_row,
        )
        .await
    }
}

/// Runs one statement and, if it changed a row, appends `record`, in one transaction;
/// returns the rows changed.
pub(super) async fn audited_execute(
    store: &PostgresStore,
    sql: &str,
    params: super::sql::Params<'_>,
    record: &AuditRecord,
) -> StoreResult<u64> {
    let mut c = store.pool.get().await?;
    let tx = c.transaction().await?;
    let n = execute(&tx, sql, params).await?;
    if n > 0 {
        append(&tx, record).await?;
    }
    tx.commit().await?;
    Ok(n)
}
