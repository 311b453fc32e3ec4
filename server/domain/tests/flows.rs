//! The domain's services end to end without any socket: a real store (SQLite in a
//! temporary directory), real galleries, a clock moved by hand and the synthetic population
//! of `palmlink-fixtures`.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use palmlink_domain::{
    AuditBrowse, AuditQuery, Caller, CancelChallenge, DomainError, IdentifyChallenge,
    OperatorActor, Page, RegisterDevice, SubjectChallenge, SECOND,
};
use palmlink_fixtures::PalmSide;
use palmlink_store::{
    AuditEntry, AuditFilter, ChallengeFilter, ChallengeStatus, FailureReason, PalmType, Scope,
    OPERATOR_CHAIN,
};
use serde_json::json;
use support::world;
use uuid::Uuid;

fn subject(user: &str, hardware_id: &str, palm: Option<PalmType>) -> SubjectChallenge {
    SubjectChallenge {
        external_user_id: user.into(),
        hardware_id: hardware_id.into(),
        palm_type: palm,
        metadata: Some(json!({"desk": 3})),
    }
}

#[tokio::test]
async fn an_enrolled_palm_verifies_its_owner_refuses_an_impostor_and_is_identified() {
    let w = world().await;
    let caller = w.caller().await;
    let scanner = w.scanner(&caller, "hw-1").await;
    let d = &w.domain;

    let enroll = d
        .challenges
        .enroll(
            &caller,
            subject("alice", "hw-1", Some(PalmType::Right)),
            false,
        )
        .await
        .unwrap();
    let pending = d.challenges.poll(&scanner, Duration::ZERO).await.unwrap();
    assert_eq!(
        pending.iter().map(|c| c.id).collect::<Vec<_>>(),
        [enroll.id]
    );
    let done = d
        .captures
        .submit(&scanner, enroll.id, w.captures(7, PalmSide::Right, None))
        .await
        .unwrap();
    assert_eq!(done.status, ChallengeStatus::Completed);
    let result = done.result.unwrap();
    assert_eq!(result["external_user_id"], "alice");
    assert_eq!(result["metadata"], json!({"desk": 3}));
    // The same palm again for the same user is a conflict, before any capture.
    let again = d
        .challenges
        .enroll(
            &caller,
            subject("alice", "hw-1", Some(PalmType::Right)),
            false,
        )
        .await;
    assert!(matches!(
        again,
        Err(DomainError::Conflict {
            code: "already_enrolled",
            ..
        })
    ));

    let verify = d
        .challenges
        .verify(&caller, subject("alice", "hw-1", None))
        .await
        .unwrap();
    let genuine = d
        .captures
        .submit(&scanner, verify.id, w.captures(7, PalmSide::Right, Some(0)))
        .await
        .unwrap()
        .result
        .unwrap();
    assert_eq!(
        (&genuine["matched"], &genuine["result"]),
        (&json!(true), &json!("match"))
    );
    assert_eq!(genuine["scores"].as_array().unwrap().len(), 10);

    let verify = d
        .challenges
        .verify(&caller, subject("alice", "hw-1", None))
        .await
        .unwrap();
    let impostor = d
        .captures
        .submit(
            &scanner,
            verify.id,
            w.captures(60, PalmSide::Right, Some(0)),
        )
        .await
        .unwrap()
        .result
        .unwrap();
    assert_eq!(impostor["matched"], false);

    let identify = d
        .challenges
        .identify(
            &caller,
            IdentifyChallenge {
                hardware_id: "hw-1".into(),
                palm_type: None,
                top_k: Some(3),
                metadata: None,
            },
        )
        .await
        .unwrap();
    let found = d
        .captures
        .submit(
            &scanner,
            identify.id,
            w.captures(7, PalmSide::Right, Some(1)),
        )
        .await
        .unwrap()
        .result
        .unwrap();
    assert_eq!(found["matched"], true);
    assert_eq!(found["candidates"][0]["external_user_id"], "alice");
    assert_eq!(found["search"]["gallery_size"], 1);

    // A completed challenge takes no second capture.
    let twice = d
        .captures
        .submit(
            &scanner,
            identify.id,
            w.captures(7, PalmSide::Right, Some(1)),
        )
        .await;
    assert!(matches!(
        twice,
        Err(DomainError::Conflict {
            code: "challenge_not_pending",
            ..
        })
    ));

    // Erased: the user is gone and a verification of them cannot be created.
    d.users.erase(&caller, "alice").await.unwrap();
    assert!(matches!(
        d.users.get(&caller, "alice").await,
        Err(DomainError::NotFound(_))
    ));
    let gone = d
        .challenges
        .verify(&caller, subject("alice", "hw-1", None))
        .await;
    assert!(matches!(gone, Err(DomainError::NotFound(_))));
}

