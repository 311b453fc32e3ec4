//! Support code for the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `palmlink` binary of this checkout, next to the running test executable
/// (`target/<profile>/palmlink`).
///
/// `cargo test` builds binaries only for the tests of their own package, so
/// the binary is brought up to date here, once per test process: a no-op
/// when it already matches the sources, and never a stale server under test.
pub fn palmlink_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable");
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target profile directory")
                .to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut build = Command::new(cargo);
            build.args(["build", "-p", "palmlink-server", "--bin", "palmlink"]);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("run cargo build");
            assert!(status.success(), "building the palmlink binary failed");
            profile_dir.join(format!("palmlink{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
}
