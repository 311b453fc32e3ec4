//! Enrolled users: listing, look-up and erasure.

use std::sync::Arc;

use palmlink_engine::RowId;
use palmlink_store::{Palm, Scope, Store, User};

use crate::galleries::Galleries;
use crate::tokens::Caller;
use crate::validate::{Listing, Page};
use crate::{DomainError, DomainResult};

/// A user with their enrolled palms.
#[derive(Clone, Debug, PartialEq)]
pub struct EnrolledUser {
    /// The user.
    pub user: User,
    /// Their palms, by palm type.
    pub palms: Vec<Palm>,
}

/// Enrolled users of the tenants.
pub struct Users {
    store: Arc<dyn Store>,
    galleries: Arc<Galleries>,
}

impl Users {
    /// Users on `store`, templates in `galleries`.
    pub fn new(store: Arc<dyn Store>, galleries: Arc<Galleries>) -> Users {
        Users { store, galleries }
    }

    /// A page of the users holding at least one palm, oldest first.
    pub async fn list(&self, caller: &Caller, page: Page) -> DomainResult<Listing<EnrolledUser>> {
        caller.require(Scope::Users)?;
        let (users, total) = self
            .store
            .list_users(caller.tenant_id, page.offset, page.limit)
            .await?;
        let mut rows = Vec::with_capacity(users.len());
        for user in users {
            let palms = self.store.list_palms(caller.tenant_id, user.id).await?;
            rows.push(EnrolledUser { user, palms });
        }
        Ok(Listing { rows, total, page })
    }

    /// One enrolled user (404 when they hold no palm).
    pub async fn get(&self, caller: &Caller, external_user_id: &str) -> DomainResult<EnrolledUser> {
        caller.require(Scope::Users)?;
        match self
            .store
            .get_user_with_palms(caller.tenant_id, external_user_id)
            .await?
        {
            Some((user, palms)) if !palms.is_empty() => Ok(EnrolledUser { user, palms }),
            _ => Err(DomainError::NotFound("user")),
        }
    }

    /// Erases a user: the database rows first, then the templates (a crash in between
    /// leaves gallery rows that start-up reconciliation erases).
    pub async fn erase(&self, caller: &Caller, external_user_id: &str) -> DomainResult<()> {
        caller.require(Scope::Users)?;
        let user = self
            .store
            .get_user(caller.tenant_id, external_user_id)
            .await?
            .ok_or(DomainError::NotFound("user"))?;
        let palms = self.store.delete_user(caller.tenant_id, user.id).await?;
        if palms.is_empty() {
            return Err(DomainError::NotFound("user"));
        }
        let gallery = self
            .galleries
            .get(caller.tenant_id)
            .map_err(DomainError::internal)?;
        let rows: Vec<RowId> = palms
            .iter()
            .filter_map(|p| u64::try_from(p.row_id).ok().map(RowId))
            .collect();
        tokio::task::spawn_blocking(move || {
            for row in rows {
                if let Err(e) = gallery.delete(row) {
                    tracing::error!(error = %e, row = row.0, "could not erase a template from the gallery");
                }
            }
        })
        .await
        .map_err(DomainError::internal)?;
        Ok(())
    }
}
