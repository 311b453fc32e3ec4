//! The links the native builder adds after the inserts: links back into
//! each base list, and links to the points the base layer does not reach.

use std::cmp::Reverse;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use rayon::prelude::*;

use super::super::build::unreached;
use super::super::format::NONE;
use super::{NativeGraph, Scratch};
use crate::kernels;

impl NativeGraph {
    /// Fills the slots for links back of every base list (cleared first):
    /// each point `q` gets links to the points whose own list links to it
    /// while its own does not link back, up to `back` of them, those with the
    /// fewest links to them first, then the nearest (the points hardest to
    /// reach gain the most). Transient memory: two counters and an offset per
    /// point, and one `u32` per link that lacks its link back.
    fn add_links_back(&self) {
        let n = self.points();
        if self.back == 0 || n == 0 {
            return;
        }
        self.base.par_chunks(self.width0()).for_each(|list| {
            list[2 * self.m..]
                .iter()
                .for_each(|s| s.store(NONE, Relaxed))
        });
        let counter = || -> Vec<AtomicU32> { (0..n).map(|_| AtomicU32::new(0)).collect() };
        let (links_to, wanted) = (counter(), counter());
        // Calls `f(q, p)` for every link `p → q` of the build, with whether
        // `q → p` is missing.
        let each_link = |f: &(dyn Fn(u32, u32, bool) + Sync)| {
            (0..n as u32).into_par_iter().for_each(|p| {
                for q in Self::links(self.list(p, 0)) {
                    f(q, p, !Self::links(self.list(q, 0)).any(|r| r == p));
                }
            })
        };
        each_link(&|q, _, one_way| {
            links_to[q as usize].fetch_add(1, Relaxed);
            if one_way {
                wanted[q as usize].fetch_add(1, Relaxed);
            }
        });
        let mut start = Vec::with_capacity(n + 1);
        start.push(0usize);
        for w in &wanted {
            start.push(start[start.len() - 1] + w.swap(0, Relaxed) as usize);
        }
        let from: Vec<AtomicU32> = (0..start[n]).map(|_| AtomicU32::new(NONE)).collect();
        each_link(&|q, p, one_way| {
            if one_way {
                let i = wanted[q as usize].fetch_add(1, Relaxed) as usize;
                from[start[q as usize] + i].store(p, Relaxed);
            }
        });
        (0..n as u32)
            .into_par_iter()
            .for_each_init(Vec::new, |back, q| {
                back.clear();
                let (lo, hi) = (start[q as usize], start[q as usize + 1]);
                back.extend(from[lo..hi].iter().map(|s| s.load(Relaxed)));
                let key = self.key(q);
                back.sort_by_cached_key(|&p| {
                    let near = kernels::dot_i8(key, self.key(p));
                    (links_to[p as usize].load(Relaxed), Reverse(near), p)
                });
                for (slot, &p) in self.back_list(q).iter().zip(back.iter()) {
                    slot.store(p, Relaxed);
                }
            });
    }

    /// Adds the links back, then links the points the base layer does not
    /// reach from the entry point back in (a full list elsewhere can drop a
    /// point's last link to it): each into the list of the nearest reached
    /// point with room, else in place of the farthest link of the nearest
    /// one; in rounds, each starting with the links back made again, as a
    /// point displaced may be left unreached in turn. What a few rounds
    /// leave is listed as orphans.
    pub(super) fn reconnect(&self, s: &mut Scratch) {
        const ROUNDS: usize = 4;
        for round in 0..=ROUNDS {
            // The links back follow the lists as they are now.
            self.add_links_back();
            let orphans = self.orphans();
            if orphans.is_empty() || round == ROUNDS {
                return;
            }
            for &o in &orphans {
                let key = self.key(o);
                let near = self.search_layer(key, &[self.descend(key, 0)], 0, s);
                let mut near = near.iter().map(|&(_, q)| q).filter(|&q| q != o);
                let Some(nearest) = near.next() else {
                    continue;
                };
                let full = 2 * self.m;
                let host = std::iter::once(nearest)
                    .chain(near)
                    .find(|&q| Self::links(self.list(q, 0)).count() < full);
                let q = host.unwrap_or(nearest);
                let _guard = self.lock(q);
                let list = self.list(q, 0);
                let links: Vec<u32> = Self::links(list).collect();
                if links.contains(&o) {
                    continue;
                }
                let slot = if links.len() < full {
                    links.len()
                } else {
                    let kq = self.key(q);
                    (0..links.len())
                        .max_by_key(|&i| self.distance(kq, links[i]))
                        .unwrap_or(0)
                };
                list[slot].store(o, Relaxed);
            }
        }
    }

    /// Points the base layer does not reach from the entry point.
    pub(super) fn orphans(&self) -> Vec<u32> {
        if self.entry == NONE {
            return Vec::new();
        }
        unreached(self.points(), &[self.entry], |p, out| {
            out.extend(self.all_links(p, 0));
        })
    }
}
