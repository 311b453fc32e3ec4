//! [`AuditStore`] on PostgreSQL: entries queued by the changes they record, and chained in
//! batches.
//!
//! An audited change writes its entry into `audit_queue` in its own transaction ([`append`])
//! and touches no chain head, so the changes of one tenant commit side by side. Were the
//! entry chained there, each change would hold its tenant's head row lock through its
//! commit's WAL flush, and a tenant could not commit faster than one flush at a time.
//!
//! [`seal`] chains queued entries: under the head's row lock (`FOR UPDATE`), it moves a
//! tenant's queued entries, in queue order, into `audit_log` with their sequences and
//! hashes, many in one transaction. A queued row is deleted in the transaction that chains
//! it, so an entry is chained once, whichever node seals. Every node's [`Sealer`] seals a
//! tenant soon after one of its changes commits and looks for queued entries of any tenant
//! every [`SWEEP`] (those of a crashed node or of an operator command), and every read of
//! the log seals the tenant first: no read sees a chain without an acknowledged entry.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::Row;
use uuid::Uuid;

use super::sql::{
    execute, fetch_all, fetch_optional, fetch_page, fetch_value, get, json_column, parsed,
};
use super::PostgresStore;
use crate::{Actor, AuditEntry, AuditFilter, AuditRecord, AuditStore, StoreResult, GENESIS_HASH};

/// The columns [`entry_row`] reads.
macro_rules! audit_cols {
    () => {
        "tenant_id, sequence, at, actor_type, actor_id, action, resource_type, resource_id, \
         outcome, details, prev_hash, hash"
    };
}

/// The columns of a record, queued or chained.
macro_rules! record_cols {
    () => {
        "tenant_id, at, actor_type, actor_id, action, resource_type, resource_id, outcome, \
         details"
    };
}

/// Entries chained per transaction at most.
const SEAL_BATCH: i64 = 1000;
/// How often a node looks for queued entries that no change of its own announced.
pub(super) const SWEEP: Duration = Duration::from_secs(1);
/// The pause after a seal that failed, before the tenant is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

fn entry_row(row: &Row) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        sequence: u64::try_from(get::<i64>(row, "sequence")?).unwrap_or(0),
        record: record_row(row)?,
        prev_hash: get(row, "prev_hash")?,
        hash: get(row, "hash")?,
    })
}

fn record_row(row: &Row) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
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
    })
}

/// Queues `record` for its tenant's chain inside the caller's transaction; returns its
/// place in the queue.
pub(super) async fn append(c: &impl GenericClient, record: &AuditRecord) -> StoreResult<i64> {
    fetch_value(
        c,
        concat!(
            "INSERT INTO audit_queue (",
            record_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"
        ),
        &[
            &record.tenant_id.to_string(),
            &record.at,
            &record.actor.kind.as_str(),
            &record.actor.id,
            &record.action,
            &record.resource_type,
            &record.resource_id,
            &record.outcome,
            &record.details.to_string(),
        ],
    )
    .await
}

/// Chains every entry of `tenant` queued before this runs; returns how many it chained.
pub(super) async fn seal(pool: &Pool, tenant: &str) -> StoreResult<u64> {
    let mut c = pool.get().await?;
    let mut sealed = 0u64;
    loop {
        let tx = c.transaction().await?;
        let (n, _) = seal_locked(&tx, tenant, None).await?;
        tx.commit().await?;
        sealed += n;
        if n < SEAL_BATCH as u64 {
            return Ok(sealed);
        }
    }
}

/// Seals `tenant` unless nothing of it is queued (one read, no lock, when nothing is).
async fn seal_if_queued(pool: &Pool, tenant: Uuid) -> StoreResult<()> {
    let tenant = tenant.to_string();
    let queued: bool = fetch_value(
        &pool.get().await?,
        "SELECT EXISTS (SELECT 1 FROM audit_queue WHERE tenant_id = $1)",
        &[&tenant],
    )
    .await?;
    if queued {
        seal(pool, &tenant).await?;
    }
    Ok(())
}

