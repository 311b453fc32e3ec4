//! Operators of the console, their sessions, and the sign-in gate.

use palmlink_store::{
    AuditFilter, ConsoleSession, Operator, SignInGate, Store, StoreError, OPERATOR_CHAIN,
};
use uuid::Uuid;

use crate::support::audit;

/// The actions of the operators' chain, in order.
async fn operator_chain(store: &dyn Store) -> Vec<String> {
    let (entries, _) = store
        .list_audit(OPERATOR_CHAIN, &AuditFilter::default(), 0, 100)
        .await
        .unwrap();
    entries.into_iter().map(|e| e.record.action).collect()
}

fn operator(name: &str) -> Operator {
    Operator {
        id: Uuid::new_v4(),
        name: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at: 7,
    }
}

fn session(operator: &Operator, hash: &str, expires_at: i64) -> ConsoleSession {
    ConsoleSession {
        token_hash: hash.into(),
        operator_id: operator.id,
        csrf_token: format!("csrf-{hash}"),
        created_at: 1,
        expires_at,
    }
}

pub async fn operator_names_are_unique(store: &dyn Store) {
    let ada = operator("ada");
    let created = audit(OPERATOR_CHAIN, "operator.created");
    store.create_operator(&ada, &created).await.unwrap();
    assert!(matches!(
        store.create_operator(&operator("ada"), &created).await,
        Err(StoreError::Conflict(_))
    ));
    // The refused one wrote no entry.
    assert_eq!(operator_chain(store).await, ["operator.created"]);
    assert_eq!(store.find_operator("ada").await.unwrap(), Some(ada.clone()));
    assert_eq!(store.get_operator(ada.id).await.unwrap(), Some(ada));
    assert!(store.find_operator("Ada").await.unwrap().is_none());
    assert!(store.get_operator(Uuid::new_v4()).await.unwrap().is_none());
}

pub async fn sessions_expire_and_end(store: &dyn Store) {
    let ada = operator("ada");
    store
        .create_operator(&ada, &audit(OPERATOR_CHAIN, "operator.created"))
        .await
        .unwrap();
    let login = audit(OPERATOR_CHAIN, "operator.login");
    let s = session(&ada, "h1", 100);
    store.create_session(&s, &login).await.unwrap();
    store
        .create_session(&session(&ada, "h2", 50), &login)
        .await
        .unwrap();
    // Each session with its entry.
    assert_eq!(
        operator_chain(store).await,
        ["operator.created", "operator.login", "operator.login"]
    );
    assert_eq!(store.get_session("h1", 99).await.unwrap(), Some(s));
    // Expired at its expiry time, and unknown hashes find nothing.
    assert!(store.get_session("h1", 100).await.unwrap().is_none());
    assert!(store.get_session("nope", 0).await.unwrap().is_none());
    // The purge takes the expired session only.
    assert_eq!(store.purge_console(60, 0).await.unwrap(), 1);
    assert!(store.get_session("h2", 0).await.unwrap().is_none());
    assert!(store.get_session("h1", 0).await.unwrap().is_some());
    assert!(store.delete_session("h1").await.unwrap());
    assert!(!store.delete_session("h1").await.unwrap());
    assert!(store.get_session("h1", 0).await.unwrap().is_none());
}

pub async fn the_sign_in_gate_counts_a_window_per_name(store: &dyn Store) {
    for at in 10..15 {
        assert_eq!(
            store.gate_sign_in("ada", at, 0, 5).await.unwrap(),
            SignInGate::Open
        );
    }
    // The sixth in the window is refused and not counted; the oldest is reported.
    assert_eq!(
        store.gate_sign_in("ada", 20, 0, 5).await.unwrap(),
        SignInGate::Throttled { oldest: 10 }
    );
    // Another name has its own count.
    assert_eq!(
        store.gate_sign_in("bob", 20, 0, 5).await.unwrap(),
        SignInGate::Open
    );
    // Once the window moves past the first attempt, one more goes through.
    assert_eq!(
        store.gate_sign_in("ada", 70, 11, 5).await.unwrap(),
        SignInGate::Open
    );
    assert_eq!(
        store.gate_sign_in("ada", 71, 11, 5).await.unwrap(),
        SignInGate::Throttled { oldest: 11 }
    );
    // A success clears the name's count.
    store.clear_sign_in_attempts("ada").await.unwrap();
    assert_eq!(
        store.gate_sign_in("ada", 72, 11, 5).await.unwrap(),
        SignInGate::Open
    );
    // The purge forgets attempts made before its time: bob's at 20, not ada's at 72.
    assert_eq!(store.purge_console(0, 21).await.unwrap(), 1);
    assert_eq!(
        store.gate_sign_in("bob", 74, 0, 1).await.unwrap(),
        SignInGate::Open
    );
    assert_eq!(
        store.gate_sign_in("ada", 73, 0, 1).await.unwrap(),
        SignInGate::Throttled { oldest: 72 }
    );
}
