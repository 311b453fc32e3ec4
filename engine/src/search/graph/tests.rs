//! The graph's tests: flattening (links back, orphans), the walk, the file
//! (save, load, every kind of damage refused), keys, and the gallery search
//! around the walk.

use std::fs;
use std::path::Path;

use hnsw_rs::prelude::Distance;

use super::build::{flatten, Builder, FlattenError, GraphParts, NodeParts};
use super::format::{FlatGraph, Header, FLAT_FILE, HEADER_LEN, NONE, VERSION};
use super::search::{propose, search};
use super::*;
use crate::scoring::MatchSettings;
use crate::search::test_support::{insert_all, store as row_store, uniform};
use crate::search::SearchQuery;
use crate::template::{Layout, Template};

/// A hand-made graph of `nodes` with 4-value keys.
fn small_graph(nodes: Vec<NodeParts>) -> GraphParts {
    GraphParts {
        dim: 4,
        nodes,
        max_connections: 2,
        ef_construction: 8,
    }
}

/// A small hand-made graph: rows 10·i, a ring on the base layer, point 0
/// alone on layer 1 and row 70 unreachable (no links to or from it).
fn ring(points: usize) -> GraphParts {
    let nodes = (0..points as u64)
        .map(|i| {
            let next = (i + 1) % (points as u64 - 1);
            let prev = (i + points as u64 - 2) % (points as u64 - 1);
            let links = if i == points as u64 - 1 {
                vec![vec![]]
            } else {
                vec![vec![next * 10, prev * 10]]
            };
            NodeParts {
                row: i * 10,
                level: usize::from(i == 0),
                key: vec![i as i8, 1, -(i as i8), 2],
                links: if i == 0 {
                    let mut l = links;
                    l.push(vec![]);
                    l
                } else {
                    links
                },
            }
        })
        .collect();
    small_graph(nodes)
}

#[test]
fn unreachable_points_are_orphans() {
    let g = flatten(ring(8), 80, 7).unwrap();
    assert_eq!(g.points(), 8);
    assert_eq!(g.orphan_rows(), vec![70]);
}

/// Point 0 (row 0, alone on layer 1) links to nobody; points 1..=20 each
/// link to it, and, when `chained`, points 1..=4 also link to points
/// 20..=17. The key of point i has inner product i with point 0's
/// (`[1, 0, 0, 0]`).
fn star(chained: bool) -> GraphParts {
    let nodes = (0..=20u64)
        .map(|i| {
            let mut base = if i == 0 { vec![] } else { vec![0] };
            if chained && (1..=4).contains(&i) {
                base.push(21 - i);
            }
            let mut links = vec![base];
            if i == 0 {
                links.push(vec![]);
            }
            NodeParts {
                row: i,
                level: usize::from(i == 0),
                key: vec![i.max(1) as i8, 0, 0, 0],
                links,
            }
        })
        .collect();
    small_graph(nodes)
}

/// Loads the graph saved in `dir` for a gallery of `count` rows whose digest
/// is `digest`, none of them deleted, and checks every key (a damaged file
/// zero-filled, as the index does).
fn load(dir: &Path, count: u64, digest: u32) -> Result<FlatGraph, String> {
    let g = FlatGraph::load(dir, count, &|_| digest, &|_| false)?;
    match g.check_keys(0..usize::MAX, &|_| false) {
        Ok(()) => Ok(g),
        Err(why) => {
            g.discard();
            Err(why)
        }
    }
}

fn base_list(g: &FlatGraph, point: usize) -> Vec<u32> {
    let degree0 = g.header.degree0 as usize;
    let list = &g.u32s(g.sections.base)[point * degree0..(point + 1) * degree0];
    let mut list: Vec<u32> = list.iter().copied().take_while(|&q| q != NONE).collect();
    list.sort_unstable();
    list
}

#[test]
fn links_back_reach_the_points_that_link_in_nearest_first() {
    let g = flatten(star(false), 21, 7).unwrap();
    // Twenty points link to the hub and none has a link to it, so the
    // hub links back to the sixteen nearest; the four farthest stay
    // unreachable.
    assert_eq!(base_list(&g, 0), (5..=20).collect::<Vec<u32>>());
    assert_eq!(g.orphan_rows(), vec![1, 2, 3, 4]);
    assert_eq!(
        propose(&g, &[1, 0, 0, 0], 3, 4, &|r: u64| r != 0),
        vec![20, 19, 18]
    );
}

