//! The audit log across tenants: every chain's entries (the tenants', deleted ones included,
//! and the operators' own chain of accounts and sign-ins), newest first, filtered by chain,
//! action, time and kind of actor, with the check of the hash chains on request
//! (`palmlink audit verify`'s domain function: it reads every entry of the chains checked).
//!
//! Reading changes nothing: the filters are a GET form and carry no CSRF token.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use palmlink_domain::{rfc3339, AuditBrowse, AuditQuery, Listing};
use palmlink_store::{canonical_json, ActorKind, AuditEntry, ChainCheck, Tenant, OPERATOR_CHAIN};
use uuid::Uuid;

use super::layout::{page_of, pager, ConsoleResult, Page, Tab};
use super::session::Signed;
use super::tenants::{acting, Params};
use crate::error::ApiError;
use crate::state::AppState;

/// The `tenant` value that names the operators' chain.
const OPERATORS: &str = "operators";

/// Actions the filter suggests (the contract's list; any other name may be typed).
const ACTIONS: &[&str] = &[
    "tenant.created",
    "tenant.deleted",
    "client.created",
    "client.rotated",
    "client.old_secret_revoked",
    "client.deleted",
    "device.registered",
    "device.pairing_code_issued",
    "device.paired",
    "device.revoked",
    "enrollment.completed",
    "enrollment.failed",
    "verification.completed",
    "identification.completed",
    "challenge.failed",
    "user.erased",
    "settings.updated",
    "webhook.created",
    "webhook.updated",
    "webhook.deleted",
    "operator.created",
    "operator.login",
];

/// A query parameter, `None` when absent or blank.
fn param<'q>(query: &'q HashMap<String, String>, key: &str) -> Option<&'q str> {
    query.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The chain a `tenant` parameter names: a tenant id, `operators`, or every chain.
fn chain_of(query: &HashMap<String, String>) -> ConsoleResult<Option<Uuid>> {
    match param(query, "tenant") {
        None => Ok(None),
        Some(OPERATORS) => Ok(Some(OPERATOR_CHAIN)),
        Some(raw) => Uuid::parse_str(raw)
            .map(Some)
            .map_err(|_| ApiError::field("tenant", "must be a tenant id or `operators`").into()),
    }
}

/// What the page shows a chain as: its tenant's name, or what it is.
struct Names {
    tenants: HashMap<Uuid, String>,
    operators: HashMap<String, String>,
}

impl Names {
    fn chain(&self, id: Uuid) -> String {
        if id == OPERATOR_CHAIN {
            return "Operators".to_owned();
        }
        match self.tenants.get(&id) {
            Some(name) => name.clone(),
            None => format!("deleted tenant {id}"),
        }
    }
}

/// The names of the tenants and of the operators the entries name.
async fn names(state: &AppState, entries: &[AuditEntry]) -> ConsoleResult<Names> {
    let tenants = state
        .domain
        .operators
        .list_tenants()
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let ids: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.record.actor.kind == ActorKind::Operator)
        .map(|e| e.record.actor.id.as_str())
        .collect();
    let mut operators = HashMap::new();
    for id in ids {
        if let Ok(uuid) = Uuid::parse_str(id) {
            if let Some(found) = state.domain.sessions.operator(uuid).await? {
                operators.insert(id.to_owned(), found.name);
            }
        }
    }
    Ok(Names { tenants, operators })
}

/// `GET /console/audit`: every chain, or the one `tenant` names.
pub(super) async fn across(
    State(state): State<AppState>,
    signed: Signed,
    Query(query): Query<HashMap<String, String>>,
) -> ConsoleResult<Response> {
    let chain = chain_of(&query)?;
    view(&state, &signed, None, chain, &query).await
}

/// `GET /console/tenants/{tenant}/audit`: one tenant's chain, among its tabs.
pub(super) async fn tenant(
    State(state): State<AppState>,
    signed: Signed,
    Path(params): Params,
    Query(query): Query<HashMap<String, String>>,
) -> ConsoleResult<Response> {
    let (tenant, _) = acting(&state, &signed, &params).await?;
    let chain = Some(tenant.id);
    view(&state, &signed, Some(&tenant), chain, &query).await
}

async fn view(
    state: &AppState,
    signed: &Signed,
    tenant: Option<&Tenant>,
    chain: Option<Uuid>,
    query: &HashMap<String, String>,
) -> ConsoleResult<Response> {
    let browse = AuditBrowse {
        chain,
        query: AuditQuery {
            since: param(query, "since").map(str::to_owned),
            action: param(query, "action").map(str::to_owned),
        },
        actor_type: param(query, "actor_type").map(str::to_owned),
    };
    let listing = state.domain.audit.browse(browse, page_of(query)?).await?;
    let checks = match param(query, "verify") {
        Some(_) => Some(state.domain.audit.verify(chain).await?),
        None => None,
    };
    let names = names(state, &listing.rows).await?;
    let chains = state.domain.audit.chains().await?;
    let path = match tenant {
        Some(t) => format!("/console/tenants/{}/audit", t.id),
        None => "/console/audit".to_owned(),
    };
    let page = Page {
        session: &signed.0,
        title: "Audit log",
        tenant: tenant.map(|t| (t, Tab::Audit)),
        replace_url: None,
    };
    let filters = Filters {
        path: &path,
        query,
        fixed: tenant.is_some(),
        chains: &chains,
        names: &names,
    };
    Ok(page
        .render(html! {
            (filters.form())
            @if let Some(checks) = &checks { (verification(checks, &names)) }
            (entries(&listing, &names, tenant.is_none()))
            (pager(&filters.href(&[]), &listing))
        })
        .into_response())
}

