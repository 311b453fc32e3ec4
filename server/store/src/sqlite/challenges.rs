//! [`ChallengeStore`] on SQLite.
//!
//! The statements that look for pending challenges name `status = 'pending'` literally:
//! only then may SQLite search the partial indexes that hold pending challenges alone
//! (migration 3).

use rusqlite::{params, Connection, Row};
use serde_json::Value;
use uuid::Uuid;

use super::audit::append as append_audit;
use super::log::{append_log, LogItem};
use super::outbox::insert_event;
use super::sql::{execute, fetch_all, fetch_optional, json_column, parsed};
use super::users::insert_palm;
use super::SqliteStore;
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

pub(super) fn challenge_row(row: &Row<'_>) -> rusqlite::Result<Challenge> {
    let reason: Option<String> = row.get("failure_reason")?;
    Ok(Challenge {
        id: parsed(row, "id")?,
        tenant_id: parsed(row, "tenant_id")?,
        kind: parsed(row, "kind")?,
        device_id: parsed(row, "device_id")?,
        hardware_id: row.get("hardware_id")?,
        external_user_id: row.get("external_user_id")?,
        palm_type: parsed(row, "palm_type")?,
        top_k: row.get("top_k")?,
        status: parsed(row, "status")?,
        metadata: json_column(row, "metadata")?.unwrap_or(Value::Null),
        result: json_column(row, "result")?,
        failure_reason: match reason {
            Some(_) => Some(parsed(row, "failure_reason")?),
            None => None,
        },
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        finished_at: row.get("finished_at")?,
        log_position: row
            .get::<_, i64>("log_position")
            .map(|p| u64::try_from(p).unwrap_or(0))?,
        captures: json_column(row, "captures")?,
    })
}

/// The pending, unexpired challenges of device `$1` at time `$2`, oldest first.
pub(super) const PENDING_OF_DEVICE: &str = concat!(
    "SELECT ",
    challenge_cols!(),
    " FROM challenges WHERE device_id = $1 AND status = 'pending' \
     AND expires_at > $2 ORDER BY created_at, id"
);

/// Fails the pending challenges of device `$2` (revoked) at time `$1`, returning them.
pub(super) const FAIL_PENDING_OF_DEVICE: &str = concat!(
    "UPDATE challenges SET status = 'failed', failure_reason = 'device_revoked', \
     finished_at = $1 WHERE device_id = $2 AND status = 'pending' RETURNING ",
    challenge_cols!()
);

/// Expires the pending challenges whose time is up at `$1`, returning them.
pub(super) const EXPIRE_PENDING: &str = concat!(
    "UPDATE challenges SET status = 'expired', failure_reason = 'expired', \
     finished_at = expires_at WHERE status = 'pending' AND expires_at <= $1 RETURNING ",
    challenge_cols!()
);

/// Runs `sql` (an update `RETURNING` the challenges it ended) and writes the event `records`
/// builds for each; returns how many it ended.
pub(super) fn end_each(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    records: &EndRecords,
) -> rusqlite::Result<u64> {
    let ended = fetch_all(c, sql, params, challenge_row)?;
    for ch in &ended {
        let record = records(ch);
        insert_event(c, &record.event)?;
        append_audit(c, &record.audit)?;
    }
    Ok(ended.len() as u64)
}

/// Marks a pending, unexpired challenge completed with its result; false if it is not.
fn complete_pending(
    c: &Connection,
    id: Uuid,
    result: &Value,
    captures: Option<&Value>,
    now: i64,
) -> rusqlite::Result<bool> {
    let done = execute(
        c,
        "UPDATE challenges SET status = 'completed', result = $1, captures = $2, \
         finished_at = $3 WHERE id = $4 AND status = 'pending' AND expires_at > $3",
        params![
            result.to_string(),
            captures.map(Value::to_string),
            now,
            id.to_string()
        ],
    )?;
    Ok(done == 1)
}

