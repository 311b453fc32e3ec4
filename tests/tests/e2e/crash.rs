use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{capture, palm, recapture, Harness};

/// The `palmlink` binary next to this test executable (`target/<profile>/palmlink`), built
/// first if it is missing.
fn palmlink_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = profile_dir.join(format!("palmlink{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "-p", "palmlink-server", "--bin", "palmlink"])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the palmlink binary failed");
    }
    bin
}

/// A `palmlink serve` child process, killed on drop.
struct ServerProcess {
    child: Child,
    base: String,
}

impl ServerProcess {
    fn start(bin: &Path, data_dir: &Path) -> ServerProcess {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("PALMLINK_DATA_DIR", data_dir)
            .env("PALMLINK_LOG", "warn")
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
    fn kill(mut self) {
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

fn operator(bin: &Path, data_dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(bin)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run operator command");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[tokio::test]
async fn acknowledged_enrollments_survive_sigkill() {
    let bin = palmlink_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(&bin, dir.path());

    // Operator commands run beside the live server.
    let tenant = operator(&bin, dir.path(), &["tenant", "create", "--name", "crash"]);
    let tenant_id = tenant["tenant_id"].as_str().unwrap().to_owned();
    let client = operator(
        &bin,
        dir.path(),
        &["client", "create", "--tenant", &tenant_id, "--name", "app"],
    );
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    let secret = client["client_secret"].as_str().unwrap().to_owned();

    // Reuse the harness helpers against the child process.
    let mut h = Harness::start().await;
    h.base = server.base.clone();
    let token = h.token(&client_id, &secret).await;
    let t = crate::support::Tenant {
        id: tenant_id.clone(),
        client_id: client_id.clone(),
        secret: secret.clone(),
        token,
    };
    let s = h.scanner(&t, "hw-crash").await;
    let people: Vec<(String, Vec<Vec<f32>>)> =
        (0..8).map(|i| (format!("p{i}"), palm(700 + i))).collect();
    for (name, p) in &people {
        let done = h.enroll(&t, &s, name, "right", p).await;
        assert_eq!(done["status"], "completed");
    }
    // One more enrollment left pending at the kill: it must not appear afterwards.
    h.challenge(
        &t,
        "/v1/enroll",
        json!({"external_user_id": "late", "hardware_id": "hw-crash", "palm_type": "left"}),
    )
    .await;
    server.kill();

    let server = ServerProcess::start(&bin, dir.path());
    h.base = server.base.clone();
    // The signing key persisted: the old token still verifies.
    let users = h.get("/v1/users?limit=100", &t.token).await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert_eq!(users.body["total"], 8);
    for (i, (name, p)) in people.iter().enumerate() {
        let id = h
            .challenge(
                &t,
                "/v1/verify",
                json!({"external_user_id": name, "hardware_id": "hw-crash"}),
            )
            .await;
        let r = h
            .capture(
                &s,
                &id,
                json!([capture("right", &recapture(p, i as u64, 0.3))]),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body["data"]["result"]["matched"], true,
            "{name} no longer verifies"
        );
    }
    let rotated = operator(
        &bin,
        dir.path(),
        &["client", "rotate", "--client", &client_id],
    );
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    h.token(&client_id, &new_secret).await;
    h.token(&client_id, &secret).await;
    operator(
        &bin,
        dir.path(),
        &["client", "revoke-old-secret", "--client", &client_id],
    );
    let old = h
        .call(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})),
        )
        .await;
    assert_eq!(old.status, 401);
    let deleted = operator(
        &bin,
        dir.path(),
        &["client", "delete", "--client", &client_id],
    );
    assert_eq!(deleted["deleted"], true);
    assert_eq!(
        h.call(Method::GET, "/v1/users", Some(&t.token), None)
            .await
            .status,
        401
    );
    drop(server);
    if let Some(inner) = h.server.take() {
        inner.stop().await.expect("stop");
    }
}