/// The filter form and the links that keep its values.
struct Filters<'a> {
    path: &'a str,
    query: &'a HashMap<String, String>,
    /// One tenant's page: no chain to choose.
    fixed: bool,
    chains: &'a [Uuid],
    names: &'a Names,
}

impl Filters<'_> {
    /// The page's address with the current filters and `extra` parameters.
    fn href(&self, extra: &[(&str, &str)]) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for key in ["tenant", "action", "since", "actor_type"] {
            if let Some(v) = param(self.query, key).filter(|_| !(self.fixed && key == "tenant")) {
                out.append_pair(key, v);
            }
        }
        for (k, v) in extra {
            out.append_pair(k, v);
        }
        let query = out.finish();
        if query.is_empty() {
            self.path.to_owned()
        } else {
            format!("{}?{query}", self.path)
        }
    }

    fn form(&self) -> Markup {
        let chosen = |key: &str| param(self.query, key).unwrap_or("");
        let tenant = chosen("tenant");
        let actor = chosen("actor_type");
        html! {
            form.card method="get" action=(self.path) #audit-filters {
                @if !self.fixed {
                    label { "Chain"
                        select name="tenant" #audit-tenant {
                            option value="" selected[tenant.is_empty()] { "every chain" }
                            option value=(OPERATORS) selected[tenant == OPERATORS] { "Operators (accounts, sign-ins)" }
                            @for id in self.chains.iter().filter(|id| **id != OPERATOR_CHAIN) {
                                option value=(id) selected[tenant == id.to_string()] { (self.names.chain(*id)) }
                            }
                        }
                    }
                }
                label { "Action"
                    input type="text" name="action" #audit-action list="audit-actions" value=(chosen("action")) maxlength="64"; }
                datalist #audit-actions { @for a in ACTIONS { option value=(a); } }
                label { "Since (RFC 3339)"
                    input type="text" name="since" #audit-since value=(chosen("since")) placeholder="2026-01-31T00:00:00Z"; }
                label { "Actor"
                    select name="actor_type" #audit-actor-type {
                        option value="" selected[actor.is_empty()] { "anyone" }
                        @for kind in ActorKind::ALL {
                            option value=(kind.as_str()) selected[actor == kind.as_str()] { (kind.as_str()) }
                        }
                    }
                }
                button type="submit" #audit-filter { "Filter" }
                " "
                a.verify href=(self.href(&[("verify", "1")])) #audit-verify {
                    @if self.fixed || !tenant.is_empty() { "Verify this hash chain" } @else { "Verify every hash chain" }
                }
            }
        }
    }
}

/// The outcome of `palmlink audit verify` for the chains shown.
fn verification(checks: &[(Uuid, ChainCheck)], names: &Names) -> Markup {
    let holds = checks.iter().all(|(_, c)| c.first_bad.is_none());
    html! {
        section.card #verification data-ok=(holds) {
            h2 { "Hash chains: " @if holds { span.status-completed { "every chain holds" } } @else { span.status-failed { "broken" } } }
            table {
                thead { tr { th { "Chain" } th { "Entries" } th { "Status" } } }
                tbody {
                    @for (id, check) in checks {
                        tr data-chain=(id) {
                            td { (names.chain(*id)) }
                            td { (check.entries) }
                            @match check.first_bad {
                                None => { td.status-completed { "holds" } }
                                Some(seq) => { td.status-failed { "does not hold at sequence " (seq) } }
                            }
                        }
                    }
                    @if checks.is_empty() { tr { td.muted colspan="3" { "No chain yet." } } }
                }
            }
        }
    }
}

/// The entries, newest first.
fn entries(listing: &Listing<AuditEntry>, names: &Names, show_chain: bool) -> Markup {
    html! {
        table #audit {
            thead { tr {
                @if show_chain { th { "Chain" } }
                th { "Seq." } th { "At (UTC)" } th { "Actor" } th { "Action" } th { "Resource" } th { "Outcome" } th { "Details" }
            } }
            tbody {
                @for e in &listing.rows {
                    @let r = &e.record;
                    tr.entry data-chain=(r.tenant_id) data-sequence=(e.sequence) data-action=(r.action)
                        data-actor-type=(r.actor.kind.as_str()) data-actor-id=(r.actor.id) {
                        @if show_chain { td.chain { (names.chain(r.tenant_id)) } }
                        td.mono { (e.sequence) }
                        td.mono { (rfc3339(r.at)) }
                        td.actor {
                            (r.actor.kind.as_str()) " "
                            @if let Some(name) = names.operators.get(&r.actor.id) {
                                strong { (name) } " "
                            }
                            span.mono.muted { (r.actor.id) }
                        }
                        td.action { (r.action) }
                        td { (r.resource_type) " " span.mono { (r.resource_id) } }
                        td { (r.outcome) }
                        td.details.mono {
                            @if !r.details.is_null() { (canonical_json(&r.details)) }
                        }
                    }
                }
                @if listing.rows.is_empty() {
                    tr { td.muted colspan=(if show_chain { 8 } else { 7 }) { "No entries match." } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_parameter_names_a_tenant_the_operators_or_every_chain() {
        let q = |v: &str| HashMap::from([("tenant".to_owned(), v.to_owned())]);
        assert_eq!(chain_of(&HashMap::new()).unwrap(), None);
        assert_eq!(chain_of(&q(" ")).unwrap(), None);
        assert_eq!(chain_of(&q("operators")).unwrap(), Some(OPERATOR_CHAIN));
        let id = Uuid::new_v4();
        assert_eq!(chain_of(&q(&id.to_string())).unwrap(), Some(id));
        assert!(chain_of(&q("acme")).is_err());
    }
}