#[tokio::test]
async fn captures_that_do_not_fit_their_challenge_name_the_field() {
    let w = world().await;
    let caller = w.caller().await;
    let scanner = w.scanner(&caller, "hw-1").await;
    let c = w
        .domain
        .challenges
        .enroll(&caller, subject("bob", "hw-1", Some(PalmType::Left)), false)
        .await
        .unwrap();
    let mut wrong_palm = w.captures(3, PalmSide::Right, None);
    wrong_palm.captures[0].template.blocks.as_mut().unwrap()[4][7] = f32::NAN;
    let err = w
        .domain
        .captures
        .submit(&scanner, c.id, wrong_palm)
        .await
        .unwrap_err();
    let DomainError::Validation(fields) = err else {
        panic!("expected 422, got {err:?}");
    };
    let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(names, ["captures", "captures[0].template.blocks[4]"]);
    // Nothing was stored: the challenge still waits.
    let still = w.domain.challenges.get(&caller, c.id).await.unwrap();
    assert_eq!(still.status, ChallengeStatus::Pending);
}

#[tokio::test]
async fn challenges_end_by_cancellation_expiry_or_revocation() {
    let w = world().await;
    let caller = w.caller().await;
    let scanner = w.scanner(&caller, "hw-1").await;
    let d = &w.domain;
    let identify = |top_k| IdentifyChallenge {
        hardware_id: "hw-1".into(),
        palm_type: Some(PalmType::Left),
        top_k: Some(top_k),
        metadata: None,
    };

    let cancelled = d.challenges.identify(&caller, identify(1)).await.unwrap();
    let c = d
        .challenges
        .cancel(
            &scanner,
            cancelled.id,
            CancelChallenge {
                reason: FailureReason::Spoof,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (c.status, c.failure_reason),
        (ChallengeStatus::Cancelled, Some(FailureReason::Spoof))
    );
    let refused = d
        .challenges
        .cancel(
            &scanner,
            cancelled.id,
            CancelChallenge {
                reason: FailureReason::Duplicate,
            },
        )
        .await;
    assert!(matches!(refused, Err(DomainError::Validation(_))));

    let late = d.challenges.identify(&caller, identify(2)).await.unwrap();
    w.clock.0.fetch_add(3601 * SECOND, Ordering::SeqCst);
    let err = d
        .captures
        .submit(&scanner, late.id, w.captures(1, PalmSide::Left, Some(0)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DomainError::Gone {
                code: "challenge_expired",
                ..
            }
        ),
        "{err:?}"
    );

    let revoked = d.challenges.identify(&caller, identify(3)).await.unwrap();
    d.devices.revoke(&caller, scanner.id).await.unwrap();
    let c = d.challenges.get(&caller, revoked.id).await.unwrap();
    assert_eq!(
        (c.status, c.failure_reason),
        (ChallengeStatus::Failed, Some(FailureReason::DeviceRevoked))
    );
    let listing = d
        .challenges
        .list(
            &caller,
            ChallengeFilter {
                kind: None,
                status: Some(ChallengeStatus::Expired),
            },
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!((listing.total, listing.rows[0].id), (1, late.id));
    // The revoked scanner's credential no longer works.
    assert!(d.challenges.identify(&caller, identify(4)).await.is_err());
}

#[tokio::test]
async fn nothing_crosses_tenants_and_scopes_are_enforced() {
    let w = world().await;
    let alice_tenant = w.caller().await;
    let other = w.caller().await;
    w.scanner(&alice_tenant, "hw-1").await;
    let c = w
        .domain
        .challenges
        .identify(
            &alice_tenant,
            IdentifyChallenge {
                hardware_id: "hw-1".into(),
                palm_type: None,
                top_k: None,
                metadata: None,
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        w.domain.challenges.get(&other, c.id).await,
        Err(DomainError::NotFound(_))
    ));
    // The other tenant has no scanner called hw-1.
    let theirs = w
        .domain
        .challenges
        .identify(
            &other,
            IdentifyChallenge {
                hardware_id: "hw-1".into(),
                palm_type: None,
                top_k: None,
                metadata: None,
            },
        )
        .await;
    assert!(matches!(theirs, Err(DomainError::NotFound("hardware_id"))));
    let devices = w
        .domain
        .devices
        .list(&other, Page::default())
        .await
        .unwrap();
    assert_eq!(devices.total, 0);
    let narrow = Caller {
        scopes: vec![Scope::Users],
        ..other.clone()
    };
    let err = w
        .domain
        .devices
        .list(&narrow, Page::default())
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::MissingScope(Scope::Devices)));
    assert!(w
        .domain
        .challenges
        .get(&narrow, Uuid::new_v4())
        .await
        .is_err());
}

