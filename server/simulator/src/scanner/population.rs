//! The synthetic population a simulated scanner presents palms of, and whose palm each
//! challenge gets.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;
use palmlink_fixtures::attacks::{attack_liveness, Attack};
use palmlink_fixtures::{palm_name, PalmSide, Population};
use serde::Serialize;
use serde_json::Value;

/// Seed of the synthetic population unless told otherwise.
pub const DEFAULT_SEED: u64 = 1;
/// Size of the synthetic population unless told otherwise.
pub const DEFAULT_POPULATION: u64 = 10_000;
/// Vendor name of the simulated extractor.
pub const VENDOR: &str = "mock";
/// Most captures taken of one palm for one challenge while the quality is too low.
const MAX_TAKES: u64 = 16;

/// How the simulator chooses and captures palms.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Population seed.
    pub seed: u64,
    /// Population size.
    pub population: u64,
    /// External user id to identity.
    pub identities: HashMap<String, u64>,
    /// Present an unrelated palm on verifications and identifications.
    pub impostor: bool,
    /// Minimum reported quality of a probe capture.
    pub min_quality: f32,
    /// Liveness score reported with every capture.
    pub liveness: f32,
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            seed: DEFAULT_SEED,
            population: DEFAULT_POPULATION,
            identities: HashMap::new(),
            impostor: false,
            min_quality: 0.8,
            liveness: 0.99,
        }
    }
}

/// Reads an `--identities` file: a JSON object from external user id to identity.
pub fn load_identities(path: &Path) -> anyhow::Result<HashMap<String, u64>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON object of external user id to identity number",
            path.display()
        )
    })
}

/// One palm capture submitted for a challenge.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureInfo {
    /// `left` or `right`.
    pub palm_type: String,
    /// Probe capture number (absent for the enrollment capture).
    pub capture_index: Option<u64>,
    /// Reported quality.
    pub quality: f32,
    /// Captures taken to reach the minimum quality (1 when the first was good enough).
    pub takes: u64,
}

/// What the simulator decided to present for one challenge.
#[derive(Debug, Clone)]
pub struct Presentation {
    /// The identity whose palm is presented.
    pub identity: u64,
    /// Whether it is an impostor presentation.
    pub impostor: bool,
    /// The `captures` entries of the request body.
    pub captures: Vec<Value>,
    /// What each capture was.
    pub info: Vec<CaptureInfo>,
}

/// The synthetic population and the capture counters of each palm.
pub struct Simulator {
    options: SimOptions,
    population: Population,
    next_capture: HashMap<(u64, PalmSide), u64>,
}

