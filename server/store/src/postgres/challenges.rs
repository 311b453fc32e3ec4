//! [`ChallengeStore`] on PostgreSQL.
//!
//! Every end of a challenge is an update conditional on `status = 'pending'` (named
//! literally, so the partial indexes of pending challenges serve it): of two ends at once,
//! the second waits for the first's row lock, finds the challenge no longer pending and
//! changes nothing.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use super::audit::append as append_audit;
use super::log::{append_log, LogItem};
use super::outbox::insert_event;
use super::sql::{
    execute, fetch_all, fetch_optional, fetch_page, fetch_value, get, json_column, parsed,
    parsed_opt, Params,
};
use super::users::insert_palm;
use super::PostgresStore;
use crate::{
    Challenge, ChallengeEnd, ChallengeFilter, ChallengeStore, EndRecords, EnrollmentCommit,
    FailureReason, LogOp, StoreResult,
};

/// The columns [`challenge_row`] reads.
macro_rules! challenge_cols {
    () => {
        "id, tenant_id, kind, device_id, hardware_id, external_user_id, palm_type, top_k, \
         status, metadata, result, failure_reason, created_at, expires_at, finished_at, \
         log_position, captures"
    };
}

fn challenge_row(row: &Row) -> StoreResult<Challenge> {
    Ok(Challenge {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        kind: parsed(row, "kind")?,
        device_id: parsed(row, "device_id")?,
        hardware_id: get(row, "hardware_id")?,
        external_user_id: get(row, "external_user_id")?,
        palm_type: parsed(row, "palm_type")?,
        top_k: get(row, "top_k")?,
        status: parsed(row, "status")?,
        metadata: json_column(row, "metadata")?.unwrap_or(Value::Null),
        result: json_column(row, "result")?,
        failure_reason: parsed_opt(row, "failure_reason")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
        finished_at: get(row, "finished_at")?,
        log_position: u64::try_from(get::<i64>(row, "log_position")?).unwrap_or(0),
        captures: json_column(row, "captures")?,
    })
}

/// Fails the pending challenges of device `$2` (revoked) at time `$1`, returning them.
pub(super) const FAIL_PENDING_OF_DEVICE: &str = concat!(
    "UPDATE challenges SET status = 'failed', failure_reason = 'device_revoked', \
     finished_at = $1 WHERE device_id = $2 AND status = 'pending' RETURNING ",
    challenge_cols!()
);

/// Expires the pending challenges whose time is up at `$1`, returning them.
const EXPIRE_PENDING: &str = concat!(
    "UPDATE challenges SET status = 'expired', failure_reason = 'expired', \
     finished_at = expires_at WHERE status = 'pending' AND expires_at <= $1 RETURNING ",
    challenge_cols!()
);

/// Runs `sql` (an update `RETURNING` the challenges it ended) and writes the event `records`
/// builds for each, inside the caller's transaction; returns the tenant of each challenge it
/// ended (the caller pokes the audit sealer for them once committed).
pub(super) async fn end_each(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    records: &EndRecords,
) -> StoreResult<Vec<Uuid>> {
    let ended = fetch_all(c, sql, params, challenge_row).await?;
    for ch in &ended {
        let record = records(ch);
        insert_event(c, &record.event).await?;
        append_audit(c, &record.audit).await?;
    }
    Ok(ended.iter().map(|ch| ch.tenant_id).collect())
}

/// A statement that ends a challenge with `$update` (an `UPDATE challenges ...` whose own
/// parameters start at `$15`) and, only if that changed the challenge, writes its event
/// (`$1`-`$5`) and queues its audit entry (`$6`-`$14`): one statement, so one round trip
/// and one commit. It returns how many challenges it ended (0 or 1).
macro_rules! end_with_records {
    ($update:expr) => {
        concat!(
            "WITH ended AS (",
            $update,
            " RETURNING id), event AS (INSERT INTO outbox_events (event_id, tenant_id, \
             event_type, payload, occurred_at, dispatched_at) SELECT $1::TEXT, $2::TEXT, \
             $3::TEXT, $4::TEXT, $5::BIGINT, NULL FROM ended), entry AS (INSERT INTO \
             audit_queue (tenant_id, at, actor_type, actor_id, action, resource_type, \
             resource_id, outcome, details) SELECT $6::TEXT, $7::BIGINT, $8::TEXT, $9::TEXT, \
             $10::TEXT, $11::TEXT, $12::TEXT, $13::TEXT, $14::TEXT FROM ended) \
             SELECT COUNT(*) FROM ended"
        )
    };
}

