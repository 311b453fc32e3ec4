//! The operator console over HTTP, without a browser: sessions, CSRF, throttling, and the
//! wall between the console's cookie and the API's tokens.
//!
//! - `console_sessions_csrf_and_throttling`: a sign-in sets an HttpOnly, SameSite=Strict
//!   cookie; a change without the CSRF token, or with another session's token, is refused;
//!   a signed-out cookie opens nothing; the sixth failed sign-in for a name within a
//!   minute answers 429 (even with the right password).
//! - `console_cookie_and_api_token_do_not_cross`: the console's cookie gets 401 on the API,
//!   and an API token does not open the console.
//! - `console_webhooks_deliveries_retry_recover_and_test`: a webhook made in the console
//!   (its name shown escaped, its signing secret once), a test event that fails at the
//!   receiver, retried from the console and then accepted, a recovery, a bad recovery refused.
//! - `operator_create_prints_the_password_once`: `palmlink operator create` as a child
//!   process, with a random password and with `--password-stdin`.
//! - `console_changes_are_audited_as_the_operator`: every change made in the console
//!   (tenant, client rotation and revocation, device, pairing code, revocation, settings,
//!   webhook, erasure) is in `GET /v1/audit` in order with the operator as actor, beside
//!   the client's and the scanner's own entries; the sign-in is in the operators' chain;
//!   the console's audit view filters by chain, action, time and actor, pages with its
//!   filters kept, shows details escaped and verifies the chains; `palmlink audit verify`
//!   holds afterwards.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use palmlink_domain::{OperatorActor, Sessions, SystemClock};
use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::receiver::{Answer, Receiver};
use crate::support::{palm, Harness, Tenant};

pub const OPERATOR: &str = "ada";
pub const PASSWORD: &str = "correct horse battery staple";

/// An HTTP client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Creates the operator `name` with [`PASSWORD`] on the harness's storage.
pub async fn operator(h: &Harness, name: &str) {
    Sessions::new(h.store().await, Arc::new(SystemClock))
        .create_operator(OperatorActor::CommandLine, name, Some(PASSWORD.to_owned()))
        .await
        .expect("operator");
}

/// A session: its `Cookie` header value and its CSRF token (read from a page's form).
struct Session {
    cookie: String,
    csrf: String,
}

async fn sign_in(
    h: &Harness,
    http: &reqwest::Client,
    name: &str,
    password: &str,
) -> reqwest::Response {
    http.post(h.url("/console/sign-in"))
        .form(&[("name", name), ("password", password)])
        .send()
        .await
        .expect("sign-in")
}

