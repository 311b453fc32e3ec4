//! The audit log as the service writes and reads it: the records each audited action
//! hands to the store with its change, the tenant's entries (scope `audit`) and the check
//! of its hash chains.

use std::sync::Arc;

use palmlink_store::{
    verify_chain, Actor, AuditEntry, AuditFilter, AuditRecord, ChainCheck, Scope, Store,
};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::clock::parse_rfc3339;
use crate::tokens::Caller;
use crate::validate::{Listing, Page};
use crate::{DomainError, DomainResult};

/// The actor of operator commands run from the command line.
pub const CLI_OPERATOR: &str = "cli";

/// An audit record of `tenant` at `at`: `actor` did `action` to `resource` (type, id) with
/// `outcome`; `details` never hold a template or a secret.
pub(crate) fn record(
    tenant: Uuid,
    at: i64,
    actor: Actor,
    action: &str,
    resource: (&str, String),
    outcome: &str,
    details: Value,
) -> AuditRecord {
    AuditRecord {
        tenant_id: tenant,
        at,
        actor,
        action: action.to_owned(),
        resource_type: resource.0.to_owned(),
        resource_id: resource.1,
        outcome: outcome.to_owned(),
        details,
    }
}

/// The actor of an integrator's call.
pub(crate) fn client(caller: &Caller) -> Actor {
    Actor::client(caller.client_id)
}

/// Filters of `GET /v1/audit`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// Only entries at or after this RFC 3339 time.
    #[serde(default)]
    pub since: Option<String>,
    /// Only this action.
    #[serde(default)]
    pub action: Option<String>,
}

/// The tenants' audit logs.
pub struct Audit {
    store: Arc<dyn Store>,
}

impl Audit {
    /// The audit log on `store`.
    pub fn new(store: Arc<dyn Store>) -> Audit {
        Audit { store }
    }

    /// A page of the caller's tenant's entries, oldest first (scope `audit`).
    pub async fn list(
        &self,
        caller: &Caller,
        query: AuditQuery,
        page: Page,
    ) -> DomainResult<Listing<AuditEntry>> {
        caller.require(Scope::Audit)?;
        let since = match query.since.as_deref() {
            Some(text) => Some(
                parse_rfc3339(text)
                    .ok_or_else(|| DomainError::field("since", "must be an RFC 3339 time"))?,
            ),
            None => None,
        };
        if query
            .action
            .as_ref()
            .is_some_and(|a| a.is_empty() || a.len() > 64 || a.contains('\0'))
        {
            return Err(DomainError::field(
                "action",
                "must be 1-64 characters, none of them NUL",
            ));
        }
        let filter = AuditFilter {
            since,
            action: query.action,
        };
        let (rows, total) = self
            .store
            .list_audit(caller.tenant_id, &filter, page.offset, page.limit)
            .await?;
        Ok(Listing { rows, total, page })
    }

    /// Checks the hash chain of one tenant, or of every tenant that has one.
    pub async fn verify(&self, tenant: Option<Uuid>) -> DomainResult<Vec<(Uuid, ChainCheck)>> {
        let tenants = match tenant {
            Some(t) => vec![t],
            None => self.store.audit_tenants().await?,
        };
        let mut out = Vec::with_capacity(tenants.len());
        for t in tenants {
            out.push((t, verify_chain(self.store.as_ref(), t).await?));
        }
        Ok(out)
    }
}
