//! Templates in the database, galleries as its replicas, erasure that leaves nothing: each
//! through the real `palmlink` binary, killed with SIGKILL where it says so.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palmlink_engine::{Layout, Template};
use palmlink_tests::{operator, ServerProcess, UNTHROTTLED};
use serde_json::{json, Value};

use crate::support::{capture, palm, recapture, Blocks, Harness, Rng, Scanner, Tenant};

/// A tenant, an all-scopes client with a token, and a paired scanner, on a node started
/// with `args`; the harness `h` is pointed at it.
async fn setup(
    bin: &Path,
    dir: &Path,
    args: &[&str],
    h: &mut Harness,
) -> (ServerProcess, Tenant, Scanner) {
    let server = ServerProcess::start(bin, dir, args, &[]);
    h.base = server.base.clone();
    let tenant = operator(bin, dir, &["tenant", "create", "--name", "t"]);
    let tenant_id = tenant["tenant_id"].as_str().unwrap().to_owned();
    let client = operator(
        bin,
        dir,
        &["client", "create", "--tenant", &tenant_id, "--name", "app"],
    );
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let secret = client["client_secret"].as_str().unwrap().to_owned();
    let token = h.token(&client_id, &secret).await;
    let t = Tenant {
        id: tenant_id,
        client_id,
        secret,
        token,
    };
    let s = h.scanner(&t, "hw-1").await;
    (server, t, s)
}

/// Verifies `user` with a fresh capture of `blocks`; returns whether it matched.
async fn verifies(
    h: &Harness,
    t: &Tenant,
    s: &Scanner,
    user: &str,
    blocks: &Blocks,
    n: u64,
) -> bool {
    let id = h
        .challenge(
            t,
            "/v1/verify",
            json!({"external_user_id": user, "hardware_id": s.hardware_id}),
        )
        .await;
    let r = h
        .capture(
            s,
            &id,
            json!([capture("right", &recapture(blocks, n, 0.3))]),
        )
        .await;
    assert_eq!(r.status, 200, "{user}: {}", r.body);
    r.body["data"]["result"]["matched"] == true
}

/// Runs `palmlink gallery check` on the data directory; returns its exit status and lines.
fn gallery_check(bin: &Path, dir: &Path) -> (bool, Vec<Value>) {
    let out = Command::new(bin)
        .args(["gallery", "check", "--data-dir"])
        .arg(dir)
        .output()
        .expect("run gallery check");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    (out.status.success(), lines)
}

/// What the client knows of each user: acknowledged enrolled, acknowledged erased, or
/// unknown (its request was cut by the kill).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Known {
    Enrolled,
    Erased,
    Unknown,
}