/// FNV-1a, a stable hash (the standard library's is randomised per process).
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Simulator {
    /// A simulator over the population the options describe.
    pub fn new(options: SimOptions) -> anyhow::Result<Simulator> {
        anyhow::ensure!(
            options.population >= 2,
            "the population needs at least 2 identities"
        );
        anyhow::ensure!(options.population <= 1 << 40, "the population is too large");
        let population = Population::with_seed(options.seed, options.population);
        Ok(Simulator {
            options,
            population,
            next_capture: HashMap::new(),
        })
    }

    /// The identity of an external user id: the mapping, else a stable hash.
    pub fn identity_of_user(&self, external_user_id: &str) -> u64 {
        match self.options.identities.get(external_user_id) {
            Some(&identity) => identity,
            None => stable_hash(external_user_id) % self.options.population,
        }
    }

    /// An identity unrelated to `identity` (another family): half the population away.
    pub fn impostor_of(&self, identity: u64) -> u64 {
        let n = self.options.population;
        (identity % n + n / 2) % n
    }

    /// Chooses the identity and palms for a polled challenge and takes the captures.
    pub fn present(&mut self, challenge: &Value) -> Result<Presentation, String> {
        let kind = challenge["type"].as_str().unwrap_or_default();
        let metadata = &challenge["metadata"];
        let subject = if let Some(v) = metadata.get("sim_identity") {
            v.as_u64().ok_or_else(|| {
                format!("metadata.sim_identity must be an identity number, not {v}")
            })?
        } else if let Some(v) = metadata.get("sim_user") {
            self.identity_of_user(
                v.as_str()
                    .ok_or_else(|| format!("metadata.sim_user must be a string, not {v}"))?,
            )
        } else if let Some(user) = challenge["external_user_id"].as_str() {
            self.identity_of_user(user)
        } else {
            stable_hash(challenge["challenge_id"].as_str().unwrap_or_default())
                % self.options.population
        };
        if subject >= self.options.population {
            return Err(format!(
                "identity {subject} is outside the synthetic population (0..{})",
                self.options.population
            ));
        }
        let impostor = kind != "enroll"
            && metadata
                .get("sim_impostor")
                .and_then(Value::as_bool)
                .unwrap_or(self.options.impostor);
        let identity = if impostor {
            self.impostor_of(subject)
        } else {
            subject
        };
        let palms = match challenge["palm_type"].as_str().unwrap_or_default() {
            "left" => vec![PalmSide::Left],
            "right" => vec![PalmSide::Right],
            "both" => vec![PalmSide::Left, PalmSide::Right],
            "any" => match metadata.get("sim_palm").and_then(Value::as_str) {
                Some("left") => vec![PalmSide::Left],
                None | Some("right") => vec![PalmSide::Right],
                Some(other) => {
                    return Err(format!(
                        "metadata.sim_palm must be left or right, not {other:?}"
                    ))
                }
            },
            other => return Err(format!("unknown palm_type {other:?}")),
        };
        // A presentation attack on request (never on an enrollment): an artefact the
        // scanner scores low on liveness, or the enrolled template's bytes replayed.
        let attack = match metadata.get("sim_attack") {
            None => None,
            Some(v) => match v.as_str().and_then(Attack::parse) {
                Some(a) if kind != "enroll" => Some(a),
                Some(_) => return Err("metadata.sim_attack applies to probes only".into()),
                None => {
                    return Err(format!(
                        "metadata.sim_attack must be low_liveness or replay, not {v}"
                    ))
                }
            },
        };
        let mut captures = Vec::new();
        let mut info = Vec::new();
        for palm in palms {
            let (capture, index, takes) = match (kind, attack) {
                ("enroll", _) => (self.population.enrollment(identity, palm), None, 1),
                (_, Some(Attack::Replay)) => (self.population.enrollment(identity, palm), None, 1),
                _ => self.probe(identity, palm),
            };
            let liveness = match attack {
                Some(a) => attack_liveness(
                    a,
                    self.options.seed,
                    identity,
                    palm,
                    index.unwrap_or(u64::MAX),
                ),
                None => self.options.liveness,
            };
            captures.push(capture.to_capture_json(palm, liveness));
            info.push(CaptureInfo {
                palm_type: palm_name(palm).to_owned(),
                capture_index: index,
                quality: capture.quality,
                takes,
            });
        }
        Ok(Presentation {
            identity,
            impostor,
            captures,
            info,
        })
    }

    /// The palm's next probe capture of at least the minimum quality (or the best of
    /// [`MAX_TAKES`]): (capture, its index, captures taken).
    fn probe(
        &mut self,
        identity: u64,
        palm: PalmSide,
    ) -> (palmlink_fixtures::Capture, Option<u64>, u64) {
        let counter = self.next_capture.entry((identity, palm)).or_insert(0);
        let mut best: Option<(palmlink_fixtures::Capture, u64)> = None;
        let mut takes = 0;
        while takes < MAX_TAKES {
            let index = *counter;
            *counter += 1;
            takes += 1;
            let capture = self.population.capture(identity, palm, index);
            let good = capture.quality >= self.options.min_quality;
            if best
                .as_ref()
                .is_none_or(|(b, _)| capture.quality > b.quality)
            {
                best = Some((capture, index));
            }
            if good {
                break;
            }
        }
        match best {
            Some((capture, index)) => (capture, Some(index), takes),
            None => (self.population.capture(identity, palm, 0), Some(0), takes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(sim: &mut Simulator, attack: Option<&str>) -> Result<Presentation, String> {
        let mut metadata = json!({"sim_identity": 5});
        if let Some(a) = attack {
            metadata["sim_attack"] = json!(a);
        }
        sim.present(
            &json!({"type": "verify", "challenge_id": "c", "palm_type": "right",
            "metadata": metadata}),
        )
    }

    #[test]
    fn attacks_are_presented_on_request() {
        let mut sim = Simulator::new(SimOptions::default()).unwrap();
        let enrolled = sim
            .present(
                &json!({"type": "enroll", "challenge_id": "e", "palm_type": "right",
                "metadata": {"sim_identity": 5}}),
            )
            .unwrap();
        let replay = probe(&mut sim, Some("replay")).unwrap();
        // A replay is the enrolled template's exact bytes.
        assert_eq!(
            replay.captures[0]["template"],
            enrolled.captures[0]["template"]
        );
        let live = probe(&mut sim, None).unwrap();
        assert_ne!(
            live.captures[0]["template"],
            enrolled.captures[0]["template"]
        );
        let fake = probe(&mut sim, Some("low_liveness")).unwrap();
        assert!(fake.captures[0]["liveness"].as_f64().unwrap() < 0.9);
        assert!(probe(&mut sim, Some("print")).is_err());
        let on_enroll = sim.present(&json!({"type": "enroll", "challenge_id": "e",
            "palm_type": "right", "metadata": {"sim_identity": 5, "sim_attack": "replay"}}));
        assert!(on_enroll.is_err());
    }
}