/// Completes a pending, unexpired challenge with its result, event and audit entry.
const COMPLETE_PENDING: &str = end_with_records!(
    "UPDATE challenges SET status = 'completed', result = $15, captures = $16, \
     finished_at = $17 WHERE id = $18 AND status = 'pending' AND expires_at > $17"
);

/// Ends a pending challenge without a decision, with its event and audit entry.
const FINISH_PENDING: &str = end_with_records!(
    "UPDATE challenges SET status = $15, failure_reason = $16, captures = $17, result = $18, \
     finished_at = $19 WHERE id = $20 AND status = 'pending'"
);

/// The text parameters of an end's event and audit entry, owned for the statement.
struct EndTexts {
    tenant: String,
    payload: String,
    audit_tenant: String,
    actor_type: &'static str,
    details: String,
}

impl EndTexts {
    fn of(end: &ChallengeEnd) -> EndTexts {
        EndTexts {
            tenant: end.event.tenant_id.to_string(),
            payload: end.event.payload.to_string(),
            audit_tenant: end.audit.tenant_id.to_string(),
            actor_type: end.audit.actor.kind.as_str(),
            details: end.audit.details.to_string(),
        }
    }

    /// `$1`-`$14` of [`end_with_records!`].
    fn params<'a>(&'a self, end: &'a ChallengeEnd) -> Vec<&'a (dyn ToSql + Sync)> {
        let (e, a) = (&end.event, &end.audit);
        vec![
            &e.event_id,
            &self.tenant,
            &e.event_type,
            &self.payload,
            &e.occurred_at,
            &self.audit_tenant,
            &a.at,
            &self.actor_type,
            &a.actor.id,
            &a.action,
            &a.resource_type,
            &a.resource_id,
            &a.outcome,
            &self.details,
        ]
    }
}

/// Runs `sql` (built by [`end_with_records!`]) with the end's records and `update`'s
/// parameters; true if it ended the challenge.
async fn end_with(
    store: &PostgresStore,
    sql: &str,
    end: &ChallengeEnd,
    update: &[&(dyn ToSql + Sync)],
) -> StoreResult<bool> {
    let texts = EndTexts::of(end);
    let mut params = texts.params(end);
    params.extend_from_slice(update);
    let ended: i64 = fetch_value(&store.pool.get().await?, sql, &params).await?;
    if ended == 1 {
        store.sealer.poke(end.audit.tenant_id);
    }
    Ok(ended == 1)
}

/// Marks a pending, unexpired challenge completed with its result, inside the caller's
/// transaction; false if it is not.
async fn complete_pending(
    c: &impl GenericClient,
    id: Uuid,
    result: &Value,
    captures: Option<&Value>,
    now: i64,
) -> StoreResult<bool> {
    let done = execute(
        c,
        "UPDATE challenges SET status = 'completed', result = $1, captures = $2, \
         finished_at = $3 WHERE id = $4 AND status = 'pending' AND expires_at > $3",
        &[
            &result.to_string(),
            &captures.map(Value::to_string),
            &now,
            &id.to_string(),
        ],
    )
    .await?;
    Ok(done == 1)
}

