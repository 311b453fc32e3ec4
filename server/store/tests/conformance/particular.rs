//! What one backend does and the other does not. SQLite: the only worker of a database
//! releases every lease at start. PostgreSQL: several nodes starting at once, leases left to
//! the nodes holding them, signals kept to their schema and heard again after the listening
//! connection drops, URLs. Each test that needs a PostgreSQL database passes with a line
//! saying it was skipped when `PALMLINK_TEST_DATABASE_URL` is not set.

use std::time::Duration;

use palmlink_store::{Store, StoreError};
use tokio::sync::broadcast::error::TryRecvError;

use crate::support::{audit, event, hook, tenant, Postgres, Schema, Sqlite};

/// How long a signal may take to arrive.
const SIGNAL_WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_apply_each_migration_once() {
    let Some(schema) = Schema::new() else { return };
    let url = schema.url();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { palmlink_store::open(&url).await.map(|_| ()) })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
    let client = schema.connect().await;
    let rows = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    // Every version once, in order (numbers are given out per change, so the sequence
    // may have a gap where a number went unused).
    assert!(versions.len() >= 5, "{versions:?}");
    assert_eq!(versions.first(), Some(&1), "{versions:?}");
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
}

/// A tenant with one subscription and one delivery due at 20, leased by `store` until 1000.
async fn one_leased_delivery(store: &dyn Store) {
    let tenant = tenant(store, "t").await;
    store
        .create_webhook(
            &hook(tenant, "a", &["device.paired"], 0),
            &audit(tenant, "webhook.created"),
        )
        .await
        .unwrap();
    store.append_event(&event(tenant, 10)).await.unwrap();
    assert_eq!(store.fan_out(10, 20).await.unwrap(), 1);
    assert_eq!(store.claim_due(30, 1_000, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_worker_of_an_sqlite_database_releases_every_lease_at_start() {
    let backend = Sqlite::new().await;
    let store = backend.store.as_ref();
    one_leased_delivery(store).await;
    assert!(store.claim_due(31, 1_000, 10).await.unwrap().is_empty());
    assert_eq!(store.release_leases().await.unwrap(), 1);
    assert_eq!(store.claim_due(32, 1_000, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_of_other_nodes_are_left_to_expire() {
    let Some(backend) = Postgres::new().await else {
        return;
    };
    let (a, b) = (backend.store.clone(), backend.another().await);
    one_leased_delivery(a.as_ref()).await;
    // Another node starting up releases nothing: the lease is a live node's.
    assert_eq!(b.release_leases().await.unwrap(), 0);
    assert!(b.claim_due(31, 1_000, 10).await.unwrap().is_empty());
    assert_eq!(b.next_due().await.unwrap(), Some(1_000));
    // Once it has expired, another node takes the delivery over.
    assert_eq!(b.claim_due(1_000, 2_000, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_stay_in_their_schema() {
    let (Some(one), Some(other)) = (Postgres::new().await, Postgres::new().await) else {
        return;
    };
    let mut heard = other.store.subscribe().await.unwrap();
    one.store.notify("challenges", "theirs").await.unwrap();
    other.store.notify("challenges", "ours").await.unwrap();
    let signal = tokio::time::timeout(SIGNAL_WAIT, heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(signal.payload, "ours");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(matches!(heard.try_recv(), Err(TryRecvError::Empty)));
}

/// The process id of the connection listening for the signals of `schema` (its `LISTEN`
/// done), once there is one other than `not`.
async fn listener_pid(schema: &Schema, not: Option<i32>) -> i32 {
    let client = schema.connect().await;
    let listen = format!("LISTEN \"palmlink:{}\"", schema.name);
    for _ in 0..200 {
        let row = client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'palmlink signals' \
                 AND query = $1 AND state = 'idle' AND pid IS DISTINCT FROM $2",
                &[&listen, &not],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no connection listens for the signals of {}", schema.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_heard_again_after_the_listening_connection_drops() {
    let Some(backend) = Postgres::new().await else {
        return;
    };
    let sender = backend.another().await;
    let mut heard = backend.store.subscribe().await.unwrap();
    let first = listener_pid(&backend.schema, None).await;
    let admin = backend.schema.connect().await;
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&first])
        .await
        .unwrap();
    listener_pid(&backend.schema, Some(first)).await;
    sender.notify("webhooks", "after").await.unwrap();
    let signal = tokio::time::timeout(SIGNAL_WAIT, heard.recv())
        .await
        .expect("heard after the listener came back")
        .unwrap();
    assert_eq!(
        (signal.topic.as_str(), signal.payload.as_str()),
        ("webhooks", "after")
    );
}

#[tokio::test]
async fn errors_never_repeat_the_url() {
    for url in [
        "postgres://someone:hunter2@127.0.0.1:1/db",
        "postgresql://someone:hunter2@127.0.0.1:1/db?schema=BAD",
        "postgres://someone:hunter2@127.0.0.1:1/db?sslmode=allow",
    ] {
        let err = palmlink_store::open(url)
            .await
            .err()
            .expect("no server there");
        let text = err.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("someone"),
            "{text}"
        );
    }
    assert!(matches!(
        palmlink_store::open("mysql://someone:hunter2@h/db").await.err(),
        Some(StoreError::UnsupportedUrl(scheme)) if scheme == "mysql"
    ));
}

/// A store that answers is one `ping` away from proving it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_pings() {
    let Some(backend) = Postgres::new().await else {
        return;
    };
    let store: &dyn Store = backend.store.as_ref();
    store.ping().await.unwrap();
}
