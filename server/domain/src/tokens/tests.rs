//! The grant and the checks on presented tokens, on a real store and a clock moved by hand.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use palmlink_store::{Scope, Store};

use super::*;
use crate::audit::OperatorActor;
use crate::operators::Operators;

/// A clock that stands still until moved.
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct Fixture {
    tokens: Tokens,
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    operators: Operators,
    _dir: tempfile::TempDir,
}

async fn fixture(ttl_secs: i64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db").display());
    let store = palmlink_store::open(&url).await.unwrap();
    let clock = Arc::new(ManualClock(AtomicI64::new(1_700_000_000 * SECOND)));
    let master = crate::MasterKey::load(&dir.path().join("master.key"), true).unwrap();
    let key = SigningKey::shared(store.as_ref(), &master, clock.as_ref(), dir.path())
        .await
        .unwrap();
    let tokens = Tokens::new(
        store.clone(),
        clock.clone(),
        key,
        "https://issuer.test".into(),
        ttl_secs,
    );
    let operators = Operators::new(store.clone(), clock.clone());
    Fixture {
        tokens,
        clock,
        store,
        operators,
        _dir: dir,
    }
}

fn request(id: &str, secret: &str, scope: Option<&str>) -> GrantRequest {
    GrantRequest {
        grant_type: Some("client_credentials".into()),
        client_id: Some(id.into()),
        client_secret: Some(secret.into()),
        scope: scope.map(str::to_owned),
        basic: None,
    }
}

fn kind(err: DomainError) -> GrantErrorKind {
    match err {
        DomainError::Grant { kind, .. } => kind,
        other => panic!("expected a grant error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_granted_token_authenticates_its_client_with_the_scopes_asked_for() {
    let f = fixture(3600).await;
    let tenant = f
        .operators
        .create_tenant(OperatorActor::CommandLine, "t")
        .await
        .unwrap();
    let client = f
        .operators
        .create_client(
            OperatorActor::CommandLine,
            tenant.id,
            "app",
            Some("devices verify"),
        )
        .await
        .unwrap();
    let id = client.client.id.to_string();
    let grant = f
        .tokens
        .grant(request(&id, &client.secret, Some("verify")))
        .await
        .unwrap();
    assert_eq!((grant.scope.as_str(), grant.expires_in), ("verify", 3600));
    let caller = f.tokens.authenticate(&grant.access_token).await.unwrap();
    assert_eq!(
        caller,
        Caller {
            tenant_id: tenant.id,
            client_id: client.client.id,
            scopes: vec![Scope::Verify],
            operator_id: None,
        }
    );
    assert!(caller.require(Scope::Devices).is_err());
    // Asking for more than the client holds, or for nothing that exists.
    for scope in ["users", "verify nonsense"] {
        let err = f
            .tokens
            .grant(request(&id, &client.secret, Some(scope)))
            .await
            .unwrap_err();
        assert_eq!(kind(err), GrantErrorKind::InvalidScope, "{scope}");
    }
    let err = f
        .tokens
        .grant(request(&id, "pcs_wrong", None))
        .await
        .unwrap_err();
    assert_eq!(kind(err), GrantErrorKind::InvalidClient);
    let err = f
        .tokens
        .grant(GrantRequest {
            grant_type: Some("password".into()),
            ..request(&id, &client.secret, None)
        })
        .await
        .unwrap_err();
    assert_eq!(kind(err), GrantErrorKind::UnsupportedGrantType);
    // A deleted client's tokens stop working at once.
    f.operators
        .delete_client(OperatorActor::CommandLine, client.client.id)
        .await
        .unwrap();
    assert!(f.tokens.authenticate(&grant.access_token).await.is_err());
    assert!(f
        .store
        .get_client(client.client.id)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_remembered_token_still_expires_and_a_changed_one_is_checked_in_full() {
    let f = fixture(60).await;
    let tenant = f
        .operators
        .create_tenant(OperatorActor::CommandLine, "t")
        .await
        .unwrap();
    let client = f
        .operators
        .create_client(OperatorActor::CommandLine, tenant.id, "app", None)
        .await
        .unwrap();
    let token = f
        .tokens
        .grant(request(&client.client.id.to_string(), &client.secret, None))
        .await
        .unwrap()
        .access_token;
    let first = f.tokens.authenticate(&token).await.unwrap();
    assert_eq!(first.scopes, Scope::ALL);
    assert_eq!(f.tokens.authenticate(&token).await.unwrap(), first);
    // One changed byte of the signature is another token: refused, not looked up.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(f.tokens.authenticate(&tampered).await.is_err());
    // Expiry has no leeway, remembered or not.
    f.clock.0.fetch_add(60 * SECOND, Ordering::SeqCst);
    assert!(f.tokens.authenticate(&token).await.is_ok());
    f.clock.0.fetch_add(SECOND, Ordering::SeqCst);
    assert!(
        f.tokens.authenticate(&token).await.is_err(),
        "an expired token was accepted"
    );
}