#[async_trait::async_trait]
impl ChallengeStore for PostgresStore {
    async fn create_challenge(&self, ch: &Challenge) -> StoreResult<()> {
        execute(
            &self.pool.get().await?,
            concat!(
                "INSERT INTO challenges (",
                challenge_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17)"
            ),
            &[
                &ch.id.to_string(),
                &ch.tenant_id.to_string(),
                &ch.kind.as_str(),
                &ch.device_id.to_string(),
                &ch.hardware_id,
                &ch.external_user_id,
                &ch.palm_type.as_str(),
                &ch.top_k,
                &ch.status.as_str(),
                &ch.metadata.to_string(),
                &ch.result.as_ref().map(Value::to_string),
                &ch.failure_reason.map(FailureReason::as_str),
                &ch.created_at,
                &ch.expires_at,
                &ch.finished_at,
                &i64::try_from(ch.log_position).unwrap_or(i64::MAX),
                &ch.captures.as_ref().map(Value::to_string),
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_challenge(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Challenge>> {
        fetch_optional(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                challenge_cols!(),
                " FROM challenges WHERE tenant_id = $1 AND id = $2"
            ),
            &[&tenant.to_string(), &id.to_string()],
            challenge_row,
        )
        .await
    }

    async fn list_challenges(
        &self,
        tenant: Uuid,
        filter: &ChallengeFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Challenge>, i64)> {
        // Unused filters compare against NULL and drop out.
        macro_rules! cond {
            () => {
                "tenant_id = $1 AND ($2::text IS NULL OR kind = $2) \
                 AND ($3::text IS NULL OR status = $3)"
            };
        }
        let c = self.pool.get().await?;
        let tenant = tenant.to_string();
        let kind = filter.kind.map(|k| k.as_str());
        let status = filter.status.map(|s| s.as_str());
        fetch_page(
            &c,
            (
                concat!(
                    "SELECT ",
                    challenge_cols!(),
                    " FROM challenges WHERE ",
                    cond!(),
                    " ORDER BY created_at DESC, id LIMIT $4 OFFSET $5"
                ),
                concat!("SELECT COUNT(*) FROM challenges WHERE ", cond!()),
            ),
            &[&tenant, &kind, &status, &limit, &offset],
            3,
            challenge_row,
        )
        .await
    }

    async fn pending_for_device(&self, device_id: Uuid, now: i64) -> StoreResult<Vec<Challenge>> {
        fetch_all(
            &self.pool.get().await?,
            concat!(
                "SELECT ",
                challenge_cols!(),
                " FROM challenges WHERE device_id = $1 AND status = 'pending' \
                 AND expires_at > $2 ORDER BY created_at, id"
            ),
            &[&device_id.to_string(), &now],
            challenge_row,
        )
        .await
    }

    async fn complete_enrollment(
        &self,
        commit: &EnrollmentCommit,
        now: i64,
    ) -> StoreResult<Option<u64>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        if !complete_pending(
            &tx,
            commit.challenge_id,
            &commit.result,
            Some(&commit.captures),
            now,
        )
        .await?
        {
            return Ok(None);
        }
        // A palm the user has already (or gets meanwhile, from another enrollment) fails
        // the unique `(user_id, palm_type)`: the whole transaction is rolled back.
        let mut entries: Vec<LogItem> = Vec::with_capacity(commit.palms.len());
        for (palm, sealed) in &commit.palms {
            insert_palm(&tx, palm, sealed).await?;
            entries.push((LogOp::Insert, palm.feature_id, palm.user_id, palm.palm_type));
        }
        let head = match commit.palms.first() {
            Some((palm, _)) => append_log(&tx, palm.tenant_id, &entries, now).await?,
            None => 0,
        };
        insert_event(&tx, &commit.event).await?;
        append_audit(&tx, &commit.audit).await?;
        tx.commit().await?;
        self.sealer.poke(commit.audit.tenant_id);
        Ok(Some(head))
    }

    async fn complete_challenge(&self, end: &ChallengeEnd) -> StoreResult<bool> {
        let result = end.result.clone().unwrap_or(Value::Null).to_string();
        let captures = end.captures.as_ref().map(Value::to_string);
        let id = end.id.to_string();
        end_with(
            self,
            COMPLETE_PENDING,
            end,
            &[&result, &captures, &end.at, &id],
        )
        .await
    }

    async fn finish_challenge(&self, end: &ChallengeEnd) -> StoreResult<bool> {
        let captures = end.captures.as_ref().map(Value::to_string);
        let result = end.result.as_ref().map(Value::to_string);
        let id = end.id.to_string();
        end_with(
            self,
            FINISH_PENDING,
            end,
            &[
                &end.status.as_str(),
                &end.failure_reason.map(FailureReason::as_str),
                &captures,
                &result,
                &end.at,
                &id,
            ],
        )
        .await
    }

    async fn expire_challenges(&self, now: i64, records: &EndRecords) -> StoreResult<u64> {
        // Every node's sweeper may run this at once: a challenge another has expired (or
        // completed) meanwhile is waited for and then no longer matches.
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let tenants = end_each(&tx, EXPIRE_PENDING, &[&now], records).await?;
        tx.commit().await?;
        for tenant in &tenants {
            self.sealer.poke(*tenant);
        }
        Ok(tenants.len() as u64)
    }
}