#[test]
fn links_back_go_first_to_the_points_nobody_links_to() {
    let g = flatten(star(true), 21, 7).unwrap();
    // Points 17..=20 are the nearest but each has a link to it already:
    // the hub's links back go to the sixteen that had none.
    assert_eq!(base_list(&g, 0), (1..=16).collect::<Vec<u32>>());
    // Point 20 links back to point 1, and so on: everything is reachable.
    assert_eq!(base_list(&g, 20), vec![0, 1]);
    assert_eq!(base_list(&g, 1), vec![0, 20]);
    assert!(g.orphan_rows().is_empty());
}

#[test]
fn search_walks_the_ring_and_honours_keep() {
    let g = flatten(ring(8), 80, 7).unwrap();
    // The key of row 50 (i = 5) is nearest to itself by inner product
    // among the reachable points with the largest first value.
    let all = propose(&g, &[6, 1, -6, 2], 3, 8, &|_: u64| true);
    assert_eq!(all, vec![60, 50, 40]);
    let odd = propose(&g, &[6, 1, -6, 2], 3, 8, &|r: u64| r != 60);
    assert_eq!(odd, vec![50, 40, 30]);
    assert!(
        propose(&g, &[1, 1], 3, 8, &|_: u64| true).is_empty(),
        "wrong key length"
    );
}

#[test]
fn a_search_forgets_the_points_an_earlier_one_visited() {
    // A mark left over from an earlier search would hide a point from this one.
    let g = flatten(ring(8), 80, 7).unwrap();
    let probe = [6, 1, -6, 2];
    let alone = std::thread::scope(|s| {
        s.spawn(|| propose(&g, &probe, 3, 8, &|_: u64| true))
            .join()
            .unwrap()
    });
    for other in [[-6, -1, 6, -2], [0, 6, 0, 6], [6, 1, -6, 2]] {
        let _ = propose(&g, &other, 8, 8, &|_: u64| true);
        assert_eq!(propose(&g, &probe, 3, 8, &|_: u64| true), alone);
    }
    // A bigger graph (points in two words of the set), then the small one
    // again, on the same thread.
    let big = flatten(ring(120), 1200, 7).unwrap();
    let far = propose(&big, &probe, 3, 8, &|_: u64| true);
    assert_eq!(far.len(), 3);
    assert_eq!(propose(&g, &probe, 3, 8, &|_: u64| true), alone);
}

/// Writes `g` to `dir` after `alter` has changed its header or body,
/// with both checksums made to hold again.
fn save_altered(dir: &Path, g: &FlatGraph, alter: impl FnOnce(&mut Header, &mut [u8])) {
    let mut bytes = g.bytes.get()[..g.sections.end].to_vec();
    let mut header: Header = bytemuck::pod_read_unaligned(&bytes[..HEADER_LEN]);
    alter(&mut header, &mut bytes[HEADER_LEN..]);
    header.body_crc = g.sections.body_crc(&bytes);
    header.crc = header.computed_crc();
    bytes[..HEADER_LEN].copy_from_slice(bytemuck::bytes_of(&header));
    fs::write(dir.join(FLAT_FILE), &bytes).unwrap();
}

#[test]
fn a_file_of_the_previous_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = flatten(ring(8), 80, 7).unwrap();
    save_altered(dir.path(), &g, |header, _| header.version = VERSION - 1);
    let refused = load(dir.path(), 80, 7).err().unwrap();
    assert_eq!(
        refused,
        format!(
            "{FLAT_FILE} version {}, this build reads version {VERSION}",
            VERSION - 1
        )
    );
}

/// A base list's first part cannot be longer than the list: a header that
/// says so (with valid CRCs) is refused before any search splits a list.
#[test]
fn a_forward_part_longer_than_the_lists_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = flatten(ring(8), 80, 7).unwrap();
    assert_eq!(g.header.forward0, g.header.degree0);
    save_altered(dir.path(), &g, |header, _| {
        header.forward0 = header.degree0 + 1
    });
    let refused = load(dir.path(), 80, 7).err().unwrap();
    assert!(refused.contains("forward part"), "{refused}");
}

#[test]
fn saved_graph_loads_and_damage_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = flatten(ring(8), 80, 7).unwrap();
    g.save(dir.path()).unwrap();
    let loaded = load(dir.path(), 80, 7).unwrap();
    let probe = [3, 0, -3, 1];
    assert_eq!(
        propose(&loaded, &probe, 4, 8, &|_: u64| true),
        propose(&g, &probe, 4, 8, &|_: u64| true)
    );
    assert!(
        load(dir.path(), 79, 7).is_err(),
        "more rows than the gallery"
    );
    assert!(load(dir.path(), 80, 8).is_err(), "other records");
    let path = dir.path().join(FLAT_FILE);
    let good = fs::read(&path).unwrap();
    for at in [3, 60, 130, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        fs::write(&path, &bad).unwrap();
        assert!(load(dir.path(), 80, 7).is_err(), "byte {at}");
    }
    fs::write(&path, &good[..good.len() - 4]).unwrap();
    assert!(load(dir.path(), 80, 7).is_err());
}