#[tokio::test]
async fn operators_sign_in_throttled_per_name_and_sessions_expire() {
    let w = world().await;
    let sessions = &w.domain.sessions;
    let made = sessions
        .create_operator(
            OperatorActor::CommandLine,
            " ada ",
            Some("a long enough secret".into()),
        )
        .await
        .unwrap();
    assert_eq!(made.operator.name, "ada");
    assert!(made.operator.password_hash.starts_with("$argon2id$"));
    assert!(!made.operator.password_hash.contains("a long enough secret"));
    assert!(matches!(
        sessions
            .create_operator(OperatorActor::CommandLine, "ada", None)
            .await,
        Err(DomainError::Conflict { .. })
    ));
    assert!(matches!(
        sessions
            .create_operator(OperatorActor::CommandLine, "bob", Some("short".into()))
            .await,
        Err(DomainError::Validation(_))
    ));

    let signed = sessions
        .sign_in("ada", "a long enough secret")
        .await
        .unwrap();
    let session = sessions.authenticate(&signed.token).await.unwrap();
    assert_eq!(session.operator.id, made.operator.id);
    assert_ne!(session.session.csrf_token, signed.token);
    // The store keeps the cookie's hash, never the cookie.
    assert!(w
        .store
        .get_session(&signed.token, 0)
        .await
        .unwrap()
        .is_none());
    // Unknown names and wrong passwords get the same answer.
    for (name, password) in [("ada", "wrong"), ("nobody", "a long enough secret")] {
        assert!(matches!(
            sessions.sign_in(name, password).await,
            Err(DomainError::Unauthenticated(_))
        ));
    }
    // A success cleared the count: four more failures for ada (five in all), then the
    // sixth attempt is throttled, even with the right password.
    for _ in 0..4 {
        assert!(sessions.sign_in("ada", "wrong").await.is_err());
    }
    let throttled = sessions.sign_in("ada", "a long enough secret").await;
    assert!(
        matches!(throttled, Err(DomainError::Throttled { retry_after_secs }) if (1..=60).contains(&retry_after_secs)),
        "{throttled:?}"
    );
    // A minute later the window has moved on.
    w.clock.0.fetch_add(61 * SECOND, Ordering::SeqCst);
    let again = sessions
        .sign_in("ada", "a long enough secret")
        .await
        .unwrap();

    // Signing out ends one session; a session expires after its lifetime.
    sessions.sign_out(&again.token).await.unwrap();
    assert!(sessions.authenticate(&again.token).await.is_err());
    assert!(sessions.authenticate(&signed.token).await.is_ok());
    w.clock
        .0
        .fetch_add(palmlink_domain::SESSION_TTL, Ordering::SeqCst);
    assert!(matches!(
        sessions.authenticate(&signed.token).await,
        Err(DomainError::Unauthenticated(_))
    ));
    assert!(sessions.authenticate("pos_forged").await.is_err());

    // The operators' chain: the account made by the command line, then each sign-in by
    // the operator (the refused ones write nothing); never the password; it holds.
    let (entries, _) = w
        .store
        .list_audit(OPERATOR_CHAIN, &AuditFilter::default(), 0, 100)
        .await
        .unwrap();
    let ada = made.operator.id.to_string();
    assert_eq!(
        who_did_what(&entries),
        [
            ("operator.created", "operator", "cli"),
            ("operator.login", "operator", ada.as_str()),
            ("operator.login", "operator", ada.as_str()),
        ]
    );
    assert!(entries
        .iter()
        .all(|e| !e.record.details.to_string().contains("enough secret")));
    let checks = w.domain.audit.verify(Some(OPERATOR_CHAIN)).await.unwrap();
    assert_eq!(checks[0].1.first_bad, None);
    assert_eq!(checks[0].1.entries, 3);
}

