//! The console's operators: accounts with memory-hard password hashes (Argon2id), sign-in
//! throttled per name, sessions that expire, and the token each session's changes carry.
//!
//! A session is a random cookie value; the store keeps only its SHA-256, so a copy of the
//! database opens no session. Sign-in runs the same hash whether or not the name exists, so
//! its time does not tell which names do.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::Argon2;
use palmlink_store::{Actor, ConsoleSession, Operator, SignInGate, Store, OPERATOR_CHAIN};
use uuid::Uuid;

use crate::audit::{record, OperatorActor};
use crate::clock::{Clock, SECOND};
use crate::secrets::{new_secret, sha256_hex};
use crate::{DomainError, DomainResult};

/// How long a console session lasts after sign-in.
pub const SESSION_TTL: i64 = 8 * 3600 * SECOND;
/// The window in which failed sign-ins for one name are counted.
pub const SIGN_IN_WINDOW: i64 = 60 * SECOND;
/// Failed sign-ins for one name the window allows; the next attempt answers 429.
pub const SIGN_IN_LIMIT: u32 = 5;
/// Prefix of session cookies.
pub const SESSION_PREFIX: &str = "pos_";
/// Shortest password an operator may choose.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// A new operator with the password it was given (shown only this once).
#[derive(Clone, Debug)]
pub struct NewOperator {
    /// The operator.
    pub operator: Operator,
    /// The plain password.
    pub password: String,
}

/// A session just opened: the cookie value (shown only to the browser) and its record.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// The session cookie's value.
    pub token: String,
    /// Who signed in.
    pub operator: Operator,
    /// The stored session.
    pub session: ConsoleSession,
}

/// An authenticated console session.
#[derive(Clone, Debug)]
pub struct OperatorSession {
    /// Who it is.
    pub operator: Operator,
    /// The stored session (its CSRF token, its expiry).
    pub session: ConsoleSession,
}

/// Operator accounts and console sessions.
pub struct Sessions {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

/// A PHC string of a password nobody has: verified against when the name is unknown, so
/// that an unknown name costs as much time as a known one.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&new_secret("")).unwrap_or_default())
}

/// The Argon2id PHC string of `password` with a fresh random salt.
fn hash_password(password: &str) -> DomainResult<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(DomainError::internal)
}

/// Whether `password` matches the PHC string `phc`.
fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Runs a hash on the blocking pool: Argon2 takes tens of milliseconds of one core.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> DomainResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(DomainError::internal)
}

