//! Presentation attack detection at a tenant's `min_liveness` (ISO/IEC 30107-3): APCER,
//! the share of attack presentations accepted, per attack species, and BPCER, the share
//! of bona fide presentations rejected. The service accepts a capture whose liveness is at
//! least `min_liveness` and fails the challenge of any other (`failure_reason:
//! "liveness"`).

use palmlink_fixtures::attacks::{attack_liveness, bona_fide_liveness, Attack};
use palmlink_fixtures::population::raw_block_scores;
use palmlink_fixtures::{PalmSide, Population};
use serde_json::{json, Value};

/// Liveness scores, sorted, counted against any number of minimums.
#[derive(Clone, Debug)]
pub struct Liveness(Vec<f32>);

impl Liveness {
    /// The scores, in any order (NaN is not a score the service accepts and is dropped).
    pub fn new(mut scores: Vec<f32>) -> Liveness {
        scores.retain(|s| !s.is_nan());
        scores.sort_by(f32::total_cmp);
        Liveness(scores)
    }

    /// How many scores.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many the service accepts at `min_liveness` (at least the minimum).
    pub fn accepted(&self, min_liveness: f32) -> usize {
        self.0.len() - self.0.partition_point(|&s| s < min_liveness)
    }
}

/// APCER of attack presentations with these liveness scores at `min_liveness`: the share
/// accepted (0 when there are none).
pub fn apcer(attacks: &Liveness, min_liveness: f32) -> f64 {
    share(attacks.accepted(min_liveness), attacks.len())
}

/// BPCER of bona fide presentations with these liveness scores at `min_liveness`: the
/// share rejected (0 when there are none).
pub fn bpcer(bona_fide: &Liveness, min_liveness: f32) -> f64 {
    share(
        bona_fide.len() - bona_fide.accepted(min_liveness),
        bona_fide.len(),
    )
}

fn share(part: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

/// One attack species' figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Species {
    /// Which.
    pub attack: Attack,
    /// Presentations made.
    pub presentations: usize,
    /// APCER at the minimum.
    pub apcer: f64,
    /// Share whose template the matcher accepts against the palm it copies, under the
    /// default thresholds (`all_thresholds`).
    pub matched: f64,
}

/// The presentation attack figures of the accuracy report.
#[derive(Clone, Debug, PartialEq)]
pub struct PadReport {
    /// The tenant's `min_liveness` they are taken at.
    pub min_liveness: f32,
    /// Bona fide presentations.
    pub bona_fide: usize,
    /// BPCER at the minimum.
    pub bpcer: f64,
    /// Per attack species.
    pub species: Vec<Species>,
}

/// Presents `count` bona fide captures and `count` attacks of each species (capture
/// indices from `first_index`, identities in turn), and scores them at `min_liveness`;
/// `thresholds` are what the matcher accepts a template under.
pub fn measure(
    population: &Population,
    count: usize,
    first_index: u64,
    min_liveness: f32,
    thresholds: &[f32],
) -> PadReport {
    let seed = population.params().seed;
    let n = population.len();
    let who = |i: usize| (i as u64 % n, first_index + i as u64);
    let bona_fide = Liveness::new(
        (0..count)
            .map(|i| {
                let (id, index) = who(i);
                bona_fide_liveness(seed, id, PalmSide::Right, index)
            })
            .collect(),
    );
    let dim = population.layout().dim;
    let species = Attack::ALL
        .into_iter()
        .map(|attack| {
            let mut matched = 0usize;
            let scores = (0..count)
                .map(|i| {
                    let (id, index) = who(i);
                    let enrolled = population.enrollment(id, PalmSide::Right).to_f32();
                    let presented = match attack {
                        Attack::Replay => enrolled.clone(),
                        Attack::LowLiveness => {
                            population.capture(id, PalmSide::Right, index).to_f32()
                        }
                    };
                    let blocks = raw_block_scores(&presented, &enrolled, dim);
                    if blocks.iter().zip(thresholds).all(|(s, t)| s >= t) {
                        matched += 1;
                    }
                    attack_liveness(attack, seed, id, PalmSide::Right, index)
                })
                .collect();
            let live = Liveness::new(scores);
            Species {
                attack,
                presentations: count,
                apcer: apcer(&live, min_liveness),
                matched: share(matched, count),
            }
        })
        .collect();
    PadReport {
        min_liveness,
        bona_fide: bona_fide.len(),
        bpcer: bpcer(&bona_fide, min_liveness),
        species,
    }
}

impl PadReport {
    /// As JSON: `{"min_liveness", "bona_fide", "bpcer", "apcer": {species: ...}}`.
    pub fn to_json(&self) -> Value {
        let apcer: serde_json::Map<String, Value> = self
            .species
            .iter()
            .map(|s| {
                let v = json!({"presentations": s.presentations, "apcer": s.apcer, "matched": s.matched});
                (s.attack.name().to_owned(), v)
            })
            .collect();
        json!({"min_liveness": self.min_liveness, "bona_fide": self.bona_fide, "bpcer": self.bpcer, "apcer": apcer})
    }

    /// One line per figure.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "presentation attacks at min_liveness {}: BPCER {:.4} ({} bona fide)\n",
            self.min_liveness, self.bpcer, self.bona_fide
        );
        for sp in &self.species {
            s.push_str(&format!(
                "  APCER {:<12} {:.4} ({} presentations; template matched {:.4})\n",
                sp.attack.name(),
                sp.apcer,
                sp.presentations,
                sp.matched
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The definitions, counted one presentation at a time.
    fn reference(scores: &[f32], min: f32) -> (f64, f64) {
        let accepted = scores.iter().filter(|&&s| s >= min).count();
        let n = scores.len().max(1) as f64;
        (accepted as f64 / n, (scores.len() - accepted) as f64 / n)
    }

    #[test]
    fn apcer_and_bpcer_match_a_plain_count_at_every_minimum() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for len in [0usize, 1, 2, 17, 500] {
            // Coarse values, so many scores tie with each other and with the minimums.
            let scores: Vec<f32> = (0..len)
                .map(|_| rng.random_range(0..=20) as f32 / 20.0)
                .collect();
            let live = Liveness::new(scores.clone());
            for step in 0..=22 {
                let min = step as f32 / 20.0 - 0.05;
                let (accepted, rejected) = reference(&scores, min);
                assert_eq!(apcer(&live, min), accepted, "len {len} min {min}");
                assert_eq!(bpcer(&live, min), rejected, "len {len} min {min}");
            }
        }
        // By hand: 0.2 and 0.5 are below 0.6; 0.6 (equal) and 0.9 are accepted.
        let live = Liveness::new(vec![0.9, 0.2, 0.6, 0.5]);
        assert_eq!((apcer(&live, 0.6), bpcer(&live, 0.6)), (0.5, 0.5));
    }

    #[test]
    fn artefacts_fail_a_liveness_minimum_and_replays_pass_it_and_the_matcher() {
        let population = Population::with_seed(3, 200);
        let thresholds = vec![0.5; population.layout().blocks];
        let r = measure(&population, 400, 0, 0.6, &thresholds);
        let low = &r.species[0];
        let replay = &r.species[1];
        assert!(low.apcer < 0.05 && r.bpcer < 0.01, "{r:?}");
        // A replay is the enrolled template itself: liveness cannot tell it from a hand.
        assert!(replay.apcer > 0.99 && replay.matched == 1.0, "{r:?}");
        assert_eq!(
            measure(&population, 400, 0, 0.0, &thresholds).species[0].apcer,
            1.0
        );
    }
}
