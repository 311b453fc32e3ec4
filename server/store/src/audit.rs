//! The audit log: who did what to which resource, append-only, one SHA-256 hash chain per
//! tenant.
//!
//! Each entry's `hash` is the hex SHA-256 of its `prev_hash` followed by the entry's
//! canonical JSON without `hash` (keys sorted at every level, no whitespace), and each
//! tenant's chain starts from 64 zeros. An entry is written by the store in the transaction
//! of the change it records (every method that changes something audited takes its
//! [`AuditRecord`]), so a change without its entry, or an entry without its change, cannot be
//! committed. Entries hold ids, decisions and scores, never a template or a secret: the
//! callers build them, and the conformance suite checks what is stored is what was given.

use aws_lc_rs::digest;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::vocabulary::named_values;
use crate::StoreResult;

/// `prev_hash` of each tenant's first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain of what operators do outside any tenant (their accounts, their sign-ins),
/// kept beside the tenants' chains under the nil tenant id, which no tenant has.
pub const OPERATOR_CHAIN: Uuid = Uuid::nil();

named_values! {
    /// Who acted.
    pub enum ActorKind ("actor type") {
        /// An integrator's OAuth client.
        Client = "client",
        /// A paired scanner.
        Device = "device",
        /// An operator (command line or console), or the service itself (`id` `system`).
        Operator = "operator",
    }
}

/// Who acted: `{"type", "id"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// Client, device or operator.
    pub kind: ActorKind,
    /// Its id (`system` for what the service does by itself, e.g. expiry).
    pub id: String,
}

impl Actor {
    /// An OAuth client.
    pub fn client(id: Uuid) -> Actor {
        Actor {
            kind: ActorKind::Client,
            id: id.to_string(),
        }
    }

    /// A scanner.
    pub fn device(id: Uuid) -> Actor {
        Actor {
            kind: ActorKind::Device,
            id: id.to_string(),
        }
    }

    /// An operator by name or id.
    pub fn operator(id: impl Into<String>) -> Actor {
        Actor {
            kind: ActorKind::Operator,
            id: id.into(),
        }
    }

    /// The service itself (expiry by the sweeper).
    pub fn system() -> Actor {
        Actor::operator("system")
    }
}

/// What an entry records, as its caller gives it; the store adds its place in the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    /// The tenant whose chain it joins.
    pub tenant_id: Uuid,
    /// When (microseconds).
    pub at: i64,
    /// Who.
    pub actor: Actor,
    /// What, e.g. `client.rotated`.
    pub action: String,
    /// The kind of resource, e.g. `client`.
    pub resource_type: String,
    /// Its id.
    pub resource_id: String,
    /// e.g. `success`, `match`, `no_match`, `failed`.
    pub outcome: String,
    /// For decisions: scores, thresholds, policy, liveness, quality (never a template or a
    /// secret).
    pub details: Value,
}

/// An entry of a tenant's chain.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// Position in the tenant's chain, from 1.
    pub sequence: u64,
    /// What it records.
    pub record: AuditRecord,
    /// The previous entry's hash ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// The hex SHA-256 of `prev_hash` and [`AuditEntry::body`] in canonical JSON.
    pub hash: String,
}

impl AuditEntry {
    /// The entry joining a chain after `sequence - 1` whose hash was `prev_hash`.
    pub fn chained(record: AuditRecord, sequence: u64, prev_hash: String) -> AuditEntry {
        let mut entry = AuditEntry {
            sequence,
            record,
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry.expected_hash();
        entry
    }

    /// The entry as the contract shows it, without `hash`.
    pub fn body(&self) -> Value {
        let r = &self.record;
        json!({
            "sequence": self.sequence,
            "at": rfc3339(r.at),
            "actor": {"type": r.actor.kind.as_str(), "id": r.actor.id},
            "action": r.action,
            "resource": {"type": r.resource_type, "id": r.resource_id},
            "outcome": r.outcome,
            "details": r.details,
            "prev_hash": self.prev_hash,
        })
    }

    /// The entry as the contract shows it, with `hash`.
    pub fn view(&self) -> Value {
        let mut v = self.body();
        v["hash"] = json!(self.hash);
        v
    }

    /// The hash this entry must have: hex SHA-256 of `prev_hash` and the canonical body.
    pub fn expected_hash(&self) -> String {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(self.prev_hash.as_bytes());
        ctx.update(canonical_json(&self.body()).as_bytes());
        hex(ctx.finish().as_ref())
    }
}

/// Filters of the audit list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only entries at or after this time (microseconds).
    pub since: Option<i64>,
    /// Only this action.
    pub action: Option<String>,
    /// Only entries of this kind of actor.
    pub actor_type: Option<ActorKind>,
    /// Newest first (else oldest first).
    pub newest_first: bool,
}

impl AuditFilter {
    /// The order of a list: by sequence in one chain; by time, then chain, then sequence
    /// across chains.
    pub(crate) fn order(&self, one_chain: bool) -> &'static str {
        match (one_chain, self.newest_first) {
            (true, false) => "sequence",
            (true, true) => "sequence DESC",
            (false, false) => "at, tenant_id, sequence",
            (false, true) => "at DESC, tenant_id DESC, sequence DESC",
        }
    }
}

