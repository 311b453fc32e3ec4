//! The options of the `accuracy` binary and their parsing.

/// What to measure.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Identities in each population.
    pub identities: u64,
    /// Genuine trials.
    pub genuine: usize,
    /// Random impostor trials used for calibration.
    pub impostors: usize,
    /// Random impostor trials on a second population (other seed), for held-out rates.
    pub holdout: usize,
    /// Impostor trials between relatives.
    pub related: usize,
    /// Seed of the calibration population (the held-out one uses `seed + 1`).
    pub seed: u64,
    /// Target false-match rate of the calibration.
    pub target_fmr: f64,
    /// Worker threads.
    pub threads: usize,
    /// The tenant's `min_liveness` that APCER and BPCER are taken at.
    pub min_liveness: f32,
    /// Presentations of each attack species, and bona fide ones.
    pub attacks: usize,
    /// Print JSON instead of text.
    pub json: bool,
    /// Where to write the DET curve as SVG.
    pub svg: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            identities: 20_000,
            genuine: 20_000,
            impostors: 100_000,
            holdout: 100_000,
            related: 10_000,
            seed: 1,
            target_fmr: 1e-3,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            min_liveness: 0.5,
            attacks: 20_000,
            json: false,
            svg: None,
        }
    }
}

/// Usage text of the `accuracy` binary.
pub const USAGE: &str = "\
accuracy: verification error rates on the synthetic palm population

usage: accuracy [--identities N] [--genuine N] [--impostors N] [--holdout N]
                [--related N] [--seed S] [--target-fmr F] [--threads N]
                [--min-liveness F] [--attacks N] [--json] [--svg PATH]

  --identities N   identities per population            (default 20000)
  --genuine N      genuine comparisons                  (default 20000)
  --impostors N    impostor comparisons to calibrate on (default 100000)
  --holdout N      impostor comparisons on a second population, seed S+1,
                   to check the calibrated thresholds   (default 100000)
  --related N      impostor comparisons between relatives (default 10000)
  --seed S         population seed                      (default 1)
  --target-fmr F   false-match rate to calibrate for    (default 0.001)
  --threads N      worker threads                       (default: all cores)
  --min-liveness F the tenant's min_liveness for APCER/BPCER (default 0.5)
  --attacks N      presentations per attack species (low_liveness, replay)
                   and bona fide, for APCER/BPCER       (default 20000)
  --json           print one JSON object
  --svg PATH       draw the DET curves to PATH
";

impl Options {
    /// Parses command-line arguments (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
        let mut o = Options::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
                v.parse()
                    .map_err(|_| format!("{flag}: not a valid number: {v}"))
            }
            match flag.as_str() {
                "--identities" => o.identities = num(&flag, value()?)?,
                "--genuine" => o.genuine = num(&flag, value()?)?,
                "--impostors" => o.impostors = num(&flag, value()?)?,
                "--holdout" => o.holdout = num(&flag, value()?)?,
                "--related" => o.related = num(&flag, value()?)?,
                "--seed" => o.seed = num(&flag, value()?)?,
                "--target-fmr" => o.target_fmr = num(&flag, value()?)?,
                "--threads" => o.threads = num(&flag, value()?)?,
                "--min-liveness" => o.min_liveness = num(&flag, value()?)?,
                "--attacks" => o.attacks = num(&flag, value()?)?,
                "--json" => o.json = true,
                "--svg" => o.svg = Some(value()?),
                "-h" | "--help" => return Err(USAGE.to_string()),
                other => return Err(format!("unknown argument {other}\n\n{USAGE}")),
            }
        }
        if o.identities < 8 {
            return Err("--identities must be at least 8".into());
        }
        if o.genuine == 0 || o.impostors == 0 {
            return Err("--genuine and --impostors must be positive".into());
        }
        if !(0.0..=1.0).contains(&o.target_fmr) {
            return Err("--target-fmr must be in 0..=1".into());
        }
        if !(0.0..=1.0).contains(&o.min_liveness) {
            return Err("--min-liveness must be in 0..=1".into());
        }
        o.threads = o.threads.max(1);
        Ok(o)
    }
}
