//! `palmlink gallery export` and `import` through the real binary, on the storage of an
//! in-process node (SQLite, or a PostgreSQL schema of its own with
//! `PALMLINK_TEST_DATABASE_URL`): users moved to a fresh deployment verify with the same
//! scores; an import is idempotent, survives SIGKILL at a random point, refuses a
//! truncated or corrupted file naming the record, and touches no other tenant.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use palmlink_domain::gallery_file::{end_line, record_line, Header};
use palmlink_engine::{Layout, Template};
use palmlink_store::PalmType;
use serde_json::{json, Value};

use crate::support::{capture, palm, recapture, Blocks, Harness, Rng, Scanner, Tenant};

/// Runs `palmlink ARGS` on the node's storage (data directory, database, master key).
///
/// The node runs on this test's runtime and may hold a row lock across an await (its audit
/// sealer chaining entries); the command is waited for off the runtime's workers so that
/// the node keeps running meanwhile (the tests run on the multi-threaded runtime).
fn cli(h: &Harness, args: &[&str]) -> Output {
    let mut command = Command::new(palmlink_tests::palmlink_binary());
    command
        .args(args)
        .arg("--data-dir")
        .arg(&h.config.data_dir)
        .env_remove("PALMLINK_DATABASE_URL")
        .env("PALMLINK_LOG", "warn");
    if let Some(url) = &h.config.database_url {
        command.env("PALMLINK_DATABASE_URL", url);
    }
    tokio::task::block_in_place(|| command.output()).expect("run palmlink")
}

