//! A gallery as a replica of a template log: the applied sequence committed
//! with the rows, idempotent logged inserts, logged erasures, sequences that
//! may not go backwards, the feature index, the upgrade of a gallery of the
//! previous format version, and the inspection of a gallery another handle
//! holds.

mod common;

use common::{ids, random_template, rng};
use palmlink_engine::format::{
    FORMAT_VERSION, HEADER_BYTES, RECORDS_FILE, SLOT_B_OFFSET, VECTORS_FILE,
};
use palmlink_engine::{Gallery, GalleryError, Layout, RecordIds, RowId, Template};

fn layout() -> Layout {
    Layout::new(4, 16).unwrap()
}

fn templates(n: usize, seed: u64) -> Vec<Template> {
    let mut r = rng(seed);
    (0..n).map(|_| random_template(&mut r, layout())).collect()
}

fn items(t: &[Template], first: u64) -> Vec<(RecordIds, &Template)> {
    t.iter()
        .enumerate()
        .map(|(i, t)| (ids(first + i as u64), t))
        .collect()
}

#[test]
fn logged_inserts_record_their_sequence_and_are_idempotent_by_feature() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::create(dir.path(), layout()).unwrap();
    assert_eq!(g.applied_sequence(), 0);
    let t = templates(6, 1);
    let rows = g.insert_batch_logged(&items(&t[..4], 0), 1).unwrap();
    assert_eq!(rows, (0..4).map(RowId).collect::<Vec<_>>());
    assert_eq!(g.applied_sequence(), 1);
    // Applied again, and with new items beside known ones: known features
    // keep their rows, new ones are appended, duplicates in a batch share one.
    assert_eq!(g.insert_batch_logged(&items(&t[..4], 0), 1).unwrap(), rows);
    assert_eq!(g.row_count(), 4);
    let again = g
        .insert_batch_logged(
            &[
                (ids(2), &t[2]),
                (ids(4), &t[4]),
                (ids(5), &t[5]),
                (ids(4), &t[4]),
            ],
            3,
        )
        .unwrap();
    assert_eq!(again, vec![RowId(2), RowId(4), RowId(5), RowId(4)]);
    assert_eq!((g.row_count(), g.applied_sequence()), (6, 3));
    // An entry wholly applied already still advances the sequence.
    assert_eq!(
        g.insert_batch_logged(&items(&t[..1], 0), 4).unwrap(),
        vec![RowId(0)]
    );
    assert_eq!((g.row_count(), g.applied_sequence()), (6, 4));
    // Older sequences are refused, with nothing written.
    let extra = templates(1, 9);
    assert!(matches!(
        g.insert_batch_logged(&items(&extra, 100), 2),
        Err(GalleryError::StaleSequence {
            applied: 4,
            offered: 2
        })
    ));
    assert_eq!(g.row_count(), 6);
    for i in 0..6 {
        assert_eq!(g.row_of(ids(i).feature_id), Some(RowId(i)));
    }
    assert_eq!(g.row_of(ids(100).feature_id), None);
    drop(g);
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!(g.applied_sequence(), 4);
    assert_eq!(g.row_of(ids(5).feature_id), Some(RowId(5)));
    assert_eq!(g.get(RowId(5)).unwrap().unwrap().1, t[5]);
}

#[test]
fn logged_erasures_and_advances_record_their_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::create(dir.path(), layout()).unwrap();
    let t = templates(8, 2);
    g.insert_batch_logged(&items(&t, 0), 1).unwrap();
    assert_eq!(
        g.delete_logged(&[RowId(1), RowId(3), RowId(1)], 2).unwrap(),
        2
    );
    assert_eq!((g.applied_sequence(), g.live_count()), (2, 6));
    assert_eq!(g.row_of(ids(1).feature_id), None);
    // Rows already deleted are skipped; the sequence still advances.
    assert_eq!(g.delete_logged(&[RowId(3)], 3).unwrap(), 0);
    assert_eq!(g.applied_sequence(), 3);
    // An unknown row fails the whole call before anything is written.
    assert!(matches!(
        g.delete_logged(&[RowId(4), RowId(8)], 4),
        Err(GalleryError::UnknownRow(RowId(8)))
    ));
    assert_eq!((g.applied_sequence(), g.live_count()), (3, 6));
    assert!(matches!(
        g.delete_logged(&[RowId(4)], 2),
        Err(GalleryError::StaleSequence {
            applied: 3,
            offered: 2
        })
    ));
    assert!(g.get(RowId(4)).unwrap().is_some());
    g.advance_sequence(7).unwrap();
    g.advance_sequence(7).unwrap();
    assert!(matches!(
        g.advance_sequence(6),
        Err(GalleryError::StaleSequence {
            applied: 7,
            offered: 6
        })
    ));
    // Plain writes keep the sequence.
    g.insert(ids(50), &templates(1, 3)[0]).unwrap();
    assert!(g.delete(RowId(0)).unwrap());
    assert_eq!(g.applied_sequence(), 7);
    // An erased feature may be inserted again by a later entry.
    assert_eq!(
        g.insert_batch_logged(&[(ids(1), &t[1])], 8).unwrap(),
        vec![RowId(9)]
    );
    drop(g);
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!((g.applied_sequence(), g.live_count()), (8, 7));
    assert_eq!(g.row_of(ids(1).feature_id), Some(RowId(9)));
    assert_eq!(g.row_of(ids(0).feature_id), None);
}

