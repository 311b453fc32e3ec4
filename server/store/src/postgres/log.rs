//! The template log's append, which every template-changing write runs in its own
//! transaction.
//!
//! A tenant's sequences are drawn by an update of its head row, whose row lock lasts until
//! the writing transaction commits: a second writer of the tenant waits there, so the
//! entries are committed in sequence order and a reader that has seen `n` has seen all
//! before it.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::sql::{execute, fetch_value};
use crate::{LogOp, PalmType, StoreResult};

/// One entry to append: what it does, its feature, user and palm.
pub(super) type LogItem = (LogOp, Uuid, Uuid, PalmType);

/// Appends `items` to the tenant's log inside the caller's transaction; returns the head
/// after them (the head unchanged when there are none).
pub(super) async fn append_log(
    c: &impl GenericClient,
    tenant: Uuid,
    items: &[LogItem],
    now: i64,
) -> StoreResult<u64> {
    let tenant_text = tenant.to_string();
    execute(
        c,
        "INSERT INTO template_log_heads (tenant_id, last_sequence) VALUES ($1, 0) \
         ON CONFLICT (tenant_id) DO NOTHING",
        &[&tenant_text],
    )
    .await?;
    let count = items.len() as i64;
    let head: i64 = fetch_value(
        c,
        "UPDATE template_log_heads SET last_sequence = last_sequence + $1 \
         WHERE tenant_id = $2 RETURNING last_sequence",
        &[&count, &tenant_text],
    )
    .await?;
    if !items.is_empty() {
        let first = head - count + 1;
        let sequences: Vec<i64> = (first..=head).collect();
        let ops: Vec<&str> = items.iter().map(|i| i.0.as_str()).collect();
        let features: Vec<String> = items.iter().map(|i| i.1.to_string()).collect();
        let users: Vec<String> = items.iter().map(|i| i.2.to_string()).collect();
        let palms: Vec<&str> = items.iter().map(|i| i.3.as_str()).collect();
        execute(
            c,
            "INSERT INTO template_log (tenant_id, sequence, op, feature_id, user_id, palm_type, \
             at) SELECT $1, s, o, f, u, p, $2 \
             FROM unnest($3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[]) \
             AS t(s, o, f, u, p)",
            &[
                &tenant_text,
                &now,
                &sequences,
                &ops,
                &features,
                &users,
                &palms,
            ],
        )
        .await?;
    }
    Ok(u64::try_from(head).unwrap_or(0))
}
