//! Crash safety: a child process inserts and deletes in a loop and reports
//! each acknowledged operation; the parent SIGKILLs it at a random instant,
//! reopens the gallery and checks the acknowledged set record by record.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use palmlink_engine::{Gallery, Layout, PalmSide, RecordIds, RowId, Template};
use rand::{Rng, SeedableRng};

const DIR_VAR: &str = "PALMLINK_CRASH_TEST_DIR";
const MAX_BATCH: u64 = 5;

fn layout() -> Layout {
    Layout::new(10, 64).unwrap()
}

/// The template written for a feature id (so the parent can check the bytes).
fn template_for(feature_id: u128) -> Template {
    common::random_template(&mut common::rng(feature_id as u64), layout())
}

fn ids_for(feature_id: u128) -> RecordIds {
    RecordIds {
        feature_id,
        user_key: feature_id / 2,
        palm: if feature_id.is_multiple_of(2) {
            PalmSide::Left
        } else {
            PalmSide::Right
        },
    }
}

/// The child: runs until killed. Not a test on its own (ignored; the parent runs it).
#[test]
#[ignore = "run by acknowledged_records_survive_sigkill as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let g = Gallery::open_or_create(Path::new(&dir), layout()).unwrap();
    let mut live: Vec<u64> = g.live_records().into_iter().map(|(r, _)| r.0).collect();
    let mut next_feature = 1_000_000 * (g.row_count() as u128 + 1);
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut out = std::io::stdout().lock();
    loop {
        if !live.is_empty() && rng.random_bool(0.3) {
            let row = live.swap_remove(rng.random_range(0..live.len()));
            g.delete(RowId(row)).unwrap();
            writeln!(out, "ACK D {row}").unwrap();
        } else {
            let n = rng.random_range(1..=MAX_BATCH);
            let features: Vec<u128> = (0..n as u128).map(|i| next_feature + i).collect();
            next_feature += n as u128;
            let templates: Vec<Template> = features.iter().map(|&f| template_for(f)).collect();
            let items: Vec<_> = features
                .iter()
                .zip(&templates)
                .map(|(&f, t)| (ids_for(f), t))
                .collect();
            let rows = g.insert_batch(&items).unwrap();
            for (row, f) in rows.iter().zip(&features) {
                live.push(row.0);
                writeln!(out, "ACK I {} {f}", row.0).unwrap();
            }
        }
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // Created up front: a child killed before its first operation leaves an
    // empty gallery, not no gallery (creation itself is atomic; see `Gallery::create`).
    drop(Gallery::create(dir.path(), layout()).unwrap());
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Acknowledged state across all runs: row -> feature id, and deleted rows.
    let mut inserted: BTreeMap<u64, u128> = BTreeMap::new();
    let mut deleted: BTreeSet<u64> = BTreeSet::new();
    let mut kills_mid_stream = 0;

    for round in 0..12 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Killed at a random instant after its first acknowledgement, so every
        // round kills a child that is working, however slowly it starts.
        let run_for = Duration::from_millis(rng.random_range(0..150));
        let (first_ack, working) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if line.ends_with('\n') {
                    if line.contains("ACK ") {
                        let _ = first_ack.send(());
                    }
                    lines.push(std::mem::take(&mut line));
                }
            }
            lines
        });
        let _ = working.recv_timeout(Duration::from_secs(30));
        let started = Instant::now();
        while started.elapsed() < run_for {
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child must die by the signal"
        );
        let lines = reader.join().unwrap();
        if lines.iter().any(|l| l.contains("ACK ")) {
            kills_mid_stream += 1;
        }
        for line in lines {
            // The harness prints its own words on the same line before the first ack.
            let Some(at) = line.find("ACK ") else {
                continue;
            };
            let parts: Vec<&str> = line[at + 4..].split_whitespace().collect();
            match parts.as_slice() {
                ["I", row, feature] => {
                    inserted.insert(row.parse().unwrap(), feature.parse().unwrap());
                }
                ["D", row] => {
                    deleted.insert(row.parse().unwrap());
                }
                _ => {} // the test harness's own output
            }
        }

        let g = Gallery::open(dir.path()).unwrap();
        assert!(g.damaged_rows().is_empty(), "round {round}: damaged rows");
        let live: BTreeMap<u64, RecordIds> = g
            .live_records()
            .into_iter()
            .map(|(r, i)| (r.0, i))
            .collect();
        // Every acknowledged insert that was not acknowledged as deleted is there, intact.
        let mut acked_but_dead = 0;
        for (&row, &feature) in &inserted {
            if deleted.contains(&row) {
                assert!(
                    g.get(RowId(row)).unwrap().is_none(),
                    "round {round}: row {row} resurrected"
                );
                continue;
            }
            match g.get(RowId(row)).unwrap() {
                Some((ids, template)) => {
                    assert_eq!(ids, ids_for(feature), "round {round}: row {row} ids");
                    assert_eq!(
                        template,
                        template_for(feature),
                        "round {round}: row {row} bytes"
                    );
                }
                // The one in-flight delete may have landed without its acknowledgement.
                None => acked_but_dead += 1,
            }
        }
        assert!(
            acked_but_dead <= 1,
            "round {round}: {acked_but_dead} acknowledged rows lost"
        );
        // Live rows nobody acknowledged: only the one in-flight batch, at the end.
        let unacked: Vec<u64> = live
            .keys()
            .filter(|r| !inserted.contains_key(r))
            .copied()
            .collect();
        assert!(
            unacked.len() as u64 <= MAX_BATCH,
            "round {round}: {unacked:?}"
        );
        let last_acked = inserted.keys().next_back().copied();
        for row in &unacked {
            assert!(
                last_acked.is_none_or(|l| *row > l),
                "round {round}: stray row {row}"
            );
            // Adopt it: the next child may delete it and say so.
            inserted.insert(*row, live[row].feature_id);
        }
        if acked_but_dead == 1 {
            for (&row, _) in inserted.iter() {
                if !deleted.contains(&row) && !live.contains_key(&row) {
                    deleted.insert(row);
                    break;
                }
            }
        }
    }
    assert_eq!(
        kills_mid_stream, 12,
        "the child must be killed while working"
    );
    assert!(
        inserted.len() >= 10,
        "too little work was done: {}",
        inserted.len()
    );
}