/// (action, actor type, actor id) of each entry.
fn who_did_what(entries: &[AuditEntry]) -> Vec<(&str, &str, &str)> {
    entries
        .iter()
        .map(|e| {
            (
                e.record.action.as_str(),
                e.record.actor.kind.as_str(),
                e.record.actor.id.as_str(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_operators_changes_are_audited_as_the_operator_and_browsed_across_tenants() {
    let w = world().await;
    let api = w.caller().await;
    let operator = uuid::Uuid::new_v4();
    let console = Caller::operator(api.tenant_id, operator);
    let by = OperatorActor::Console(operator);
    let device = |name: &str| RegisterDevice {
        device_name: name.to_owned(),
        location: "lobby".to_owned(),
    };
    w.domain
        .devices
        .register(&api, device("by the client"))
        .await
        .unwrap();
    let made = w
        .domain
        .devices
        .register(&console, device("by the operator"))
        .await
        .unwrap();
    w.domain
        .devices
        .revoke(&console, made.device.id)
        .await
        .unwrap();
    let client = w
        .domain
        .operators
        .create_client(by, api.tenant_id, "console app", None)
        .await
        .unwrap();
    w.domain
        .operators
        .rotate_client(by, client.client.id)
        .await
        .unwrap();
    w.clock.0.fetch_add(SECOND, Ordering::SeqCst);
    let other = w.domain.operators.create_tenant(by, "other").await.unwrap();

    let (entries, _) = w
        .store
        .list_audit(api.tenant_id, &AuditFilter::default(), 0, 100)
        .await
        .unwrap();
    let op = operator.to_string();
    let client_id = api.client_id.to_string();
    assert_eq!(
        who_did_what(&entries),
        [
            ("tenant.created", "operator", "cli"),
            ("client.created", "operator", "cli"),
            ("device.registered", "client", client_id.as_str()),
            ("device.registered", "operator", op.as_str()),
            ("device.revoked", "operator", op.as_str()),
            ("client.created", "operator", op.as_str()),
            ("client.rotated", "operator", op.as_str()),
        ]
    );

    // Browsing: one chain newest first, filtered by actor type; every chain at once.
    let browse = |chain, actor_type: Option<&str>, action: Option<&str>| AuditBrowse {
        chain,
        query: AuditQuery {
            since: None,
            action: action.map(str::to_owned),
        },
        actor_type: actor_type.map(str::to_owned),
    };
    let page = Page::default();
    let mine = w
        .domain
        .audit
        .browse(browse(Some(api.tenant_id), Some("operator"), None), page)
        .await
        .unwrap();
    assert_eq!(mine.total, 6);
    assert_eq!(mine.rows[0].record.action, "client.rotated");
    assert!(mine.rows.windows(2).all(|p| p[0].sequence > p[1].sequence));
    let clients = w
        .domain
        .audit
        .browse(browse(Some(api.tenant_id), Some("client"), None), page)
        .await
        .unwrap();
    assert_eq!(clients.total, 1);
    let all = w
        .domain
        .audit
        .browse(browse(None, None, Some("tenant.created")), page)
        .await
        .unwrap();
    let tenants: Vec<_> = all.rows.iter().map(|e| e.record.tenant_id).collect();
    assert_eq!(tenants, [other.id, api.tenant_id]);
    assert!(matches!(
        w.domain
            .audit
            .browse(browse(None, Some("robot"), None), page)
            .await,
        Err(DomainError::Validation(_))
    ));
}
