//! Backends on fresh databases, and records to store.

use std::sync::Arc;

use palmlink_store::{
    Actor, AuditRecord, Challenge, ChallengeEnd, ChallengeKind, ChallengePalm, ChallengeStatus,
    Device, DeviceStatus, EndRecord, FailureReason, OutboxEvent, Store, Subscription, Tenant,
};
use serde_json::json;
use uuid::Uuid;

/// The variable naming the PostgreSQL database the `postgres` tests use.
pub const DATABASE_URL_VAR: &str = "PALMLINK_TEST_DATABASE_URL";

/// The SQLite backend on a database file of its own.
pub struct Sqlite {
    pub store: Arc<dyn Store>,
    url: String,
    _dir: tempfile::TempDir,
}

impl Sqlite {
    pub async fn new() -> Sqlite {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let store = palmlink_store::open(&url).await.unwrap();
        // Opening again applies no migration twice.
        palmlink_store::open(&url).await.unwrap();
        Sqlite {
            store,
            url,
            _dir: dir,
        }
    }

    /// Another store on the same database (in this process, SQLite's stores of one file
    /// share its writer).
    pub async fn another(&self) -> Arc<dyn Store> {
        palmlink_store::open(&self.url).await.unwrap()
    }
}

/// A schema of its own in the database [`DATABASE_URL_VAR`] names, dropped with this value
/// (the stores on it create it when they open).
pub struct Schema {
    /// The database's URL, without the schema.
    pub base: String,
    /// The schema's name.
    pub name: String,
}

impl Schema {
    /// `None` (and a line saying so) when [`DATABASE_URL_VAR`] is not set.
    pub fn new() -> Option<Schema> {
        let Ok(base) = std::env::var(DATABASE_URL_VAR) else {
            println!("skipped: {DATABASE_URL_VAR} is not set");
            return None;
        };
        let name = format!("test_{}", Uuid::new_v4().simple());
        Some(Schema { base, name })
    }

    /// The URL of the schema (`schema=` added to the database's).
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.base, self.name)
    }

    /// A store on the schema.
    pub async fn open(&self) -> Arc<dyn Store> {
        palmlink_store::open(&self.url()).await.unwrap()
    }

    /// A plain connection to the database, outside any store, with the schema first in its
    /// search path.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let client = connect(&self.base).await;
        client
            .batch_execute(&format!("SET search_path TO {}", self.name))
            .await
            .unwrap();
        client
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop has no runtime to wait on: a thread of its own drops the schema.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                connect(&base)
                    .await
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop schema {}", self.name);
        }
    }
}

/// The PostgreSQL backend on a [`Schema`] of its own.
pub struct Postgres {
    pub store: Arc<dyn Store>,
    pub schema: Schema,
}

impl Postgres {
    /// `None` (and a line saying so) when [`DATABASE_URL_VAR`] is not set.
    pub async fn new() -> Option<Postgres> {
        let schema = Schema::new()?;
        let store = schema.open().await;
        // Opening again applies no migration twice.
        schema.open().await;
        Some(Postgres { store, schema })
    }

    /// Another store (another pool of connections, as another node has) on the same schema.
    pub async fn another(&self) -> Arc<dyn Store> {
        self.schema.open().await
    }
}

pub async fn tenant(store: &dyn Store, name: &str) -> Uuid {
    let tenant = Tenant {
        id: Uuid::new_v4(),
        name: name.into(),
        created_at: 1,
    };
    store
        .create_tenant(&tenant, &audit(tenant.id, "tenant.created"))
        .await
        .unwrap();
    tenant.id
}

pub fn device(tenant: Uuid, code: &str) -> Device {
    Device {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        device_name: "d".into(),
        location: "l".into(),
        status: DeviceStatus::PendingPair,
        hardware_id: None,
        pairing_code: Some(code.into()),
        pairing_expires_at: Some(i64::MAX),
        paired_at: None,
        cert_valid_until: None,
        last_seen_at: None,
        created_at: 1,
    }
}