/// A file whose checksums hold but whose links point past the graph is
/// refused by the structure check, not searched.
#[test]
fn out_of_range_links_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = flatten(ring(8), 80, 7).unwrap();
    let at = g.sections.base.0 - HEADER_LEN;
    save_altered(dir.path(), &g, |_, body| {
        body[at..at + 4].copy_from_slice(&1000u32.to_le_bytes())
    });
    let err = load(dir.path(), 80, 7).err().unwrap();
    assert!(err.contains("links"), "{err}");
}

/// The invariant behind the read-only mapping: a save replaces the file
/// by a rename, so a graph mapped before keeps its bytes and answers.
#[test]
fn a_mapped_graph_survives_its_replacement() {
    let dir = tempfile::tempdir().unwrap();
    flatten(ring(8), 80, 7).unwrap().save(dir.path()).unwrap();
    let old = load(dir.path(), 80, 7).unwrap();
    let probe = [5, 1, -5, 2];
    let before = propose(&old, &probe, 5, 8, &|_: u64| true);
    let crc = crc32fast::hash(old.bytes.get());
    flatten(ring(6), 60, 9).unwrap().save(dir.path()).unwrap();
    assert_eq!(crc32fast::hash(old.bytes.get()), crc);
    assert_eq!(propose(&old, &probe, 5, 8, &|_: u64| true), before);
    assert_eq!(load(dir.path(), 80, 9).unwrap().points(), 6);
}

#[test]
fn duplicate_rows_and_ragged_keys_are_errors() {
    let mut parts = ring(4);
    parts.nodes[1].row = 0;
    assert!(matches!(
        flatten(parts, 40, 0),
        Err(FlattenError::DuplicateRow(0))
    ));
    let mut parts = ring(4);
    parts.nodes[2].key.pop();
    assert!(matches!(
        flatten(parts, 40, 0),
        Err(FlattenError::KeyLength { .. })
    ));
}

#[test]
fn key_distance_orders_by_inner_product() {
    let a = key_of(&[0.5, 0.5, 0.5, 0.5]);
    let near = key_of(&[0.5, 0.5, 0.5, 0.4]);
    let far = key_of(&[-0.5, 0.5, -0.5, 0.5]);
    assert!(KeyDistance.eval(&a, &near) < KeyDistance.eval(&a, &far));
    assert!(KeyDistance.eval(&a, &far) >= 0.0);
    assert_eq!(key_of(&[10.0, -10.0]), vec![127, -127]);
}

#[test]
fn params_are_clamped_to_what_hnsw_rs_accepts() {
    let p = AnnParams {
        max_connections: 1000,
        ef_construction: 0,
        ef_search: 0,
        builder: GraphBuilder::Native,
    }
    .checked();
    assert_eq!(p.max_connections, 64);
    assert!(p.ef_construction >= 8 && p.ef_search >= 1);
    assert_eq!(p.builder, GraphBuilder::Native);
}

/// A row the graph cannot return is found only through the orphan list:
/// without it the ANN search misses the row, with it the row is found.
#[test]
fn orphans_are_scanned_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let g = row_store(dir.path(), Layout::DEFAULT);
    let mut next = uniform(0x9e3779b97f4a7c15);
    let templates: Vec<Template> = (0..400)
        .map(|_| {
            let v: Vec<f32> = (0..Layout::DEFAULT.len()).map(|_| next()).collect();
            Template::from_f32(Layout::DEFAULT, &v).unwrap()
        })
        .collect();
    insert_all(&g, 0, &templates, true);
    let snap = g.snapshot();
    let hidden = 123u64;
    let rows: Vec<u64> = (0..snap.count).filter(|&r| r != hidden).collect();
    let never = || false;
    let mut index = Builder::build_rows(&snap, rows, AnnParams::default(), &never)
        .unwrap()
        .flatten(dir.path(), &snap, IndexOrigin::Built)
        .unwrap();
    index.orphans.clear();
    let query = SearchQuery::new(1, MatchSettings::default_for(Layout::DEFAULT));
    let probe = &templates[hidden as usize];
    let missed = search(&snap, &index, probe, &query, 64);
    assert_ne!(
        missed[0].row.0, hidden,
        "the hidden row is not in the graph"
    );
    index.orphans.push(hidden);
    let found = search(&snap, &index, probe, &query, 64);
    assert_eq!(found[0].row.0, hidden);
    // A real build: every orphan it reports is still found.
    let built = Builder::build(&snap, AnnParams::default(), &never)
        .unwrap()
        .flatten(dir.path(), &snap, IndexOrigin::Built)
        .unwrap();
    assert!(built.orphans.len() < 400);
    for &o in &built.orphans {
        let hit = search(&snap, &built, &templates[o as usize], &query, 8);
        assert_eq!(hit[0].row.0, o);
    }
}

