//! The audit log as the service writes and reads it: the records each audited action
//! hands to the store with its change, the tenant's entries (scope `audit`) and the check
//! of its hash chains.

use std::sync::Arc;

use palmlink_store::{
    verify_chain, Actor, ActorKind, AuditEntry, AuditFilter, AuditRecord, ChainCheck, Scope, Store,
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

/// The actor of a call: the operator acting through the console, else the integrator's
/// client.
pub(crate) fn actor(caller: &Caller) -> Actor {
    match caller.operator_id {
        Some(operator) => Actor::operator(operator.to_string()),
        None => Actor::client(caller.client_id),
    }
}

/// Who runs an operator action (tenants, clients, operator accounts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorActor {
    /// The `palmlink` command line, and the programs that set up a tenant themselves (the
    /// demo): audited as `{"type": "operator", "id": "cli"}`.
    CommandLine,
    /// An operator signed in to the console: audited as `{"type": "operator", "id":
    /// <operator id>}`.
    Console(Uuid),
}

impl OperatorActor {
    /// The actor its audit entries name.
    pub fn actor(self) -> Actor {
        match self {
            OperatorActor::CommandLine => Actor::operator(CLI_OPERATOR),
            OperatorActor::Console(id) => Actor::operator(id.to_string()),
        }
    }
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

/// Filters of the console's audit view: one chain or all of them, the API's filters, the
/// kind of actor; newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditBrowse {
    /// One chain (a tenant's, or [`palmlink_store::OPERATOR_CHAIN`]); every chain when
    /// `None`.
    pub chain: Option<Uuid>,
    /// Since and action, as `GET /v1/audit` takes them.
    pub query: AuditQuery,
    /// Only this kind of actor (`client`, `device`, `operator`).
    pub actor_type: Option<String>,
}

/// The store's filter of the API's `since` and `action`, checked.
fn filter_of(query: AuditQuery) -> DomainResult<AuditFilter> {
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
    Ok(AuditFilter {
        since,
        action: query.action,
        ..AuditFilter::default()
    })
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
        let filter = filter_of(query)?;
        let (rows, total) = self
            .store
            .list_audit(caller.tenant_id, &filter, page.offset, page.limit)
            .await?;
        Ok(Listing { rows, total, page })
    }

    /// A page of one chain's entries or of every chain's, newest first: what operators
    /// read in the console, across tenants (no caller: only operators reach it).
    pub async fn browse(
        &self,
        browse: AuditBrowse,
        page: Page,
    ) -> DomainResult<Listing<AuditEntry>> {
        let mut filter = filter_of(browse.query)?;
        filter.actor_type = match browse.actor_type.as_deref() {
            Some(kind) => Some(kind.parse::<ActorKind>().map_err(|_| {
                DomainError::field("actor_type", "must be client, device or operator")
            })?),
            None => None,
        };
        filter.newest_first = true;
        let (rows, total) = match browse.chain {
            Some(chain) => {
                self.store
                    .list_audit(chain, &filter, page.offset, page.limit)
                    .await?
            }
            None => {
                self.store
                    .list_audit_across(&filter, page.offset, page.limit)
                    .await?
            }
        };
        Ok(Listing { rows, total, page })
    }

    /// The chains that have entries: every tenant's (deleted ones included) and the
    /// operators' ([`palmlink_store::OPERATOR_CHAIN`]) once it has one.
    pub async fn chains(&self) -> DomainResult<Vec<Uuid>> {
        Ok(self.store.audit_tenants().await?)
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
