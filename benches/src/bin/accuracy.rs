//! Prints verification error rates on the synthetic palm population and the
//! per-block thresholds calibrated for a target false-match rate; optionally draws
//! the DET curves as SVG. `accuracy --help` lists the options.

use std::path::Path;
use std::process::ExitCode;

use palmlink_benches::accuracy::{run, write_det_svg, Options};

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let report = match run(&options) {
        Ok(r) => r,
        Err(message) => {
            eprintln!("accuracy: {message}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(svg) = &options.svg {
        if let Err(message) = write_det_svg(&report, Path::new(svg)) {
            eprintln!("accuracy: {message}");
            return ExitCode::FAILURE;
        }
    }
    if options.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).expect("JSON values serialise")
        );
    } else {
        print!("{}", report.to_text());
    }
    ExitCode::SUCCESS
}