impl Sessions {
    /// Operator accounts and sessions on `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Sessions {
        Sessions { store, clock }
    }

    /// Creates an operator. Without a password, one is drawn at random; a chosen one must
    /// have at least [`MIN_PASSWORD_CHARS`] characters. 409 when the name is taken.
    /// Audited as `operator.created` by `by` in the operators' chain
    /// ([`OPERATOR_CHAIN`]), with the name and never the password.
    pub async fn create_operator(
        &self,
        by: OperatorActor,
        name: &str,
        password: Option<String>,
    ) -> DomainResult<NewOperator> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(DomainError::field(
                "name",
                "must be 1-64 characters without control characters",
            ));
        }
        let password = match password {
            Some(p) if p.chars().count() < MIN_PASSWORD_CHARS => {
                return Err(DomainError::field(
                    "password",
                    format!("must have at least {MIN_PASSWORD_CHARS} characters"),
                ))
            }
            Some(p) => p,
            None => new_secret(""),
        };
        let to_hash = password.clone();
        let password_hash = blocking(move || hash_password(&to_hash)).await??;
        let operator = Operator {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            password_hash,
            created_at: self.clock.now(),
        };
        let audit = record(
            OPERATOR_CHAIN,
            operator.created_at,
            by.actor(),
            "operator.created",
            ("operator", operator.id.to_string()),
            "success",
            serde_json::json!({"name": operator.name}),
        );
        self.store
            .create_operator(&operator, &audit)
            .await
            .map_err(|e| match e {
                palmlink_store::StoreError::Conflict(_) => {
                    DomainError::conflict("operator_exists", "an operator of this name exists")
                }
                other => other.into(),
            })?;
        Ok(NewOperator { operator, password })
    }

    /// Signs an operator in: 429 when [`SIGN_IN_LIMIT`] sign-ins for this name failed in
    /// the last [`SIGN_IN_WINDOW`], 401 for an unknown name or a wrong password (the same
    /// answer for both), else a new session, audited as `operator.login` by the operator
    /// in the operators' chain ([`OPERATOR_CHAIN`]): operators act across tenants, and a
    /// sign-in belongs to none of them.
    pub async fn sign_in(&self, name: &str, password: &str) -> DomainResult<SignedIn> {
        let name = name.trim();
        if name.contains('\0') {
            // No operator has such a name (creation refuses it), and no database compares it.
            return Err(DomainError::Unauthenticated(
                "wrong operator name or password".to_owned(),
            ));
        }
        let now = self.clock.now();
        if let SignInGate::Throttled { oldest } = self
            .store
            .gate_sign_in(name, now, now - SIGN_IN_WINDOW, SIGN_IN_LIMIT)
            .await?
        {
            let wait = (oldest + SIGN_IN_WINDOW - now).max(SECOND);
            return Err(DomainError::Throttled {
                retry_after_secs: u64::try_from((wait + SECOND - 1) / SECOND).unwrap_or(60),
            });
        }
        let operator = self.store.find_operator(name).await?;
        let phc = operator
            .as_ref()
            .map_or_else(|| decoy_hash().to_owned(), |o| o.password_hash.clone());
        let typed = password.to_owned();
        let matches = blocking(move || verify_password(&typed, &phc)).await?;
        let Some(operator) = operator.filter(|_| matches) else {
            return Err(DomainError::Unauthenticated(
                "wrong operator name or password".to_owned(),
            ));
        };
        self.store.clear_sign_in_attempts(name).await?;
        let token = new_secret(SESSION_PREFIX);
        let session = ConsoleSession {
            token_hash: sha256_hex(token.as_bytes()),
            operator_id: operator.id,
            csrf_token: new_secret(""),
            created_at: now,
            expires_at: now + SESSION_TTL,
        };
        let audit = record(
            OPERATOR_CHAIN,
            now,
            Actor::operator(operator.id.to_string()),
            "operator.login",
            ("operator", operator.id.to_string()),
            "success",
            serde_json::json!({"name": operator.name}),
        );
        self.store.create_session(&session, &audit).await?;
        Ok(SignedIn {
            token,
            operator,
            session,
        })
    }

    /// The session of a cookie value: 401 when it is unknown, expired or signed out, or its
    /// operator is gone.
    pub async fn authenticate(&self, token: &str) -> DomainResult<OperatorSession> {
        let unauthenticated = || DomainError::Unauthenticated("not signed in".to_owned());
        if !token.starts_with(SESSION_PREFIX) {
            return Err(unauthenticated());
        }
        let session = self
            .store
            .get_session(&sha256_hex(token.as_bytes()), self.clock.now())
            .await?
            .ok_or_else(unauthenticated)?;
        let operator = self
            .store
            .get_operator(session.operator_id)
            .await?
            .ok_or_else(unauthenticated)?;
        Ok(OperatorSession { operator, session })
    }

    /// An operator by id (to name the actor of audit entries).
    pub async fn operator(&self, id: Uuid) -> DomainResult<Option<Operator>> {
        Ok(self.store.get_operator(id).await?)
    }

    /// Ends the session of a cookie value (nothing when there is none).
    pub async fn sign_out(&self, token: &str) -> DomainResult<()> {
        self.store
            .delete_session(&sha256_hex(token.as_bytes()))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse battery!", &phc));
        assert!(!verify_password(
            "correct horse battery",
            "not a phc string"
        ));
        // A fresh salt every time.
        assert_ne!(phc, hash_password("correct horse battery").unwrap());
    }
}
