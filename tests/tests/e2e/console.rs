//! The operator console over HTTP, without a browser: sessions, CSRF, throttling, and the
//! wall between the console's cookie and the API's tokens.
//!
//! - `console_sessions_csrf_and_throttling`: a sign-in sets an HttpOnly, SameSite=Strict
//!   cookie; a change without the CSRF token, or with another session's token, is refused;
//!   a signed-out cookie opens nothing; the sixth failed sign-in for a name within a
//!   minute answers 429 (even with the right password).
//! - `console_cookie_and_api_token_do_not_cross`: the console's cookie gets 401 on the API,
//!   and an API token does not open the console.
//! - `operator_create_prints_the_password_once`: `palmlink operator create` as a child
//!   process, with a random password and with `--password-stdin`.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use palmlink_domain::{Sessions, SystemClock};
use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::Harness;

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
        .create_operator(name, Some(PASSWORD.to_owned()))
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