/// The JSON summary an import or export printed.
fn summary(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}): {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn import(h: &Harness, tenant: &str, file: &Path, extra: &[&str]) -> Output {
    let file = file.to_str().expect("path");
    let mut args = vec!["gallery", "import", "--tenant", tenant, "--in", file];
    args.extend_from_slice(extra);
    cli(h, &args)
}

/// Verifies `user`'s `palm` with `probe`; returns the block scores and the decision.
async fn scores(
    h: &Harness,
    t: &Tenant,
    s: &Scanner,
    user: &str,
    palm: &str,
    probe: &Blocks,
) -> (Vec<f64>, bool) {
    let id = h
        .challenge(
            t,
            "/v1/verify",
            json!({"external_user_id": user, "hardware_id": s.hardware_id, "palm_type": palm}),
        )
        .await;
    let r = h.capture(s, &id, json!([capture(palm, probe)])).await;
    assert_eq!(r.status, 200, "{user}: {}", r.body);
    let result = &r.body["data"]["result"];
    let scores = result["scores"]
        .as_array()
        .unwrap_or_else(|| panic!("{user}: no scores in {result}"))
        .iter()
        .map(|v| v.as_f64().expect("score"))
        .collect();
    (scores, result["matched"] == true)
}

/// The users of the file: (external id, palm, template seed).
fn population() -> Vec<(String, &'static str, u64)> {
    let mut people: Vec<(String, &'static str, u64)> = (0..8)
        .map(|i| (format!("person-{i}"), "right", 100 + i))
        .collect();
    people.push(("person-0".into(), "left", 200));
    people.push(("person-5".into(), "left", 205));
    people
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_exported_and_imported_into_a_fresh_deployment_verify_with_the_same_scores() {
    let source = Harness::start().await;
    let t = source.tenant().await;
    let s = source.scanner(&t, "hw-src").await;
    let people = population();
    for (user, hand, seed) in &people {
        source.enroll(&t, &s, user, hand, &palm(*seed)).await;
    }
    let mut before = Vec::new();
    for (i, (user, hand, seed)) in people.iter().enumerate() {
        let probe = recapture(&palm(*seed), 7 + i as u64, 0.3);
        before.push(scores(&source, &t, &s, user, hand, &probe).await);
    }
    let files = tempfile::tempdir().expect("temp dir");
    let file = files.path().join("gallery.jsonl");
    let out = cli(
        &source,
        &[
            "gallery",
            "export",
            "--tenant",
            &t.id,
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary(&out)["records"], people.len());
    assert_eq!(summary(&out)["users"], 8);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the file holds templates in plain");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let header: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(header["format"], "palmlink-gallery");
    assert_eq!(header["version"], 1);
    assert!(!text.contains(&t.id), "the file names no tenant");
    assert_eq!(lines.len(), people.len() + 2);
    // Exporting over an existing file is refused.
    let again = cli(
        &source,
        &[
            "gallery",
            "export",
            "--tenant",
            &t.id,
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(!again.status.success());

    // A fresh deployment, with another tenant that already has a `person-0` of its own.
    let target = Harness::start().await;
    let other = target.tenant().await;
    let so = target.scanner(&other, "hw-other").await;
    target
        .enroll(&other, &so, "person-0", "right", &palm(999))
        .await;
    let other_users = target.get("/v1/users", &other.token).await.body["total"].clone();
    let t2 = target.tenant().await;
    let s2 = target.scanner(&t2, "hw-dst").await;
    let first = import(&target, &t2.id, &file, &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first = summary(&first);
    assert_eq!(first["read"], people.len());
    assert_eq!(first["imported"], people.len());
    assert_eq!(first["skipped_existing"], 0);
    assert_eq!(first["invalid_count"], 0);
    // The same file twice adds nothing.
    let second = summary(&import(&target, &t2.id, &file, &[]));
    assert_eq!(second["imported"], 0);
    assert_eq!(second["skipped_existing"], people.len());
    assert_eq!(second["log_head"], first["log_head"]);

    for (i, (user, hand, seed)) in people.iter().enumerate() {
        let probe = recapture(&palm(*seed), 7 + i as u64, 0.3);
        let (after, matched) = scores(&target, &t2, &s2, user, hand, &probe).await;
        assert_eq!(matched, before[i].1, "{user} {hand}");
        for (a, b) in after.iter().zip(&before[i].0) {
            assert!(
                (a - b).abs() < 1e-5,
                "{user} {hand}: {after:?} != {:?}",
                before[i].0
            );
        }
    }
    let listed = target
        .get(&format!("/v1/users/{}", people[0].0), &t2.token)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.body["data"]["palms"].as_array().map(Vec::len),
        Some(2),
        "{}",
        listed.body
    );
    // The other tenant is untouched: its own person-0 still matches its own palm only.
    assert_eq!(
        target.get("/v1/users", &other.token).await.body["total"],
        other_users
    );
    let (_, own) = scores(&target, &other, &so, "person-0", "right", &palm(999)).await;
    assert!(own);
    let (_, imported) = scores(&target, &other, &so, "person-0", "right", &palm(100)).await;
    assert!(!imported, "the import reached another tenant");
    let audit = target
        .get("/v1/audit?action=users.imported", &t2.token)
        .await;
    assert_eq!(audit.body["total"], 1, "{}", audit.body);
    assert_eq!(audit.body["data"][0]["actor"]["type"], "operator");
}

/// A gallery file of `n` synthetic palms (two per person), as a text.
fn synthetic(n: usize) -> String {
    let mut text = serde_json::to_string(&Header::new(0)).unwrap();
    text.push('\n');
    for i in 0..n {
        let palm_type = if i % 2 == 0 {
            PalmType::Right
        } else {
            PalmType::Left
        };
        let t = Template::from_blocks(Layout::DEFAULT, &palm(5000 + i as u64)).unwrap();
        let line = record_line(
            &format!("p{}", i / 2),
            palm_type,
            1_700_000_000_000_000,
            "acme",
            &t,
        );
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str(&end_line(n as u64));
    text.push('\n');
    text
}

/// Batches of an odd size split users' two palms across consecutive batches, which are
/// written while the next is prepared: each user is created once and gets both palms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_whose_palms_straddle_two_batches_are_created_once_with_both_palms() {
    const N: usize = 60;
    let h = Harness::start().await;
    let t = h.tenant().await;
    let files = tempfile::tempdir().expect("temp dir");
    let file = files.path().join("odd.jsonl");
    std::fs::write(&file, synthetic(N)).unwrap();
    let out = import(&h, &t.id, &file, &["--batch-size", "7"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = summary(&out);
    assert_eq!(
        (done["imported"].as_u64(), done["skipped_existing"].as_u64()),
        (Some(N as u64), Some(0))
    );
    assert_eq!(
        h.get("/v1/users?limit=1", &t.token).await.body["total"],
        N / 2
    );
    for user in ["p3", "p10", "p17", "p29"] {
        let got = h.get(&format!("/v1/users/{user}"), &t.token).await;
        assert_eq!(got.status, 200, "{}", got.body);
        let mut hands: Vec<String> = got.body["data"]["palms"]
            .as_array()
            .expect("palms")
            .iter()
            .map(|p| p["palm_type"].as_str().unwrap_or_default().to_owned())
            .collect();
        hands.sort();
        assert_eq!(hands, ["left", "right"], "{user}: {}", got.body);
    }
    let checked = check(&h, &t.id);
    assert_eq!(
        (
            checked["database_templates"].as_u64(),
            checked["log_head"].as_u64()
        ),
        (Some(N as u64), Some(N as u64))
    );
    let again = summary(&import(&h, &t.id, &file, &["--batch-size", "7"]));
    assert_eq!(
        (
            again["imported"].as_u64(),
            again["skipped_existing"].as_u64()
        ),
        (Some(0), Some(N as u64))
    );
}

/// The tenant's palms, log head and check as `gallery check` sees them.
fn check(h: &Harness, tenant: &str) -> Value {
    let out = cli(h, &["gallery", "check", "--tenant", tenant]);
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// Starts `gallery import` of `file` into `tenant` in the background.
fn spawn_import(h: &Harness, tenant: &str, file: &Path) -> std::process::Child {
    let mut command = Command::new(palmlink_tests::palmlink_binary());
    command
        .args([
            "gallery",
            "import",
            "--tenant",
            tenant,
            "--batch-size",
            "50",
            "--in",
        ])
        .arg(file)
        .arg("--data-dir")
        .arg(&h.config.data_dir)
        .env_remove("PALMLINK_DATABASE_URL")
        .env("PALMLINK_LOG", "warn")
        .stdout(std::process::Stdio::null());
    if let Some(url) = &h.config.database_url {
        command.env("PALMLINK_DATABASE_URL", url);
    }
    command.spawn().expect("spawn import")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_at_random_points_ends_with_every_user_exactly_once() {
    const N: usize = 3000;
    let h = Harness::start().await;
    let mut t = h.tenant().await;
    let files = tempfile::tempdir().expect("temp dir");
    let file = files.path().join("big.jsonl");
    std::fs::write(&file, synthetic(N)).unwrap();
    let mut rng = Rng::new(23);
    let mut partial = 0;
    for _ in 0..12 {
        // Kill once this run is seen writing, a random few milliseconds later: a kill
        // timed by the clock alone misses the import on a machine faster or slower than ours.
        let before = check(&h, &t.id)["database_templates"].as_u64().unwrap();
        let mut child = spawn_import(&h, &t.id, &file);
        let finished = loop {
            if child.try_wait().expect("wait").is_some() {
                break true;
            }
            if check(&h, &t.id)["database_templates"].as_u64().unwrap() > before {
                let delay = ((rng.next() + 1.0) / 2.0 * 40.0) as u64;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                break false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let _ = child.kill();
        let _ = tokio::task::block_in_place(|| child.wait());
        let stored = check(&h, &t.id)["database_templates"].as_u64().unwrap() as usize;
        if stored < N {
            partial += 1;
        } else if partial == 0 {
            // It finished before the kill: try again on an empty tenant.
            t = h.tenant().await;
        }
        if partial >= 3 || (finished && partial > 0) {
            break;
        }
    }
    assert!(partial > 0, "no kill landed in the middle of the import");
    let done = import(&h, &t.id, &file, &["--batch-size", "50"]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let done = summary(&done);
    assert_eq!(done["read"], N);
    assert!(done["skipped_existing"].as_u64().unwrap() > 0);
    // Every palm once, each with exactly one log entry: no batch was half applied.
    let checked = check(&h, &t.id);
    assert_eq!(checked["database_templates"], N);
    assert_eq!(checked["log_head"], N);
    assert_eq!(
        h.get("/v1/users?limit=1", &t.token).await.body["total"],
        N / 2
    );
    // The node follows the log: its gallery ends up with every palm, nothing extra.
    let s = h.scanner(&t, "hw-1").await;
    let (_, matched) = scores(&h, &t, &s, "p7", "left", &palm(5015)).await;
    assert!(matched);
    let checked = check(&h, &t.id);
    assert_eq!(
        (checked["missing"].as_u64(), checked["extra"].as_u64()),
        (Some(0), Some(0)),
        "{checked}"
    );
    assert_eq!(checked["gallery_templates"], N);
    let audit = cli(&h, &["audit", "verify", "--tenant", &t.id]);
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_corrupted_files_are_refused_naming_the_record() {
    let h = Harness::start().await;
    let t = h.tenant().await;
    let files = tempfile::tempdir().expect("temp dir");
    let good = synthetic(20);
    let lines: Vec<&str> = good.lines().collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "cut inside record 12",
            good.as_bytes()[..good.find(lines[12]).unwrap() + lines[12].len() / 2].to_vec(),
            "line 13 (record 12)",
        ),
        (
            "cut after record 15",
            (lines[..16].join("\n") + "\n").into_bytes(),
            "without its end line",
        ),
        (
            "a template altered in record 7",
            good.replacen(&lines[7][200..210], "AAAAAAAAAA", 1)
                .into_bytes(),
            "line 8 (record 7): crc32",
        ),
        (
            "bytes that are not text in record 3",
            {
                let mut bytes = good.clone().into_bytes();
                let at = good.find(lines[3]).unwrap() + 150;
                bytes[at..at + 4].copy_from_slice(&[0xff, 0xfe, 0x00, 0x80]);
                bytes
            },
            "line 4 (record 3)",
        ),
        (
            "an end line that miscounts",
            good.replace(&end_line(20), &end_line(21)).into_bytes(),
            "announces 21 records, the file holds 20",
        ),
        (
            "another format",
            good.replacen("palmlink-gallery", "something-else", 1)
                .into_bytes(),
            "line 1",
        ),
    ];
    for (i, (what, bytes, named)) in cases.iter().enumerate() {
        let file = files.path().join(format!("case-{i}.jsonl"));
        std::fs::write(&file, bytes).unwrap();
        let out = import(&h, &t.id, &file, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(
            stderr.contains(named),
            "{what}: {stderr:?} does not name {named:?}"
        );
        assert_eq!(summary(&out)["imported"], 0, "{what}");
        assert_eq!(
            check(&h, &t.id)["database_templates"],
            0,
            "{what}: half applied"
        );
    }
    // With --skip-invalid, the valid records of a corrupted file go in and the bad one is
    // listed by number.
    let file = files.path().join("case-2.jsonl");
    let out = import(&h, &t.id, &file, &["--skip-invalid"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(
        (s["imported"].as_u64(), s["invalid_count"].as_u64()),
        (Some(19), Some(1))
    );
    assert_eq!(s["invalid"][0]["line"], 8);
    assert_eq!(s["invalid"][0]["record"], 7);
    assert_eq!(s["invalid"][0]["errors"][0]["field"], "crc32");
    // An unknown tenant is refused.
    let out = import(&h, "00000000-0000-4000-8000-000000000000", &file, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}
