//! Operators of the console, their sessions, and the sign-in attempts that throttle guessing.

use uuid::Uuid;

use crate::{AuditRecord, StoreResult};

/// A person who runs the service through the console, across tenants.
#[derive(Clone, Debug, PartialEq)]
pub struct Operator {
    /// Operator id.
    pub id: Uuid,
    /// Sign-in name, unique.
    pub name: String,
    /// The password's PHC string (a memory-hard hash with its salt and parameters).
    pub password_hash: String,
    /// Creation time.
    pub created_at: i64,
}

/// A signed-in console session.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsoleSession {
    /// Hex SHA-256 of the session cookie (the cookie itself is never stored).
    pub token_hash: String,
    /// Who signed in.
    pub operator_id: Uuid,
    /// The token every change request of this session must carry.
    pub csrf_token: String,
    /// Sign-in time.
    pub created_at: i64,
    /// When the session stops working.
    pub expires_at: i64,
}

/// Whether a sign-in attempt may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInGate {
    /// Go ahead: the attempt is counted until [`OperatorStore::clear_sign_in_attempts`].
    Open,
    /// Too many attempts counted in the window; the oldest of them was made at this time.
    Throttled {
        /// Time of the oldest attempt in the window.
        oldest: i64,
    },
}

/// Storage of operators, console sessions and sign-in attempts.
#[async_trait::async_trait]
pub trait OperatorStore: Send + Sync {
    /// Stores a new operator with its audit entry (`operator.created`), in one transaction.
    ///
    /// Concurrency: names are unique; the second of two operators of one name is a
    /// `Conflict`, and writes no entry.
    async fn create_operator(&self, operator: &Operator, audit: &AuditRecord) -> StoreResult<()>;
    /// The operator of a name.
    async fn find_operator(&self, name: &str) -> StoreResult<Option<Operator>>;
    /// The operator of an id.
    async fn get_operator(&self, id: Uuid) -> StoreResult<Option<Operator>>;
    /// Counts an attempt to sign in as `name` at `now`, unless `limit` attempts have been
    /// counted since `since`; then nothing is counted and the gate is closed.
    ///
    /// Concurrency: the count and the insert are one step per name: of many attempts at
    /// once, at most `limit` are let through in a window.
    async fn gate_sign_in(
        &self,
        name: &str,
        now: i64,
        since: i64,
        limit: u32,
    ) -> StoreResult<SignInGate>;
    /// Forgets every attempt counted against `name` (after a successful sign-in).
    async fn clear_sign_in_attempts(&self, name: &str) -> StoreResult<()>;
    /// Stores a new session with its audit entry (`operator.login`), in one transaction.
    async fn create_session(
        &self,
        session: &ConsoleSession,
        audit: &AuditRecord,
    ) -> StoreResult<()>;
    /// The session of a cookie's hash, if it exists and has not expired at `now`.
    async fn get_session(&self, token_hash: &str, now: i64) -> StoreResult<Option<ConsoleSession>>;
    /// Ends a session; false when there was none.
    async fn delete_session(&self, token_hash: &str) -> StoreResult<bool>;
    /// Deletes the sessions expired at `now` and the attempts made before `attempts_before`;
    /// returns how many rows went.
    async fn purge_console(&self, now: i64, attempts_before: i64) -> StoreResult<u64>;
}