/// Plain inserts may put a feature in several rows: the index names the
/// latest, and falls back to the earlier ones as they are deleted.
#[test]
fn a_feature_in_several_rows_is_indexed_by_its_latest() {
    let dir = tempfile::tempdir().unwrap();
    let t = templates(3, 4);
    {
        let g = Gallery::create(dir.path(), layout()).unwrap();
        for tt in &t {
            g.insert(ids(7), tt).unwrap();
        }
        assert_eq!(g.row_of(ids(7).feature_id), Some(RowId(2)));
    }
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!(g.row_of(ids(7).feature_id), Some(RowId(2)));
    g.delete(RowId(2)).unwrap();
    assert_eq!(g.row_of(ids(7).feature_id), Some(RowId(1)));
    // A logged insert of the feature finds it live and adds nothing.
    assert_eq!(
        g.insert_batch_logged(&[(ids(7), &t[0])], 1).unwrap(),
        vec![RowId(1)]
    );
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Rewrites a gallery's headers as the previous format version wrote them:
/// version 1, the applied sequence's bytes (then reserved) zero.
fn make_version_1(dir: &std::path::Path) {
    let path = dir.join(VECTORS_FILE);
    let mut v = std::fs::read(&path).unwrap();
    v[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&v[..60]);
    v[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, v).unwrap();
    let path = dir.join(RECORDS_FILE);
    let mut r = std::fs::read(&path).unwrap();
    for at in [0, SLOT_B_OFFSET] {
        let slot = &mut r[at..at + 64];
        slot[8..12].copy_from_slice(&1u32.to_le_bytes());
        slot[40..48].fill(0);
        let crc = crc32fast::hash(&slot[..56]);
        slot[56..60].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(&path, r).unwrap();
}

fn versions(dir: &std::path::Path) -> (u32, u32) {
    let v = std::fs::read(dir.join(VECTORS_FILE)).unwrap();
    let r = std::fs::read(dir.join(RECORDS_FILE)).unwrap();
    let slot_seq = |at: usize| u64::from_le_bytes(r[at + 24..at + 32].try_into().unwrap());
    let current = if slot_seq(0) >= slot_seq(SLOT_B_OFFSET) {
        0
    } else {
        SLOT_B_OFFSET
    };
    (read_u32(&v, 8), read_u32(&r, current + 8))
}

#[test]
fn a_gallery_of_the_previous_version_opens_at_sequence_zero_and_is_upgraded_by_its_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let t = templates(5, 5);
    {
        let g = Gallery::create(dir.path(), layout()).unwrap();
        g.insert_batch_logged(&items(&t[..3], 0), 12).unwrap();
        g.delete(RowId(1)).unwrap();
    }
    assert_eq!(versions(dir.path()), (FORMAT_VERSION, FORMAT_VERSION));
    make_version_1(dir.path());
    assert_eq!(versions(dir.path()), (1, 1));
    {
        let g = Gallery::open(dir.path()).unwrap();
        assert_eq!((g.applied_sequence(), g.live_count()), (0, 2));
        assert_eq!(g.row_of(ids(2).feature_id), Some(RowId(2)));
        assert_eq!(Gallery::inspect(dir.path()).unwrap().applied_sequence, 0);
    }
    assert_eq!(versions(dir.path()), (1, 1), "opening writes nothing");
    {
        let g = Gallery::open(dir.path()).unwrap();
        g.insert_batch_logged(&items(&t[3..], 3), 1).unwrap();
    }
    assert_eq!(versions(dir.path()), (FORMAT_VERSION, FORMAT_VERSION));
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!((g.applied_sequence(), g.live_count()), (1, 4));
    assert_eq!(g.get(RowId(4)).unwrap().unwrap().1, t[4]);
}

#[test]
fn inspect_reads_the_last_commit_while_another_handle_holds_the_gallery() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Gallery::inspect(dir.path()),
        Err(GalleryError::NotFound { .. })
    ));
    let g = Gallery::create(dir.path(), layout()).unwrap();
    let seen = Gallery::inspect(dir.path()).unwrap();
    assert_eq!(
        (seen.applied_sequence, seen.live.len(), seen.layout),
        (0, 0, layout())
    );
    let t = templates(2000, 6); // past the initial capacity: the files grow
    g.insert_batch_logged(&items(&t, 0), 5).unwrap();
    g.delete_logged(&[RowId(10), RowId(1999)], 6).unwrap();
    assert!(matches!(
        Gallery::open(dir.path()),
        Err(GalleryError::Locked { .. })
    ));
    let seen = Gallery::inspect(dir.path()).unwrap();
    assert_eq!(seen.applied_sequence, 6);
    assert_eq!(seen.live, g.live_records());
    assert_eq!(seen.live.len(), 1998);
    // A record that fails its checksum is left out, as `live_records` does.
    // (Written in place: the file is mapped by the open handle.)
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join(RECORDS_FILE))
        .unwrap();
    let at = (HEADER_BYTES + 5 * 64 + 3) as u64;
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 0x40], at).unwrap();
    let seen = Gallery::inspect(dir.path()).unwrap();
    assert_eq!(seen.live.len(), 1997);
    assert!(seen.live.iter().all(|(row, _)| *row != RowId(5)));
}
