//! The operator console in a real browser: Debian's chromium, headless, driven through
//! chromedriver (WebDriver) with fantoccini. Skipped, with a line saying why, where
//! chromium or chromedriver is not installed (`.ci/run` installs both).
//!
//! - `console_in_a_browser`: signs in; creates a tenant and a client (the secret shown once
//!   and gone after a reload); registers a device whose name is markup (shown as text, no
//!   image made, no script run); pairs the simulated scanner with the code the page shows;
//!   sees an enrollment appear and complete on the challenges page without a reload;
//!   changes a threshold; erases the user after confirming; finds each of those actions
//!   in the audit view with its actor (the operator for what the operator did, the scanner
//!   for the pairing and the enrollment), filters it by actor, finds the sign-in in the
//!   operators' chain and sees the chains verified; a change sent by script without the
//!   CSRF token is refused; signs out.
//!
//! With `PALMLINK_CONSOLE_SCREENSHOTS=1` the run saves a screenshot of each page into
//! `docs/console/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use palmlink_simulator::scanner::{self, SimOptions, Simulator};
use serde_json::{json, Value};

use crate::console::{operator, OPERATOR, PASSWORD};
use crate::support::{Harness, Tenant};

/// Where Debian puts the browser and its driver.
const CHROMIUM: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromium-browser"];
const CHROMEDRIVER: &[&str] = &["/usr/bin/chromedriver"];
/// The device name that must be shown as text.
const XSS_NAME: &str = "<img src=x onerror=alert(1)>";