/// Storage of the audit log. Entries are appended by the methods whose changes they record;
/// this trait appends entries that record nothing else and reads the chains.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry that records no other change (e.g. `operator.login`); returns it.
    ///
    /// Concurrency: appends to one tenant's chain are serialised (one sequence, one
    /// predecessor each), whichever node or method makes them.
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<AuditEntry>;
    /// A page of a tenant's entries in sequence order (oldest first unless the filter says
    /// otherwise), and the total matching.
    async fn list_audit(
        &self,
        tenant: Uuid,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AuditEntry>, i64)>;
    /// A page of the entries of every chain (the tenants', deleted ones included, and
    /// [`OPERATOR_CHAIN`]) ordered by time, and the total matching: for operators only.
    async fn list_audit_across(
        &self,
        filter: &AuditFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<(Vec<AuditEntry>, i64)>;
    /// Up to `limit` entries of a tenant's chain from sequence `from`, in sequence order, as
    /// stored (for verification).
    async fn audit_entries(
        &self,
        tenant: Uuid,
        from: u64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>>;
    /// The last sequence of a tenant's chain and its hash as recorded when it was appended.
    async fn audit_head(&self, tenant: Uuid) -> StoreResult<Option<(u64, String)>>;
    /// The tenants that have an audit chain (deleted tenants' chains are kept).
    async fn audit_tenants(&self) -> StoreResult<Vec<Uuid>>;
}

/// The outcome of checking a tenant's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainCheck {
    /// Entries read.
    pub entries: u64,
    /// The first sequence whose hash does not hold (altered, missing, out of place).
    pub first_bad: Option<u64>,
}

/// Checks a tenant's whole chain: every sequence present from 1, each `prev_hash` the hash
/// before it, each hash recomputed, and the last one the head recorded at its append.
pub async fn verify_chain(store: &dyn AuditStore, tenant: Uuid) -> StoreResult<ChainCheck> {
    const PAGE: i64 = 1000;
    let mut expected = 1u64;
    let mut prev = GENESIS_HASH.to_owned();
    let mut entries = 0u64;
    loop {
        let page = store.audit_entries(tenant, expected, PAGE).await?;
        let last = page.len() < PAGE as usize;
        for e in page {
            entries += 1;
            if e.sequence != expected || e.prev_hash != prev || e.hash != e.expected_hash() {
                return Ok(ChainCheck {
                    entries,
                    first_bad: Some(expected),
                });
            }
            prev = e.hash;
            expected += 1;
        }
        if last {
            break;
        }
    }
    // An entry removed from the end leaves the head pointing past the chain.
    let first_bad = match store.audit_head(tenant).await? {
        Some((head, hash)) if head != expected - 1 || hash != prev => Some(expected),
        None if entries > 0 => Some(1),
        _ => None,
    };
    Ok(ChainCheck { entries, first_bad })
}

/// JSON with object keys sorted at every level and no whitespace.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // serde_json writes an object's entries in its map's order: sorted, once rebuilt in
    // sorted order, whether or not the map preserves insertion order.
    sorted(v).to_string()
}

/// RFC 3339 UTC with microseconds, as every timestamp of the API.
fn rfc3339(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: &str) -> AuditRecord {
        AuditRecord {
            tenant_id: Uuid::nil(),
            at: 1_700_000_000_000_000,
            actor: Actor::client(Uuid::nil()),
            action: action.into(),
            resource_type: "client".into(),
            resource_id: "c1".into(),
            outcome: "success".into(),
            details: json!({"z": 1, "a": {"y": [2, {"c": 3, "b": 4}]}}),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        assert_eq!(
            canonical_json(&json!({"z": 1, "a": {"y": [2, {"c": 3, "b": 4}], "x": null}})),
            r#"{"a":{"x":null,"y":[2,{"b":4,"c":3}]},"z":1}"#
        );
    }

    #[test]
    fn the_hash_is_sha256_of_prev_hash_and_the_canonical_body() {
        let e = AuditEntry::chained(record("client.created"), 1, GENESIS_HASH.into());
        let text = format!("{GENESIS_HASH}{}", canonical_json(&e.body()));
        let direct = hex(digest::digest(&digest::SHA256, text.as_bytes()).as_ref());
        assert_eq!(e.hash, direct);
        assert_eq!(e.hash.len(), 64);
        assert_eq!(e.view()["hash"], e.hash.as_str());
        assert!(e.body().get("hash").is_none());
        assert_eq!(e.body()["at"], "2023-11-14T22:13:20.000000Z");
        // Any change to what it records, or to its place, changes the hash.
        let mut other = record("client.created");
        other.outcome = "failed".into();
        assert_ne!(
            AuditEntry::chained(other, 1, GENESIS_HASH.into()).hash,
            e.hash
        );
        assert_ne!(
            AuditEntry::chained(record("client.created"), 2, GENESIS_HASH.into()).hash,
            e.hash
        );
        assert_ne!(
            AuditEntry::chained(record("client.created"), 1, e.hash.clone()).hash,
            e.hash
        );
    }
}
