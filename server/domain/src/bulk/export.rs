//! `palmlink gallery export`: every palm of a tenant with its template, opened, into a
//! gallery file.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use palmlink_store::Actor;
use uuid::Uuid;

use super::format::{end_line, record_line, Header};
use super::{Bulk, Progress, Unit};
use crate::audit::{record, CLI_OPERATOR};
use crate::{DomainError, DomainResult};

/// Palms read per page.
const PAGE: i64 = 1000;

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Records (palms) written.
    pub records: u64,
    /// Distinct users among them.
    pub users: u64,
}

fn io(e: std::io::Error) -> DomainError {
    DomainError::field("out", format!("writing the file: {e}"))
}

impl Bulk {
    /// Writes every palm of `tenant` to `out` in the gallery file format, templates in
    /// plain (the file is as sensitive as the templates). A template that does not open
    /// fails the export. The export is audited (`users.exported`, by the operator).
    ///
    /// `out` is written synchronously: this is for a command, not for a serving task.
    pub async fn export(
        &self,
        tenant: Uuid,
        out: &mut (dyn Write + Send),
        progress: &dyn Progress,
    ) -> DomainResult<ExportSummary> {
        self.require_tenant(tenant).await?;
        let header =
            serde_json::to_string(&Header::new(self.clock.now())).map_err(DomainError::internal)?;
        writeln!(out, "{header}").map_err(io)?;
        progress.begin("exporting", 0, Unit::Records);
        let mut after = None;
        let mut records = 0u64;
        let mut users: HashSet<Uuid> = HashSet::new();
        loop {
            let page = self.store.templates_page(tenant, after, PAGE).await?;
            let Some(last) = page.last().map(|t| t.palm.feature_id) else {
                break;
            };
            after = Some(last);
            let ids: Vec<Uuid> = page
                .iter()
                .map(|t| t.palm.user_id)
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let external: HashMap<Uuid, String> = self
                .store
                .get_users_by_ids(tenant, &ids)
                .await?
                .into_iter()
                .map(|u| (u.id, u.external_user_id))
                .collect();
            for t in &page {
                let p = &t.palm;
                // An erasure between the two reads: the palm is gone with its user.
                let Some(external_user_id) = external.get(&p.user_id) else {
                    continue;
                };
                let template = self
                    .vault
                    .open_template(tenant, p.user_id, p.feature_id, &t.sealed)
                    .await?
                    .map_err(|e| DomainError::internal(format!("{e}: the export stops")))?;
                let line = record_line(
                    external_user_id,
                    p.palm_type,
                    p.enrolled_at,
                    &p.vendor,
                    &template,
                );
                writeln!(out, "{line}").map_err(io)?;
                records += 1;
                users.insert(p.user_id);
            }
            progress.advance(page.len() as u64);
        }
        writeln!(out, "{}", end_line(records)).map_err(io)?;
        out.flush().map_err(io)?;
        progress.end();
        let summary = ExportSummary {
            tenant_id: tenant,
            records,
            users: users.len() as u64,
        };
        self.store
            .append_audit(&record(
                tenant,
                self.clock.now(),
                Actor::operator(CLI_OPERATOR),
                "users.exported",
                ("tenant", tenant.to_string()),
                "success",
                serde_json::json!({"records": summary.records, "users": summary.users}),
            ))
            .await?;
        Ok(summary)
    }
}