fn first_present(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(path: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = http.get(format!("{url}/status")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver { child, url }
}

async fn browser(driver: &Driver, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--no-first-run", "--disable-extensions"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session")
}

/// Saves a screenshot of the page as `docs/console/NAME.png` when asked to.
async fn screenshot(c: &Client, name: &str) {
    if std::env::var("PALMLINK_CONSOLE_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
    std::fs::create_dir_all(&dir).expect("docs/console");
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

/// The element `css` names, waiting for it (a click that submits a form returns before the
/// next page is there).
async fn find(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
}

async fn text(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .expect("text")
}

async fn fill(c: &Client, css: &str, value: &str) {
    let field = find(c, css).await;
    field.clear().await.expect("clear");
    field.send_keys(value).await.expect("type");
}

async fn click(c: &Client, css: &str) {
    find(c, css).await.click().await.expect("click");
}

async fn path(c: &Client) -> String {
    c.current_url().await.expect("url").path().to_owned()
}

/// Waits until the browser is at a path ending with `suffix`.
async fn arrive(c: &Client, suffix: &str) {
    eventually(Duration::from_secs(10), suffix, || async {
        path(c).await.ends_with(suffix)
    })
    .await;
}

/// Waits until `check` holds, at most `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() {
    let (Some(chromium), Some(chromedriver)) =
        (first_present(CHROMIUM), first_present(CHROMEDRIVER))
    else {
        println!("skipped: chromium and chromedriver are not installed (apt-get install chromium chromium-driver)");
        return;
    };
    let h = Harness::start().await;
    operator(&h, OPERATOR).await;
    let driver = start_driver(&chromedriver).await;
    let c = browser(&driver, &chromium).await;
    run(&h, &c).await;
    let _ = c.close().await;
}

async fn run(h: &Harness, c: &Client) {
    // Sign in.
    c.goto(&h.url("/console")).await.unwrap();
    assert_eq!(path(c).await, "/console/sign-in");
    screenshot(c, "sign-in").await;
    fill(c, "#name", OPERATOR).await;
    fill(c, "#password", PASSWORD).await;
    click(c, "#sign-in").await;
    arrive(c, "/console/tenants").await;

    // A tenant, then a client whose secret is shown once.
    fill(c, "#tenant-name-input", "Acme Clinics").await;
    click(c, "#create-tenant button").await;
    arrive(c, "/clients").await;
    assert_eq!(text(c, "#tenant-name").await, "Acme Clinics");
    let tenant_id = path(c).await.split('/').nth(3).unwrap().to_owned();
    fill(c, "#client-name", "front-desk app").await;
    click(c, "#create-client button").await;
    let secret = text(c, "#client-secret").await;
    let client_id = text(c, "#issued-client-id").await;
    assert!(secret.starts_with("pcs_"), "{secret}");
    screenshot(c, "clients").await;
    c.refresh().await.unwrap();
    assert!(
        c.find(Locator::Css("#client-secret")).await.is_err(),
        "the secret is still shown after a reload"
    );
    assert!(!c.source().await.unwrap().contains(&secret));
    let rows = c
        .find_all(Locator::Css("#clients tbody tr[data-client-id]"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the reload created another client");
    let token = h.token(&client_id, &secret).await;
    let t = Tenant {
        id: tenant_id.clone(),
        client_id,
        secret,
        token,
    };

    // A device named with markup: shown as text, no image element, no script run.
    click(c, "nav.tabs a[href$='/devices']").await;
    fill(c, "#device-name", XSS_NAME).await;
    fill(c, "#device-location", "Lobby <b>east</b>").await;
    click(c, "#register-device button").await;
    let code = text(c, "#pairing-code").await;
    assert_eq!(code.len(), 10, "{code}");
    assert_eq!(text(c, "#devices td.device-name").await, XSS_NAME);
    assert!(c
        .find_all(Locator::Css("#devices img"))
        .await
        .unwrap()
        .is_empty());
    assert!(c.get_alert_text().await.is_err(), "a script ran");
    screenshot(c, "devices").await;

    // The simulated scanner pairs with the code the page showed and answers one challenge.
    let http = scanner::http_client().unwrap();
    let paired = scanner::pair(&http, &h.base, &code, "hw-console")
        .await
        .expect("pairing");
    let sim = Simulator::new(SimOptions {
        population: 100,
        ..SimOptions::default()
    })
    .unwrap();
    let mut sim_scanner = scanner::Scanner::new(http, &h.base, &paired.device_secret, 5_000, sim);
    let answering = tokio::spawn(async move { sim_scanner.run(Some(1), |_| {}).await });
    c.refresh().await.unwrap();
    assert_eq!(text(c, "#devices td.status-paired").await, "paired");

    // The challenges page, loaded before the enrollment exists, shows it complete without
    // a reload.
    click(c, "nav.tabs a[href$='/challenges']").await;
    c.execute("window.__stillHere = true;", vec![])
        .await
        .unwrap();
    let r = h
        .post(
            "/v1/enroll",
            &t.token,
            json!({"external_user_id": "alice", "hardware_id": "hw-console", "palm_type": "right"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let challenge = r.body["data"]["challenge_id"].as_str().unwrap().to_owned();
    let row = format!("#live-challenges tr[data-challenge-id='{challenge}'] td.status-completed");
    eventually(
        Duration::from_secs(30),
        "the enrollment to show completed",
        || async { c.find(Locator::Css(&row)).await.is_ok() },
    )
    .await;
    assert_eq!(
        c.execute("return window.__stillHere === true;", vec![])
            .await
            .unwrap(),
        Value::Bool(true),
        "the page was reloaded"
    );
    assert_eq!(answering.await.unwrap().unwrap(), 1);
    screenshot(c, "challenges").await;

    // A threshold changed in the form is the one the API reports.
    click(c, "nav.tabs a[href$='/settings']").await;
    fill(c, "#threshold-0", "0.8123").await;
    c.execute("window.__formPage = true;", vec![])
        .await
        .unwrap();
    click(c, "#save-settings").await;
    eventually(
        Duration::from_secs(10),
        "the saved settings page",
        || async {
            c.execute(
                "return window.__formPage === undefined && document.readyState === 'complete';",
                vec![],
            )
            .await
            .is_ok_and(|v| v == Value::Bool(true))
        },
    )
    .await;
    assert_eq!(
        c.find(Locator::Css("#threshold-0"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("0.8123")
    );
    let settings = h.get("/v1/settings/matching", &t.token).await;
    let first = settings.body["data"]["thresholds"][0].as_f64().unwrap();
    assert!((first - 0.8123).abs() < 1e-4, "{}", settings.body);
    assert!(
        c.find(Locator::Css(".det svg")).await.is_ok(),
        "the DET curve is on the page"
    );
    screenshot(c, "settings").await;

    // Webhooks: the page and its form are there (deliveries need a receiver: the API's
    // tests cover them).
    click(c, "nav.tabs a[href$='/webhooks']").await;
    assert!(c.find(Locator::Css("#create-webhook")).await.is_ok());
    screenshot(c, "webhooks").await;

    // The user is erased only after confirming with their id.
    click(c, "nav.tabs a[href$='/users']").await;
    assert_eq!(text(c, "#users td.user-id").await, "alice");
    screenshot(c, "users").await;
    click(c, "#users a.erase").await;
    assert_eq!(text(c, "#erase-user").await, "alice");
    screenshot(c, "erase").await;
    fill(c, "#erase-confirm", "alic").await;
    click(c, "#erase-submit").await;
    assert!(text(c, "#error").await.contains("confirm"));
    assert_eq!(
        h.get("/v1/users/alice", &t.token).await.status,
        200,
        "erased without confirmation"
    );
    c.back().await.unwrap();
    arrive(c, "/users/erase").await;
    fill(c, "#erase-confirm", "alice").await;
    click(c, "#erase-submit").await;
    arrive(c, "/users").await;
    find(c, "#users").await;
    assert!(c.find(Locator::Css("#users td.user-id")).await.is_err());
    assert_eq!(h.get("/v1/users/alice", &t.token).await.status, 404);

    audit_view(h, c, &t).await;

    // A change sent from the page without the CSRF token is refused; with it, it goes
    // through.
    let status = |with_token: bool| {
        let script = format!(
            "const token = document.querySelector('input[name=csrf]').value;
             const body = new URLSearchParams({{name: 'scripted'}});
             if ({with_token}) body.set('csrf', token);
             return fetch('/console/tenants', {{method: 'POST', body, redirect: 'manual'}})
                 .then(r => r.type === 'opaqueredirect' ? 303 : r.status);"
        );
        async move { c.execute(&script, vec![]).await.unwrap() }
    };
    assert_eq!(status(false).await, json!(403));
    assert_eq!(status(true).await, json!(303));

    // The tenants page, then sign out: the console is closed again.
    c.goto(&h.url("/console/tenants")).await.unwrap();
    screenshot(c, "tenants").await;
    click(c, "#sign-out").await;
    arrive(c, "/console/sign-in").await;
    c.goto(&h.url("/console/tenants")).await.unwrap();
    assert_eq!(path(c).await, "/console/sign-in");
}

/// The audit view: each action of the run with its actor, a filter by actor, the sign-in in
/// the operators' chain, the chains verified.
async fn audit_view(h: &Harness, c: &Client, t: &Tenant) {
    let ada = h
        .store()
        .await
        .find_operator(OPERATOR)
        .await
        .unwrap()
        .expect("the operator")
        .id
        .to_string();
    let device = h.get("/v1/devices", &t.token).await.body["data"][0]["device_id"]
        .as_str()
        .expect("the device")
        .to_owned();
    click(c, "#audit-link").await;
    arrive(c, "/console/audit").await;
    find(c, "#audit-tenant")
        .await
        .select_by_value(&t.id)
        .await
        .expect("choose the tenant");
    click(c, "#audit-filter").await;
    let row = |action: &str, kind: &str, id: &str| {
        format!(
            "#audit tr.entry[data-chain='{}'][data-action='{action}'][data-actor-type='{kind}'][data-actor-id='{id}']",
            t.id
        )
    };
    let by_operator = [
        "tenant.created",
        "client.created",
        "device.registered",
        "settings.updated",
        "user.erased",
    ];
    for action in by_operator {
        find(c, &row(action, "operator", &ada)).await;
    }
    for action in ["device.paired", "enrollment.completed"] {
        find(c, &row(action, "device", &device)).await;
    }
    // The operator's name is shown beside its id.
    assert!(text(c, &row("user.erased", "operator", &ada))
        .await
        .contains(OPERATOR));

    // The tenant's chain verified, as `palmlink audit verify` does.
    click(c, "#audit-verify").await;
    let verified = format!("#verification[data-ok='true'] tr[data-chain='{}']", t.id);
    assert_eq!(text(c, &format!("{verified} td:last-child")).await, "holds");
    screenshot(c, "audit").await;

    // Only the operator's entries once filtered by actor.
    find(c, "#audit-actor-type")
        .await
        .select_by_value("operator")
        .await
        .expect("choose the actor type");
    click(c, "#audit-filter").await;
    eventually(Duration::from_secs(10), "the filtered list", || async {
        c.current_url()
            .await
            .is_ok_and(|u| u.query().is_some_and(|q| q.contains("actor_type=operator")))
    })
    .await;
    find(c, &row("user.erased", "operator", &ada)).await;
    assert!(c
        .find(Locator::Css("#audit tr.entry[data-actor-type='device']"))
        .await
        .is_err());

    // The sign-in is in the operators' chain.
    c.goto(&h.url("/console/audit")).await.unwrap();
    find(c, "#audit-tenant")
        .await
        .select_by_value("operators")
        .await
        .expect("choose the operators' chain");
    click(c, "#audit-filter").await;
    find(
        c,
        &format!(
            "#audit tr.entry[data-action='operator.login'][data-actor-type='operator'][data-actor-id='{ada}']"
        ),
    )
    .await;
}
