//! Enrolled users: listing, look-up and erasure.

use std::sync::Arc;

use palmlink_store::{Palm, Scope, Store, User};

use crate::audit::{actor, record};
use crate::clock::Clock;
use crate::galleries::Galleries;
use crate::tokens::Caller;
use crate::validate::{Listing, Page};
use crate::wakeups::Wakeups;
use crate::{DomainError, DomainResult};

/// A user with their enrolled palms.
#[derive(Clone, Debug, PartialEq)]
pub struct EnrolledUser {
    /// The user.
    pub user: User,
    /// Their palms, by palm type.
    pub palms: Vec<Palm>,
}

/// 404 for an external id no user can have: one with a NUL character, which enrollment
/// refuses and PostgreSQL cannot even compare.
fn storable(external_user_id: &str) -> DomainResult<()> {
    if external_user_id.contains('\0') {
        return Err(DomainError::NotFound("user"));
    }
    Ok(())
}

/// Enrolled users of the tenants.
pub struct Users {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    galleries: Arc<Galleries>,
    wakeups: Arc<Wakeups>,
}

impl Users {
    /// Users on `store`, templates in `galleries`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        galleries: Arc<Galleries>,
        wakeups: Arc<Wakeups>,
    ) -> Users {
        Users {
            store,
            clock,
            galleries,
            wakeups,
        }
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
        storable(external_user_id)?;
        match self
            .store
            .get_user_with_palms(caller.tenant_id, external_user_id)
            .await?
        {
            Some((user, palms)) if !palms.is_empty() => Ok(EnrolledUser { user, palms }),
            _ => Err(DomainError::NotFound("user")),
        }
    }

    /// Erases a user: their palms and sealed templates leave the database in one
    /// transaction with an erase entry per palm in the template log; then this node's
    /// gallery erases the rows, leaving no copy of the templates (other nodes follow the
    /// log).
    pub async fn erase(&self, caller: &Caller, external_user_id: &str) -> DomainResult<()> {
        caller.require(Scope::Users)?;
        storable(external_user_id)?;
        let user = self
            .store
            .get_user(caller.tenant_id, external_user_id)
            .await?
            .ok_or(DomainError::NotFound("user"))?;
        let now = self.clock.now();
        let audit = record(
            caller.tenant_id,
            now,
            actor(caller),
            "user.erased",
            ("user", user.id.to_string()),
            "success",
            serde_json::json!({"external_user_id": user.external_user_id}),
        );
        let erasure = self
            .store
            .delete_user(caller.tenant_id, user.id, now, &audit)
            .await?;
        if erasure.palms.is_empty() {
            return Err(DomainError::NotFound("user"));
        }
        let features = erasure.palms.iter().map(|p| p.feature_id).collect();
        // Durable in the database: a failure here is repaired by the next catch-up, which
        // erases the rows as the log says.
        if let Err(e) = self
            .galleries
            .apply_erasures(caller.tenant_id, features, erasure.log_head)
            .await
        {
            tracing::error!(tenant = %caller.tenant_id, error = %e, "an erasure is committed but this node's gallery did not apply it yet");
        }
        self.wakeups.templates_changed(caller.tenant_id);
        Ok(())
    }
}