#[tokio::test]
async fn sigkill_during_enrollments_and_erasures_loses_nothing_acknowledged() {
    let bin = palmlink_tests::palmlink_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut h = Harness::start().await;
    let (server, t, s) = setup(&bin, dir.path(), &[], &mut h).await;
    drop(server);
    let mut known: HashMap<String, (Known, Blocks)> = HashMap::new();
    let mut rng = Rng::new(2026);
    let mut next_user = 0u64;
    for cycle in 0..50u64 {
        let server = ServerProcess::start(&bin, dir.path(), &[], UNTHROTTLED);
        h.base = server.base.clone();
        // The kill comes a random 0-100 ms into the request after a random number (1 to 3)
        // of acknowledged ones: at a random instant of the work, however fast the machine.
        let acknowledge_first = 1 + ((rng.next() + 1.0) * 1.5) as usize;
        let mut acknowledged = 0usize;
        loop {
            let kill_after = Duration::from_millis(((rng.next() + 1.0) * 50.0) as u64);
            // Erase about one time in two when someone is enrolled; enroll a new person otherwise.
            let erase = (rng.next() > 0.5)
                .then(|| {
                    known
                        .iter()
                        .find(|(_, (k, _))| *k == Known::Enrolled)
                        .map(|(u, _)| u.clone())
                })
                .flatten();
            let (user, op) = match erase {
                Some(user) => (user, Known::Erased),
                None => {
                    next_user += 1;
                    let user = format!("u{next_user}");
                    known.insert(user.clone(), (Known::Unknown, palm(10_000 + next_user)));
                    (user, Known::Enrolled)
                }
            };
            let blocks = known[&user].1.clone();
            known.get_mut(&user).unwrap().0 = Known::Unknown;
            let request = async {
                match op {
                    Known::Erased => {
                        let r = h
                            .call(
                                reqwest::Method::DELETE,
                                &format!("/v1/users/{user}"),
                                Some(&t.token),
                                None,
                            )
                            .await;
                        r.status == 204
                    }
                    _ => {
                        let done = h.enroll(&t, &s, &user, "right", &blocks).await;
                        done["status"] == "completed"
                    }
                }
            };
            let armed = acknowledged >= acknowledge_first;
            tokio::select! {
                () = tokio::time::sleep(kill_after), if armed => break,
                ok = request => {
                    assert!(ok, "cycle {cycle}: {user} was not acknowledged");
                    known.get_mut(&user).unwrap().0 = op;
                    acknowledged += 1;
                }
            }
        }
        server.kill();
    }

    let server = ServerProcess::start(&bin, dir.path(), &[], UNTHROTTLED);
    h.base = server.base.clone();
    let (mut enrolled, mut erased) = (0, 0);
    for (i, (user, (k, blocks))) in known.iter().enumerate() {
        match k {
            Known::Enrolled => {
                enrolled += 1;
                assert!(
                    verifies(&h, &t, &s, user, blocks, i as u64).await,
                    "{user} no longer verifies"
                );
            }
            Known::Erased => {
                erased += 1;
                let r = h.get(&format!("/v1/users/{user}"), &t.token).await;
                assert_eq!(r.status, 404, "{user} was erased and is back: {}", r.body);
            }
            Known::Unknown => {}
        }
    }
    assert!(
        enrolled >= 10 && erased >= 3,
        "too little happened: {enrolled} enrolled, {erased} erased"
    );
    let (agrees, lines) = gallery_check(&bin, dir.path());
    assert!(agrees, "{lines:?}");
    assert_eq!(lines[0]["missing"], 0);
    assert_eq!(lines[0]["extra"], 0);
    drop(server);
}