/// Inside the caller's transaction: takes the head row lock of `tenant` and chains up to
/// [`SEAL_BATCH`] of its queued entries, in queue order. Returns how many it chained and,
/// when `wanted` (a queue id) was among them, that entry.
async fn seal_locked(
    c: &impl GenericClient,
    tenant: &str,
    wanted: Option<i64>,
) -> StoreResult<(u64, Option<AuditEntry>)> {
    let lock = "SELECT last_sequence, last_hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE";
    let head = |r: &Row| {
        Ok((
            get::<i64>(r, "last_sequence")?,
            get::<String>(r, "last_hash")?,
        ))
    };
    let (mut last, mut prev) = match fetch_optional(c, lock, &[&tenant], head).await? {
        Some(found) => found,
        None => {
            // The tenant's first entry: two sealers may both create the head; one does.
            execute(
                c,
                "INSERT INTO audit_heads (tenant_id, last_sequence, last_hash) \
                 VALUES ($1, 0, $2) ON CONFLICT (tenant_id) DO NOTHING",
                &[&tenant, &GENESIS_HASH],
            )
            .await?;
            fetch_optional(c, lock, &[&tenant], head)
                .await?
                .unwrap_or((0, GENESIS_HASH.to_owned()))
        }
    };
    // Under the head lock, with a snapshot taken after it: what an earlier sealer took is
    // gone from the queue.
    let mut queued = fetch_all(
        c,
        concat!(
            "DELETE FROM audit_queue WHERE id IN (SELECT id FROM audit_queue \
             WHERE tenant_id = $1 ORDER BY id LIMIT $2) RETURNING id, ",
            record_cols!()
        ),
        &[&tenant, &SEAL_BATCH],
        |r| Ok((get::<i64>(r, "id")?, record_row(r)?)),
    )
    .await?;
    if queued.is_empty() {
        return Ok((0, None));
    }
    queued.sort_by_key(|(id, _)| *id);
    let mut found = None;
    let mut entries = Vec::with_capacity(queued.len());
    for (id, record) in queued {
        last += 1;
        let entry = AuditEntry::chained(record, u64::try_from(last).unwrap_or(0), prev);
        prev = entry.hash.clone();
        if Some(id) == wanted {
            found = Some(entry.clone());
        }
        entries.push(entry);
    }
    let column = |f: fn(&AuditEntry) -> String| entries.iter().map(f).collect::<Vec<String>>();
    let sequences: Vec<i64> = entries
        .iter()
        .map(|e| i64::try_from(e.sequence).unwrap_or(i64::MAX))
        .collect();
    let ats: Vec<i64> = entries.iter().map(|e| e.record.at).collect();
    execute(
        c,
        concat!(
            "WITH chained AS (INSERT INTO audit_log (",
            audit_cols!(),
            ") SELECT $1, s, a, at, ai, ac, rt, ri, o, d, p, h FROM unnest($2::BIGINT[], \
             $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], \
             $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::TEXT[]) \
             AS t(s, a, at, ai, ac, rt, ri, o, d, p, h)) \
             UPDATE audit_heads SET last_sequence = $13, last_hash = $14 WHERE tenant_id = $1"
        ),
        &[
            &tenant,
            &sequences,
            &ats,
            &column(|e| e.record.actor.kind.as_str().to_owned()),
            &column(|e| e.record.actor.id.clone()),
            &column(|e| e.record.action.clone()),
            &column(|e| e.record.resource_type.clone()),
            &column(|e| e.record.resource_id.clone()),
            &column(|e| e.record.outcome.clone()),
            &column(|e| e.record.details.to_string()),
            &column(|e| e.prev_hash.clone()),
            &column(|e| e.hash.clone()),
            &last,
            &prev,
        ],
    )
    .await?;
    Ok((entries.len() as u64, found))
}

/// Tenants of which something is queued.
async fn queued_tenants(pool: &Pool) -> StoreResult<Vec<String>> {
    fetch_all(
        &pool.get().await?,
        "SELECT DISTINCT tenant_id FROM audit_queue",
        &[],
        |r| get(r, "tenant_id"),
    )
    .await
}

/// Tenants whose queued entries a node's [`Sealer`] chains next.
#[derive(Default)]
struct Pending {
    tenants: Mutex<HashSet<String>>,
    wake: Notify,
}

/// One node's sealing task: it chains the entries of the tenants it is told of, soon after
/// their changes commit, and every [`SWEEP`] those of any tenant with queued entries.
pub(super) struct Sealer {
    pending: Arc<Pending>,
    task: JoinHandle<()>,
}

impl Sealer {
    /// Starts the task on the current runtime.
    pub(super) fn start(pool: Pool) -> Sealer {
        let pending = Arc::new(Pending::default());
        let task = tokio::spawn(run(pool, Arc::clone(&pending)));
        Sealer { pending, task }
    }

    /// Has the entries queued for `tenant` (by a transaction that has committed) chained
    /// soon.
    pub(super) fn poke(&self, tenant: Uuid) {
        self.pending
            .tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string());
        self.pending.wake.notify_one();
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(pool: Pool, pending: Arc<Pending>) {
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let swept = tokio::select! {
            () = pending.wake.notified() => Vec::new(),
            _ = sweep.tick() => queued_tenants(&pool).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "audit: cannot look for queued entries");
                Vec::new()
            }),
        };
        let mut tenants: Vec<String> =
            std::mem::take(&mut *pending.tenants.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        tenants.extend(swept);
        tenants.sort();
        tenants.dedup();
        for tenant in tenants {
            if let Err(e) = seal(&pool, &tenant).await {
                // Still queued: the next sweep, poke or read chains it.
                tracing::warn!(%tenant, error = %e, "audit: cannot chain queued entries yet");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

#[async_trait::async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<AuditEntry> {
        let tenant = record.tenant_id.to_string();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let id = append(&tx, record).await?;
        // Chained in this transaction, after whatever was queued before it.
        loop {
            let (n, found) = seal_locked(&tx, &tenant, Some(id)).await?;
            if let Some(entry) = found {
                tx.commit().await?;
                return Ok(entry);
            }
            if n == 0 {
                return Err(crate::StoreError::Database(
                    "an audit entry left the queue unchained".to_owned(),
                ));
            }
        }
    }

    async fn list_audit(
        &self,
        tenant: Uuid,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AuditEntry>, i64)> {
        seal_if_queued(&self.pool, tenant).await?;
        self.audit_page(Some(tenant.to_string()), filter, offset, limit)
            .await
    }

    async fn list_audit_across(
        &self,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AuditEntry>, i64)> {
        for tenant in queued_tenants(&self.pool).await? {
            seal(&self.pool, &tenant).await?;
        }
        self.audit_page(None, filter, offset, limit).await
    }

    async fn audit_entries(
        &self,
        tenant: Uuid,
        from: u64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>> {
        seal_if_queued(&self.pool, tenant).await?;
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
        seal_if_queued(&self.pool, tenant).await?;
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
             UNION SELECT tenant_id FROM audit_queue ORDER BY tenant_id",
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

/// Runs one statement and, if it changed a row, queues `record`, in one transaction;
/// returns the rows changed, and has the entry chained soon once committed.
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
    if n > 0 {
        store.sealer.poke(record.tenant_id);
    }
    Ok(n)
}
