//! The API as integrators see it, with the tools they use (`tests/integrators/`): the
//! document passes a standard validator, a client generated from it runs the whole loop
//! parsing every response into its typed model, and schemathesis finds nothing with all its
//! checks and phases, stateful included.
//!
//! The Python tools live in a virtual environment that `.ci/run` creates from
//! `tests/integrators/requirements.txt` (`target/ci-venv`, or `PALMLINK_CI_VENV`); without
//! it these tests say so and pass.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::Harness;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tools' virtual environment, or `None` (with the reason printed).
fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("PALMLINK_CI_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/ci-venv"));
    let ready = ["openapi-spec-validator", "openapi-python-client", "st"]
        .iter()
        .all(|tool| dir.join("bin").join(tool).exists());
    if !ready {
        eprintln!(
            "skipped: no integrator tools at {} (`.ci/run` installs them from \
             tests/integrators/requirements.txt)",
            dir.display()
        );
        return None;
    }
    Some(dir)
}

async fn node() -> Harness {
    Harness::start_with(|c| {
        c.allow_http_webhooks = true;
        c.rate_limit_per_second = 10_000;
        c.rate_limit_burst = 10_000;
        c.public_rate_limit_per_second = 10_000;
        c.public_rate_limit_burst = 10_000;
    })
    .await
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    stdout
}

async fn save_document(h: &Harness, dir: &Path) -> PathBuf {
    let doc = h
        .http
        .get(h.url("/openapi.json"))
        .send()
        .await
        .expect("document");
    let text = doc.text().await.expect("document body");
    let path = dir.join("openapi.json");
    std::fs::write(&path, text).expect("write document");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generated_client_runs_the_whole_loop() {
    let Some(venv) = venv() else { return };
    let h = node().await;
    let t = h.tenant().await;
    let work = tempfile::tempdir().expect("temp dir");
    let doc = save_document(&h, work.path()).await;
    run(
        Command::new(venv.join("bin/openapi-spec-validator")).arg(&doc),
        "openapi-spec-validator",
    );
    run(
        Command::new(venv.join("bin/openapi-python-client"))
            .arg("generate")
            .arg("--path")
            .arg(&doc)
            .arg("--config")
            .arg(repo().join("tests/integrators/client-config.yaml"))
            .arg("--output-path")
            .arg(work.path().join("palmlink_client"))
            .arg("--meta")
            .arg("none"),
        "openapi-python-client",
    );
    let base = h.base.clone();
    let script = repo().join("tests/integrators/client_loop.py");
    let python = venv.join("bin/python");
    let client_dir = work.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        run(
            Command::new(python)
                .arg(script)
                .args([&base, &t.client_id, &t.secret])
                .env("PYTHONPATH", client_dir),
            "the client loop",
        )
    })
    .await
    .expect("loop");
    assert!(out.contains("\"ok\": true"), "{out}");
}

/// Runs schemathesis with `args` against the node; its report on failure.
async fn schemathesis(venv: &Path, h: &Harness, token: &str, args: &[&str]) {
    let work = tempfile::tempdir().expect("temp dir");
    let doc = save_document(h, work.path()).await;
    let mut cmd = Command::new(venv.join("bin/st"));
    cmd.current_dir(work.path())
        .arg("--config-file")
        .arg(repo().join("tests/integrators/schemathesis.toml"))
        .arg("run")
        .args(args)
        .args(["--max-examples", "25", "--workers", "1", "--seed", "23"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {token}"))
        .arg("--url")
        .arg(&h.base)
        .arg(&doc)
        .env("NO_COLOR", "1");
    let out = tokio::task::spawn_blocking(move || run(&mut cmd, "schemathesis"))
        .await
        .expect("schemathesis");
    eprintln!("{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing() {
    let Some(venv) = venv() else { return };
    let h = node().await;
    let t = h.tenant().await;
    schemathesis(
        &venv,
        &h,
        &t.token,
        &["--checks", "all", "--phases", "examples,coverage,fuzzing"],
    )
    .await;
}

/// The stateful phase chains operations (a scanner revoked, then an enrollment on it), where
/// the contract's business-rule 400 is the right answer to a schema-valid request, and a
/// revoked device stays readable (`status: "revoked"`); the per-operation expectations of the
/// config file are not applied to this phase, so it runs every check but those two.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_stateful_finds_nothing() {
    let Some(venv) = venv() else { return };
    let h = node().await;
    let t = h.tenant().await;
    schemathesis(
        &venv,
        &h,
        &t.token,
        &[
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance,use_after_free",
            "--phases",
            "stateful",
        ],
    )
    .await;
}