pub fn event(tenant: Uuid, n: i64) -> OutboxEvent {
    OutboxEvent {
        event_id: format!("evt_{n:032x}"),
        tenant_id: tenant,
        event_type: "device.paired".into(),
        payload: json!({"n": n}),
        occurred_at: n,
        dispatched_at: None,
    }
}

pub fn challenge(tenant: Uuid, device: Uuid, expires_at: i64) -> Challenge {
    Challenge {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        kind: ChallengeKind::Identify,
        device_id: device,
        hardware_id: "hw".into(),
        external_user_id: None,
        palm_type: ChallengePalm::Any,
        top_k: Some(5),
        status: ChallengeStatus::Pending,
        metadata: json!({"k": "v"}),
        result: None,
        failure_reason: None,
        created_at: 1,
        expires_at,
        finished_at: None,
        log_position: 0,
        captures: None,
    }
}

/// The completion of challenge `id` with `result` and event `n` at `at`.
pub fn completion(
    id: Uuid,
    tenant: Uuid,
    result: &serde_json::Value,
    n: i64,
    at: i64,
) -> ChallengeEnd {
    ChallengeEnd {
        id,
        status: ChallengeStatus::Completed,
        failure_reason: None,
        result: Some(result.clone()),
        captures: Some(json!([{"palm_type": "left", "quality": 0.9, "liveness": 0.8}])),
        event: event(tenant, n),
        audit: audit(tenant, "test.ended"),
        at,
    }
}

/// The end of challenge `id` with `status` and `reason`, and event `n`, at `at`.
pub fn ending(
    id: Uuid,
    tenant: Uuid,
    status: ChallengeStatus,
    reason: FailureReason,
    n: i64,
    at: i64,
) -> ChallengeEnd {
    ChallengeEnd {
        id,
        status,
        failure_reason: Some(reason),
        result: None,
        captures: None,
        event: event(tenant, n),
        audit: audit(tenant, "test.ended"),
        at,
    }
}

/// An audit record of `tenant` by the system.
pub fn audit(tenant: Uuid, action: &str) -> AuditRecord {
    AuditRecord {
        tenant_id: tenant,
        at: 5,
        actor: Actor::system(),
        action: action.into(),
        resource_type: "test".into(),
        resource_id: "r".into(),
        outcome: "success".into(),
        details: json!({"n": 1}),
    }
}

/// What the store is given for a challenge it ends by itself: an event whose id derives
/// from the challenge's, its payload naming the challenge and how it ended, and an audit
/// entry naming the challenge.
pub fn end_event(c: &Challenge) -> EndRecord {
    EndRecord {
        event: end_outbox_event(c),
        audit: AuditRecord {
            resource_id: c.id.to_string(),
            ..audit(c.tenant_id, "challenge.failed")
        },
    }
}

/// The event of [`end_event`].
pub fn end_outbox_event(c: &Challenge) -> OutboxEvent {
    OutboxEvent {
        event_id: format!("evt_{}", c.id.simple()),
        tenant_id: c.tenant_id,
        event_type: "challenge.failed".into(),
        payload: json!({
            "challenge_id": c.id,
            "status": c.status,
            "failure_reason": c.failure_reason,
            "finished_at": c.finished_at,
        }),
        occurred_at: c.finished_at.unwrap_or_default(),
        dispatched_at: None,
    }
}

/// A subscription of `tenant` to `events`, named and reached after `name`.
pub fn hook(tenant: Uuid, name: &str, events: &[&str], created_at: i64) -> Subscription {
    Subscription {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        name: name.into(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        endpoint: format!("https://{name}.example/hook"),
        api_key: None,
        secret: "whsec_c2VjcmV0".into(),
        old_secret: None,
        old_secret_expires_at: None,
        active: true,
        disabled_reason: None,
        failing_since: None,
        created_at,
        updated_at: created_at,
    }
}