#[tokio::test]
async fn a_gallery_directory_deleted_by_hand_is_rebuilt_at_restart() {
    let bin = palmlink_tests::palmlink_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut h = Harness::start().await;
    let (server, t, s) = setup(&bin, dir.path(), &[], &mut h).await;
    let people: Vec<(String, Blocks)> = (0..12).map(|i| (format!("p{i}"), palm(800 + i))).collect();
    for (user, blocks) in &people {
        h.enroll(&t, &s, user, "right", blocks).await;
    }
    let r = h
        .call(
            reqwest::Method::DELETE,
            "/v1/users/p3",
            Some(&t.token),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    server.kill();
    std::fs::remove_dir_all(dir.path().join("galleries")).expect("remove the galleries");
    let server = ServerProcess::start(&bin, dir.path(), &[], &[]);
    h.base = server.base.clone();
    h.wait_ready().await;
    for (i, (user, blocks)) in people.iter().enumerate() {
        if user == "p3" {
            continue;
        }
        assert!(verifies(&h, &t, &s, user, blocks, i as u64).await, "{user}");
    }
    let (agrees, lines) = gallery_check(&bin, dir.path());
    assert!(agrees, "{lines:?}");
    assert_eq!(lines[0]["gallery_templates"], 11);
    drop(server);
}

/// Runs `palmlink serve` expecting it to refuse to start; returns its stderr.
fn refused_start(bin: &Path, dir: &Path) -> String {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "serve started with the wrong master key"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    assert!(!out.status.success(), "serve exited with success");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_wrong_or_missing_master_key_refuses_to_start_and_touches_nothing() {
    let bin = palmlink_tests::palmlink_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut h = Harness::start().await;
    let (server, t, s) = setup(&bin, dir.path(), &[], &mut h).await;
    h.enroll(&t, &s, "alice", "right", &palm(1)).await;
    server.kill();
    let key = dir.path().join("master.key");
    let original = std::fs::read(&key).expect("master key");
    assert_eq!(original.len(), 32);
    std::fs::write(&key, [7u8; 32]).expect("write another key");
    let said = refused_start(&bin, dir.path());
    assert!(said.contains("does not match"), "{said}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        [7u8; 32],
        "the key file was replaced"
    );
    std::fs::remove_file(&key).unwrap();
    let said = refused_start(&bin, dir.path());
    assert!(said.contains("missing"), "{said}");
    assert!(
        !key.exists(),
        "a new master key was made for a database that has one"
    );
    // With its own key back, everything is there.
    std::fs::write(&key, &original).unwrap();
    let server = ServerProcess::start(&bin, dir.path(), &[], &[]);
    h.base = server.base.clone();
    assert!(verifies(&h, &t, &s, "alice", &palm(1), 9).await);
    drop(server);
}

/// The files under `root` holding `window`, by path.
fn files_holding(root: &Path, window: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
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
async fn an_erased_template_leaves_no_copy_in_the_data_directory() {
    let bin = palmlink_tests::palmlink_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut h = Harness::start().await;
    // A graph index from 16 templates, so its files hold keys too.
    let (server, t, s) = setup(&bin, dir.path(), &["--graph-min-rows", "16"], &mut h).await;
    for i in 0..40u64 {
        h.enroll(&t, &s, &format!("p{i}"), "right", &palm(900 + i))
            .await;
    }
    // A gallery builds its graph when it is opened with enough rows: restart the node.
    server.kill();
    let server = ServerProcess::start(&bin, dir.path(), &["--graph-min-rows", "16"], &[]);
    h.base = server.base.clone();
    h.wait_ready().await;
    let gallery = dir.path().join("galleries").join(&t.id);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !gallery.join("hnsw.flat").exists() {
        assert!(Instant::now() < deadline, "no graph index was written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The template as the node stores it: every block normalised by the engine.
    let stored = Template::from_blocks(Layout::DEFAULT, &palm(907)).expect("template");
    let bytes: Vec<u8> = stored
        .as_slice()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let before = files_holding(dir.path(), &bytes[..64]);
    assert!(
        !before.is_empty(),
        "the template is not in the gallery to begin with"
    );
    assert!(
        before.iter().all(|f| !f.contains("palmlink.db")),
        "the database holds a plain template: {before:?}"
    );
    let r = h
        .call(
            reqwest::Method::DELETE,
            "/v1/users/p7",
            Some(&t.token),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    for start in (0..bytes.len() - 64).step_by(32) {
        let found = files_holding(dir.path(), &bytes[start..start + 64]);
        assert!(
            found.is_empty(),
            "bytes {start}.. of the erased template remain in {found:?}"
        );
    }
    // The others are still found, through the graph as before.
    assert!(verifies(&h, &t, &s, "p8", &palm(908), 1).await);
    drop(server);
}

#[tokio::test]
async fn a_node_whose_gallery_is_locked_at_start_up_becomes_ready_once_it_is_free() {
    let mut h = Harness::start().await;
    let t = h.tenant().await;
    let s = h.scanner(&t, "hw-locked").await;
    let blocks = palm(4242);
    h.enroll(&t, &s, "held", "right", &blocks).await;
    h.server
        .take()
        .expect("server")
        .stop()
        .await
        .expect("stops");

    // Another process still holds the tenant's gallery (an old node on its way out, say).
    let dir = h.config.data_dir.join("galleries").join(&t.id);
    let holder = palmlink_engine::Gallery::open(&dir).expect("the gallery opens");
    let server = palmlink_api::start(h.config.clone())
        .await
        .expect("server starts");
    h.base = format!("http://{}", server.addr());
    h.server = Some(server);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ready = h.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 503, "ready with its gallery locked elsewhere");

    drop(holder);
    h.wait_ready().await;
    assert!(verifies(&h, &t, &s, "held", &blocks, 1).await);
}
