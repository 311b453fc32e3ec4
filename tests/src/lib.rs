//! Support code for the end-to-end tests.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

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

/// Environment that raises every rate limit of a `palmlink serve` child out of the way of a
/// test's own burst.
pub const UNTHROTTLED: &[(&str, &str)] = &[
    ("PALMLINK_RATE_LIMIT_PER_SECOND", "10000"),
    ("PALMLINK_RATE_LIMIT_BURST", "10000"),
    ("PALMLINK_PUBLIC_RATE_LIMIT_PER_SECOND", "10000"),
    ("PALMLINK_PUBLIC_RATE_LIMIT_BURST", "10000"),
];

/// A `palmlink serve` child process on a free loopback port, killed on drop.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl ServerProcess {
    /// Starts `bin serve` on `data_dir` with extra arguments and environment.
    pub fn start(bin: &Path, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("PALMLINK_DATA_DIR", data_dir)
            .env("PALMLINK_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn palmlink serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read address");
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad start line {line:?}: {e}"));
        let base = format!("http://{}", v["listening"].as_str().expect("listening"));
        ServerProcess { child, base }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an operator command (`bin ARGS --data-dir DIR`) and parses the one
/// JSON object it prints.
pub fn operator(bin: &Path, data_dir: &Path, args: &[&str]) -> Value {
    operator_with(bin, data_dir, args, &[])
}

/// [`operator`] with extra environment (a database URL, a master key file).
pub fn operator_with(bin: &Path, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = Command::new(bin)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .envs(env.iter().copied())
        .output()
        .expect("run operator command");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}