/// Erasing a key through the mapping reaches the file: another read of the
/// file sees the zeros, the next load accepts the erased key for a deleted
/// row and refuses it for a live one, and the rest of the graph is intact.
#[test]
fn erasure_reaches_the_mapped_file() {
    let dir = tempfile::tempdir().unwrap();
    flatten(ring(8), 80, 7).unwrap().save(dir.path()).unwrap();
    let mut g = load(dir.path(), 80, 7).unwrap();
    let before = propose(&g, &[6, 1, -6, 2], 3, 8, &|r: u64| r != 30);
    assert_eq!(
        g.erase_rows(&[30, 31, 1000]).unwrap(),
        1,
        "row 30 alone is a point"
    );
    assert_eq!(g.erase_rows(&[30]).unwrap(), 0, "already erased");
    assert!(!g.key_is_set(30) && g.key_is_set(40));
    let file = fs::read(dir.path().join(FLAT_FILE)).unwrap();
    let at = g.sections.keys.0 + 3 * 4;
    assert_eq!(&file[at..at + 4], &[0, 0, 0, 0]);
    assert_eq!(&file[at + 4..at + 8], &[4, 1, -4i8 as u8, 2]);
    // The walk goes through the erased point; it is never returned.
    assert_eq!(propose(&g, &[6, 1, -6, 2], 3, 8, &|r: u64| r != 30), before);
    drop(g);
    let dead = |r: u64| r == 30;
    assert!(FlatGraph::load(dir.path(), 80, &|_| 7, &dead).is_ok());
    let err = load(dir.path(), 80, 7).err().unwrap();
    assert!(err.contains("live row 30"), "{err}");
}

/// A deleted row's key is erased in the file when it is loaded, if an
/// erasure missed it; a key that fails its checksum is refused by the key
/// check.
#[test]
fn a_load_erases_the_keys_of_deleted_rows_and_refuses_damaged_keys() {
    let dir = tempfile::tempdir().unwrap();
    let g = flatten(ring(8), 80, 7).unwrap();
    g.save(dir.path()).unwrap();
    let dead = |r: u64| r == 50;
    let loaded = FlatGraph::load(dir.path(), 80, &|_| 7, &dead).unwrap();
    assert!(!loaded.key_is_set(50));
    assert_eq!(loaded.erased_at_load, vec![50]);
    drop(loaded);
    let file = fs::read(dir.path().join(FLAT_FILE)).unwrap();
    let at = g.sections.keys.0 + 5 * 4;
    assert_eq!(&file[at..at + 4], &[0, 0, 0, 0]);
    // A flipped key byte of a live row: refused, and the file zero-filled.
    g.save(dir.path()).unwrap();
    let path = dir.path().join(FLAT_FILE);
    let mut bad = fs::read(&path).unwrap();
    bad[g.sections.keys.0 + 2 * 4 + 1] ^= 1;
    fs::write(&path, bad).unwrap();
    let err = load(dir.path(), 80, 7).err().unwrap();
    assert!(err.contains("row 20 is damaged"), "{err}");
    assert!(fs::read(&path).unwrap().iter().all(|&b| b == 0));
}

/// The load maps a graph without reading the keys of live rows, so a
/// damaged key is found by the key check, and only by a check whose points
/// include it; points past the graph are no error.
#[test]
fn the_key_check_finds_a_damaged_key_in_its_own_points_only() {
    let dir = tempfile::tempdir().unwrap();
    let g = flatten(ring(8), 80, 7).unwrap();
    g.save(dir.path()).unwrap();
    let path = dir.path().join(FLAT_FILE);
    let mut bad = fs::read(&path).unwrap();
    bad[g.sections.keys.0 + 6 * 4] ^= 4;
    fs::write(&path, bad).unwrap();
    let mapped = FlatGraph::load(dir.path(), 80, &|_| 7, &|_| false).unwrap();
    let live = |_: u64| false;
    assert_eq!(mapped.check_keys(0..6, &live), Ok(()));
    assert_eq!(mapped.check_keys(7..1000, &live), Ok(()));
    let err = mapped.check_keys(5..7, &live).unwrap_err();
    assert_eq!(err, format!("{FLAT_FILE}: the key of row 60 is damaged"));
    assert!(mapped.check_keys(0..usize::MAX, &live).is_err());
}