#[async_trait::async_trait]
impl ChallengeStore for SqliteStore {
    async fn create_challenge(&self, ch: &Challenge) -> StoreResult<()> {
        self.db
            .write(|c| {
                execute(
                    c,
                    concat!(
                        "INSERT INTO challenges (",
                        challenge_cols!(),
                        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                         $16, $17)"
                    ),
                    params![
                        ch.id.to_string(),
                        ch.tenant_id.to_string(),
                        ch.kind.as_str(),
                        ch.device_id.to_string(),
                        ch.hardware_id,
                        ch.external_user_id,
                        ch.palm_type.as_str(),
                        ch.top_k,
                        ch.status.as_str(),
                        ch.metadata.to_string(),
                        ch.result.as_ref().map(Value::to_string),
                        ch.failure_reason.map(FailureReason::as_str),
                        ch.created_at,
                        ch.expires_at,
                        ch.finished_at,
                        i64::try_from(ch.log_position).unwrap_or(i64::MAX),
                        ch.captures.as_ref().map(Value::to_string),
                    ],
                )
            })
            .await?;
        Ok(())
    }

    async fn get_challenge(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<Challenge>> {
        Ok(self.db.read(|c| {
            fetch_optional(
                c,
                concat!(
                    "SELECT ",
                    challenge_cols!(),
                    " FROM challenges WHERE tenant_id = $1 AND id = $2"
                ),
                [tenant.to_string(), id.to_string()],
                challenge_row,
            )
        })?)
    }

    async fn list_challenges(
        &self,
        tenant: Uuid,
        filter: &ChallengeFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Challenge>, i64)> {
        // Unused filters compare against NULL and drop out: `($2 IS NULL OR kind = $2)`.
        macro_rules! cond {
            () => {
                "tenant_id = $1 AND ($2 IS NULL OR kind = $2) AND ($3 IS NULL OR status = $3)"
            };
        }
        let kind = filter.kind.map(|k| k.as_str());
        let status = filter.status.map(|s| s.as_str());
        Ok(self.db.read(|c| {
            let rows = fetch_all(
                c,
                concat!(
                    "SELECT ",
                    challenge_cols!(),
                    " FROM challenges WHERE ",
                    cond!(),
                    " ORDER BY created_at DESC, id LIMIT $4 OFFSET $5"
                ),
                params![tenant.to_string(), kind, status, limit, offset],
                challenge_row,
            )?;
            let total = c
                .prepare_cached(concat!("SELECT COUNT(*) FROM challenges WHERE ", cond!()))?
                .query_row(params![tenant.to_string(), kind, status], |r| r.get(0))?;
            Ok((rows, total))
        })?)
    }

    async fn pending_for_device(&self, device_id: Uuid, now: i64) -> StoreResult<Vec<Challenge>> {
        Ok(self.db.read(|c| {
            fetch_all(
                c,
                PENDING_OF_DEVICE,
                params![device_id.to_string(), now],
                challenge_row,
            )
        })?)
    }

    async fn complete_enrollment(
        &self,
        commit: &EnrollmentCommit,
        now: i64,
    ) -> StoreResult<Option<u64>> {
        Ok(self
            .db
            .write(|c| {
                if !complete_pending(
                    c,
                    commit.challenge_id,
                    &commit.result,
                    Some(&commit.captures),
                    now,
                )? {
                    return Ok(None);
                }
                let mut entries: Vec<LogItem> = Vec::with_capacity(commit.palms.len());
                for (p, sealed) in &commit.palms {
                    insert_palm(c, p, sealed)?;
                    entries.push((LogOp::Insert, p.feature_id, p.user_id, p.palm_type));
                }
                let head = match commit.palms.first() {
                    Some((p, _)) => append_log(c, p.tenant_id, &entries, now)?,
                    None => 0,
                };
                insert_event(c, &commit.event)?;
                append_audit(c, &commit.audit)?;
                Ok(Some(head))
            })
            .await?)
    }

    async fn complete_challenge(&self, end: &ChallengeEnd) -> StoreResult<bool> {
        let result = end.result.clone().unwrap_or(Value::Null);
        Ok(self
            .db
            .write(|c| {
                if !complete_pending(c, end.id, &result, end.captures.as_ref(), end.at)? {
                    return Ok(false);
                }
                insert_event(c, &end.event)?;
                append_audit(c, &end.audit)?;
                Ok(true)
            })
            .await?)
    }

    async fn finish_challenge(&self, end: &ChallengeEnd) -> StoreResult<bool> {
        Ok(self
            .db
            .write(|c| {
                let done = execute(
                    c,
                    "UPDATE challenges SET status = $1, failure_reason = $2, captures = $3, \
                     result = $4, finished_at = $5 WHERE id = $6 AND status = 'pending'",
                    params![
                        end.status.as_str(),
                        end.failure_reason.map(FailureReason::as_str),
                        end.captures.as_ref().map(Value::to_string),
                        end.result.as_ref().map(Value::to_string),
                        end.at,
                        end.id.to_string()
                    ],
                )?;
                if done != 1 {
                    return Ok(false);
                }
                insert_event(c, &end.event)?;
                append_audit(c, &end.audit)?;
                Ok(true)
            })
            .await?)
    }

    async fn expire_challenges(&self, now: i64, records: &EndRecords) -> StoreResult<u64> {
        Ok(self
            .db
            .write(|c| end_each(c, EXPIRE_PENDING, [now], records))
            .await?)
    }
}