async fn session(h: &Harness, http: &reqwest::Client) -> Session {
    let r = sign_in(h, http, OPERATOR, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain http gets no Secure flag: {set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = http
        .get(h.url("/console/tenants"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field in the page")
        .to_owned();
    Session { cookie, csrf }
}

async fn create_tenant(
    h: &Harness,
    http: &reqwest::Client,
    cookie: &str,
    csrf: Option<&str>,
    name: &str,
) -> reqwest::Response {
    let mut form = vec![("name", name)];
    if let Some(token) = csrf {
        form.push(("csrf", token));
    }
    http.post(h.url("/console/tenants"))
        .header(COOKIE, cookie)
        .form(&form)
        .send()
        .await
        .unwrap()
}

async fn tenant_names(h: &Harness) -> Vec<String> {
    h.store()
        .await
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect()
}

#[tokio::test]
async fn console_sessions_csrf_and_throttling() {
    let h = Harness::start().await;
    operator(&h, OPERATOR).await;
    let http = client();

    // Signed out, a page sends to the sign-in and the live JSON answers 401.
    let r = http.get(h.url("/console/tenants")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/console/sign-in");
    let a = session(&h, &http).await;
    let b = session(&h, &http).await;
    assert_ne!(a.csrf, b.csrf);

    // A change without the token, with a wrong one, or with the other session's: 403,
    // and nothing is created.
    for token in [None, Some("forged"), Some(b.csrf.as_str())] {
        let r = create_tenant(&h, &http, &a.cookie, token, "refused").await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "token {token:?}");
    }
    assert!(tenant_names(&h).await.is_empty());
    let r = create_tenant(&h, &http, &a.cookie, Some(&a.csrf), "Acme").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(tenant_names(&h).await, vec!["Acme".to_owned()]);

    // Signing out ends that session only: its cookie opens nothing any more.
    let r = http
        .post(h.url("/console/sign-out"))
        .header(COOKIE, &a.cookie)
        .form(&[("csrf", a.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let r = http
        .get(h.url("/console/tenants"))
        .header(COOKIE, &a.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[LOCATION], "/console/sign-in");
    let r = create_tenant(&h, &http, &a.cookie, Some(&a.csrf), "late").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = create_tenant(&h, &http, &b.cookie, Some(&b.csrf), "Beta").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Over https (as a proxy reports it) the cookie is Secure.
    let r = http
        .post(h.url("/console/sign-in"))
        .header("x-forwarded-proto", "https")
        .form(&[("name", OPERATOR), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert!(r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("; Secure"));

    // Five wrong passwords for a name: 401 each; the sixth attempt within the minute is
    // 429 with Retry-After, even with the right password. Another name is not affected.
    for _ in 0..5 {
        let r = sign_in(&h, &http, OPERATOR, "wrong password!").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = sign_in(&h, &http, OPERATOR, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(r.headers().get(SET_COOKIE).is_none());
    let r = sign_in(&h, &http, "nobody", "wrong password!").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A sign-in posted from another site is refused.
    let r = http
        .post(h.url("/console/sign-in"))
        .header("origin", "https://evil.example")
        .form(&[("name", "nobody"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn console_cookie_and_api_token_do_not_cross() {
    let h = Harness::start().await;
    operator(&h, OPERATOR).await;
    let http = client();
    let s = session(&h, &http).await;
    let t = h.tenant().await;

    // The console's cookie on the API: 401, as with no credential.
    let r = http
        .get(h.url("/v1/devices"))
        .header(COOKIE, &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The API token on the console: the sign-in, and 401 on the JSON the pages poll.
    let r = http
        .get(h.url("/console/tenants"))
        .bearer_auth(&t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/console/sign-in");
    let r = http
        .get(h.url(&format!("/console/tenants/{}/challenges.json", t.id)))
        .bearer_auth(&t.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A token in the cookie's place is no session either.
    let r = http
        .get(h.url("/console/tenants"))
        .header(COOKIE, format!("palmlink_console={}", t.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // With the cookie, the same JSON answers.
    let r = http
        .get(h.url(&format!("/console/tenants/{}/challenges.json", t.id)))
        .header(COOKIE, &s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["total"], 0);
    // Every console page forbids framing and anything from elsewhere.
    let r = http.get(h.url("/console/sign-in")).send().await.unwrap();
    let policy = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
}

/// The id after `marker` in a page (the first one).
fn id_after(html: &str, marker: &str) -> String {
    html.split(marker)
        .nth(1)
        .and_then(|rest| rest.get(..36))
        .unwrap_or_else(|| panic!("no {marker} in the page"))
        .to_owned()
}

#[tokio::test]
async fn console_webhooks_deliveries_retry_recover_and_test() {
    let h = Harness::start_with(|c| {
        c.allow_http_webhooks = true;
        c.webhooks.schedule = "200ms,300ms".parse().expect("schedule");
        c.webhooks.timeout = std::time::Duration::from_millis(800);
        c.webhooks.poll_interval = std::time::Duration::from_millis(300);
    })
    .await;
    operator(&h, OPERATOR).await;
    let http = client();
    let s = session(&h, &http).await;
    let t = h.tenant().await;
    // Three failures: the test event's first attempt and both retries.
    let rx = Receiver::start(vec![Answer::Status(500); 3]).await;
    let hooks = h.url(&format!("/console/tenants/{}/webhooks", t.id));
    let name = "<script>alert(1)</script>";
    let r = http
        .post(&hooks)
        .header(COOKIE, &s.cookie)
        .form(&[
            ("csrf", s.csrf.as_str()),
            ("name", name),
            ("endpoint", rx.url.as_str()),
            ("events", "device.paired"),
            ("events", "enrollment.complete"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let page = r.text().await.unwrap();
    assert!(!page.contains(name), "the name is not escaped");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let secret = page
        .split("id=\"signing-secret\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the signing secret")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let listed = http
        .get(&hooks)
        .header(COOKIE, &s.cookie)
        .send()
        .await
        .unwrap();
    let listed = listed.text().await.unwrap();
    assert!(!listed.contains(&secret), "the secret is shown twice");
    let hook = id_after(&listed, "/webhooks/");
    let events = h.get(&format!("/v1/webhooks/{hook}"), &t.token).await;
    assert_eq!(
        events.body["data"]["events"],
        serde_json::json!(["device.paired", "enrollment.complete"])
    );

    // A test event fails three times and ends failed.
    let post = |path: String, form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let cookie = s.cookie.clone();
        let csrf = s.csrf.clone();
        async move {
            let mut form = form;
            form.push(("csrf", csrf));
            http.post(path)
                .header(COOKIE, cookie)
                .form(&form)
                .send()
                .await
                .unwrap()
        }
    };
    let r = post(format!("{hooks}/{hook}/test"), vec![]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    rx.wait_until(15, |seen| seen.len() >= 3).await;
    let show = || async {
        http.get(format!("{hooks}/{hook}"))
            .header(COOKIE, &s.cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let mut page = show().await;
    for _ in 0..50 {
        if page.contains("status-failed") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        page = show().await;
    }
    assert!(page.contains("status-failed"), "{page}");
    let delivery = id_after(&page, "/deliveries/");

    // Retried from the console, it is delivered.
    let r = post(
        format!("{hooks}/{hook}/deliveries/{delivery}/retry"),
        vec![],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    rx.wait_until(15, |seen| seen.len() >= 4).await;
    let mut page = show().await;
    for _ in 0..50 {
        if page.contains("status-succeeded") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        page = show().await;
    }
    assert!(page.contains("status-succeeded"), "{page}");

    // A recovery since a time is accepted; a malformed time is refused with the
    // contract's status, shown as a page.
    let since = palmlink_domain::rfc3339(0);
    let r = post(format!("{hooks}/{hook}/recover"), vec![("since", since)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = post(
        format!("{hooks}/{hook}/recover"),
        vec![("since", "yesterday".to_owned())],
    )
    .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(r.text().await.unwrap().contains("id=\"error\""));
}

#[test]
fn operator_create_prints_the_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(palmlink_tests::palmlink_binary())
            .args([
                "--data-dir",
                dir.path().to_str().unwrap(),
                "operator",
                "create",
            ])
            .args(args)
            .env("PALMLINK_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn palmlink operator create");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    };
    let out = run(&["--name", "ada"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["name"], "ada");
    assert!(made["password"].as_str().unwrap().len() >= 32, "{made}");
    assert!(made["operator_id"].as_str().is_some());
    // The name is taken now.
    let again = run(&["--name", "ada"], None);
    assert!(!again.status.success());
    // A chosen password: too short is refused, a long one is kept (and printed once).
    let short = run(&["--name", "bob", "--password-stdin"], Some("short\n"));
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("password"));
    let chosen = run(
        &["--name", "bob", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(
        chosen.status.success(),
        "{}",
        String::from_utf8_lossy(&chosen.stderr)
    );
    let made: Value = serde_json::from_slice(&chosen.stdout).unwrap();
    assert_eq!(made["password"], PASSWORD);
}

/// The text of the element with `id` in a page (up to its first tag).
fn text_by_id(html: &str, id: &str) -> String {
    html.split(&format!("id=\"{id}\">"))
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_else(|| panic!("no #{id} in the page"))
        .to_owned()
}

/// The rows of the console's audit view: (action, actor type, actor id) of each.
fn audit_rows(html: &str) -> Vec<(String, String, String)> {
    html.split("<tr class=\"entry\"")
        .skip(1)
        .map(|row| {
            let attr = |name: &str| {
                row.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_else(|| panic!("no {name} in {row}"))
                    .to_owned()
            };
            (
                attr("data-action"),
                attr("data-actor-type"),
                attr("data-actor-id"),
            )
        })
        .collect()
}

#[tokio::test]
async fn console_changes_are_audited_as_the_operator() {
    let h = Harness::start_with(|c| c.allow_http_webhooks = true).await;
    operator(&h, OPERATOR).await;
    let store = h.store().await;
    let ada = store
        .find_operator(OPERATOR)
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string();
    let http = client();
    let s = session(&h, &http).await;
    let post = |path: String, form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let cookie = s.cookie.clone();
        let csrf = s.csrf.clone();
        let url = h.url(&path);
        async move {
            let mut form = form;
            form.push(("csrf", csrf));
            let r = http
                .post(url)
                .header(COOKIE, cookie)
                .form(&form)
                .send()
                .await
                .unwrap();
            assert!(
                r.status().is_success() || r.status() == StatusCode::SEE_OTHER,
                "{path}: {}",
                r.status()
            );
            let location = r
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_owned());
            (location, r.text().await.unwrap())
        }
    };
    let page = |path: String| {
        let http = http.clone();
        let cookie = s.cookie.clone();
        let url = h.url(&path);
        async move {
            let r = http.get(url).header(COOKIE, cookie).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };

    // A tenant named with markup, its client, a rotation and the old secret revoked.
    let name = "<b>Acme</b> & co";
    let (to, _) = post("/console/tenants".into(), vec![("name", name.into())]).await;
    let tenant = to.unwrap().split('/').nth(3).unwrap().to_owned();
    let clients = format!("/console/tenants/{tenant}/clients");
    let (_, made) = post(clients.clone(), vec![("name", "app".into())]).await;
    let client_id = text_by_id(&made, "issued-client-id");
    post(format!("{clients}/{client_id}/rotate"), vec![]).await;
    post(format!("{clients}/{client_id}/revoke-old-secret"), vec![]).await;
    let (_, rotated) = post(format!("{clients}/{client_id}/rotate"), vec![]).await;
    let secret = text_by_id(&rotated, "client-secret");
    let t = Tenant {
        id: tenant.clone(),
        token: h.token(&client_id, &secret).await,
        client_id,
        secret,
    };

    // A device, a fresh pairing code, its revocation.
    let devices = format!("/console/tenants/{tenant}/devices");
    let (_, registered) = post(
        devices.clone(),
        vec![("device_name", "desk".into()), ("location", "hall".into())],
    )
    .await;
    let device = registered
        .split("data-device-id=\"")
        .nth(1)
        .and_then(|rest| rest.get(..36))
        .unwrap()
        .to_owned();
    post(format!("{devices}/{device}/pairing-code"), vec![]).await;
    post(format!("{devices}/{device}/revoke"), vec![]).await;

    // Settings as they are, saved from the console.
    let settings = h.get("/v1/settings/matching", &t.token).await.body["data"].clone();
    let mut form: Vec<(&'static str, String)> = settings["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| ("thresholds", v.to_string()))
        .collect();
    form.push((
        "match_policy",
        settings["match_policy"].as_str().unwrap().into(),
    ));
    form.push(("min_quality", "0.1".into()));
    form.push(("min_liveness", "0.1".into()));
    form.push(("duplicate_check", "flag".into()));
    post(format!("/console/tenants/{tenant}/settings"), form).await;

    // A webhook made and deleted.
    let rx = Receiver::start(vec![]).await;
    let hooks = format!("/console/tenants/{tenant}/webhooks");
    post(
        hooks.clone(),
        vec![
            ("name", "hook".into()),
            ("endpoint", rx.url.clone()),
            ("events", "device.paired".into()),
        ],
    )
    .await;
    let hook = id_after(&page(hooks.clone()).await.1, "/webhooks/");
    post(format!("{hooks}/{hook}/delete"), vec![]).await;

    // The integrator's own changes, the scanner's, then the operator erases the user.
    let scanner = h.scanner(&t, "hw-audit").await;
    h.enroll(&t, &scanner, "alice", "right", &palm(7)).await;
    post(
        format!("/console/tenants/{tenant}/users/erase"),
        vec![("user", "alice".into()), ("confirm", "alice".into())],
    )
    .await;

    // The tenant's chain through the API: every action once, in order, with its actor.
    let r = h.get("/v1/audit?limit=100", &t.token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let entries = r.body["data"].as_array().unwrap().clone();
    let seen: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap().to_owned();
            (
                text(&e["action"]),
                text(&e["actor"]["type"]),
                text(&e["actor"]["id"]),
            )
        })
        .collect();
    let by =
        |action: &str, kind: &str, id: &str| (action.to_owned(), kind.to_owned(), id.to_owned());
    let op = |action: &str| by(action, "operator", &ada);
    assert_eq!(
        seen,
        [
            op("tenant.created"),
            op("client.created"),
            op("client.rotated"),
            op("client.old_secret_revoked"),
            op("client.rotated"),
            op("device.registered"),
            op("device.pairing_code_issued"),
            op("device.revoked"),
            op("settings.updated"),
            op("webhook.created"),
            op("webhook.deleted"),
            by("device.registered", "client", &t.client_id),
            by("device.paired", "device", &scanner.device_id),
            by("enrollment.completed", "device", &scanner.device_id),
            op("user.erased"),
        ]
    );
    assert!(
        !r.body.to_string().contains(&t.secret),
        "a secret in the audit log"
    );

    // The console's view of that chain: newest first, filtered by actor and by action.
    let audit = format!("/console/audit?tenant={tenant}");
    let (status, html) = page(audit.clone()).await;
    assert_eq!(status, 200);
    let mut newest_first = seen.clone();
    newest_first.reverse();
    assert_eq!(audit_rows(&html), newest_first);
    assert!(!html.contains(name), "markup shown unescaped");
    assert!(html.contains("&lt;b&gt;Acme&lt;/b&gt; &amp; co"));
    let (_, html) = page(format!("{audit}&actor_type=device")).await;
    let rows = audit_rows(&html);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(_, kind, _)| kind == "device"));
    let (_, html) = page(format!("{audit}&action=user.erased")).await;
    assert_eq!(audit_rows(&html), [op("user.erased")]);
    // The tenant's own tab shows the same chain.
    let (_, tab) = page(format!("/console/tenants/{tenant}/audit?actor_type=client")).await;
    assert_eq!(
        audit_rows(&tab),
        [by("device.registered", "client", &t.client_id)]
    );
    // A time filter: nothing after now; a malformed time or actor type is refused.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let later = palmlink_domain::rfc3339(palmlink_domain::micros(now) + 3_600_000_000);
    let (_, html) = page(format!("{audit}&since={later}")).await;
    assert!(audit_rows(&html).is_empty());
    assert!(html.contains("No entries match."));
    let (status, _) = page(format!("{audit}&since=yesterday")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = page(format!("{audit}&actor_type=robot")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Pages of two keep the filters in their links.
    let (_, html) = page(format!("{audit}&actor_type=operator&limit=2")).await;
    assert_eq!(
        audit_rows(&html),
        [op("user.erased"), op("webhook.deleted")]
    );
    let next = html
        .split("class=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a next page")
        .replace("&amp;", "&");
    assert!(
        next.contains("actor_type=operator") && next.contains("offset=2"),
        "{next}"
    );
    let (_, html) = page(next).await;
    assert_eq!(
        audit_rows(&html),
        [op("webhook.created"), op("settings.updated")]
    );

    // The operators' chain: the account made on the command line, the sign-in.
    let (_, html) = page("/console/audit?tenant=operators".into()).await;
    assert_eq!(
        audit_rows(&html),
        [
            op("operator.login"),
            by("operator.created", "operator", "cli")
        ]
    );
    // Every chain at once, and their check.
    let (_, html) = page("/console/audit?action=tenant.created".into()).await;
    assert_eq!(audit_rows(&html), [op("tenant.created")]);
    let (_, html) = page("/console/audit?verify=1".into()).await;
    assert!(
        html.contains("id=\"verification\" data-ok=\"true\""),
        "{html}"
    );
    assert_eq!(html.matches("does not hold").count(), 0);

    // `palmlink audit verify` holds: the tenant's chain and the operators'.
    let mut verify = Command::new(palmlink_tests::palmlink_binary());
    verify
        .args(["audit", "verify", "--data-dir"])
        .arg(&h.config.data_dir)
        .env("PALMLINK_LOG", "warn");
    if let Some(url) = &h.config.database_url {
        verify.args(["--database-url", url]);
    }
    let out = verify.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.contains(&serde_json::json!({"tenant_id": tenant, "entries": 15, "ok": true})),
        "{lines:?}"
    );
    assert!(
        lines.contains(&serde_json::json!({
            "tenant_id": "00000000-0000-0000-0000-000000000000", "entries": 2, "ok": true
        })),
        "{lines:?}"
    );
}
