//! Galleries as replicas of the database: two nodes on one database, a gallery rebuilt
//! from it, a sealed template that does not open, decisions that wait for the log.

mod support;

use std::sync::Arc;

use palmlink_domain::{DomainError, IdentifyChallenge, SubjectChallenge};
use palmlink_fixtures::PalmSide;
use palmlink_store::{PalmType, Store};
use uuid::Uuid;

fn subject(user: &str, palm: Option<PalmType>) -> SubjectChallenge {
    SubjectChallenge {
        external_user_id: user.into(),
        hardware_id: "hw-1".into(),
        palm_type: palm,
        metadata: None,
    }
}

/// Enrolls `user` with the right palm of population identity `identity` on `node`;
/// returns the feature id.
async fn enroll(
    node: &support::World,
    caller: &palmlink_domain::Caller,
    scanner: &palmlink_store::Device,
    user: &str,
    identity: u64,
) -> Uuid {
    let c = node
        .domain
        .challenges
        .enroll(caller, subject(user, Some(PalmType::Right)), false)
        .await
        .unwrap();
    let done = node
        .domain
        .captures
        .submit(
            scanner,
            c.id,
            node.captures(identity, PalmSide::Right, None),
        )
        .await
        .unwrap();
    done.result.unwrap()["feature_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_second_node_follows_enrollments_and_erasures_through_the_log() {
    let a = support::world().await;
    let b = a.another_node("node-b").await;
    let caller = a.caller().await;
    let scanner = a.scanner(&caller, "hw-1").await;
    let alice = enroll(&a, &caller, &scanner, "alice", 7).await;
    let bob = enroll(&a, &caller, &scanner, "bob", 8).await;
    let tenant = caller.tenant_id;

    // Node B has never seen the tenant: a verification decided there catches up first
    // (the challenge remembers the log position of its creation).
    let verify = b
        .domain
        .challenges
        .verify(&caller, subject("alice", None))
        .await
        .unwrap();
    assert_eq!(verify.log_position, 2);
    let result = b
        .domain
        .captures
        .submit(&scanner, verify.id, b.captures(7, PalmSide::Right, Some(0)))
        .await
        .unwrap()
        .result
        .unwrap();
    assert_eq!(result["matched"], true);
    let gallery_b = b.domain.galleries.get(tenant).await.unwrap();
    assert!(gallery_b.row_of(alice.as_u128()).is_some());
    assert_eq!(gallery_b.applied_sequence(), 2);

    // An erasure on A: B's next catch-up erases the row, and both agree with the database.
    a.domain.users.erase(&caller, "alice").await.unwrap();
    assert_eq!(b.domain.galleries.catch_up(tenant).await.unwrap(), 3);
    assert!(gallery_b.row_of(alice.as_u128()).is_none());
    assert!(gallery_b.row_of(bob.as_u128()).is_some());
    for node in [&a, &b] {
        let check = node.domain.galleries.check(tenant).await.unwrap();
        assert!(check.agrees(), "{check:?}");
        assert_eq!(
            (
                check.database_templates,
                check.last_sequence,
                check.log_head
            ),
            (1, 3, 3)
        );
    }
    // Catching up again changes nothing.
    assert_eq!(b.domain.galleries.catch_up(tenant).await.unwrap(), 3);
    assert_eq!(gallery_b.live_count(), 1);
}

#[tokio::test]
async fn a_gallery_deleted_by_hand_is_rebuilt_from_the_database() {
    let w = support::world().await;
    let caller = w.caller().await;
    let scanner = w.scanner(&caller, "hw-1").await;
    for (i, user) in ["u1", "u2", "u3"].iter().enumerate() {
        enroll(&w, &caller, &scanner, user, 10 + i as u64).await;
    }
    w.domain.users.erase(&caller, "u2").await.unwrap();
    let tenant = caller.tenant_id;
    // A new node whose galleries directory is empty, as after `rm -r`.
    let fresh = w.another_node("node-fresh").await;
    fresh.domain.galleries.start_up().await.unwrap();
    assert!(fresh.domain.galleries.is_ready());
    let check = fresh.domain.galleries.check(tenant).await.unwrap();
    assert!(check.agrees(), "{check:?}");
    assert_eq!((check.gallery_templates, check.last_sequence), (2, 4));
    let identify = fresh
        .domain
        .challenges
        .identify(
            &caller,
            IdentifyChallenge {
                hardware_id: "hw-1".into(),
                palm_type: None,
                top_k: Some(1),
                metadata: None,
            },
        )
        .await
        .unwrap();
    let found = fresh
        .domain
        .captures
        .submit(
            &scanner,
            identify.id,
            fresh.captures(12, PalmSide::Right, Some(0)),
        )
        .await
        .unwrap()
        .result
        .unwrap();
    assert_eq!(found["candidates"][0]["external_user_id"], "u3");
}

#[tokio::test]
async fn a_sealed_template_that_does_not_open_is_reported_and_skipped() {
    let w = support::world().await;
    let caller = w.caller().await;
    let scanner = w.scanner(&caller, "hw-1").await;
    let good = enroll(&w, &caller, &scanner, "good", 1).await;
    let bad = enroll(&w, &caller, &scanner, "bad", 2).await;
    // Another row's sealed template copied over this one: bound to the other feature, it
    // does not open here.
    let db = rusqlite::Connection::open(w.dir.parent().unwrap().join("palmlink.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE palms SET template = (SELECT template FROM palms WHERE feature_id = ?1) \
             WHERE feature_id = ?2",
            [good.to_string(), bad.to_string()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let other = w.another_node("node-b").await;
    other.domain.galleries.start_up().await.unwrap();
    assert_eq!(other.domain.galleries.unreadable(), vec![bad]);
    let check = other
        .domain
        .galleries
        .check(caller.tenant_id)
        .await
        .unwrap();
    assert_eq!((check.missing.clone(), check.extra.len()), (vec![bad], 0));
    assert!(!check.agrees());
    // The node still serves the rest.
    let gallery = other.domain.galleries.get(caller.tenant_id).await.unwrap();
    assert!(gallery.row_of(good.as_u128()).is_some());
}

#[tokio::test]
async fn nothing_of_an_erased_template_is_left_in_the_data_directory() {
    let w = support::world().await;
    let caller = w.caller().await;
    let scanner = w.scanner(&caller, "hw-1").await;
    enroll(&w, &caller, &scanner, "keep", 3).await;
    enroll(&w, &caller, &scanner, "erase", 4).await;
    let template = w.population.enrollment(4, PalmSide::Right).template;
    let needle: Vec<u8> = bytemuck::cast_slice(template.as_slice()).to_vec();
    let root = w.dir.parent().unwrap().to_owned();
    let holds = |window: &[u8]| files_holding(&root, window);
    // Before: the gallery holds the template (the database only its sealed form).
    assert!(!holds(&needle[..64]).is_empty());
    assert!(holds(&needle[..64])
        .iter()
        .all(|f| !f.contains("palmlink.db")));
    w.domain.users.erase(&caller, "erase").await.unwrap();
    for start in (0..needle.len() - 64).step_by(64) {
        let found = holds(&needle[start..start + 64]);
        assert!(
            found.is_empty(),
            "bytes {start}.. of the erased template are in {found:?}"
        );
    }
}

/// The files under `root` that contain `window`.
fn files_holding(root: &std::path::Path, window: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(window.len()).any(|w| w == window) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn a_decision_fails_rather_than_decide_without_its_enrollments() {
    let w = support::world().await;
    let caller = w.caller().await;
    let scanner = w.scanner(&caller, "hw-1").await;
    enroll(&w, &caller, &scanner, "alice", 7).await;
    let store: Arc<dyn Store> = w.store.clone();
    let verify = w
        .domain
        .challenges
        .verify(&caller, subject("alice", None))
        .await
        .unwrap();
    // A position the log never reaches (as if the database had been restored from a
    // backup older than the challenge): the decision is refused, not taken blind.
    let ahead = palmlink_store::Challenge {
        id: Uuid::now_v7(),
        log_position: 99,
        captures: None,
        ..verify
    };
    store.create_challenge(&ahead).await.unwrap();
    let err = w
        .domain
        .captures
        .submit(&scanner, ahead.id, w.captures(7, PalmSide::Right, Some(0)))
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_gallery_held_by_another_handle_is_waited_for_then_refused_with_503() {
    let a = support::world().await;
    let caller = a.caller().await;
    let scanner = a.scanner(&caller, "hw-1").await;
    enroll(&a, &caller, &scanner, "alice", 7).await;
    let tenant = caller.tenant_id;
    let b = a.another_node("node-b").await;
    let dir = b.dir.join("galleries").join(tenant.to_string());

    // A handle let go of a moment later (a child process forked while it was open holds
    // its file until it runs its program): the open waits for it.
    let holder = palmlink_engine::Gallery::create(&dir, palmlink_engine::Layout::DEFAULT).unwrap();
    let released = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(holder);
    });
    let gallery = b.domain.galleries.get(tenant).await.unwrap();
    released.join().unwrap();
    drop(gallery);

    // A handle that is kept: 503, not a fault of the service.
    let c = a.another_node("node-c").await;
    let dir = c.dir.join("galleries").join(tenant.to_string());
    let _kept = palmlink_engine::Gallery::create(&dir, palmlink_engine::Layout::DEFAULT).unwrap();
    match c.domain.galleries.get(tenant).await {
        Err(DomainError::Unavailable(message)) => {
            assert!(!message.contains(&*dir.to_string_lossy()))
        }
        Err(e) => panic!("expected 503, got {e}"),
        Ok(_) => panic!("a gallery held elsewhere was opened twice"),
    }
}

#[tokio::test]
async fn an_open_whose_caller_goes_away_still_ends_with_the_gallery_open() {
    let a = support::world().await;
    let caller = a.caller().await;
    let scanner = a.scanner(&caller, "hw-1").await;
    enroll(&a, &caller, &scanner, "alice", 7).await;
    let tenant = caller.tenant_id;
    let b = a.another_node("node-b").await;
    let dir = b.dir.join("galleries").join(tenant.to_string());

    // Polled once: the open starts on a blocking thread, then its caller is dropped.
    let gone =
        tokio::time::timeout(std::time::Duration::ZERO, b.domain.galleries.get(tenant)).await;
    assert!(gone.is_err(), "the open had to wait for its thread");
    // The open went on and the node holds the gallery: no other handle gets it.
    let mut held = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if matches!(
            palmlink_engine::Gallery::open(&dir),
            Err(palmlink_engine::GalleryError::Locked { .. })
        ) {
            held = true;
            break;
        }
    }
    assert!(held, "the gallery was opened and let go of");
    let gallery = b.domain.galleries.get(tenant).await.unwrap();
    assert_eq!(gallery.live_count(), 0, "opened, not yet caught up");
}
