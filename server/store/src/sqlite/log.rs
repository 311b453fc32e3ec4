//! The template log's append, which every template-changing write runs in its own
//! transaction.

use rusqlite::{params, Connection};
use uuid::Uuid;

use super::sql::execute;
use crate::{LogOp, PalmType};

/// One entry to append: what it does, its feature, user and palm.
pub(super) type LogItem = (LogOp, Uuid, Uuid, PalmType);

/// Appends `items` to the tenant's log inside the caller's transaction, drawing their
/// sequences from the tenant's head row; returns the head after them.
pub(super) fn append_log(
    c: &Connection,
    tenant: Uuid,
    items: &[LogItem],
    now: i64,
) -> rusqlite::Result<u64> {
    let tenant_text = tenant.to_string();
    execute(
        c,
        "INSERT INTO template_log_heads (tenant_id, last_sequence) VALUES ($1, 0) \
         ON CONFLICT (tenant_id) DO NOTHING",
        [&tenant_text],
    )?;
    let head: i64 = c
        .prepare_cached(
            "UPDATE template_log_heads SET last_sequence = last_sequence + $1 \
             WHERE tenant_id = $2 RETURNING last_sequence",
        )?
        .query_row(params![items.len() as i64, tenant_text], |r| r.get(0))?;
    let first = head - items.len() as i64 + 1;
    for (i, (op, feature, user, palm)) in items.iter().enumerate() {
        execute(
            c,
            "INSERT INTO template_log (tenant_id, sequence, op, feature_id, user_id, palm_type, \
             at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            params![
                tenant_text,
                first + i as i64,
                op.as_str(),
                feature.to_string(),
                user.to_string(),
                palm.as_str(),
                now,
            ],
        )?;
    }
    Ok(u64::try_from(head).unwrap_or(0))
}
